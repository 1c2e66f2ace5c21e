//! PostgreSQL implementation of [`Store`], for several replicas sharing one database (DESIGN.md §6): the same
//! model as SQLite (migrations in `migrations/postgres`), plus the fence. A replica that runs for leadership sets
//! the epoch it holds ([`PostgresStore::fence`]); every write only the leader makes (ledger, outbox, snapshots)
//! checks it inside its transaction against the `leader` row, so a deposed leader's late writes are refused.
//! SCIM writes are any replica's and are not fenced; each one notifies the leader (`NOTIFY`). The directory's
//! rows are in `rows.rs`.

mod rows;

use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Row, Transaction};

use super::*;
use crate::directory::rows::{keyed_json, ledger_rows, place_id};
use crate::litellm::types::{TeamRow, UserRow};

/// The channel SCIM writes notify the leader on.
pub const CHANGES_CHANNEL: &str = "litellm_sync_changes";
/// No fence: the writer is not a replica in an election (a CLI run, which holds the run lease instead).
const UNFENCED: i64 = i64::MIN;
/// Fenced out: a replica that is not the leader writes nothing the leader owns.
const NOT_LEADER: i64 = -1;

pub struct PostgresStore {
    pool: PgPool,
    options: PgConnectOptions,
    fence: Arc<AtomicI64>,
}

fn now() -> String {
    Utc::now().to_rfc3339()
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    to_json(v)
}

impl PostgresStore {
    /// Connects, brings the schema up to date, and proves the database is writable. The password is given
    /// apart from the URL (from the environment or a file), so the URL in the configuration holds no secret.
    pub async fn open(url: &str, password: Option<&SecretString>) -> Result<PostgresStore, StoreError> {
        let shown = redact_url(url);
        let open_err = |m: String| StoreError::Open { path: shown.clone(), message: m };
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| open_err(e.to_string()))?
            .application_name("litellm-sync")
            // The server notices a client that vanished (a killed pod), so its session lock is released.
            .options([("tcp_keepalives_idle", "10"), ("tcp_keepalives_interval", "5"), ("tcp_keepalives_count", "3")]);
        if let Some(p) = password {
            options = options.password(p.expose_secret());
        }
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(|e| open_err(e.to_string()))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| open_err(format!("schema migration failed: {e}")))?;
        let probe = sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('opened_at', $1) ON CONFLICT (key) DO UPDATE SET value = $1",
        )
        .bind(now())
        .execute(&pool)
        .await;
        probe.map_err(|e| open_err(format!("not writable: {e}")))?;
        Ok(PostgresStore { pool, options, fence: Arc::new(AtomicI64::new(UNFENCED)) })
    }

    /// Options for a dedicated connection (the leader's session lock lives on one, never on the pool).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The epoch this replica holds as leader (`Some(epoch)`), or `None` when it is not the leader: from then on
    /// its leader-only writes are refused unless they carry the current epoch.
    pub fn fence(&self, epoch: Option<i64>) {
        self.fence.store(epoch.unwrap_or(NOT_LEADER), Ordering::SeqCst);
    }

    /// Refuses a leader-only write of a replica whose epoch is not the current one.
    async fn check_fence(&self, tx: &mut Transaction<'_, Postgres>) -> Result<(), StoreError> {
        let mine = self.fence.load(Ordering::SeqCst);
        if mine == UNFENCED {
            return Ok(());
        }
        // FOR SHARE: a new leader's epoch bump waits for this transaction, and this one sees it after.
        let current: i64 = sqlx::query("SELECT epoch FROM leader WHERE id = 1 FOR SHARE")
            .fetch_one(&mut **tx)
            .await?
            .try_get("epoch")?;
        if current != mine {
            return Err(StoreError::Fenced { mine, current });
        }
        Ok(())
    }
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(an unparsable PostgreSQL URL)".to_string(),
    }
}

