//! `litellm-sync run`: the long-running service.
//!
//! Each source has a task that reads a full snapshot at start-up and on its cron `schedule` and sends it as a
//! `SourceEvent` on a bounded channel (backpressure). One reconciler task handles the channel:
//!
//! 1. the snapshot is stored;
//! 2. it is planned against the **ledger** (what litellm-sync last applied), so a run needs no LiteLLM listing
//!    and works while LiteLLM is down; the first run and the periodic **drift check** list LiteLLM instead and
//!    replace the ledger;
//! 3. the plan replaces the source's **outbox** in one transaction, before anything is applied;
//! 4. the outbox is drained: each result is recorded in the ledger and removed from the outbox in one
//!    transaction; operations LiteLLM could not take stay pending and are retried with backoff, also after a
//!    restart; operations LiteLLM refused (4xx) stay visible as failed until the next full resync.
//!
//! Runs of one source never overlap: a tick that comes while the previous run is going is skipped and counted.
//! SIGTERM/SIGINT stop intake; the run in hand stops between operations and what is left stays in the outbox.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;
use crate::directory::{Ledger, OutboxStatus, SqliteStore, Store};
use crate::engine;
use crate::litellm::Client;
use crate::model::{Snapshot, SourceEvent};
use crate::reconcile::apply::{apply, ApplyOptions, OpResult, Outcome};
use crate::reconcile::plan::{Actual, Op, Plan};
use crate::sources::Source;
use crate::telemetry::audit::AuditLog;
use crate::telemetry::metrics::Metrics;

/// Work waiting for the reconciler; senders wait (backpressure) beyond this.
const CHANNEL_CAPACITY: usize = 16;
/// Outbox retry backoff bounds.
const RETRY_MIN: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(120);
const META_BOOTSTRAPPED: &str = "ledger_bootstrapped";

#[derive(Default)]
struct SourceHealth {
    running: AtomicBool,
    /// Since when the runs of this source have been failing, and why (None: last run fine, or none yet).
    failing_since: Mutex<Option<(Instant, String)>>,
    /// Consecutive outbox retries, for the backoff.
    retries: Mutex<u32>,
}

/// State shared by the tasks and the HTTP handlers.
pub struct Shared {
    pub cfg: Config,
    pub metrics: Metrics,
    store: SqliteStore,
    sources: BTreeMap<String, SourceHealth>,
    litellm: Mutex<Option<(Instant, Result<(), String>)>>,
    /// A drift check is queued and not started yet: another tick adds nothing.
    drift_queued: AtomicBool,
}

impl Shared {
    /// The failed readiness checks, named; empty when ready.
    pub async fn readiness_failures(&self) -> Vec<String> {
        let mut failed = Vec::new();
        if let Err(e) = self.store.ping().await {
            failed.push(format!("store: {e}"));
        }
        match &*self.litellm.lock().unwrap_or_else(|p| p.into_inner()) {
            None => failed.push("litellm: not probed yet".to_string()),
            Some((_, Err(e))) => failed.push(format!("litellm: {e}")),
            Some((at, Ok(()))) if at.elapsed() > self.cfg.server.probe_interval * 4 => {
                failed.push(format!("litellm: last successful probe {}s ago", at.elapsed().as_secs()))
            }
            Some(_) => {}
        }
        for (name, h) in &self.sources {
            if let Some((since, why)) = &*h.failing_since.lock().unwrap_or_else(|p| p.into_inner()) {
                if since.elapsed() > self.cfg.server.unready_after {
                    failed.push(format!("source {name}: failing for {}s: {why}", since.elapsed().as_secs()));
                }
            }
        }
        failed
    }

    fn source_result(&self, source: &str, result: Result<(), String>) {
        if let Some(h) = self.sources.get(source) {
            let mut f = h.failing_since.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(()) => *f = None,
                Err(e) => match &mut *f {
                    Some((_, why)) => *why = e,
                    None => *f = Some((Instant::now(), e)),
                },
            }
        }
    }

    async fn refresh_outbox_metrics(&self) {
        match self.store.outbox_stats().await {
            Ok(st) => {
                self.metrics.outbox_depth.with_label_values(&["pending"]).set(st.pending as i64);
                self.metrics.outbox_depth.with_label_values(&["failed"]).set(st.failed as i64);
                let age = st.oldest.map(|o| (chrono::Utc::now() - o).num_seconds().max(0)).unwrap_or(0);
                self.metrics.outbox_oldest_age.set(age);
            }
            Err(e) => tracing::error!(error = %e, "Cannot read outbox statistics"),
        }
    }
}

