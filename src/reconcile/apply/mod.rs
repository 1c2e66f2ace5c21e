//! The applier: runs a plan against LiteLLM in dependency order (phases), with bounded concurrency and never two
//! operations on one user or one team at once. Every write passes the client's single write point, where dry-run
//! stops.
//!
//! Before it writes to an existing user (update, deactivation, key blocks, team membership) it confirms, with a
//! batched exact read, that the user exists and carries the ownership marker: LiteLLM's `/user/update` and
//! `/team/member_add` silently *create* a missing user, and a plan may be older than what LiteLLM holds. What the
//! applier learns on the way (what it created, what it found, what failed) decides the later operations: an
//! operation whose prerequisite failed is reported, never sent.
//!
//! - `users.rs`: create (bulk where it can), update, deactivate, delete, and key minting;
//! - `teams.rs`: team create/update and memberships.

mod teams;
mod users;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::stream::{self, StreamExt};
use serde::Serialize;
use tracing::Instrument;

use super::key_sink::KeySink;
use super::op::Op;
use super::{read_marker, UserMarker};
use crate::litellm::types::{TeamRow, UserRow};
use crate::litellm::{ApiError, Client, ErrorClass};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    /// Nothing to do after all (the object was already in the wanted state, or already gone).
    AlreadyDone {
        detail: String,
    },
    /// Dry run: everything ran but the write.
    Skipped,
    /// Not attempted: shutdown began, LiteLLM was found unreachable earlier in this run, or a prerequisite is
    /// still pending. Stays in the outbox.
    Deferred {
        reason: String,
    },
    /// Never sent, for good: a prerequisite failed (the user's create, the team's create), or the target is not
    /// ours (missing, or without our marker) so sending it would create or change what litellm-sync does not own.
    NotSent {
        reason: String,
    },
    Failed {
        class: String,
        error: String,
    },
}

impl Outcome {
    /// A short, bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::AlreadyDone { .. } => "already_done",
            Outcome::Skipped => "skipped",
            Outcome::Deferred { .. } => "deferred",
            Outcome::NotSent { .. } => "not_sent",
            Outcome::Failed { .. } => "failed",
        }
    }

    /// Done for good, one way or the other: the outbox entry can leave (or be marked failed).
    pub fn is_final(&self) -> bool {
        match self {
            Outcome::Applied | Outcome::AlreadyDone { .. } | Outcome::NotSent { .. } => true,
            Outcome::Failed { class, .. } => class != "retryable",
            Outcome::Skipped | Outcome::Deferred { .. } => false,
        }
    }

    pub fn succeeded(&self) -> bool {
        matches!(self, Outcome::Applied | Outcome::AlreadyDone { .. })
    }
}

/// What LiteLLM holds for the operation's object afterwards, as far as the applier knows: the store's ledger
/// records it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum After {
    /// Nothing known beyond the operation itself (memberships, deletions).
    #[default]
    Unknown,
    User(Box<UserRow>),
    /// The managed user turned out not to exist (deleted by hand): forget it, so the next plan re-creates it.
    UserGone(String),
    Team(Box<TeamRow>),
}

#[derive(Debug, Clone, Serialize)]
pub struct OpResult {
    pub op: &'static str,
    pub target: String,
    /// The operation's [`Op::id`]: results are matched to operations by it.
    #[serde(skip)]
    pub id: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(skip)]
    pub after: After,
    /// A managed user had vanished from LiteLLM and was re-created with its marker (drift repaired).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recreated: bool,
}

impl OpResult {
    pub fn new(op: &Op, outcome: Outcome) -> OpResult {
        OpResult { op: op.kind(), target: op.target(), id: op.id(), outcome, after: After::Unknown, recreated: false }
    }

