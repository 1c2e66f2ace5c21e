//! SQLite implementation of [`Store`]: one file, WAL journal with `synchronous = FULL` (a SCIM write answered 2xx
//! is on disk), migrations embedded from `migrations/`. The directory's rows are in `rows.rs`.

mod commit;
mod rows;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::*;
use crate::directory::rows::{keyed_json, ledger_rows, place_id};
use crate::litellm::types::{TeamRow, UserRow};

pub struct SqliteStore {
    pool: SqlitePool,
    /// SCIM writes, committed in groups (`commit.rs`).
    scim: commit::Committer,
}

fn now() -> String {
    Utc::now().to_rfc3339()
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(StoreError::query)
}

impl SqliteStore {
    /// Opens (creating if needed) the store and brings its schema up to date. A file that is not a SQLite
    /// database, or that cannot be written, is a clear error rather than a silent fresh start.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let shown = path.display().to_string();
        let open_err = |m: String| StoreError::Open { path: shown.clone(), message: m };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| open_err(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // A multi-row statement inside a transaction keeps a statement journal (to undo itself alone); in
            // memory, not in a temporary file written and synced for each statement.
            .pragma("temp_store", "memory");
        Self::start(opts, 4, &shown).await
    }

    /// A store that lives in memory only: what a CLI run without `[store]` plans against (it starts empty, so
    /// the run lists LiteLLM), and what tests use when durability is not the question. One connection: an
    /// in-memory database is private to its connection.
    pub async fn in_memory() -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| StoreError::Open { path: ":memory:".into(), message: e.to_string() })?;
        Self::start(opts, 1, ":memory:").await
    }

    async fn start(opts: SqliteConnectOptions, connections: u32, shown: &str) -> Result<SqliteStore, StoreError> {
        let open_err = |m: String| StoreError::Open { path: shown.to_string(), message: m };
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .connect_with(opts)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| open_err(format!("schema migration failed: {e}")))?;
        // Prove it is writable now, not at the first change.
        sqlx::query("INSERT INTO meta (key, value) VALUES ('opened_at', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1")
            .bind(now())
            .execute(&pool)
            .await
            .map_err(|e| open_err(format!("not writable: {e}")))?;
        Ok(SqliteStore { scim: commit::Committer::start(pool.clone()), pool })
    }
}

/// Rows one multi-row statement carries. Every statement is a round trip to SQLite's worker thread (two thread
/// wake-ups); one statement a row made those hand-overs most of the CPU time of recording 10,000 creates. SQLite
/// allows 32,766 parameters a statement. These statements are not kept in the connections' statement caches
/// (`persistent(false)`): their text varies with the row count, and a cached statement of 500 rows is large.
const ROWS_PER_STATEMENT: usize = 500;

/// Upserts `(key, row)` pairs into a ledger table (`key_column`, `row`, `updated_at`), a statement per
/// [`ROWS_PER_STATEMENT`] rows.
async fn upsert_rows(
    conn: &mut sqlx::SqliteConnection,
    table: &str,
    key_column: &str,
    rows: &[(&str, String)],
    ts: &str,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q =
            sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!("INSERT INTO {table} ({key_column}, row, updated_at) "));
        q.push_values(chunk, |mut b, (key, row)| {
            b.push_bind(*key).push_bind(row.as_str()).push_bind(ts);
        });
        q.push(format!(
            " ON CONFLICT({key_column}) DO UPDATE SET row = excluded.row, updated_at = excluded.updated_at"
        ));
        q.build().persistent(false).execute(&mut *conn).await?;
    }
    Ok(())
}

/// `DELETE FROM {table} WHERE {column} IN (…)` for `ids`, a statement per [`ROWS_PER_STATEMENT`] ids.
async fn delete_where_in<'a, T>(
    conn: &mut sqlx::SqliteConnection,
    table: &str,
    column: &str,
    ids: &[T],
) -> Result<(), StoreError>
where
    T: 'a + Copy + Send + sqlx::Encode<'a, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<'a, sqlx::Sqlite>::new(format!("DELETE FROM {table} WHERE {column} IN ("));
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push(")");
        q.build().persistent(false).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes the ledger's changes, each row once ([`ledger_rows`]), in a few multi-row statements.
