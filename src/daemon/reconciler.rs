//! One reconciliation run against a store, the same for `litellm-sync sync` / `plan` and for the daemon:
//!
//! 1. the snapshots just read (which the caller stored, for apply runs) are joined, for the daemon, by every other
//!    source's stored snapshot, so that one plan covers all sources (a team two sources feed, a `user_id` two sources
//!    render, reach the same answer however the runs interleave);
//! 2. the plan is made against the store's **ledger** (what litellm-sync last applied) — no listing of LiteLLM —
//!    unless the ledger is missing, `--refresh` or the drift check asks for a fresh listing;
//! 3. held destructive operations are recorded for `litellm-sync approve`; an approval in the store releases them
//!    (and is consumed, and audited);
//! 4. the plan replaces the outbox in one transaction, then the outbox is drained: each result is recorded in the
//!    ledger and leaves the outbox in one transaction, so a crash loses nothing and repeats only what was in
//!    flight.
//!
//! One process at a time runs against a store: the run lease. What this module must not do: read sources, own a
//! schedule, or know about HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::quiet::{self, Quiet};
use super::DaemonError;
use crate::config::Config;
use crate::directory::{self, meta, ApprovalRecord, Held, HeldOp, Ledger, Store};
use crate::litellm::Client;
use crate::model::Snapshot;
use crate::reconcile::apply::OpResult;
use crate::reconcile::key_sink::KeySink;
use crate::reconcile::op::Op;
use crate::reconcile::pass::{self, Pass};
use crate::reconcile::plan::{Approval, Plan};
use crate::sources::SourceError;
use crate::telemetry::audit::AuditLog;
use crate::telemetry::metrics::Metrics;

/// Results recorded in one store transaction at most.
pub(super) const RECORD_BATCH: usize = 200;
/// How long a run lease lasts without renewal; a crashed holder frees the store after this.
pub const LEASE_TTL: Duration = Duration::from_secs(60);
/// An approval older than this is ignored: held operations are approved as someone saw them, not forever.
const APPROVAL_TTL: chrono::Duration = chrono::Duration::hours(24);

/// What a run covers and how.
#[derive(Debug, Default)]
pub struct RunRequest {
    /// Where the run came from, for logs ("source corp", "drift check", "cli").
    pub trigger: String,
    /// Snapshots just read.
    pub fresh: Vec<Snapshot>,
    /// Sources whose read failed just now.
    pub failures: Vec<SourceError>,
    /// The sources this run covers.
    pub sources: Vec<String>,
    /// Plan the stored snapshots of covered sources that were not read now (the daemon).
    pub use_stored: bool,
    /// List LiteLLM and replace the ledger before planning.
    pub refresh: bool,
    /// An approval given with the run (`sync --allow-deletions`); otherwise one stored by `approve` is used.
    pub approval: Approval,
    /// Apply the plan (sync, the daemon) or only compute it (plan, explain).
    pub apply: bool,
    /// Digests of `fresh` by source ([`Snapshot::digest`]) the caller computed already; the daemon computes the
    /// others.
    pub digests: BTreeMap<String, String>,
    /// A push source's change run: the ledger stays in memory for the next change, and the quiet record (which
    /// every change deletes) is neither checked nor written.
    pub push_change: bool,
}

/// What the plan was made against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The store's ledger of what litellm-sync applied.
    Ledger,
    /// A listing of LiteLLM made for this run.
    Listing,
    /// LiteLLM's teams only: litellm-sync never wrote to this LiteLLM (no anchor team), so no user carries a
    /// marker and no user listing was needed.
    Unlisted,
}

/// The team whose presence says litellm-sync has written ownership markers to this LiteLLM.
pub const ANCHOR_TEAM: &str = "litellm-sync";
const ANCHOR_KEY: &str = "litellm_sync_anchor";

fn is_anchor(t: &crate::litellm::types::TeamRow) -> bool {
    t.team_id == ANCHOR_TEAM && t.metadata.contains_key(ANCHOR_KEY)
}

/// Operation results of one drain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub applied: usize,
    /// Still in the outbox, to retry (LiteLLM unreachable, shutdown, prerequisite pending).
    pub pending: usize,
    /// Refused for good (4xx, not ours, prerequisite failed); kept visible as `failed` in the outbox.
    pub refused: usize,
}

