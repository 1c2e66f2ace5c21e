//! Several replicas on one PostgreSQL database (a database of its own per test), against the real LiteLLM: the
//! store suite on PostgreSQL; exactly one leader and every change applied once; `kill -9` of the leader in the
//! middle of a large run (the follower takes over and resumes the outbox); the leader's session cut with
//! `pg_terminate_backend` (it steps down, and a deposed leader's store writes are refused by the epoch). Each
//! daemon talks to LiteLLM through its own fault proxy, so the writes of each are counted apart. A SCIM write to
//! the follower lands in LiteLLM through the leader.

use std::time::{Duration, Instant};

use axum::http::Method;
use serde_json::{json, Value};
use sqlx::Row;

use crate::support::daemon::{daemon_config_named, Daemon};
use crate::support::postgres::TestDb;
use crate::support::{eventually, free_port, FaultProxy, Fixture};
use litellm_sync::directory::{PostgresStore, Store, StoreError};

fn users(fx: &Fixture, n: usize) -> Value {
    let users: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("id-{i:03}"), "user_name": format!("h{i:03}"), "email": fx.email(&format!("h{i:03}"))}))
        .collect();
    json!({ "users": users })
}

fn source(fx: &Fixture) -> String {
    format!(
        "[[sources]]\nname = \"{s}\"\ntype = \"file\"\npath = \"{p}\"\nuser_id_template = \"{x}{{user_name}}\"\nschedule = \"*/2 * * * * *\"\n",
        s = fx.source,
        p = fx.path("users.yaml").display(),
        x = fx.prefix()
    )
}

/// The `[store]` of a replica: the test database; its password in a file (the daemons get a clean environment).
fn store(fx: &Fixture, db: &TestDb) -> String {
    let file = fx.path("pg-password");
    std::fs::write(&file, &db.password).expect("write the password file");
    format!("\n[store]\nurl = \"{}\"\npassword_file = \"{}\"\n", db.url, file.display())
}

async fn leader(d: &Daemon) -> Option<f64> {
    d.sample("litellm_sync_leader").await
}

