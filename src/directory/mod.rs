//! The durable store: the snapshot each source last reported, the ledger of managed users and teams, and the
//! outbox of operations accepted but not yet applied. SQLite by default (one file, nothing to install), behind
//! [`Store`] so that a PostgreSQL implementation can share the database of LiteLLM for several replicas.
//!
//! Invariant: an operation is in the outbox before it is applied, and leaves the outbox in the same transaction
//! that records its result in the ledger. A crash in between re-applies it, which every operation tolerates
//! (409 on create goes to update, "already in team" and "already deleted" are success).

pub mod ledger;
pub mod postgres;
mod rows;
mod sqlite;
#[doc(hidden)]
pub mod suite;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use ledger::{Ledger, LedgerWrite};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::mapper::DesiredUser;
use crate::model::Snapshot;
use crate::reconcile::plan::Op;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store {path}: {message}")]
    Open { path: String, message: String },
    #[error("store: {0}")]
    Query(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("store holds data this version cannot read ({0}); was it written by a newer litellm-sync?")]
    Corrupt(String),
    /// A SCIM write would give two resources one unique value (userName, a group's displayName).
    #[error("{0}")]
    Conflict(String),
    /// A SCIM write to a resource that does not exist.
    #[error("no such resource")]
    NotFound,
    /// A SCIM group write adds a member that is no resource of its source (deleted meanwhile).
    #[error("member {0:?} is no User or Group of this service provider")]
    MissingMember(String),
    /// A SCIM write whose `If-Match` version is not the stored one.
    #[error("the resource changed since version {expected}")]
    Precondition { expected: String },
    /// A write of a replica that is no longer the leader (its epoch is not the current one).
    #[error("this replica is no longer the leader (epoch {mine}, current {current}): its write was refused")]
    Fenced { mine: i64, current: i64 },
}

impl StoreError {
    pub fn query(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Query(Box::new(e))
    }

    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            StoreError::Open { .. } => "open",
            StoreError::Query(_) => "query",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Conflict(_) => "conflict",
            StoreError::NotFound => "not_found",
            StoreError::MissingMember(_) => "missing_member",
            StoreError::Precondition { .. } => "precondition",
            StoreError::Fenced { .. } => "fenced",
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::query(e)
    }
}

/// The two SCIM resource types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScimKind {
    User,
    Group,
}

/// A SCIM resource as stored: the resource JSON (a user without its derived `groups`, a group without its
/// `members`, which live in the directory's rows), and its revision (the version an ETag is made of).
#[derive(Debug, Clone, PartialEq)]
pub struct ScimRecord {
    pub id: String,
    pub resource: serde_json::Value,
    pub rev: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a SCIM lookup may use an index for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimIndex {
    /// Users' `userName`, groups' `displayName` (both compared case-insensitively).
    Name,
    /// `externalId` (exact).
    ExternalId,
    /// Users' e-mail address (case-insensitively).
    Email,
}

/// A group member: a user or a nested group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberKind {
    User,
    Group,
}

/// How a group write changes its members.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberChange {
    Replace(Vec<(String, MemberKind)>),
    Delta { add: Vec<(String, MemberKind)>, remove: Vec<String> },
}

/// What a SCIM write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A create: the id must be new.
    Absent,
    /// A replace or patch of an existing resource, at this revision when an `If-Match` was given.
    Present { rev: Option<i64> },
}

/// One SCIM write: the resource, and what the directory's rows (which the reconciler reads) become.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimWrite {
    pub kind: ScimKind,
    pub id: String,
    pub resource: serde_json::Value,
    /// A user's identity (its groups come from memberships).
    pub identity: Option<crate::model::Identity>,
    /// A group (its members come from `members`).
    pub group: Option<crate::model::Group>,
    pub members: Option<MemberChange>,
    /// userName (users) or displayName (groups): unique per source, case-insensitively.
    pub name: String,
    /// Every address of a User (`emails[].value`), the preferred one first: a filter on `emails.value` finds the
    /// user by any of them.
    pub emails: Vec<String>,
    pub external_ref: Option<String>,
    pub expect: Expect,
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
    pub run_id: String,
    pub op: Op,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// How an operation is stored: the desired user of a create or an update, which `Op` leaves out of its JSON,