    fn with_after(mut self, after: After) -> OpResult {
        self.after = after;
        self
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub results: Vec<OpResult>,
}

impl ApplyReport {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| matches!(r.outcome, Outcome::Failed { .. } | Outcome::NotSent { .. })).count()
    }
    pub fn applied(&self) -> usize {
        self.results.iter().filter(|r| matches!(r.outcome, Outcome::Applied)).count()
    }
}

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub concurrency: usize,
    pub adopt_existing: bool,
    /// Stop starting operations once this is cancelled (shutdown); the rest come back `Deferred`.
    pub stop: Option<tokio_util::sync::CancellationToken>,
    /// After an operation fails because LiteLLM is unreachable (retries exhausted), defer the rest instead of
    /// waiting out the retries of each one (the daemon's outbox keeps them).
    pub defer_when_unavailable: bool,
    /// Where minted keys are delivered. Key rules are refused by the configuration without one.
    pub key_sink: Option<Arc<KeySink>>,
    /// Asked before every write batch: may this process still write (is it still the leader)?
    pub guard: Option<Arc<dyn WriteGuard>>,
}

/// Whether writing may go on: a replica that lost the leadership stops before its next batch.
#[async_trait::async_trait]
pub trait WriteGuard: Send + Sync {
    async fn may_write(&self) -> bool;
}

impl std::fmt::Debug for dyn WriteGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteGuard")
    }
}

/// Called after every finished operation (progress bars, metrics, the outbox recorder).
pub type Progress<'a> = &'a (dyn Fn(&Op, &OpResult) + Sync);

/// What this run knows about users and teams, shared by the phases.
#[derive(Default)]
struct Known {
    /// user_id → the row as LiteLLM holds it (`None`: it does not exist), from this run's reads and writes.
    users: Mutex<HashMap<String, Option<UserRow>>>,
    /// "user:<id>" / "team:<id>" → why its create (or confirmation) failed; `true` when for good.
    failed: Mutex<HashMap<String, (bool, String)>>,
}

impl Known {
    fn user(&self, id: &str) -> Option<Option<UserRow>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    fn set_user(&self, id: &str, row: Option<UserRow>) {
        self.users.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), row);
    }

    fn fail(&self, resource: String, permanent: bool, why: String) {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).insert(resource, (permanent, why));
    }

    fn failure(&self, resource: &str) -> Option<(bool, String)> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).get(resource).cloned()
    }
}

/// Per-resource locks; acquired in sorted order so two operations cannot deadlock.
#[derive(Default)]
struct Locks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    async fn acquire(&self, keys: &[String]) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let mut keys = keys.to_vec();
        keys.sort();
        let mutexes: Vec<_> = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            keys.iter().map(|k| map.entry(k.clone()).or_default().clone()).collect()
        };
        let mut guards = Vec::with_capacity(mutexes.len());
        for m in mutexes {
            guards.push(m.lock_owned().await);
        }
        guards
    }
}

/// Everything one apply shares.
struct Run<'a> {
    client: &'a Client,
    opts: &'a ApplyOptions,
    locks: Locks,
    known: Known,
    unavailable: AtomicBool,
    /// The write guard said no: nothing more is sent.
    deposed: AtomicBool,
    progress: Progress<'a>,
}

