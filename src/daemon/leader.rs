//! Leader election for several replicas on one PostgreSQL database (DESIGN.md §6): a session-level
//! `pg_try_advisory_lock` held on a dedicated, unpooled connection (never through PgBouncer in transaction mode:
//! the lock would be taken by whatever session the bouncer picked), checked by a heartbeat, with an epoch row
//! bumped on every acquisition. The store is fenced with the epoch this replica holds, so a deposed leader's late
//! writes are refused; the applier re-checks the epoch before every write batch to LiteLLM.
//!
//! A leader steps down on any error or missed heartbeat (its lock is gone with its session as soon as the
//! server notices; the server-side TCP keepalives bound that for a vanished client). No home-made consensus.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection, Row};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::directory::PostgresStore;
use crate::telemetry::metrics::Metrics;

/// The advisory lock's key: one leader per database.
const LOCK_KEY: i64 = 0x6c69_7465_6c6c_6d73; // "litellms"
/// How often a leader proves it still holds the lock, and a candidate tries to take it.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A heartbeat that takes longer than this counts as missed.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

/// Campaigns until `stop`: publishes `Some(epoch)` while this replica leads, `None` otherwise.
pub async fn campaign(
    store: Arc<PostgresStore>,
    holder: String,
    metrics: Metrics,
    stop: CancellationToken,
    state: watch::Sender<Option<i64>>,
) {
    metrics.leader.set(0);
    while !stop.is_cancelled() {
        let options = store.connect_options();
        let conn = tokio::select! {
            _ = stop.cancelled() => break,
            c = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect_with(&options)) => c,
        };
        let mut conn = match conn {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Cannot connect to run for leadership; trying again");
                pause(&stop).await;
                continue;
            }
            Err(_) => {
                tracing::warn!("Connecting to run for leadership timed out; trying again");
                pause(&stop).await;
                continue;
            }
        };
        match candidate(&mut conn, &store, &holder, &metrics, &stop, &state).await {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "Leadership connection failed; stepping down and trying again"),
        }
        step_down(&store, &metrics, &state);
        // Dropping the connection ends the session, and with it the lock.
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.close()).await;
        pause(&stop).await;
    }
    step_down(&store, &metrics, &state);
}

async fn pause(stop: &CancellationToken) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(HEARTBEAT) => {}
    }
}

fn step_down(store: &PostgresStore, metrics: &Metrics, state: &watch::Sender<Option<i64>>) {
    store.fence(None);
    if state.borrow().is_some() {
        tracing::warn!("Stepping down: no longer the leader");
        metrics.leadership_changes.inc();
        state.send_replace(None);
    }
    metrics.leader.set(0);
}

/// One session: try for the lock until it is ours, then lead until a heartbeat fails or `stop`.
async fn candidate(
    conn: &mut PgConnection,
    store: &PostgresStore,
    holder: &str,
    metrics: &Metrics,
    stop: &CancellationToken,
    state: &watch::Sender<Option<i64>>,
) -> Result<(), sqlx::Error> {
    loop {
        let got: bool =
            timed(sqlx::query("SELECT pg_try_advisory_lock($1) AS got").bind(LOCK_KEY).fetch_one(&mut *conn))
                .await?
                .try_get("got")?;
        if got {
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
    let epoch: i64 = timed(
        sqlx::query("UPDATE leader SET epoch = epoch + 1, holder = $1, since = $2 WHERE id = 1 RETURNING epoch")
            .bind(holder)
            .bind(chrono::Utc::now().to_rfc3339())
            .fetch_one(&mut *conn),
    )
    .await?
    .try_get("epoch")?;
    store.fence(Some(epoch));
    tracing::info!(epoch, holder, "This replica is the leader");
    metrics.leader.set(1);
    metrics.leader_epoch.set(epoch);
    metrics.leadership_changes.inc();
    state.send_replace(Some(epoch));
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = timed(sqlx::query("SELECT pg_advisory_unlock($1)").bind(LOCK_KEY).execute(&mut *conn)).await;
                return Ok(());
            }
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
        let current: i64 = timed(sqlx::query("SELECT epoch FROM leader WHERE id = 1").fetch_one(&mut *conn))
            .await?
            .try_get("epoch")?;
        if current != epoch {
            tracing::warn!(epoch, current, "Another replica took the lead");
            return Ok(());
        }
    }
}

/// A query bounded by the heartbeat timeout: a hung connection is a failed one.
async fn timed<T>(f: impl std::future::Future<Output = Result<T, sqlx::Error>>) -> Result<T, sqlx::Error> {
    match tokio::time::timeout(HEARTBEAT_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}