enum Work {
    /// A source event, acknowledged when handled (so the source's runs never overlap).
    Event { event: Box<SourceEvent>, done: oneshot::Sender<()> },
    /// Apply what is still pending in a source's outbox.
    Resume { source: String },
    /// List LiteLLM, replace the ledger, repair drift for every source with a stored snapshot.
    DriftCheck,
}

/// Everything the reconciler needs, owned by its task.
struct Reconciler {
    client: Client,
    shared: Arc<Shared>,
    audit: Option<Arc<AuditLog>>,
    ledger: Ledger,
    tx: mpsc::Sender<Work>,
    stop: CancellationToken,
}

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let metrics = Metrics::new()?;
    let store = SqliteStore::open(&cfg.store.path).await?;
    let ledger = store.load_ledger().await?;
    let key = cfg.litellm.api_key.resolve("litellm.api_key")?;
    let client = Client::with_observer(&cfg.litellm, key, false, Box::new(metrics.clone()))?;
    let audit = match &cfg.log.audit_path {
        Some(p) => Some(Arc::new(
            AuditLog::open(p).map_err(|e| anyhow::anyhow!("cannot open the audit log {}: {e}", p.display()))?,
        )),
        None => None,
    };
    let sources = cfg.sources.iter().map(|s| (s.name.clone(), SourceHealth::default())).collect();
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        metrics,
        store,
        sources,
        litellm: Mutex::new(None),
        drift_queued: AtomicBool::new(false),
    });
    shared.metrics.init_global();
    for s in &cfg.sources {
        shared.metrics.init_source(&s.name);
    }
    shared.refresh_outbox_metrics().await;
    shared.metrics.managed_teams.set(ledger.managed_teams() as i64);
    let token = CancellationToken::new();
    crate::shutdown::on_signals(token.clone());

    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.server.listen))?;
    tracing::info!(listen = %cfg.server.listen, store = %cfg.store.path.display(), "Serving /metrics, /healthz, /readyz");
    let http = {
        let t = token.clone();
        let app = crate::http::router(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(t.cancelled_owned()).await })
    };
    let probe = tokio::spawn(probe_litellm(client.clone(), shared.clone(), token.clone()));

    let (tx, rx) = mpsc::channel::<Work>(CHANNEL_CAPACITY);
    // Work left from the previous run of the process goes first.
    for s in &cfg.sources {
        let pending = shared.store.outbox(&s.name).await?;
        if pending.iter().any(|e| e.status == OutboxStatus::Pending) {
            tracing::info!(source = %s.name, pending = pending.len(), "Resuming operations left in the outbox");
            tx.send(Work::Resume { source: s.name.clone() }).await?;
        }
    }

    let mut scheduler = JobScheduler::new().await?;
    let mut source_tasks = Vec::new();
    for s in &cfg.sources {
        let (tick_tx, tick_rx) = mpsc::channel::<()>(1);
        // First run at start-up, then on the schedule.
        let _ = tick_tx.try_send(());
        if let Some(expr) = &s.schedule {
            let (name, shared2, tick) = (s.name.clone(), shared.clone(), tick_tx.clone());
            let job = Job::new_async(expr.as_str(), move |_, _| {
                let (name, shared, tick) = (name.clone(), shared2.clone(), tick.clone());
                Box::pin(async move {
                    let busy = shared.sources.get(&name).is_some_and(|h| h.running.load(Ordering::SeqCst));
                    if busy || tick.try_send(()).is_err() {
                        tracing::warn!(source = %name, "Scheduled run skipped: the previous run is still going");
                        shared.metrics.runs_skipped.with_label_values(&[&name]).inc();
                    }
                })
            })
            .map_err(|e| anyhow::anyhow!("source {}: invalid schedule {expr:?}: {e}", s.name))?;
            scheduler.add(job).await?;
        }
        source_tasks.push(tokio::spawn(source_loop(
            Source::new(s),
            tick_rx,
            tx.clone(),
            shared.clone(),
            token.clone(),
        )));
    }
    if let Some(expr) = &cfg.drift.schedule {
        let (tx2, shared2) = (tx.clone(), shared.clone());
        let job = Job::new_async(expr.as_str(), move |_, _| {
            let (tx, shared) = (tx2.clone(), shared2.clone());
            Box::pin(async move {
                // One queued drift check is enough; source events must not wait behind a row of them.
                if shared.drift_queued.swap(true, Ordering::SeqCst) {
                    return;
                }
                if tx.try_send(Work::DriftCheck).is_err() {
                    shared.drift_queued.store(false, Ordering::SeqCst);
                    tracing::warn!("Drift check skipped: the reconciler is busy");
                }
            })
        })
        .map_err(|e| anyhow::anyhow!("invalid drift.schedule {expr:?}: {e}"))?;
        scheduler.add(job).await?;
    }
    scheduler.start().await?;

    // The reconciler is polled on this task (not spawned): the applier's futures borrow and need not be Send.
    let reconciler = Reconciler {
        client: client.clone(),
        shared: shared.clone(),
        audit,
        ledger,
        tx: tx.clone(),
        stop: token.clone(),
    };
    drop(tx);
    let reconcile = reconciler.run(rx);
    let supervise = async {
        token.cancelled().await;
        tracing::info!(
            grace_s = cfg.server.shutdown_grace.as_secs(),
            "Stopping: no new runs; finishing in-flight work"
        );
        let _ = scheduler.shutdown().await;
        for t in source_tasks {
            let _ = t.await;
        }
    };
    let grace = async {
        token.cancelled().await;
        tokio::time::sleep(cfg.server.shutdown_grace).await;
    };
    tokio::select! {
        _ = async { tokio::join!(reconcile, supervise) } => {}
        _ = grace => tracing::warn!("In-flight work did not finish within the shutdown grace period; it stays in the outbox"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = probe.await;
        let _ = http.await;
    })
    .await;
    shared.store.close().await;
    tracing::info!("Stopped");
    Ok(())
}

