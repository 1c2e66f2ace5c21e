//! SQLite implementation of [`Store`]: one file, WAL journal, migrations embedded from `migrations/`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::*;
use crate::litellm::types::{TeamRow, UserRow};

pub struct SqliteStore {
    pool: SqlitePool,
}

fn now() -> String {
    Utc::now().to_rfc3339()
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Query(e.to_string()))
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
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| open_err(format!("schema migration failed: {e}")))?;
        // Prove it is writable now, not at the first change.
        sqlx::query("INSERT INTO meta (key, value) VALUES ('opened_at', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1")
            .bind(now())
            .execute(&pool)
            .await
            .map_err(|e| open_err(format!("not writable: {e}")))?;
        Ok(SqliteStore { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Store for SqliteStore {
    async fn save_snapshot(&self, snap: &Snapshot) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO snapshots (source, taken_at, body) VALUES (?1, ?2, ?3)
             ON CONFLICT(source) DO UPDATE SET taken_at = ?2, body = ?3",
        )
        .bind(&snap.source)
        .bind(now())
        .bind(json(snap)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn last_snapshot(&self, source: &str) -> Result<Option<Snapshot>, StoreError> {
        let row =
            sqlx::query("SELECT body FROM snapshots WHERE source = ?1").bind(source).fetch_optional(&self.pool).await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let body: String = r.try_get("body")?;
                serde_json::from_str(&body)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt(format!("snapshot of {source}: {e}")))
            }
        }
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM ledger_users").execute(&mut *tx).await?;
        sqlx::query("DELETE FROM ledger_teams").execute(&mut *tx).await?;
        let ts = now();
        for u in ledger.users.values() {
            sqlx::query("INSERT INTO ledger_users (user_id, row, updated_at) VALUES (?1, ?2, ?3)")
                .bind(&u.user_id)
                .bind(json(u)?)
                .bind(&ts)
                .execute(&mut *tx)
                .await?;
        }
        for t in ledger.teams.values() {
            sqlx::query("INSERT INTO ledger_teams (team_id, row, updated_at) VALUES (?1, ?2, ?3)")
                .bind(&t.team_id)
                .bind(json(t)?)
                .bind(&ts)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn replace_outbox(&self, source: &str, run_id: &str, ops: &[Op]) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // An operation planned again unchanged keeps its age and attempt count: the outbox's oldest age then says
        // how long a change has really been waiting, not when the last run replanned it.
        let mut kept: std::collections::HashMap<String, (String, i64)> = std::collections::HashMap::new();
        for r in sqlx::query("SELECT op, created_at, attempts FROM outbox WHERE source = ?1 AND status = 'pending'")
            .bind(source)
            .fetch_all(&mut *tx)
            .await?
        {
            kept.insert(r.try_get("op")?, (r.try_get("created_at")?, r.try_get("attempts")?));
        }
        sqlx::query("DELETE FROM outbox WHERE source = ?1").bind(source).execute(&mut *tx).await?;
        let ts = now();
        let mut ids = Vec::with_capacity(ops.len());
        for (seq, op) in ops.iter().enumerate() {
            let text = StoredOp::encode(op)?;
            let (created, attempts) = kept.remove(&text).unwrap_or_else(|| (ts.clone(), 0));
            let r = sqlx::query(
                "INSERT INTO outbox (source, run_id, seq, op, attempts, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .bind(source)
            .bind(run_id)
            .bind(seq as i64)
            .bind(&text)
            .bind(attempts)
            .bind(&created)
            .bind(&ts)
            .execute(&mut *tx)
            .await?;
            ids.push(r.last_insert_rowid());
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn outbox(&self, source: &str) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, source, run_id, op, status, attempts, last_error, created_at FROM outbox
             WHERE source = ?1 ORDER BY seq",
        )
        .bind(source)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                let created: String = r.try_get("created_at")?;
                Ok(OutboxEntry {
                    id: r.try_get("id")?,
                    source: r.try_get("source")?,
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

    async fn complete(&self, id: i64, writes: &[LedgerWrite]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let ts = now();
        for w in writes {
            match w {
                LedgerWrite::PutUser(u) => {
                    sqlx::query(
                        "INSERT INTO ledger_users (user_id, row, updated_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT(user_id) DO UPDATE SET row = ?2, updated_at = ?3",
                    )
                    .bind(&u.user_id)
                    .bind(json(u)?)
                    .bind(&ts)
                    .execute(&mut *tx)
                    .await?;
                }
                LedgerWrite::DeleteUser(id) => {
                    sqlx::query("DELETE FROM ledger_users WHERE user_id = ?1").bind(id).execute(&mut *tx).await?;
                }
                LedgerWrite::PutTeam(t) => {
                    sqlx::query(
                        "INSERT INTO ledger_teams (team_id, row, updated_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT(team_id) DO UPDATE SET row = ?2, updated_at = ?3",
                    )
                    .bind(&t.team_id)
                    .bind(json(t)?)
                    .bind(&ts)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        sqlx::query("DELETE FROM outbox WHERE id = ?1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn attempt_failed(&self, id: i64, error: &str, permanent: bool) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, updated_at = ?3,
             status = CASE WHEN ?4 THEN 'failed' ELSE status END WHERE id = ?1",
        )
        .bind(id)
        .bind(error)
        .bind(now())
        .bind(permanent)
        .execute(&self.pool)
        .await?;
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

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
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
    async fn outbox_survives_reopen_and_completion_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let s = SqliteStore::open(&path).await.unwrap();
        let ids = s.replace_outbox("corp", "run-1", &[op("a"), op("b")]).await.unwrap();
        s.close().await;
        let s = SqliteStore::open(&path).await.unwrap();
        let pending = s.outbox("corp").await.unwrap();
        assert_eq!(pending.iter().map(|e| e.op.target()).collect::<Vec<_>>(), vec!["team a", "team b"]);
        let row = TeamRow {
            team_id: "a".into(),
            team_alias: None,
            max_budget: None,
            soft_budget: None,
            budget_duration: None,
            models: vec![],
            tpm_limit: None,
            rpm_limit: None,
            metadata: Default::default(),
            members_with_roles: vec![],
        };
        s.complete(ids[0], &[LedgerWrite::PutTeam(Box::new(row))]).await.unwrap();
        s.attempt_failed(ids[1], "LiteLLM said no", true).await.unwrap();
        let left = s.outbox("corp").await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].status, OutboxStatus::Failed);
        assert_eq!(left[0].attempts, 1);
        assert_eq!(s.load_ledger().await.unwrap().teams.len(), 1);
        let st = s.outbox_stats().await.unwrap();
        assert_eq!((st.pending, st.failed), (0, 1));
        // A new plan replaces the source's outbox, failed entries included.
        s.replace_outbox("corp", "run-2", &[op("c")]).await.unwrap();
        assert_eq!(s.outbox("corp").await.unwrap()[0].run_id, "run-2");
        assert_eq!(s.outbox_stats().await.unwrap().pending, 1);
        // The same operation planned again keeps its age and attempts; a new one starts fresh.
        let first = s.outbox("corp").await.unwrap()[0].clone();
        s.attempt_failed(first.id, "down", false).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        s.replace_outbox("corp", "run-3", &[op("c"), op("d")]).await.unwrap();
        let now = s.outbox("corp").await.unwrap();
        assert_eq!((now[0].created_at, now[0].attempts), (first.created_at, 1));
        assert!(now[1].created_at > first.created_at);
        assert_eq!(now[1].attempts, 0);
    }

    #[tokio::test]
    async fn create_ops_keep_their_desired_user() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let d = crate::mapper::DesiredUser { user_id: "alice".into(), user_name: "alice".into(), ..Default::default() };
        let create = Op::CreateUser {
            user_id: "alice".into(),
            key: d.key.clone(),
            request: Default::default(),
            desired: Box::new(d.clone()),
        };
        s.replace_outbox("corp", "r", &[create]).await.unwrap();
        let Op::CreateUser { desired, .. } = &s.outbox("corp").await.unwrap()[0].op else { panic!() };
        assert_eq!(**desired, d);
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