/// Upserts `(key, row)` pairs into a ledger table (`key_column`, `row`, `updated_at`) in one statement (arrays
/// through `UNNEST`): a round trip to the server per row made recording 10,000 results cost seconds.
async fn upsert_rows(
    tx: &mut Transaction<'_, Postgres>,
    table: &str,
    key_column: &str,
    rows: &[(&str, String)],
    ts: &str,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let (keys, bodies): (Vec<&str>, Vec<&str>) = rows.iter().map(|(k, r)| (*k, r.as_str())).unzip();
    sqlx::query(&format!(
        "INSERT INTO {table} ({key_column}, row, updated_at) SELECT k, r, $3 FROM UNNEST($1::text[], $2::text[]) AS \
         t(k, r) ON CONFLICT ({key_column}) DO UPDATE SET row = EXCLUDED.row, updated_at = EXCLUDED.updated_at"
    ))
    .bind(&keys)
    .bind(&bodies)
    .bind(ts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the ledger's changes, each row once and in key order ([`ledger_rows`]: row locks are always taken in the
/// same order).
async fn put_ledger(tx: &mut Transaction<'_, Postgres>, writes: &[&LedgerWrite]) -> Result<(), StoreError> {
    let r = ledger_rows(writes)?;
    let ts = now();
    upsert_rows(tx, "ledger_users", "user_id", &r.users, &ts).await?;
    if !r.gone.is_empty() {
        sqlx::query("DELETE FROM ledger_users WHERE user_id = ANY($1::text[])")
            .bind(&r.gone)
            .execute(&mut **tx)
            .await?;
    }
    upsert_rows(tx, "ledger_teams", "team_id", &r.teams, &ts).await
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("outbox timestamp: {e}")))
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn save_snapshot(&self, snap: &Snapshot) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.check_fence(&mut tx).await?;
        rows::save_snapshot(&mut tx, snap).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn last_snapshot(&self, source: &str) -> Result<Option<Snapshot>, StoreError> {
        rows::last_snapshot(&self.pool, source).await
    }

    async fn load_ledger(&self) -> Result<Ledger, StoreError> {
        let mut l = Ledger::default();
        for r in sqlx::query("SELECT row FROM ledger_users").fetch_all(&self.pool).await? {
            let u: UserRow = serde_json::from_str(&r.try_get::<String, _>("row")?)
                .map_err(|e| StoreError::Corrupt(format!("ledger user: {e}")))?;
            l.users.insert(u.user_id.clone(), u);
        }
        for r in sqlx::query("SELECT row FROM ledger_teams").fetch_all(&self.pool).await? {
            let t: TeamRow = serde_json::from_str(&r.try_get::<String, _>("row")?)
                .map_err(|e| StoreError::Corrupt(format!("ledger team: {e}")))?;
            l.teams.insert(t.team_id.clone(), t);
        }
        Ok(l)
    }

    async fn replace_ledger(&self, ledger: &Ledger) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.check_fence(&mut tx).await?;
        sqlx::query("DELETE FROM ledger_users").execute(&mut *tx).await?;
        sqlx::query("DELETE FROM ledger_teams").execute(&mut *tx).await?;
        let ts = now();
        let users = keyed_json(ledger.users.values().map(|u| (u.user_id.as_str(), u)))?;
        upsert_rows(&mut tx, "ledger_users", "user_id", &users, &ts).await?;
        let teams = keyed_json(ledger.teams.values().map(|t| (t.team_id.as_str(), t)))?;
        upsert_rows(&mut tx, "ledger_teams", "team_id", &teams, &ts).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn replace_outbox(&self, run_id: &str, ops: &[Op]) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        self.check_fence(&mut tx).await?;
        let mut kept: std::collections::HashMap<String, (String, i64)> = std::collections::HashMap::new();
        for r in sqlx::query("SELECT op, created_at, attempts FROM outbox WHERE status = 'pending'")
            .fetch_all(&mut *tx)
            .await?
        {
            kept.insert(r.try_get("op")?, (r.try_get("created_at")?, r.try_get("attempts")?));
        }
        sqlx::query("DELETE FROM outbox").execute(&mut *tx).await?;
        let ts = now();
        let (mut seqs, mut texts, mut attempts, mut created) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (seq, op) in ops.iter().enumerate() {
            let text = StoredOp::encode(op)?;
            let (c, a) = kept.remove(&text).unwrap_or_else(|| (ts.clone(), 0));
            seqs.push(seq as i64);
            texts.push(text);
            attempts.push(a);
            created.push(c);
        }
        // One statement.
        let mut ids = vec![0i64; ops.len()];
        if !ops.is_empty() {
            let rows = sqlx::query(
                "INSERT INTO outbox (run_id, seq, op, attempts, created_at, updated_at)
                 SELECT $1, s, o, a, c, $6 FROM UNNEST($2::bigint[], $3::text[], $4::bigint[], $5::text[]) AS t(s, o, a, c)
                 RETURNING seq, id",
            )
            .bind(run_id)
            .bind(&seqs)
            .bind(&texts)
            .bind(&attempts)
            .bind(&created)
            .bind(&ts)
            .fetch_all(&mut *tx)
            .await?;
            for r in rows {
                place_id(&mut ids, r.try_get("seq")?, r.try_get("id")?)?;
            }
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows =
            sqlx::query("SELECT id, run_id, op, status, attempts, last_error, created_at FROM outbox ORDER BY seq, id")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                Ok(OutboxEntry {
                    id: r.try_get("id")?,
                    run_id: r.try_get("run_id")?,
                    op: StoredOp::decode(&r.try_get::<String, _>("op")?)?,
                    status: if status == "failed" { OutboxStatus::Failed } else { OutboxStatus::Pending },
                    attempts: r.try_get::<i64, _>("attempts")?.try_into().unwrap_or(u32::MAX),
                    last_error: r.try_get("last_error")?,
                    created_at: parse_time(&r.try_get::<String, _>("created_at")?)?,
                })
            })
            .collect()
    }

    async fn record_results(&self, updates: &[OutboxUpdate]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.check_fence(&mut tx).await?;
        let ts = now();
        let mut writes: Vec<&LedgerWrite> = Vec::new();
        let mut done: Vec<i64> = Vec::new();
        for u in updates {
            match u {
                OutboxUpdate::Done { id, writes: w } => {
                    writes.extend(w);
                    done.push(*id);
                }
                OutboxUpdate::Failed { id, error, permanent, writes: w } => {
                    writes.extend(w);
                    sqlx::query(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $2, updated_at = $3,
                         status = CASE WHEN $4 THEN 'failed' ELSE status END WHERE id = $1",
                    )
                    .bind(id)
                    .bind(error)
                    .bind(&ts)
                    .bind(permanent)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        put_ledger(&mut tx, &writes).await?;
        if !done.is_empty() {
            sqlx::query("DELETE FROM outbox WHERE id = ANY($1::bigint[])").bind(&done).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let r = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE status = 'pending') AS pending,
                    COUNT(*) FILTER (WHERE status = 'failed') AS failed,
                    MIN(created_at) FILTER (WHERE status = 'pending') AS oldest FROM outbox",
        )
        .fetch_one(&self.pool)
        .await?;
        let oldest: Option<String> = r.try_get("oldest")?;
        Ok(OutboxStats {
            pending: r.try_get::<i64, _>("pending")?.max(0) as u64,
            failed: r.try_get::<i64, _>("failed")?.max(0) as u64,
            oldest: oldest.and_then(|s| parse_time(&s).ok()),
        })
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let r = sqlx::query("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional(&self.pool).await?;
        Ok(match r {
            Some(r) => Some(r.try_get("value")?),
            None => None,
        })
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn replace_meta(&self, key: &str, expected: &str, value: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE meta SET value = $1 WHERE key = $2 AND value = $3")
            .bind(value)
            .bind(key)
            .bind(expected)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn acquire_lease(&self, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Utc::now().timestamp_millis();
        let r = sqlx::query(
            "INSERT INTO lease (name, holder, expires_at) VALUES ('run', $1, $2)
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
             WHERE lease.holder = EXCLUDED.holder OR lease.expires_at < $3",
        )
        .bind(holder)
        .bind(now + ttl.as_millis() as i64)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn release_lease(&self, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM lease WHERE name = 'run' AND holder = $1").bind(holder).execute(&self.pool).await?;
        Ok(())
    }

    async fn lease_holder(&self) -> Result<Option<String>, StoreError> {
        let r = sqlx::query("SELECT holder FROM lease WHERE name = 'run' AND expires_at >= $1")
            .bind(Utc::now().timestamp_millis())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match r {
            Some(r) => Some(r.try_get("holder")?),
            None => None,
        })
    }

    async fn scim_get(&self, source: &str, kind: ScimKind, id: &str) -> Result<Option<ScimRecord>, StoreError> {
        rows::scim_get(&self.pool, source, kind, id).await
    }

    async fn scim_find(
        &self,
        source: &str,
        kind: ScimKind,
        index: ScimIndex,
        value: &str,
    ) -> Result<Vec<ScimRecord>, StoreError> {
        rows::scim_find(&self.pool, source, kind, index, value).await
    }

    async fn scim_scan(
        &self,
        source: &str,
        kind: ScimKind,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<ScimRecord>, StoreError> {
        rows::scim_scan(&self.pool, source, kind, offset, limit).await
    }

    async fn scim_count(&self, source: &str, kind: ScimKind) -> Result<u64, StoreError> {
        rows::scim_count(&self.pool, source, kind).await
    }

    async fn scim_put(&self, source: &str, write: ScimWrite) -> Result<ScimRecord, StoreError> {
        rows::scim_put(&self.pool, source, write).await
    }

    async fn scim_delete(&self, source: &str, kind: ScimKind, id: &str, rev: Option<i64>) -> Result<bool, StoreError> {
        rows::scim_delete(&self.pool, source, kind, id, rev).await
    }

    async fn scim_members(&self, source: &str, group_id: &str) -> Result<Vec<(String, MemberKind)>, StoreError> {
        rows::scim_members(&self.pool, source, group_id).await
    }

    async fn scim_groups_of(&self, source: &str, user_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        rows::scim_groups_of(&self.pool, source, user_id).await
    }

    async fn scim_kinds(&self, source: &str, ids: &[String]) -> Result<HashMap<String, MemberKind>, StoreError> {
        rows::scim_kinds(&self.pool, source, ids).await
    }

    async fn still_leader(&self) -> Result<bool, StoreError> {
        let mine = self.fence.load(Ordering::SeqCst);
        if mine == UNFENCED {
            return Ok(true);
        }
        if mine == NOT_LEADER {
            return Ok(false);
        }
        let current: i64 =
            sqlx::query("SELECT epoch FROM leader WHERE id = 1").fetch_one(&self.pool).await?.try_get("epoch")?;
        Ok(current == mine)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