async fn probe_litellm(client: Client, shared: Arc<Shared>, token: CancellationToken) {
    loop {
        let r = client.check_access().await.map(drop).map_err(|e| e.to_string());
        if let Err(e) = &r {
            tracing::warn!(error = %e, "LiteLLM probe failed");
        }
        *shared.litellm.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), r));
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(shared.cfg.server.probe_interval) => {}
        }
    }
}

/// Reads the source on every tick and hands the snapshot to the reconciler; waits until it is handled before the
/// next read, so runs of one source never overlap.
async fn source_loop(
    source: Source,
    mut ticks: mpsc::Receiver<()>,
    tx: mpsc::Sender<Work>,
    shared: Arc<Shared>,
    token: CancellationToken,
) {
    let name = source.name().to_string();
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            t = ticks.recv() => if t.is_none() { return },
        }
        let Some(health) = shared.sources.get(&name) else { return };
        health.running.store(true, Ordering::SeqCst);
        let started = Instant::now();
        let read = tokio::select! {
            _ = token.cancelled() => { health.running.store(false, Ordering::SeqCst); return }
            r = source.snapshot() => r,
        };
        match read {
            Ok(snap) => {
                shared.metrics.events_received.with_label_values(&[&name, "snapshot"]).inc();
                shared.metrics.source_users.with_label_values(&[&name]).set(snap.users.len() as i64);
                let (done, wait) = oneshot::channel();
                if tx.send(Work::Event { event: Box::new(SourceEvent::Snapshot(snap)), done }).await.is_err() {
                    health.running.store(false, Ordering::SeqCst);
                    return;
                }
                let _ = wait.await;
            }
            Err(e) => {
                tracing::error!(source = %name, error = %e, "Source read failed; nothing of it is deprovisioned");
                shared.metrics.runs.with_label_values(&[&name, "failed"]).inc();
                shared.metrics.errors.with_label_values(&["source"]).inc();
                shared.source_result(&name, Err(e.to_string()));
            }
        }
        shared.metrics.run_duration.with_label_values(&[&name]).observe(started.elapsed().as_secs_f64());
        health.running.store(false, Ordering::SeqCst);
    }
}