pub struct RunReport {
    pub run_id: String,
    /// For an applying run, `pass.actual` is empty: its rows went back into the reconciler's ledger.
    pub pass: Pass,
    pub basis: Basis,
    /// Per source, the operations a fresh listing needed that the ledger did not: what was changed by hand.
    /// (Managed users found deleted and re-created while applying are counted as they are recorded.)
    pub drift: BTreeMap<String, usize>,
    pub results: Vec<OpResult>,
    pub counts: Counts,
    /// The source reads that failed: nothing of theirs was planned or deprovisioned.
    pub failures: Vec<SourceError>,
    /// Nothing changed since a run that found nothing to do (the quiet record): nothing was planned.
    pub unchanged: bool,
}

/// Called after each operation of a drain with (done, total, result): the CLI's progress bar.
pub type ProgressFn = Arc<dyn Fn(usize, usize, &OpResult) + Send + Sync>;

pub struct Reconciler {
    pub(super) progress: Option<ProgressFn>,
    /// The anchor team is known to exist.
    pub(super) anchored: bool,
    pub(super) cfg: Config,
    pub(super) client: Client,
    pub(super) store: Arc<dyn Store>,
    pub(super) ledger: Ledger,
    /// Whether `ledger` is what the store holds (loaded, and not written by another process since).
    pub(super) ledger_loaded: bool,
    /// Lease holder name: process and role.
    pub(super) holder: String,
    pub(super) metrics: Option<Metrics>,
    pub(super) audit: Option<Arc<AuditLog>>,
    pub(super) key_sink: Option<Arc<KeySink>>,
    pub(super) stop: CancellationToken,
    pub(super) defer_when_unavailable: bool,
    /// The daemon skips planning what a quiet run planned already ([`quiet`]).
    pub(super) quiet: bool,
    /// [`Config::plan_fingerprint`] of `cfg`.
    fingerprint: String,
}

/// A new run id: one per run, carried into its span, its outbox rows and its audit lines.
pub fn new_run_id() -> String {
    format!("{}-{:04x}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"), rand::random::<u16>())
}

impl Reconciler {
    pub fn new(cfg: Config, client: Client, store: Arc<dyn Store>, role: &str) -> Reconciler {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        Reconciler {
            progress: None,
            anchored: false,
            fingerprint: cfg.plan_fingerprint(),
            cfg,
            client,
            store,
            ledger: Ledger::default(),
            ledger_loaded: false,
            holder: format!("{role}:{host}:{}", std::process::id()),
            metrics: None,
            audit: None,
            key_sink: None,
            stop: CancellationToken::new(),
            defer_when_unavailable: false,
            quiet: false,
        }
    }

    /// The daemon's settings: metrics, audit trail, shutdown, and deferring to the outbox when LiteLLM is down.
    pub fn for_daemon(mut self, metrics: Metrics, audit: Option<Arc<AuditLog>>, stop: CancellationToken) -> Self {
        self.metrics = Some(metrics);
        self.audit = audit;
        self.stop = stop;
        self.defer_when_unavailable = true;
        self.quiet = true;
        self
    }

    pub fn with_audit(mut self, audit: Option<Arc<AuditLog>>) -> Self {
        self.audit = audit;
        self
    }

    pub fn with_progress(mut self, progress: Option<ProgressFn>) -> Self {
        self.progress = progress;
        self
    }

