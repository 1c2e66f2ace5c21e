//! One reconciliation pass, shared by the CLI and the daemon: read sources → map → read LiteLLM → plan.
//! Applying is left to the caller so that `plan` never writes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::litellm::{ApiError, Client};
use crate::mapper::{DesiredState, Mapper};
use crate::model::Snapshot;
use crate::reconcile::plan::{plan, Actual, Plan, PlanContext};
use crate::sources::{Source, SourceError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no source named {0:?} in the configuration")]
    UnknownSource(String),
    #[error("reading LiteLLM's current state failed: {0}")]
    LiteLlm(#[from] ApiError),
}

impl Pass {
    /// Sources whose read failed or was refused (empty while users are managed): the plan is incomplete for them.
    pub fn incomplete_sources(&self) -> Vec<String> {
        let mut v: Vec<String> = self.failures.iter().map(|f| f.source_name().to_string()).collect();
        v.extend(self.plan.refused_sources.iter().cloned());
        v.sort();
        v.dedup();
        v
    }
}

/// Everything one pass computed.
pub struct Pass {
    pub sources: Vec<String>,
    pub snapshots: Vec<Snapshot>,
    /// Sources whose read failed: nothing of theirs is deprovisioned this run.
    pub failures: Vec<SourceError>,
    pub desired: DesiredState,
    pub actual: Actual,
    pub plan: Plan,
}

/// Reads the selected sources (all when `only` is empty) concurrently.
pub async fn read_sources(
    cfg: &Config,
    only: &[String],
) -> Result<(Vec<String>, Vec<Snapshot>, Vec<SourceError>), EngineError> {
    for name in only {
        if cfg.source(name).is_none() {
            return Err(EngineError::UnknownSource(name.clone()));
        }
    }
    let selected: Vec<Source> =
        cfg.sources.iter().filter(|s| only.is_empty() || only.contains(&s.name)).map(Source::new).collect();
    let names = selected.iter().map(|s| s.name().to_string()).collect();
    let results = futures::future::join_all(selected.iter().map(|s| s.snapshot())).await;
    let (mut snaps, mut fails) = (Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok(s) => snaps.push(s),
            Err(e) => {
                tracing::error!(error = %e, "Source read failed; its users will not be deprovisioned this run");
                fails.push(e);
            }
        }
    }
    Ok((names, snaps, fails))
}

/// Reads what LiteLLM holds now: users and teams, concurrently.
pub async fn read_actual(client: &Client) -> Result<Actual, ApiError> {
    let (users, teams) = tokio::try_join!(client.list_users(), client.list_teams())?;
    Ok(Actual { users, teams })
}

pub async fn compute(
    cfg: &Config,
    client: &Client,
    only: &[String],
    now: DateTime<Utc>,
    allow_mass_deprovision: bool,
) -> Result<Pass, EngineError> {
    let (sources, snapshots, failures) = read_sources(cfg, only).await?;
    plan_snapshots(cfg, client, sources, snapshots, failures, now, allow_mass_deprovision).await
}

/// Plans from snapshots already read, against a fresh LiteLLM listing.
pub async fn plan_snapshots(
    cfg: &Config,
    client: &Client,
    sources: Vec<String>,
    snapshots: Vec<Snapshot>,
    failures: Vec<SourceError>,
    now: DateTime<Utc>,
    allow_mass_deprovision: bool,
) -> Result<Pass, EngineError> {
    let mut actual = read_actual(client).await?;
    // Offset pages shift under concurrent writes, so a listing can miss users. Before planning creates, ask for
    // the supposedly missing ids by exact id: a user a shifted page hid is found, a new one costs a request per 100.
    let desired = Mapper::new(cfg).map(&snapshots);
    let known: BTreeSet<&str> = actual.users.iter().map(|u| u.user_id.as_str()).collect();
    let missing: Vec<String> =
        desired.users.values().map(|d| d.user_id.clone()).filter(|id| !known.contains(id.as_str())).collect();
    if !missing.is_empty() {
        let found = client.users_by_ids(&missing).await?;
        if !found.is_empty() {
            tracing::info!(found = found.len(), "Users the listing missed were found by id");
        }
        actual.users.extend(found);
    }
    Ok(plan_mapped(cfg, sources, snapshots, failures, desired, actual, now, allow_mass_deprovision))
}

/// The pure part of a pass: map the snapshots and plan against `actual` (a listing, or the daemon's ledger).
pub fn plan_pass(
    cfg: &Config,
    sources: Vec<String>,
    snapshots: Vec<Snapshot>,
    failures: Vec<SourceError>,
    actual: Actual,
    now: DateTime<Utc>,
    allow_mass_deprovision: bool,
) -> Pass {
    let desired = Mapper::new(cfg).map(&snapshots);
    plan_mapped(cfg, sources, snapshots, failures, desired, actual, now, allow_mass_deprovision)
}

#[allow(clippy::too_many_arguments)]
fn plan_mapped(
    cfg: &Config,
    sources: Vec<String>,
    snapshots: Vec<Snapshot>,
    failures: Vec<SourceError>,
    desired: DesiredState,
    actual: Actual,
    now: DateTime<Utc>,
    allow_mass_deprovision: bool,
) -> Pass {
    let complete_sources: BTreeSet<String> = snapshots.iter().map(|s| s.source.clone()).collect();
    let source_user_counts: BTreeMap<String, usize> =
        snapshots.iter().map(|s| (s.source.clone(), s.users.len())).collect();
    let cx = PlanContext { safety: &cfg.safety, now, complete_sources, source_user_counts, allow_mass_deprovision };
    let plan = plan(&desired, &actual, &cx);
    Pass { sources, snapshots, failures, desired, actual, plan }
}
