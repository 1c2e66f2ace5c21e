//! A database of its own per test on the real PostgreSQL that `scripts/test.sh` runs (the one LiteLLM uses),
//! created by a role that may create databases (`LITELLM_SYNC_TEST_PG_URL` names the server,
//! `LITELLM_SYNC_TEST_PG_PASSWORD` its password) and dropped at the end.

use sqlx::{Connection, PgConnection};

pub const ENV_URL: &str = "LITELLM_SYNC_TEST_PG_URL";
pub const ENV_PASSWORD: &str = "LITELLM_SYNC_TEST_PG_PASSWORD";

pub struct TestDb {
    /// `postgres://user@host:port/<db>`, without the password.
    pub url: String,
    pub password: String,
    name: String,
    admin: String,
}

fn env(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| panic!("{name} is not set: run scripts/test.sh (it prepares PostgreSQL)"))
}

async fn admin_conn(admin: &str, password: &str) -> PgConnection {
    let opts: sqlx::postgres::PgConnectOptions = admin.parse().expect("a PostgreSQL URL");
    PgConnection::connect_with(&opts.password(password)).await.expect("connect to PostgreSQL as the test role")
}

impl TestDb {
    pub async fn create(name: &str) -> TestDb {
        let (admin, password) = (env(ENV_URL), env(ENV_PASSWORD));
        let db = format!("lsync_{}", name.replace('-', "_"));
        let mut c = admin_conn(&admin, &password).await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&mut c).await.expect("drop");
        sqlx::query(&format!("CREATE DATABASE {db}")).execute(&mut c).await.expect("create the test database");
        let mut url = url::Url::parse(&admin).expect("a PostgreSQL URL");
        url.set_path(&format!("/{db}"));
        TestDb { url: url.to_string(), password, name: db, admin }
    }

    /// A connection to the test database (for what a test does to it by hand).
    pub async fn connect(&self) -> PgConnection {
        admin_conn(&self.url, &self.password).await
    }

    pub async fn drop_now(self) {
        let mut c = admin_conn(&self.admin, &self.password).await;
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut c).await;
    }
}