    pub fn with_key_sink(mut self, sink: Option<Arc<KeySink>>) -> Self {
        self.key_sink = sink;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Takes the store's run lease, waiting up to `wait` for another process's run to end.
    pub async fn lease(&self, wait: Duration) -> Result<(), DaemonError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.store.acquire_lease(&self.holder, LEASE_TTL).await? {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline || self.stop.is_cancelled() {
                let other = self.store.lease_holder().await?.unwrap_or_else(|| "another process".into());
                return Err(DaemonError::Busy { holder: other });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn release(&self) {
        if let Err(e) = self.store.release_lease(&self.holder).await {
            tracing::warn!(error = %e, "Cannot release the store's run lease");
        }
    }

    /// Loads the ledger unless this process holds what the store has.
    async fn load_ledger(&mut self) -> Result<(), DaemonError> {
        let writer = self.store.get_meta(meta::LAST_WRITER).await?;
        if !self.ledger_loaded || writer.as_deref().is_some_and(|w| w != self.holder) {
            self.ledger = self.store.load_ledger().await?;
            self.ledger_loaded = true;
        }
        Ok(())
    }

    /// The store's ledger describes this LiteLLM: it was built from a listing of the URL configured now. A store
    /// pointed at another proxy (or one written before the URL was recorded) is listed again once.
    async fn bootstrapped(&self) -> Result<bool, DaemonError> {
        let of = self.store.get_meta(meta::BOOTSTRAPPED).await?;
        let same = of.as_deref() == Some(self.cfg.litellm.url.as_str());
        if !same && of.is_some_and(|v| !v.is_empty()) {
            tracing::info!(url = %self.cfg.litellm.url, "The store's ledger was built for another LiteLLM: listing again");
        }
        Ok(same)
    }

    /// Lists LiteLLM into the ledger (memory, and the store when `persist`). Without `full`, the users are listed
    /// only if LiteLLM holds the anchor team, i.e. litellm-sync may have written a marker there: on a proxy it
    /// never wrote to, no user can carry a marker, so the managed set is empty and the listing (~5 ms per user
    /// of the whole proxy) would buy nothing; a desired user_id that exists anyway is found by the create itself
    /// ("already exists" goes to the read/update path).
    async fn relist(
        &mut self,
        desired_ids: &BTreeSet<String>,
        persist: bool,
        full: bool,
    ) -> Result<Basis, DaemonError> {
        let (ledger, basis) = if full {
            (Ledger::from_actual(&pass::list_litellm(&self.client, desired_ids).await?), Basis::Listing)
        } else {
            let teams = self.client.list_teams().await?;
            self.anchored = teams.iter().any(is_anchor);
            if self.anchored {
                (Ledger::from_actual(&pass::list_litellm(&self.client, desired_ids).await?), Basis::Listing)
            } else {
                tracing::info!("LiteLLM holds no litellm-sync marker yet (no anchor team): no user listing needed");
                (Ledger::from_actual(&crate::reconcile::plan::Actual { users: Vec::new(), teams }), Basis::Unlisted)
            }
        };
        if persist {
            self.store.replace_ledger(&ledger).await?;
            self.store.set_meta(meta::BOOTSTRAPPED, self.cfg.litellm.url.as_str()).await?;
            self.store.set_meta(meta::LAST_WRITER, &self.holder).await?;
        }
        self.ledger = ledger;
        self.ledger_loaded = true;
        Ok(basis)
    }

    /// Makes sure the anchor team exists before the first marker is written, so that "no anchor" keeps meaning
    /// "no marker anywhere" (see [`Reconciler::relist`]).
    async fn ensure_anchor(&mut self) -> Result<(), DaemonError> {
        if self.anchored || self.ledger.teams.values().any(is_anchor) {
            self.anchored = true;
            return Ok(());
        }
        let mut metadata = serde_json::Map::new();
        metadata.insert(
            ANCHOR_KEY.into(),
            serde_json::json!({
                "what": "litellm-sync has written ownership markers to this LiteLLM; do not delete this team",
                "since": chrono::Utc::now().to_rfc3339(),
                "version": env!("CARGO_PKG_VERSION"),
            }),
        );
        let req = crate::litellm::types::TeamRequest {
            team_id: ANCHOR_TEAM.into(),
            team_alias: Some("litellm-sync (ownership anchor: do not delete)".into()),
            metadata: Some(metadata),
            ..Default::default()
        };
        match self.client.create_team(&req).await {
            Ok(_) => {}
            Err(crate::litellm::ApiError::DryRun { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        self.anchored = true;
        Ok(())
    }

    /// One run: plan, and (for `apply`) apply through the outbox. The caller holds the lease when applying.
    pub async fn run(&mut self, req: RunRequest) -> Result<RunReport, DaemonError> {
        let run_id = new_run_id();
        let span = tracing::info_span!("run", run_id = %run_id, trigger = %req.trigger);
        self.run_inner(run_id, req).instrument(span).await
    }

    async fn run_inner(&mut self, run_id: String, mut req: RunRequest) -> Result<RunReport, DaemonError> {
        let now = chrono::Utc::now();
        let quiet = self.quiet && req.apply && !req.push_change && !req.refresh && req.failures.is_empty();
        if quiet {
            for s in &req.fresh {
                req.digests.entry(s.source.clone()).or_insert_with(|| s.digest());
            }
            if let Some(q) = self.quiet_record().await {
                if q.holds(self.cfg.litellm.url.as_str(), &self.fingerprint, &req.sources, &req.digests, now) {
                    return Ok(self.unchanged(run_id, req, &q).await);
                }
            }
        }
        // From here on the run may write the ledger and the outbox: the quiet record makes way for this run's
        // claim, which only this run turns into a record again (the CLI's runs leave nothing).
        let claim = if req.apply {
            let c = if self.quiet { quiet::claim(&run_id) } else { String::new() };
            self.store.set_meta(meta::QUIET, &c).await?;
            Some(c)
        } else {
            None
        };
        let digests = std::mem::take(&mut req.digests);
        let mut snapshots = req.fresh;
        if req.use_stored {
            let failed: BTreeSet<&str> = req.failures.iter().map(|f| f.source_name()).collect();
            for name in &req.sources {
                if snapshots.iter().any(|s| &s.source == name) {
                    continue;
                }
                // A source whose read just failed still has its last complete view: planning it keeps its users as
                // they were; deprovisioning only ever follows from a complete view.
                if let Some(s) = self.store.last_snapshot(name).await? {
                    if failed.contains(name.as_str()) {
                        tracing::debug!(source = %name, "Planning the last complete snapshot of a failing source");
                    }
                    snapshots.push(s);
                }
            }
        }
        let desired = pass::map(&self.cfg, &snapshots);
        let desired_ids: BTreeSet<String> = desired.users.values().map(|d| d.user_id.clone()).collect();

        // What to plan against.
        self.load_ledger().await?;
        let mut basis = Basis::Ledger;
        let mut drift: BTreeMap<String, usize> = BTreeMap::new();
        // With nothing read, a listing would only cost time and hide the sources' errors behind LiteLLM's.
        let bootstrapped = !snapshots.is_empty() && self.bootstrapped().await?;
        if !snapshots.is_empty() && (req.refresh || !bootstrapped) {
            let before = bootstrapped.then(|| self.ledger.clone());
            if before.is_none() {
                tracing::info!("No ledger in the store yet: listing LiteLLM");
            }
            basis = self.relist(&desired_ids, req.apply, req.refresh || before.is_some()).await?;
            if let Some(before) = before {
                let expected = pass::plan_pass(
                    &self.cfg,
                    Vec::new(),
                    snapshots.clone(),
                    Vec::new(),
                    desired.clone(),
                    before.actual(),
                    now,
                    Approval::None,
                );
                let real_plan = pass::plan_pass(
                    &self.cfg,
                    Vec::new(),
                    snapshots.clone(),
                    Vec::new(),
                    desired.clone(),
                    self.ledger.actual(),
                    now,
                    Approval::None,
                );
                let known: BTreeSet<String> = expected.plan.ops.iter().chain(&expected.plan.held).map(Op::id).collect();
                for op in real_plan.plan.ops.iter().chain(&real_plan.plan.held).filter(|o| !known.contains(&o.id())) {
                    let source = op
                        .user_key()
                        .map(|k| k.source.clone())
                        .or_else(|| self.member_source(op))
                        .or_else(|| op.team_id().and_then(|t| real_plan.desired.teams.get(t)).map(|t| t.source.clone()))
                        .unwrap_or_default();
                    *drift.entry(source).or_default() += 1;
                }
                let n: usize = drift.values().sum();
                if n > 0 {
                    tracing::warn!(drift = n, "LiteLLM differs from what litellm-sync applied; repairing");
                }
            }
        }

        // An approval: given with the run, or stored by `litellm-sync approve`.
        let mut stored_approval: Option<ApprovalRecord> = None;
        let approval = match req.approval {
            Approval::None if req.apply => {
                match directory::get_json::<ApprovalRecord>(&*self.store, meta::APPROVAL).await? {
                    Some(a) if now - a.at <= APPROVAL_TTL => {
                        let ids = a.ids.iter().cloned().collect();
                        stored_approval = Some(a);
                        Approval::Ops(ids)
                    }
                    Some(a) => {
                        tracing::warn!(by = %a.by, at = %a.at, "Ignoring an approval older than 24 hours");
                        directory::set_json::<ApprovalRecord>(&*self.store, meta::APPROVAL, None).await?;
                        Approval::None
                    }
                    None => Approval::None,
                }
            }
            a => a,
        };
        // An applying run lends the ledger's rows to the plan and takes them back (recording needs them): one
        // copy of ~every LiteLLM user in memory instead of two. Nothing awaits in between. A run that only plans
        // returns its `actual` (explain reads it) and so copies.
        let (actual, lent) = if req.apply {
            let (actual, keys) = std::mem::take(&mut self.ledger).into_parts();
            (actual, Some(keys))
        } else {
            (self.ledger.actual(), None)
        };
        let mut pass = pass::plan_pass(
            &self.cfg,
            req.sources,
            snapshots,
            req.failures.iter().map(|f| f.source_name().to_string()).collect(),
            desired,
            actual,
            now,
            approval,
        );
        if let Some(keys) = lent {
            self.ledger = Ledger::from_parts(std::mem::take(&mut pass.actual), keys);
        }
        self.count_team_keys(&mut pass.plan).await;
        log_plan(&pass.plan);

        if !req.apply {
            return Ok(RunReport {
                run_id,
                pass,
                basis,
                drift,
                results: Vec::new(),
                counts: Counts::default(),
                failures: req.failures,
                unchanged: false,
            });
        }
        self.store.set_meta(meta::LAST_WRITER, &self.holder).await?;
        self.record_held(&run_id, &pass.plan, now).await?;
        if let Some(a) = stored_approval {
            directory::set_json::<ApprovalRecord>(&*self.store, meta::APPROVAL, None).await?;
            tracing::info!(by = %a.by, approved = pass.plan.approved.len(), "Consumed an approval of held operations");
            if let Some(audit) = &self.audit {
                audit.approval(&run_id, &a, &pass.plan.approved);
            }
        }
        if !pass.plan.ops.is_empty() {
            self.ensure_anchor().await?;
        }
        let ids = self.store.replace_outbox(&run_id, &pass.plan.ops).await?;
        let (results, counts) = self.drain_planned(&run_id, pass.plan.ops.clone(), &ids).await?;
        let mut settled = false;
        if let Some(claim) = claim.filter(|_| quiet || (req.refresh && !req.push_change && req.failures.is_empty())) {
            settled = self.settle(&run_id, &claim, digests, &pass, counts, now).await;
        }
        if settled && !req.push_change {
            self.release_ledger();
        }
        Ok(RunReport { run_id, pass, basis, drift, results, counts, failures: req.failures, unchanged: false })
    }

    /// The quiet record in the store, if there is one (a store error only costs a full run).
    pub async fn quiet_record(&self) -> Option<Quiet> {
        match self.store.get_meta(meta::QUIET).await {
            Ok(v) => v.as_deref().and_then(Quiet::parse),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read the quiet record; planning in full");
                None
            }
        }
    }

    /// A run whose inputs are the quiet record's: nothing to plan, as then.
    async fn unchanged(&mut self, run_id: String, req: RunRequest, q: &Quiet) -> RunReport {
        tracing::info!(since = %q.run_id, at = %q.at, "Nothing changed since a run that found nothing to do");
        if let Some(m) = &self.metrics {
            for s in &req.fresh {
                m.runs_unchanged.with_label_values(&[&s.source]).inc();
            }
            for (s, n) in &q.managed_users {
                m.managed_users.with_label_values(&[s]).set(*n as i64);
            }
            m.managed_teams.set(q.managed_teams as i64);
            self.refresh_outbox_stats(m).await;
        }
        if !req.push_change {
            self.release_ledger();
        }
        let managed_users = req.sources.iter().filter_map(|s| q.managed_users.get(s)).sum();
        let pass = Pass {
            sources: req.sources,
            snapshots: Vec::new(),
            failed_sources: Vec::new(),
            desired: Default::default(),
            actual: Default::default(),
            plan: Plan { managed_users, ..Default::default() },
        };
        RunReport {
            run_id,
            pass,
            basis: Basis::Ledger,
            drift: BTreeMap::new(),
            results: Vec::new(),
            counts: Counts::default(),
            failures: Vec::new(),
            unchanged: true,
        }
    }

    /// After an applying run: when nothing is left to do — nothing held, failed or pending, no error, and the
    /// plan made again against the ledger that recorded the results is empty — turns the run's claim into the
    /// quiet record (unless a change arrived meanwhile and took the claim). Whether the record was written.
    async fn settle(
        &mut self,
        run_id: &str,
        claim: &str,
        mut digests: BTreeMap<String, String>,
        pass: &Pass,
        counts: Counts,
        now: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        let p = &pass.plan;
        if p.has_errors() || !p.held.is_empty() || counts.pending > 0 || counts.refused > 0 {
            return false;
        }
        if !p.ops.is_empty() {
            let (actual, keys) = std::mem::take(&mut self.ledger).into_parts();
            let left = pass::replan(&self.cfg, pass, &actual, now);
            self.ledger = Ledger::from_parts(actual, keys);
            if !left.is_empty() || left.has_errors() {
                tracing::warn!(
                    left = left.ops.len() + left.held.len(),
                    "Applying the plan did not reach the desired state; the next run plans what is left"
                );
                return false;
            }
        }
        let mut views = BTreeMap::new();
        for name in &pass.sources {
            let view = pass.snapshots.iter().find(|s| &s.source == name);
            let digest = view.map(|s| digests.remove(name).unwrap_or_else(|| s.digest()));
            views.insert(name.clone(), digest);
        }
        let record = Quiet {
            run_id: run_id.to_string(),
            at: now,
            url: self.cfg.litellm.url.to_string(),
            config: self.fingerprint.clone(),
            views,
            due: quiet::due(&self.ledger, &self.cfg.safety, &pass.sources),
            managed_users: self
                .cfg
                .sources
                .iter()
                .map(|s| (s.name.clone(), self.ledger.managed_users_of(&s.name)))
                .collect(),
            managed_teams: self.ledger.managed_teams(),
        };
        let text = match serde_json::to_string(&record) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot write the quiet record");
                return false;
            }
        };
        match self.store.replace_meta(meta::QUIET, claim, &text).await {
            Ok(true) => {
                tracing::debug!(run_id, "Nothing left to do: quiet record written");
                true
            }
            Ok(false) => {
                tracing::debug!(run_id, "A change arrived during the run: no quiet record");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot write the quiet record");
                false
            }
        }
    }

    /// Hands the ledger's memory back (a quiet daemon needs none); the next run that plans loads it again.
    fn release_ledger(&mut self) {
        if self.ledger_loaded {
            self.ledger = Ledger::default();
            self.ledger_loaded = false;
        }
    }

    /// Looks up how many team keys each member removal would delete (shown by `plan`). Best effort: while
    /// LiteLLM is down the plan simply does not say.
    async fn count_team_keys(&self, plan: &mut Plan) {
        for op in plan.ops.iter_mut().chain(plan.held.iter_mut()) {
            if let Op::RemoveMember { team_id, user_id, team_keys } = op {
                match self.client.count_team_keys(user_id, team_id).await {
                    Ok(n) => *team_keys = Some(n),
                    Err(e) => {
                        tracing::debug!(error = %e, "Cannot count the team keys of a member removal");
                        return;
                    }
                }
            }
        }
    }

    async fn record_held(
        &self,
        run_id: &str,
        plan: &Plan,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), DaemonError> {
        let held = (!plan.held.is_empty()).then(|| Held {
            run_id: run_id.to_string(),
            at: now,
            reason: plan.hold_reason.clone().unwrap_or_default(),
            ops: plan
                .held
                .iter()
                .map(|op| HeldOp {
                    id: op.id(),
                    source: op.user_key().map(|k| k.source.clone()).or_else(|| self.member_source(op)),
                    text: crate::reconcile::render::op_line(op),
                })
                .collect(),
        });
        directory::set_json(&*self.store, meta::HELD, held.as_ref()).await?;
        if let Some(m) = &self.metrics {
            let mut per_source: BTreeMap<String, i64> = self.cfg.sources.iter().map(|s| (s.name.clone(), 0)).collect();
            for h in held.iter().flat_map(|h| &h.ops) {
                if let Some(n) = h.source.as_ref().and_then(|s| per_source.get_mut(s)) {
                    *n += 1;
                }
            }
            for (s, n) in per_source {
                m.deletions_held.with_label_values(&[&s]).set(n);
            }
        }
        Ok(())
    }
}

fn log_plan(p: &Plan) {
    if let Some(r) = &p.hold_reason {
        tracing::warn!(held = p.held.len(), reason = %r, "Destructive changes held by the safety limit");
    }
    for c in &p.collisions {
        tracing::error!(user_id = %c.user_id, claimant = %c.claimant, "{}", c.describe());
    }
    for e in &p.errors {
        tracing::error!("{e}");
    }
    for n in &p.notes {
        tracing::info!(note = %n, "Plan note");
    }
}

#[cfg(test)]
#[path = "reconciler_tests.rs"]
mod tests;
