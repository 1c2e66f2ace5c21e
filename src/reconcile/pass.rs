//! One read → map → plan pass: listing LiteLLM (the sources are read by `sources::read_all`), and the pure planning of snapshots against
//! what LiteLLM holds (a listing, or the store's ledger). Applying is the caller's business, so `plan` never
//! writes; the daemon's reconciler and the CLI both plan through here.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::litellm::{ApiError, Client};
use crate::mapper::{DesiredState, Mapper};
use crate::model::Snapshot;
use crate::reconcile::plan::{plan, Actual, Approval, Plan, PlanContext};

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("no source named {0:?} in the configuration")]
    UnknownSource(String),
    #[error("reading LiteLLM's current state failed: {0}")]
    LiteLlm(#[from] ApiError),
}

/// Everything one pass computed.
pub struct Pass {
    /// The sources the pass covers.
    pub sources: Vec<String>,
    pub snapshots: Vec<Snapshot>,
    /// Sources whose read failed: nothing of theirs is planned or deprovisioned this run.
    pub failed_sources: Vec<String>,
    pub desired: DesiredState,
    pub actual: Actual,
    pub plan: Plan,
}

impl Pass {
    /// Sources whose read failed or was refused (empty while users are managed): the plan is incomplete for them.
    pub fn incomplete_sources(&self) -> Vec<String> {
        let mut v = self.failed_sources.clone();
        v.extend(self.plan.refused_sources.iter().cloned());
        v.sort();
        v.dedup();
        v
    }
}

/// The configured sources named in `only` (all when empty), or the first unknown name.
pub fn select_sources(cfg: &Config, only: &[String]) -> Result<Vec<String>, PassError> {
    for name in only {
        if cfg.source(name).is_none() {
            return Err(PassError::UnknownSource(name.clone()));
        }
    }
    Ok(cfg.sources.iter().filter(|s| only.is_empty() || only.contains(&s.name)).map(|s| s.name.clone()).collect())
}

/// Lists what LiteLLM holds now: users and teams, concurrently. When the user listing moved while it was read
/// (offset pages shift under concurrent writes), the desired users it does not show are looked up by exact id,
/// so a user a shifted page hid is found rather than created twice.
pub async fn list_litellm(client: &Client, desired_ids: &BTreeSet<String>) -> Result<Actual, ApiError> {
    let ((mut users, consistent), teams) = tokio::try_join!(client.list_users(), client.list_teams())?;
    if !consistent {
        let known: BTreeSet<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
        let missing: Vec<String> = desired_ids.iter().filter(|id| !known.contains(id.as_str())).cloned().collect();
        if !missing.is_empty() {
            let found = client.users_by_ids(&missing).await?;
            if !found.is_empty() {
                tracing::info!(found = found.len(), "Users the shifting listing missed were found by id");
            }
            users.extend(found);
        }
    }
    Ok(Actual { users, teams })
}

/// The pure part of a pass: map the snapshots and plan against `actual`.
#[allow(clippy::too_many_arguments)]
pub fn plan_pass(
    cfg: &Config,
    sources: Vec<String>,
    snapshots: Vec<Snapshot>,
    failed_sources: Vec<String>,
    desired: DesiredState,
    actual: Actual,
    now: DateTime<Utc>,
    approval: Approval,
) -> Pass {
    let plan = plan(&desired, &actual, &context(cfg, &snapshots, now, approval));
    Pass { sources, snapshots, failed_sources, desired, actual, plan }
}

/// The pass planned again against `actual` (a ledger that recorded the pass's results): empty when applying the
/// plan reached the desired state. No approval: a deletion still to make is something left.
pub fn replan(cfg: &Config, pass: &Pass, actual: &Actual, now: DateTime<Utc>) -> Plan {
    plan(&pass.desired, actual, &context(cfg, &pass.snapshots, now, Approval::None))
}

fn context<'a>(cfg: &'a Config, snapshots: &[Snapshot], now: DateTime<Utc>, approval: Approval) -> PlanContext<'a> {
    let configured = cfg.sources.iter().map(|s| s.name.clone()).collect();
    // A push source's empty view is an instruction (the last user DELETEd, a group PATCHed empty) while the IdP
    // still holds something there; a view with neither users nor groups may be a store that lost its state, and
    // stays doubt like an empty read.
    let push = cfg
        .sources
        .iter()
        .filter(|s| s.kind.is_push())
        .filter(|s| snapshots.iter().any(|v| v.source == s.name && !(v.users.is_empty() && v.groups.is_empty())))
        .map(|s| s.name.clone())
        .collect();
    PlanContext::for_snapshots(&cfg.safety, configured, snapshots, now, approval).with_push_sources(push)
}

/// Maps snapshots to the desired state (the configured sources' order decides which group owns a merged team).
pub fn map(cfg: &Config, snapshots: &[Snapshot]) -> DesiredState {
    let order = |name: &str| cfg.sources.iter().position(|s| s.name == name).unwrap_or(usize::MAX);
    let mut sorted: Vec<&Snapshot> = snapshots.iter().collect();
    sorted.sort_by_key(|s| order(&s.source));
    Mapper::new(cfg).map(sorted)
}