fn run_id(source: &str) -> String {
    format!("{}-{}", source, chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"))
}

impl Reconciler {
    /// Handles work until every sender is gone (the sources stopped) and nothing is queued.
    async fn run(mut self, mut rx: mpsc::Receiver<Work>) {
        // The reconciler holds a sender (for retries) itself; it ends when shutdown began and the queue is empty.
        // Work taken off the channel while coalescing deltas, to handle next, in order.
        let mut stash: std::collections::VecDeque<Work> = std::collections::VecDeque::new();
        loop {
            let work = match stash.pop_front() {
                Some(w) => Some(w),
                None => tokio::select! {
                    w = rx.recv() => w,
                    _ = self.stop.cancelled() => rx.try_recv().ok(),
                },
            };
            let Some(work) = work else { return };
            match work {
                Work::Event { event, done } => {
                    let source = event.source().to_string();
                    let span = tracing::info_span!("run", run_id = %run_id(&source), source = %source);
                    match *event {
                        SourceEvent::Snapshot(snap) => {
                            self.snapshot_run(snap).instrument(span).await;
                            let _ = done.send(());
                        }
                        delta => {
                            // Coalesce: this delta and the deltas of the same source queued right behind it become
                            // one change of the source's stored view, planned once.
                            let (mut deltas, mut dones) = (vec![delta], vec![done]);
                            while let Ok(next) = rx.try_recv() {
                                match next {
                                    Work::Event { event, done }
                                        if event.source() == source && !matches!(*event, SourceEvent::Snapshot(_)) =>
                                    {
                                        deltas.push(*event);
                                        dones.push(done);
                                    }
                                    other => {
                                        stash.push_back(other);
                                        break;
                                    }
                                }
                            }
                            self.delta_run(&source, deltas).instrument(span).await;
                            for d in dones {
                                let _ = d.send(());
                            }
                        }
                    }
                }
                Work::Resume { source } => {
                    let span = tracing::info_span!("resume", source = %source);
                    self.drain(&source, &run_id(&source)).instrument(span).await;
                }
                Work::DriftCheck => self.drift_check().instrument(tracing::info_span!("drift_check")).await,
            }
        }
    }

    /// Full LiteLLM listing into the ledger.
    async fn relist(&mut self) -> Result<(), String> {
        let actual = engine::read_actual(&self.client).await.map_err(|e| e.to_string())?;
        let ledger = Ledger::from_actual(&actual);
        self.shared.store.replace_ledger(&ledger).await.map_err(|e| e.to_string())?;
        self.shared.store.set_meta(META_BOOTSTRAPPED, "1").await.map_err(|e| e.to_string())?;
        self.ledger = ledger;
        Ok(())
    }

    fn plan(&self, snap: Snapshot, actual: Actual) -> Plan {
        let source = snap.source.clone();
        engine::plan_pass(&self.shared.cfg, vec![source], vec![snap], Vec::new(), actual, chrono::Utc::now(), false)
            .plan
    }

    async fn snapshot_run(&mut self, snap: Snapshot) {
        let shared = self.shared.clone();
        let source = snap.source.clone();
        if let Err(e) = shared.store.save_snapshot(&snap).await {
            tracing::error!(error = %e, "Cannot store the snapshot; planning it anyway");
            shared.metrics.errors.with_label_values(&["store"]).inc();
        }
        let bootstrapped = matches!(shared.store.get_meta(META_BOOTSTRAPPED).await, Ok(Some(_)));
        if !bootstrapped {
            tracing::info!("First run on this store: listing LiteLLM to build the ledger");
            if let Err(e) = self.relist().await {
                tracing::error!(error = %e, "Cannot list LiteLLM; the run waits for the next tick");
                shared.metrics.runs.with_label_values(&[&source, "failed"]).inc();
                shared.metrics.errors.with_label_values(&["litellm"]).inc();
                shared.source_result(&source, Err(e));
                return;
            }
        }
        let plan = self.plan(snap, self.ledger.actual());
        self.accept(&source, plan).await;
    }

    /// Applies deltas (a push source's changes) to the source's stored view and reconciles the result as that
    /// source's complete view: a user a delta removed is deprovisioned, as an explicit removal should be.
    async fn delta_run(&mut self, source: &str, deltas: Vec<SourceEvent>) {
        let mut view = match self.shared.store.last_snapshot(source).await {
            Ok(Some(s)) => s,
            Ok(None) => Snapshot::empty(source),
            Err(e) => {
                // Without the stored view a delta cannot be turned into desired state; it is not applied, and the
                // source will send it again (SCIM retries) or the next full read covers it.
                tracing::error!(error = %e, "Cannot read the stored view of the source; deltas not applied");
                self.shared.metrics.errors.with_label_values(&["store"]).inc();
                return;
            }
        };
        let n = deltas.len();
        for d in deltas {
            view.apply(d);
        }
        tracing::info!(deltas = n, users = view.users.len(), "Applying source deltas");
        self.snapshot_run(view).await;
    }

    /// Stores the plan in the outbox (replacing the source's previous one), then drains it.
    async fn accept(&mut self, source: &str, plan: Plan) {
        let shared = self.shared.clone();
        let m = &shared.metrics;
        m.deletions_held.with_label_values(&[source]).set(plan.held.len() as i64);
        if let Some(r) = &plan.hold_reason {
            tracing::warn!(held = plan.held.len(), reason = %r, "Destructive changes held by the safety limit");
        }
        for n in &plan.notes {
            tracing::info!(note = %n, "Plan note");
        }
        let rid = run_id(source);
        if let Err(e) = shared.store.replace_outbox(source, &rid, &plan.ops).await {
            // Nothing is applied that is not in the outbox first.
            tracing::error!(error = %e, "Cannot write the outbox; nothing applied");
            m.runs.with_label_values(&[source, "failed"]).inc();
            m.errors.with_label_values(&["store"]).inc();
            shared.source_result(source, Err(e.to_string()));
            return;
        }
        let refused = !plan.refused_sources.is_empty();
        let ok = self.drain(source, &rid).await;
        m.managed_users.with_label_values(&[source]).set(self.ledger.managed_users_of(source) as i64);
        let outcome = if !ok || refused {
            "failed"
        } else if !plan.held.is_empty() {
            "held"
        } else {
            "success"
        };
        m.runs.with_label_values(&[source, outcome]).inc();
        if outcome == "failed" {
            let why = if refused { "the source returned no users" } else { "operations failed or are pending" };
            shared.source_result(source, Err(why.to_string()));
        } else {
            shared.source_result(source, Ok(()));
            m.last_success.with_label_values(&[source]).set(chrono::Utc::now().timestamp());
        }
    }

    /// Applies the source's pending outbox entries and records each result. Returns true when nothing is left
    /// pending or failed; schedules a retry with backoff when entries are still pending.
    async fn drain(&mut self, source: &str, rid: &str) -> bool {
        let shared = self.shared.clone();
        let entries = match shared.store.outbox(source).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "Cannot read the outbox");
                shared.metrics.errors.with_label_values(&["store"]).inc();
                return false;
            }
        };
        let (pending, failed): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.status == OutboxStatus::Pending);
        let ops: Vec<Op> = pending.iter().map(|e| e.op.clone()).collect();
        let ids: Vec<i64> = pending.iter().map(|e| e.id).collect();
        let index: HashMap<usize, usize> =
            ops.iter().enumerate().map(|(i, op)| (op as *const Op as usize, i)).collect();
        let opts = ApplyOptions {
            concurrency: shared.cfg.litellm.concurrency,
            adopt_existing: shared.cfg.safety.adopt_existing,
            stop: Some(self.stop.clone()),
            defer_when_unavailable: true,
        };
        // Results flow to a recorder on the same task while the applier runs, so a crash loses at most the
        // operations in flight (which are safe to apply again).
        let (res_tx, mut res_rx) = mpsc::unbounded_channel::<(usize, OpResult)>();
        let on_result = move |op: &Op, r: &OpResult| {
            if let Some(&i) = index.get(&(op as *const Op as usize)) {
                let _ = res_tx.send((i, r.clone()));
            }
        };
        let client = self.client.clone();
        let apply_fut = async move {
            apply(&client, &ops, &opts, &on_result).await;
            drop(on_result);
            ops
        };
        let mut outcome = (0usize, 0usize, 0usize); // applied, still pending, refused
        let record_fut = async {
            while let Some((i, r)) = res_rx.recv().await {
                let (Some(id), Some(entry)) = (ids.get(i), pending.get(i)) else { continue };
                self.record(source, rid, *id, &entry.op, &r, &mut outcome).await;
            }
        };
        let _ = tokio::join!(apply_fut, record_fut);
        shared.refresh_outbox_metrics().await;
        shared.metrics.managed_teams.set(self.ledger.managed_teams() as i64);
        let (applied, left, refused) = outcome;
        tracing::info!(applied, pending = left, refused = refused + failed.len(), "Outbox drained");
        if left > 0 && !self.stop.is_cancelled() {
            self.schedule_retry(source);
        } else if let Some(h) = shared.sources.get(source) {
            *h.retries.lock().unwrap_or_else(|p| p.into_inner()) = 0;
        }
        left == 0 && refused == 0 && failed.is_empty()
    }

    async fn record(
        &mut self,
        source: &str,
        rid: &str,
        id: i64,
        op: &Op,
        r: &OpResult,
        outcome: &mut (usize, usize, usize),
    ) {
        let shared = &self.shared;
        let label = match &r.outcome {
            Outcome::Applied => "applied",
            Outcome::AlreadyDone { .. } => "already_done",
            Outcome::Skipped => "skipped",
            Outcome::Deferred { .. } => "deferred",
            Outcome::Failed { .. } => "failed",
        };
        shared.metrics.operations.with_label_values(&[op.kind(), label]).inc();
        if let Some(a) = &self.audit {
            a.record(rid, source, op, r);
        }
        let stored = match &r.outcome {
            Outcome::Applied | Outcome::AlreadyDone { .. } => {
                outcome.0 += 1;
                let writes = self.ledger.record(op, r);
                shared.store.complete(id, &writes).await
            }
            Outcome::Failed { class, error } if class != "retryable" => {
                outcome.2 += 1;
                shared.metrics.errors.with_label_values(&["apply"]).inc();
                shared.store.attempt_failed(id, error, true).await
            }
            Outcome::Failed { error, .. } => {
                outcome.1 += 1;
                shared.store.attempt_failed(id, error, false).await
            }
            Outcome::Deferred { reason } => {
                outcome.1 += 1;
                shared.store.attempt_failed(id, reason, false).await
            }
            Outcome::Skipped => Ok(()),
        };
        if let Err(e) = stored {
            tracing::error!(error = %e, op = op.kind(), target = %op.target(), "Cannot record an operation's result");
            shared.metrics.errors.with_label_values(&["store"]).inc();
        }
    }

    fn schedule_retry(&self, source: &str) {
        let Some(h) = self.shared.sources.get(source) else { return };
        let n = {
            let mut r = h.retries.lock().unwrap_or_else(|p| p.into_inner());
            *r = r.saturating_add(1);
            *r
        };
        let wait = RETRY_MIN.saturating_mul(1 << n.min(8)).min(RETRY_MAX);
        tracing::info!(source, wait_s = wait.as_secs(), "Operations still pending; retrying later");
        let (tx, stop, source) = (self.tx.clone(), self.stop.clone(), source.to_string());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(wait) => { let _ = tx.send(Work::Resume { source }).await; }
            }
        });
    }

    /// Lists LiteLLM, counts managed objects that differ from the ledger (drift), replaces the ledger, and plans
    /// every source's stored snapshot against the real state.
    async fn drift_check(&mut self) {
        let shared = self.shared.clone();
        shared.drift_queued.store(false, Ordering::SeqCst);
        let before = self.ledger.clone();
        if let Err(e) = self.relist().await {
            tracing::warn!(error = %e, "Drift check could not list LiteLLM");
            shared.metrics.errors.with_label_values(&["litellm"]).inc();
            return;
        }
        for s in &shared.cfg.sources {
            let snap = match shared.store.last_snapshot(&s.name).await {
                Ok(Some(snap)) => snap,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(source = %s.name, error = %e, "Cannot read the stored snapshot");
                    continue;
                }
            };
            if shared.sources.get(&s.name).is_some_and(|h| h.running.load(Ordering::SeqCst)) {
                continue;
            }
            let expected = self.plan(snap.clone(), before.actual());
            let real = self.plan(snap, self.ledger.actual());
            let known: BTreeSet<(&str, String)> = expected.ops.iter().map(|o| (o.kind(), o.target())).collect();
            let drift = real.ops.iter().filter(|o| !known.contains(&(o.kind(), o.target()))).count();
            if drift > 0 {
                tracing::warn!(source = %s.name, drift, "LiteLLM differs from what litellm-sync applied; repairing");
                shared.metrics.drift_repaired.with_label_values(&[&s.name]).inc_by(drift as u64);
            }
            self.accept(&s.name, real).await;
        }
    }
}
