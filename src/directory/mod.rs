//! The durable store: the snapshot each source last reported, the ledger of managed users and teams, and the
//! outbox of operations accepted but not yet applied. SQLite by default (one file, nothing to install), behind
//! [`Store`] so that a PostgreSQL implementation can share the database of LiteLLM for several replicas.
//!
//! Invariant: an operation is in the outbox before it is applied, and leaves the outbox in the same transaction
//! that records its result in the ledger. A crash in between re-applies it, which every operation tolerates
//! (409 on create goes to update, "already in team" and "already deleted" are success).

pub mod ledger;
mod sqlite;

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use ledger::{Ledger, LedgerWrite};
pub use sqlite::SqliteStore;

use crate::mapper::DesiredUser;
use crate::model::Snapshot;
use crate::reconcile::plan::Op;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store {path}: {message}")]
    Open { path: String, message: String },
    #[error("store: {0}")]
    Query(String),
    #[error("store holds data this version cannot read ({0}); was it written by a newer litellm-sync?")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Query(e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting to be applied (LiteLLM unreachable, or not tried yet).
    Pending,
    /// LiteLLM refused it (4xx); kept and visible until the next full resync replaces it.
    Failed,
}

/// One stored operation.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: i64,
    pub source: String,
    pub run_id: String,
    pub op: Op,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// How an operation is stored: the `desired` of a create, which `Op` leaves out of its JSON, rides beside it.
#[derive(Serialize, Deserialize)]
struct StoredOp {
    op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    desired: Option<DesiredUser>,
}

impl StoredOp {
    fn encode(op: &Op) -> Result<String, StoreError> {
        let desired = match op {
            Op::CreateUser { desired, .. } => Some((**desired).clone()),
            _ => None,
        };
        serde_json::to_string(&StoredOp { op: op.clone(), desired }).map_err(|e| StoreError::Query(e.to_string()))
    }

    fn decode(s: &str) -> Result<Op, StoreError> {
        let stored: StoredOp =
            serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("outbox entry: {e}")))?;
        let mut op = stored.op;
        if let (Op::CreateUser { desired, .. }, Some(d)) = (&mut op, stored.desired) {
            **desired = d;
        }
        Ok(op)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxStats {
    pub pending: u64,
    pub failed: u64,
    pub oldest: Option<DateTime<Utc>>,
}

/// What the daemon needs from a store.
pub trait Store: Send + Sync {
    fn save_snapshot(&self, snap: &Snapshot) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn last_snapshot(&self, source: &str) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;
    fn load_ledger(&self) -> impl Future<Output = Result<Ledger, StoreError>> + Send;
    fn replace_ledger(&self, ledger: &Ledger) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Replaces the source's outbox with a new plan's operations (in order); returns their ids.
    fn replace_outbox(
        &self,
        source: &str,
        run_id: &str,
        ops: &[Op],
    ) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send;
    fn outbox(&self, source: &str) -> impl Future<Output = Result<Vec<OutboxEntry>, StoreError>> + Send;
    /// Records an applied operation: ledger writes and removal from the outbox, in one transaction.
    fn complete(&self, id: i64, writes: &[LedgerWrite]) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records a failed attempt; `permanent` moves the entry to `failed`.
    fn attempt_failed(
        &self,
        id: i64,
        error: &str,
        permanent: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn outbox_stats(&self) -> impl Future<Output = Result<OutboxStats, StoreError>> + Send;
    fn get_meta(&self, key: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    fn set_meta(&self, key: &str, value: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A cheap read, for `/readyz`.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