impl Run<'_> {
    fn concurrency(&self) -> usize {
        self.opts.concurrency.max(1)
    }

    /// Asks the write guard (before a batch of writes); a "no" closes the run for good.
    async fn check_guard(&self) {
        if let Some(g) = &self.opts.guard {
            if !self.deposed.load(Ordering::Relaxed) && !g.may_write().await {
                tracing::warn!("No longer the leader: the rest of the plan stays in the outbox for the new one");
                self.deposed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Whether an operation may still start.
    fn closed(&self) -> Option<Outcome> {
        if self.opts.stop.as_ref().is_some_and(|t| t.is_cancelled()) {
            return Some(Outcome::Deferred { reason: "shutting down".into() });
        }
        if self.deposed.load(Ordering::Relaxed) {
            return Some(Outcome::Deferred { reason: "no longer the leader".into() });
        }
        if self.unavailable.load(Ordering::Relaxed) {
            return Some(Outcome::Deferred { reason: "LiteLLM unreachable".into() });
        }
        None
    }

    fn note_error(&self, e: &ApiError) {
        if self.opts.defer_when_unavailable && e.class() == ErrorClass::Retryable {
            self.unavailable.store(true, Ordering::Relaxed);
        }
    }

    /// Reports a finished operation.
    fn done(&self, op: &Op, r: OpResult) -> OpResult {
        if self.opts.defer_when_unavailable
            && matches!(&r.outcome, Outcome::Failed { class, .. } if class == "retryable")
        {
            self.unavailable.store(true, Ordering::Relaxed);
        }
        match &r.outcome {
            Outcome::Applied => tracing::info!(op = op.kind(), target = %op.target(), "Applied"),
            Outcome::Failed { error, .. } => {
                tracing::error!(op = op.kind(), target = %op.target(), error = %error, "Operation failed")
            }
            Outcome::NotSent { reason } => {
                tracing::warn!(op = op.kind(), target = %op.target(), reason = %reason, "Operation not sent")
            }
            _ => {}
        }
        (self.progress)(op, &r);
        r
    }

    /// An error as an outcome.
    fn failed(&self, e: ApiError) -> Outcome {
        match e {
            ApiError::DryRun { .. } => Outcome::Skipped,
            e => {
                self.note_error(&e);
                if self.opts.defer_when_unavailable && e.class() == ErrorClass::Retryable {
                    Outcome::Deferred { reason: format!("LiteLLM unreachable: {e}") }
                } else {
                    Outcome::Failed { class: e.class().label().into(), error: e.to_string() }
                }
            }
        }
    }

    /// Reads, by exact id, the users among `ids` this run knows nothing about yet. A failed read marks them
    /// failed (not for good), so their operations wait.
    async fn confirm(&self, ids: impl IntoIterator<Item = &str>) {
        let mut want: Vec<String> = ids
            .into_iter()
            .filter(|id| self.known.user(id).is_none() && self.known.failure(&format!("user:{id}")).is_none())
            .map(str::to_string)
            .collect();
        want.sort();
        want.dedup();
        if want.is_empty() || self.closed().is_some() {
            return;
        }
        let chunks: Vec<Vec<String>> = want.chunks(crate::litellm::ID_CHUNK).map(<[String]>::to_vec).collect();
        type Read = (Vec<String>, Result<Vec<UserRow>, ApiError>);
        let results: Vec<Read> = stream::iter(chunks)
            .map(|chunk| async move {
                let r = self.client.users_by_ids(&chunk).await;
                (chunk, r)
            })
            .buffer_unordered(self.concurrency())
            .collect()
            .await;
        for (chunk, r) in results {
            match r {
                Ok(rows) => {
                    let mut found: HashMap<String, UserRow> =
                        rows.into_iter().map(|u| (u.user_id.clone(), u)).collect();
                    for id in chunk {
                        let row = found.remove(&id);
                        self.known.set_user(&id, row);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, users = chunk.len(), "Cannot confirm users before writing to them");
                    self.note_error(&e);
                    for id in chunk {
                        self.known.fail(format!("user:{id}"), false, format!("could not read the user: {e}"));
                    }
                }
            }
        }
    }

    /// The fresh row of a user this operation may write to, or why not. `Ok(None)`: the user does not exist.
    fn confirmed(&self, user_id: &str) -> Result<Option<UserRow>, Outcome> {
        if let Some((permanent, why)) = self.known.failure(&format!("user:{user_id}")) {
            return Err(if permanent {
                Outcome::NotSent { reason: format!("user {user_id}: {why}") }
            } else {
                Outcome::Deferred { reason: format!("user {user_id}: {why}") }
            });
        }
        match self.known.user(user_id) {
            Some(row) => Ok(row),
            None => Err(Outcome::Deferred { reason: format!("user {user_id} could not be confirmed") }),
        }
    }

    /// A team operation's prerequisite: the team's create (or update) did not fail in this run.
    fn team_ok(&self, team_id: &str) -> Result<(), Outcome> {
        match self.known.failure(&format!("team:{team_id}")) {
            None => Ok(()),
            Some((true, why)) => Err(Outcome::NotSent { reason: format!("team {team_id}: {why}") }),
            Some((false, why)) => Err(Outcome::Deferred { reason: format!("team {team_id}: {why}") }),
        }
    }

    /// Runs `f` for each operation with its locks held, `concurrency` at a time.
    async fn each<'o, F, Fut>(&self, ops: &[&'o Op], f: F) -> Vec<OpResult>
    where
        F: Fn(&'o Op) -> Fut,
        Fut: std::future::Future<Output = OpResult>,
    {
        stream::iter(ops.iter().copied())
            .map(|op| {
                let fut = f(op);
                async move {
                    let _g = self.locks.acquire(&op.resources()).await;
                    let r = match self.closed() {
                        Some(d) => OpResult::new(op, d),
                        None => fut.await,
                    };
                    self.done(op, r)
                }
                .instrument(op_span(op))
            })
            .buffer_unordered(self.concurrency())
            .collect()
            .await
    }
}

/// The span of one operation (inside the run's span, which carries the run id). No secret is ever a field.
pub(super) fn op_span(op: &Op) -> tracing::Span {
    tracing::info_span!(
        "op",
        op = op.kind(),
        source = op.user_key().map(|k| k.source.as_str()).unwrap_or(""),
        user_id = op.user_id().unwrap_or(""),
        team_id = op.team_id().unwrap_or(""),
    )
}

/// Marker check: the user carries the marker of this identity.
fn is_ours(row: &UserRow, key: &crate::mapper::ExternalKey) -> bool {
    read_marker::<UserMarker>(&row.metadata).is_some_and(|m| m.source == key.source && m.external_id == key.external_id)
}

/// Marker check for memberships: the user carries a litellm-sync marker at all.
fn is_managed(row: &UserRow) -> bool {
    read_marker::<UserMarker>(&row.metadata).is_some()
}

/// Users are confirmed in windows of this many operations: a read of 100 ids, then their writes.
const WINDOW: usize = crate::litellm::ID_CHUNK;

pub async fn apply(client: &Client, ops: &[Op], opts: &ApplyOptions, progress: Progress<'_>) -> ApplyReport {
    let run = Run {
        client,
        opts,
        locks: Locks::default(),
        known: Known::default(),
        unavailable: AtomicBool::new(false),
        deposed: AtomicBool::new(false),
        progress,
    };
    let mut report = ApplyReport::default();
    let mut phases: Vec<Vec<&Op>> = Vec::new();
    for op in ops {
        match phases.last_mut() {
            Some(last) if last[0].phase() == op.phase() => last.push(op),
            _ => phases.push(vec![op]),
        }
    }
    for phase in phases {
        run.check_guard().await;
        if let Some(d) = run.closed() {
            for op in &phase {
                report.results.push(run.done(op, OpResult::new(op, d.clone())));
            }
            continue;
        }
        let results = match phase[0] {
            Op::CreateTeam { .. } | Op::UpdateTeam { .. } => teams::teams(&run, &phase).await,
            Op::CreateUser { .. } => users::create_users(&run, &phase).await,
            Op::AddMember { .. } => teams::add_members(&run, &phase).await,
            Op::DeleteUser { .. } => users::delete_users(&run, &phase).await,
            _ => {
                let mut out = Vec::with_capacity(phase.len());
                for window in phase.chunks(WINDOW) {
                    run.check_guard().await;
                    run.confirm(window.iter().filter_map(|op| op.user_id())).await;
                    out.extend(run.each(window, |op| one(&run, op)).await);
                }
                out
            }
        };
        report.results.extend(results);
    }
    report
}

/// The operations that go one by one after a confirmation read.
async fn one(run: &Run<'_>, op: &Op) -> OpResult {
    match op {
        Op::UpdateUser { .. } => users::update_user(run, op).await,
        Op::DeactivateUser { .. } => users::deactivate_user(run, op).await,
        Op::UpdateMember { .. } | Op::RemoveMember { .. } => teams::member(run, op).await,
        _ => OpResult::new(op, Outcome::Failed { class: "other".into(), error: "not a single operation".into() }),
    }
}

#[cfg(test)]
mod tests;