/// rides beside it.
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
            Op::UpdateUser { desired, .. } => desired.as_deref().cloned(),
            _ => None,
        };
        serde_json::to_string(&StoredOp { op: op.clone(), desired }).map_err(StoreError::query)
    }

    fn decode(s: &str) -> Result<Op, StoreError> {
        let stored: StoredOp =
            serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("outbox entry: {e}")))?;
        let mut op = stored.op;
        match (&mut op, stored.desired) {
            (Op::CreateUser { desired, .. }, Some(d)) => **desired = d,
            (Op::UpdateUser { desired, .. }, Some(d)) => *desired = Some(Box::new(d)),
            _ => {}
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

/// The destructive operations the last run held, for `litellm-sync approve` to show and approve.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub run_id: String,
    pub at: DateTime<Utc>,
    pub reason: String,
    /// Each held operation: its id, the source of the identity it concerns (if any), and a line for people.
    pub ops: Vec<HeldOp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOp {
    pub id: String,
    pub source: Option<String>,
    pub text: String,
}

/// A person's approval of held operations, consumed (and audited) by the next run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub ids: Vec<String>,
    pub by: String,
    pub at: DateTime<Utc>,
    /// The run whose held operations were approved.
    pub run_id: String,
}

/// One operation's result, as the outbox records it.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxUpdate {
    /// Applied: the ledger writes, and the entry leaves the outbox.
    Done { id: i64, writes: Vec<LedgerWrite> },
    /// Not applied: the attempt is counted; `permanent` marks the entry failed. `writes` is what the attempt
    /// learnt (a user found deleted).
    Failed { id: i64, error: String, permanent: bool, writes: Vec<LedgerWrite> },
}