async fn put_ledger(conn: &mut sqlx::SqliteConnection, writes: &[&LedgerWrite]) -> Result<(), StoreError> {
    let r = ledger_rows(writes)?;
    let ts = now();
    upsert_rows(conn, "ledger_users", "user_id", &r.users, &ts).await?;
    delete_where_in(conn, "ledger_users", "user_id", &r.gone).await?;
    upsert_rows(conn, "ledger_teams", "team_id", &r.teams, &ts).await
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn save_snapshot(&self, snap: &Snapshot) -> Result<(), StoreError> {
        rows::save_snapshot(&self.pool, snap).await
    }

    async fn last_snapshot(&self, source: &str) -> Result<Option<Snapshot>, StoreError> {
        rows::last_snapshot(&self.pool, source).await
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
        self.scim.put(source, write).await
    }

    async fn scim_delete(&self, source: &str, kind: ScimKind, id: &str, rev: Option<i64>) -> Result<bool, StoreError> {
        self.scim.delete(source, kind, id, rev).await
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

    async fn load_ledger(&self) -> Result<Ledger, StoreError> {
        let mut l = Ledger::default();
        for r in sqlx::query("SELECT row FROM ledger_users").fetch_all(&self.pool).await? {
            let s: String = r.try_get("row")?;
            let u: UserRow = serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("ledger user: {e}")))?;
            l.users.insert(u.user_id.clone(), u);
        }
        for r in sqlx::query("SELECT row FROM ledger_teams").fetch_all(&self.pool).await? {
            let s: String = r.try_get("row")?;
            let t: TeamRow = serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("ledger team: {e}")))?;
            l.teams.insert(t.team_id.clone(), t);
        }
        Ok(l)
    }

    async fn replace_ledger(&self, ledger: &Ledger) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // An operation planned again unchanged keeps its age and attempt count: the outbox's oldest age then says
        // how long a change has really been waiting, not when the last run replanned it.
        let mut kept: std::collections::HashMap<String, (String, i64)> = std::collections::HashMap::new();
        for r in sqlx::query("SELECT op, created_at, attempts FROM outbox WHERE status = 'pending'")
            .fetch_all(&mut *tx)
            .await?
        {
            kept.insert(r.try_get("op")?, (r.try_get("created_at")?, r.try_get("attempts")?));
        }
        sqlx::query("DELETE FROM outbox").execute(&mut *tx).await?;
        let ts = now();
        let mut rows = Vec::with_capacity(ops.len());
        for op in ops {
            let text = StoredOp::encode(op)?;
            let (created, attempts) = kept.remove(&text).unwrap_or_else(|| (ts.clone(), 0));
            rows.push((text, created, attempts));
        }
        let mut ids = vec![0i64; ops.len()];
        for (n, chunk) in rows.chunks(ROWS_PER_STATEMENT).enumerate() {
            let first = n * ROWS_PER_STATEMENT;
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO outbox (source, run_id, seq, op, attempts, created_at, updated_at) ",
            );
            q.push_values(chunk.iter().enumerate(), |mut b, (i, (text, created, attempts))| {
                b.push("'*'")
                    .push_bind(run_id)
                    .push_bind((first + i) as i64)
                    .push_bind(text.as_str())
                    .push_bind(*attempts)
                    .push_bind(created.as_str())
                    .push_bind(ts.as_str());
            });
            q.push(" RETURNING seq, id");
            for r in q.build().persistent(false).fetch_all(&mut *tx).await? {
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
                let created: String = r.try_get("created_at")?;
                Ok(OutboxEntry {
                    id: r.try_get("id")?,
                    run_id: r.try_get("run_id")?,
                    op: StoredOp::decode(&r.try_get::<String, _>("op")?)?,
                    status: if status == "failed" { OutboxStatus::Failed } else { OutboxStatus::Pending },
                    attempts: r.try_get::<i64, _>("attempts")?.try_into().unwrap_or(u32::MAX),
                    last_error: r.try_get("last_error")?,
                    created_at: DateTime::parse_from_rfc3339(&created)
                        .map_err(|e| StoreError::Corrupt(format!("outbox timestamp: {e}")))?
                        .with_timezone(&Utc),
                })
            })
            .collect()
    }

    async fn record_results(&self, updates: &[OutboxUpdate]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
                        "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, updated_at = ?3,
                         status = CASE WHEN ?4 THEN 'failed' ELSE status END WHERE id = ?1",
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
        delete_where_in(&mut tx, "outbox", "id", &done).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let r = sqlx::query(
            "SELECT SUM(status = 'pending') AS pending, SUM(status = 'failed') AS failed,
             MIN(CASE WHEN status = 'pending' THEN created_at END) AS oldest FROM outbox",
        )
        .fetch_one(&self.pool)
        .await?;
        let oldest: Option<String> = r.try_get("oldest")?;
        Ok(OutboxStats {
            pending: r.try_get::<Option<i64>, _>("pending")?.unwrap_or(0).max(0) as u64,
            failed: r.try_get::<Option<i64>, _>("failed")?.unwrap_or(0).max(0) as u64,
            oldest: oldest.and_then(|s| DateTime::parse_from_rfc3339(&s).ok()).map(|d| d.with_timezone(&Utc)),
        })
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let r = sqlx::query("SELECT value FROM meta WHERE key = ?1").bind(key).fetch_optional(&self.pool).await?;
        Ok(match r {
            Some(r) => Some(r.try_get("value")?),
            None => None,
        })
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn replace_meta(&self, key: &str, expected: &str, value: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE meta SET value = ?1 WHERE key = ?2 AND value = ?3")
            .bind(value)
            .bind(key)
            .bind(expected)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn acquire_lease(&self, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Utc::now().timestamp_millis();
        let until = now + ttl.as_millis() as i64;
        let r = sqlx::query(
            "INSERT INTO lease (name, holder, expires_at) VALUES ('run', ?1, ?2)
             ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE lease.holder = excluded.holder OR lease.expires_at < ?3",
        )
        .bind(holder)
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn release_lease(&self, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM lease WHERE name = 'run' AND holder = ?1").bind(holder).execute(&self.pool).await?;
        Ok(())
    }

    async fn lease_holder(&self) -> Result<Option<String>, StoreError> {
        let r = sqlx::query("SELECT holder FROM lease WHERE name = 'run' AND expires_at >= ?1")
            .bind(Utc::now().timestamp_millis())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match r {
            Some(r) => Some(r.try_get("holder")?),
            None => None,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::litellm::types::TeamRequest;

    fn op(team: &str) -> Op {
        Op::CreateTeam { team_id: team.into(), request: TeamRequest { team_id: team.into(), ..Default::default() } }
    }

    #[tokio::test]
    async fn the_outbox_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let s = SqliteStore::open(&path).await.unwrap();
        s.replace_outbox("run-1", &[op("a"), op("b")]).await.unwrap();
        s.close().await;
        let s = SqliteStore::open(&path).await.unwrap();
        let pending = s.outbox().await.unwrap();
        assert_eq!(pending.iter().map(|e| e.op.target()).collect::<Vec<_>>(), vec!["team a", "team b"]);
    }

    #[tokio::test]
    async fn corrupt_and_unwritable_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"this is not a database, it is a text file that is long enough".repeat(100)).unwrap();
        let err = SqliteStore::open(&junk).await.err().expect("corrupt file must not open").to_string();
        assert!(err.contains("junk.db"), "{err}");
        let blocked = dir.path().join("file-not-dir");
        std::fs::write(&blocked, b"x").unwrap();
        let err = SqliteStore::open(&blocked.join("state.db")).await.err().expect("must fail").to_string();
        assert!(err.contains("cannot create"), "{err}");
    }
}