async fn open(db: &TestDb) -> PostgresStore {
    PostgresStore::open(&db.url, Some(&secrecy::SecretString::from(db.password.clone())))
        .await
        .expect("open PostgreSQL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_the_store_suite_passes_on_postgres() {
    let db = TestDb::create("suite").await;
    let store = open(&db).await;
    litellm_sync::directory::suite::check(&store).await.expect("the store suite on PostgreSQL");
    // A deposed leader's writes are refused: fenced at epoch 1 while another replica took epoch 2.
    let mut c = db.connect().await;
    sqlx::query("UPDATE leader SET epoch = 1").execute(&mut c).await.expect("epoch 1");
    store.fence(Some(1));
    store.replace_outbox("mine", &[]).await.expect("the leader of epoch 1 writes");
    assert!(store.still_leader().await.expect("still_leader"));
    sqlx::query("UPDATE leader SET epoch = 2").execute(&mut c).await.expect("a new leader");
    assert!(!store.still_leader().await.expect("still_leader"), "the applier stops before its next batch");
    let late = store.replace_outbox("late", &[]).await;
    assert!(matches!(late, Err(StoreError::Fenced { mine: 1, current: 2 })), "{late:?}");
    store.close().await;
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_two_replicas_one_leader_every_change_once() {
    let fx = Fixture::new("ha-two").await;
    let db = TestDb::create("two").await;
    let (pa, pb) = (FaultProxy::start(&fx.url, &fx.admin).await, FaultProxy::start(&fx.url, &fx.admin).await);
    fx.write_users(&users(&fx, 30));
    let (port_a, port_b) = (free_port(), free_port());
    let extra = store(&fx, &db);
    let ca = daemon_config_named(&fx, "a.toml", &pa.url(), port_a, &source(&fx), &extra);
    let cb = daemon_config_named(&fx, "b.toml", &pb.url(), port_b, &source(&fx), &extra);
    let a = Daemon::start(&ca, port_a, &fx.path("a.log")).await;
    let b = Daemon::start(&cb, port_b, &fx.path("b.log")).await;
    eventually("30 users provisioned", Duration::from_secs(150), || async {
        (fx.admin.users(&fx.prefix()).await.len() == 30).then_some(())
    })
    .await;
    let (la, lb) = (leader(&a).await, leader(&b).await);
    assert_eq!(
        [la, lb].iter().filter(|l| **l == Some(1.0)).count(),
        1,
        "exactly one leader: {la:?} {lb:?}\n{}\n{}",
        a.log(),
        b.log()
    );
    let (lead, follow) = if la == Some(1.0) { (&pa, &pb) } else { (&pb, &pa) };
    assert!(follow.writes().is_empty(), "the follower wrote: {:?}", follow.writes());
    let creates = lead.count(Method::POST, "/management/v1/users/bulk") + lead.count(Method::POST, "/user/new");
    assert!(creates >= 1, "{:?}", lead.writes());
    // Ticks go on, on both: nothing more to write.
    lead.reset_log();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(lead.writes().is_empty() && follow.writes().is_empty(), "{:?} {:?}", lead.writes(), follow.writes());
    drop((a, b));
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_kill9_of_the_leader_mid_run_the_follower_finishes_it() {
    let fx = Fixture::new("ha-kill").await;
    let db = TestDb::create("kill").await;
    let (pa, pb) = (FaultProxy::start(&fx.url, &fx.admin).await, FaultProxy::start(&fx.url, &fx.admin).await);
    const N: usize = 120;
    fx.write_users(&users(&fx, N));
    // One by one (no bulk endpoint), so that the run is long enough to be interrupted.
    let slow = format!("{}\n", store(&fx, &db));
    let (port_a, port_b) = (free_port(), free_port());
    let ca = daemon_config_named(&fx, "a.toml", &pa.url(), port_a, &source(&fx), &slow);
    let cb = daemon_config_named(&fx, "b.toml", &pb.url(), port_b, &source(&fx), &slow);
    for c in [&ca, &cb] {
        let text = std::fs::read_to_string(c).expect("config");
        std::fs::write(c, text.replace("[litellm]\n", "[litellm]\nbulk = false\nconcurrency = 1\n")).expect("config");
    }
    let a = Daemon::start(&ca, port_a, &fx.path("a.log")).await;
    eventually("a leads", Duration::from_secs(90), || async { (leader(&a).await == Some(1.0)).then_some(()) }).await;
    let b = Daemon::start(&cb, port_b, &fx.path("b.log")).await;
    eventually("a is creating users", Duration::from_secs(120), || async {
        (pa.count(Method::POST, "/user/new") >= 10).then_some(())
    })
    .await;
    let killed = Instant::now();
    a.kill9().await;
    let took_over = eventually("b takes over and writes", Duration::from_secs(60), || async {
        // (The permission probe is not an operation.)
        pb.log().iter().find(|e| e.method == Method::POST && e.path == "/user/new" && !e.probe).map(|e| e.at)
    })
    .await;
    let failover = took_over.saturating_duration_since(killed);
    eprintln!("ha: kill -9 of the leader to the first operation applied by the new leader: {failover:?}");
    eventually("every user exists", Duration::from_secs(180), || async {
        (fx.admin.users(&fx.prefix()).await.len() == N).then_some(())
    })
    .await;
    // Every change landed exactly once: no duplicate, and every user created by one of the two.
    let rows = fx.admin.users(&fx.prefix()).await;
    assert_eq!(rows.len(), N);
    let ok_creates = |p: &FaultProxy| {
        p.log().iter().filter(|e| e.method == Method::POST && e.path == "/user/new" && e.status == 200).count()
    };
    // The create in flight when a died may have landed unseen (its answer never reached a): b's retry of it
    // meets a 409 and goes to the update path, so at most one create is missing from the counts.
    let total = ok_creates(&pa) + ok_creates(&pb);
    assert!(total == N || total + 1 == N, "each user created once: {total} of {N}");
    assert_eq!(leader(&b).await, Some(1.0));
    drop(b);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_a_leader_whose_session_is_cut_steps_down() {
    let fx = Fixture::new("ha-cut").await;
    let db = TestDb::create("cut").await;
    let (pa, pb) = (FaultProxy::start(&fx.url, &fx.admin).await, FaultProxy::start(&fx.url, &fx.admin).await);
    fx.write_users(&users(&fx, 5));
    let (port_a, port_b) = (free_port(), free_port());
    let extra = store(&fx, &db);
    let ca = daemon_config_named(&fx, "a.toml", &pa.url(), port_a, &source(&fx), &extra);
    let cb = daemon_config_named(&fx, "b.toml", &pb.url(), port_b, &source(&fx), &extra);
    let a = Daemon::start(&ca, port_a, &fx.path("a.log")).await;
    eventually("a leads", Duration::from_secs(90), || async { (leader(&a).await == Some(1.0)).then_some(()) }).await;
    let b = Daemon::start(&cb, port_b, &fx.path("b.log")).await;
    eventually("5 users provisioned", Duration::from_secs(150), || async {
        (fx.admin.users(&fx.prefix()).await.len() == 5).then_some(())
    })
    .await;
    // Cut the leader's session: the backend holding the advisory lock.
    let mut c = db.connect().await;
    let pid: i32 = sqlx::query(
        "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()",
    )
    .fetch_one(&mut c)
    .await
    .expect("the leader's lock")
    .try_get("pid")
    .expect("pid");
    sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&mut c).await.expect("terminate");
    eventually("b leads, a does not", Duration::from_secs(90), || async {
        (leader(&b).await == Some(1.0) && leader(&a).await == Some(0.0)).then_some(())
    })
    .await;
    let epoch: i64 = sqlx::query("SELECT epoch FROM leader WHERE id = 1")
        .fetch_one(&mut c)
        .await
        .expect("epoch")
        .try_get("epoch")
        .expect("epoch");
    assert!(epoch >= 2, "a new epoch: {epoch}");
    // A change now goes through b only.
    pa.reset_log();
    fx.write_users(&users(&fx, 6));
    eventually("the new user is provisioned", Duration::from_secs(120), || async {
        (fx.admin.users(&fx.prefix()).await.len() == 6).then_some(())
    })
    .await;
    assert!(pa.writes().is_empty(), "the deposed leader wrote: {:?}\n{}", pa.writes(), a.log());
    assert!(a.log().contains("Stepping down"), "{}", a.log());
    drop((a, b));
    db.drop_now().await;
}

/// Every replica serves SCIM: a write to the follower is committed to the shared store before its 201, and the
/// leader (told by PostgreSQL's notification) applies it; the follower itself never writes to LiteLLM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_a_scim_write_to_the_follower_lands_through_the_leader() {
    use crate::support::scim::{scim_source, token_from_cli, ScimClient, GROUP, USER};

    let fx = Fixture::new("ha-scim").await;
    let db = TestDb::create("scim").await;
    let (pa, pb) = (FaultProxy::start(&fx.url, &fx.admin).await, FaultProxy::start(&fx.url, &fx.admin).await);
    let (token, hash) = token_from_cli(&fx).await;
    let source = scim_source(&fx, &format!("tokens = [\"{hash}\"]"), "");
    let (port_a, port_b) = (free_port(), free_port());
    let extra = store(&fx, &db);
    let ca = daemon_config_named(&fx, "a.toml", &pa.url(), port_a, &source, &extra);
    let cb = daemon_config_named(&fx, "b.toml", &pb.url(), port_b, &source, &extra);
    let a = Daemon::start(&ca, port_a, &fx.path("a.log")).await;
    eventually("a leads", Duration::from_secs(90), || async { (leader(&a).await == Some(1.0)).then_some(()) }).await;
    let b = Daemon::start(&cb, port_b, &fx.path("b.log")).await;
    eventually("b follows", Duration::from_secs(90), || async { (leader(&b).await == Some(0.0)).then_some(()) }).await;
    pb.reset_log();

    // The IdP talks to the follower only.
    let scim = ScimClient::new(&format!("http://127.0.0.1:{port_b}/scim/v2"), &token);
    let user = json!({
        "schemas": [USER], "userName": "fran", "externalId": "ext-fran", "active": true,
        "emails": [{"primary": true, "value": fx.email("fran"), "type": "work"}],
    });
    let fran = ScimClient::expect(scim.send("POST", "/Users", Some(&user)).await, 201, "create on the follower");
    let fran_id = fran["id"].as_str().expect("id").to_string();
    let eng = json!({"schemas": [GROUP], "displayName": "eng", "members": [{"value": fran_id}]});
    ScimClient::expect(scim.send("POST", "/Groups", Some(&eng)).await, 201, "group on the follower");
    // The leader serves what the follower committed.
    let on_a = ScimClient::new(&format!("http://127.0.0.1:{port_a}/scim/v2"), &token);
    ScimClient::expect(on_a.get(&format!("/Users/{fran_id}")).await, 200, "read back on the leader");

    eventually("fran provisioned with the eng rule, in team eng", Duration::from_secs(180), || async {
        let row = fx.admin.user(&fx.uid("fran")).await?;
        fx.admin.team(&fx.uid("eng")).await?;
        let member = fx.admin.members(&fx.uid("eng")).await.iter().any(|(id, _)| *id == fx.uid("fran"));
        (row["max_budget"] == 25.0 && member).then_some(())
    })
    .await;
    // On a loaded machine a heartbeat can miss and the lead move to b; then b wrote as the leader, rightly.
    let b_led = b.sample("litellm_sync_leadership_changes_total").await.unwrap_or(0.0) > 0.0;
    if b_led {
        eprintln!("ha: the lead moved to b during the test; the writes are not attributed");
    } else {
        assert!(pb.writes().is_empty(), "the follower wrote to LiteLLM: {:?}", pb.writes());
        assert!(!pa.writes().is_empty(), "the leader applied the follower's write");
    }
    drop((a, b));
    db.drop_now().await;
}