/// What the reconciler needs from a store. Object safe, so the daemon holds an `Arc<dyn Store>` and a second
/// backend (PostgreSQL, for several replicas) can stand in.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Stores a source's complete view as rows: the differences to the stored rows, in one transaction.
    async fn save_snapshot(&self, snap: &Snapshot) -> Result<(), StoreError>;
    /// A source's view, assembled from its rows (`None` when the source has none yet).
    async fn last_snapshot(&self, source: &str) -> Result<Option<Snapshot>, StoreError>;
    async fn load_ledger(&self) -> Result<Ledger, StoreError>;
    async fn replace_ledger(&self, ledger: &Ledger) -> Result<(), StoreError>;
    /// Replaces the outbox with a new plan's operations (in order); returns their ids. An operation planned again
    /// unchanged keeps its age and attempts.
    async fn replace_outbox(&self, run_id: &str, ops: &[Op]) -> Result<Vec<i64>, StoreError>;
    async fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Records operation results, each with its ledger writes, in one transaction: an applied operation leaves the
    /// outbox in the same transaction that records what it wrote.
    async fn record_results(&self, updates: &[OutboxUpdate]) -> Result<(), StoreError>;
    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError>;
    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Sets `key` to `value` only if it holds `expected` now (compare and set); whether it did.
    async fn replace_meta(&self, key: &str, expected: &str, value: &str) -> Result<bool, StoreError>;
    /// Takes the run lease for `holder` (or renews it) unless another holder has it and it has not expired.
    async fn acquire_lease(&self, holder: &str, ttl: std::time::Duration) -> Result<bool, StoreError>;
    async fn release_lease(&self, holder: &str) -> Result<(), StoreError>;
    /// The current lease holder, if the lease is live.
    async fn lease_holder(&self) -> Result<Option<String>, StoreError>;
    // SCIM: resources of a push source, stored with the directory's rows in one transaction per write.
    async fn scim_get(&self, source: &str, kind: ScimKind, id: &str) -> Result<Option<ScimRecord>, StoreError>;
    async fn scim_find(
        &self,
        source: &str,
        kind: ScimKind,
        index: ScimIndex,
        value: &str,
    ) -> Result<Vec<ScimRecord>, StoreError>;
    /// Resources in a stable order (creation), `offset` skipped, at most `limit`.
    async fn scim_scan(
        &self,
        source: &str,
        kind: ScimKind,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<ScimRecord>, StoreError>;
    async fn scim_count(&self, source: &str, kind: ScimKind) -> Result<u64, StoreError>;
    /// Creates or replaces a resource and its rows; returns it as stored. Uniqueness, existence and the
    /// revision are checked inside the transaction.
    async fn scim_put(&self, source: &str, write: ScimWrite) -> Result<ScimRecord, StoreError>;
    /// Deletes a resource, its rows and its memberships; `Ok(false)` when it did not exist.
    async fn scim_delete(&self, source: &str, kind: ScimKind, id: &str, rev: Option<i64>) -> Result<bool, StoreError>;
    /// A group's members, or the groups a user is a direct member of (`(id, display name)`).
    async fn scim_members(&self, source: &str, group_id: &str) -> Result<Vec<(String, MemberKind)>, StoreError>;
    async fn scim_groups_of(&self, source: &str, user_id: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Which of `ids` are Users or Groups of the source (an id that is neither is left out): a group's members
    /// resolved in a few queries instead of one or two each.
    async fn scim_kinds(&self, source: &str, ids: &[String]) -> Result<HashMap<String, MemberKind>, StoreError>;
    /// Whether this process may still make the writes only the leader makes (always, for a store that is not
    /// shared by replicas). Checked before every write batch to LiteLLM.
    async fn still_leader(&self) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// A cheap read, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
    async fn close(&self);
}

/// Opens the configured store: PostgreSQL when `store.url` is set (also returned as such, for leader
/// election), SQLite otherwise.
pub async fn open(
    cfg: &crate::config::StoreConfig,
) -> Result<(Arc<dyn Store>, Option<Arc<PostgresStore>>), StoreError> {
    match &cfg.postgres {
        Some(pg) => {
            let password = match &pg.password {
                Some(s) => Some(
                    s.resolve("store.password")
                        .map_err(|e| StoreError::Open { path: pg.url.clone(), message: e.to_string() })?,
                ),
                None => None,
            };
            let store = Arc::new(PostgresStore::open(&pg.url, password.as_ref()).await?);
            Ok((store.clone(), Some(store)))
        }
        None => Ok((Arc::new(SqliteStore::open(&cfg.path).await?), None)),
    }
}

/// Keys of the small facts kept in `meta`.
pub mod meta {
    /// The ledger holds a full listing of LiteLLM (set by the first run): the URL of the LiteLLM it lists.
    pub const BOOTSTRAPPED: &str = "ledger_bootstrapped";
    /// Who wrote the ledger last: a process that finds another writer reloads it.
    pub const LAST_WRITER: &str = "ledger_last_writer";
    /// JSON of [`super::Held`].
    pub const HELD: &str = "held";
    /// JSON of [`super::ApprovalRecord`].
    pub const APPROVAL: &str = "approval";
    /// The daemon's record of a run that found nothing to do (`daemon::quiet`), or a run's claim while it plans.
    /// Every write a run does not make itself deletes it in the same transaction ([`super::FORGET_QUIET`]).
    pub const QUIET: &str = "quiet";
}

/// Deletes the quiet record. Run inside every transaction that changes a source's stored view (a snapshot stored,
/// a SCIM write), so that the record never outlives a change of what it describes. (The ledger and the outbox
/// are written by runs only, which replace the record themselves.) The same SQL in both dialects.
const FORGET_QUIET: &str = "DELETE FROM meta WHERE key = 'quiet'";

/// JSON text of a value, for a row.
fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(StoreError::query)
}

/// Typed helpers over [`Store::get_meta`] and [`Store::set_meta`].
pub async fn get_json<T: for<'de> Deserialize<'de>>(store: &dyn Store, key: &str) -> Result<Option<T>, StoreError> {
    match store.get_meta(key).await? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => serde_json::from_str(&s).map(Some).map_err(|e| StoreError::Corrupt(format!("meta {key}: {e}"))),
    }
}

pub async fn set_json<T: Serialize>(store: &dyn Store, key: &str, value: Option<&T>) -> Result<(), StoreError> {
    let text = match value {
        Some(v) => serde_json::to_string(v).map_err(StoreError::query)?,
        None => String::new(),
    };
    store.set_meta(key, &text).await
}
