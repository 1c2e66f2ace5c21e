//! `litellm-sync run`: the long-running service. Each source has a task that reads a full snapshot at start-up
//! and on its cron `schedule`, and sends it as a `SourceEvent` on a bounded channel (backpressure); one reconciler
//! task plans and applies each snapshot through the engine. Runs of one source never overlap: a tick that comes
//! while the previous run is still going is skipped and counted. A probe keeps LiteLLM's reachability fresh for
//! `/readyz`. SIGTERM/SIGINT stop intake; in-flight work gets `server.shutdown_grace` to finish.
//!
//! Not yet here (see the README's status table): the durable store and outbox. Until then a change that fails to
//! apply is retried by the next scheduled full resync, not from an outbox.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;
use crate::engine;
use crate::litellm::Client;
use crate::model::{Snapshot, SourceEvent};
use crate::reconcile::apply::{apply, ApplyOptions, OpResult, Outcome};
use crate::reconcile::plan::Op;
use crate::sources::Source;
use crate::telemetry::audit::AuditLog;
use crate::telemetry::metrics::Metrics;

/// How often LiteLLM is probed for `/readyz`.
const PROBE_EVERY: Duration = Duration::from_secs(15);
/// Snapshots waiting for the reconciler; sources block (backpressure) beyond this.
const CHANNEL_CAPACITY: usize = 4;

#[derive(Default)]
struct SourceHealth {
    running: AtomicBool,
    /// Since when the runs of this source have been failing (None: last run fine, or none yet).
    failing_since: Mutex<Option<(Instant, String)>>,
}

/// State shared by the tasks and the HTTP handlers.
pub struct Shared {
    pub cfg: Config,
    pub metrics: Metrics,
    sources: BTreeMap<String, SourceHealth>,
    litellm: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Shared {
    /// The failed readiness checks, named; empty when ready.
    pub fn readiness_failures(&self) -> Vec<String> {
        let mut failed = Vec::new();
        match &*self.litellm.lock().unwrap_or_else(|p| p.into_inner()) {
            None => failed.push("litellm: not probed yet".to_string()),
            Some((_, Err(e))) => failed.push(format!("litellm: {e}")),
            Some((at, Ok(()))) if at.elapsed() > PROBE_EVERY * 4 => {
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
}

/// A snapshot plus the acknowledgement the reconciler sends when it is done with it.
struct Work {
    event: SourceEvent,
    done: oneshot::Sender<()>,
}

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let metrics = Metrics::new()?;
    let key = cfg.litellm.api_key.resolve("litellm.api_key")?;
    let client = Client::with_observer(&cfg.litellm, key, false, Box::new(metrics.clone()))?;
    let audit = match &cfg.log.audit_path {
        Some(p) => Some(Arc::new(
            AuditLog::open(p).map_err(|e| anyhow::anyhow!("cannot open audit log {}: {e}", p.display()))?,
        )),
        None => None,
    };
    let sources = cfg.sources.iter().map(|s| (s.name.clone(), SourceHealth::default())).collect();
    let shared = Arc::new(Shared { cfg: cfg.clone(), metrics, sources, litellm: Mutex::new(None) });
    let token = CancellationToken::new();
    crate::shutdown::on_signals(token.clone());

    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.server.listen))?;
    tracing::info!(listen = %cfg.server.listen, "Serving /metrics, /healthz, /readyz");
    let http = {
        let t = token.clone();
        let app = crate::http::router(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(t.cancelled_owned()).await })
    };

    let probe = tokio::spawn(probe_litellm(client.clone(), shared.clone(), token.clone()));
    let (tx, rx) = mpsc::channel::<Work>(CHANNEL_CAPACITY);
    // Polled on this task (not spawned): the applier's futures borrow and need not be Send.
    let reconciler = reconcile_loop(rx, client.clone(), shared.clone(), audit);

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
        drop(tick_tx);
    }
    drop(tx);
    scheduler.start().await?;

    // The reconciler ends once every source task has stopped (they stop on the signal) and the run in hand is
    // done; the grace period bounds that wait.
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
        _ = async { tokio::join!(reconciler, supervise) } => {}
        _ = grace => tracing::warn!("In-flight work did not finish within the shutdown grace period; exiting anyway"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = probe.await;
        let _ = http.await;
    })
    .await;
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
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}

/// Reads the source on every tick and hands the snapshot to the reconciler; waits for it to be done before the
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
                if tx.send(Work { event: SourceEvent::Snapshot(snap), done }).await.is_err() {
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

/// Plans and applies each snapshot. It finishes the run in hand even during shutdown (bounded by the grace
/// period in `run`), and ends when every source task has dropped its sender.
async fn reconcile_loop(
    mut rx: mpsc::Receiver<Work>,
    client: Client,
    shared: Arc<Shared>,
    audit: Option<Arc<AuditLog>>,
) {
    while let Some(work) = rx.recv().await {
        if let SourceEvent::Snapshot(snap) = work.event {
            reconcile_snapshot(snap, &client, &shared, audit.as_deref()).await;
        }
        let _ = work.done.send(());
    }
}

async fn reconcile_snapshot(snap: Snapshot, client: &Client, shared: &Shared, audit: Option<&AuditLog>) {
    let source = snap.source.clone();
    let run_id = format!("{}-{}", source, chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
    let span = tracing::info_span!("run", run_id = %run_id, source = %source);
    run_pass(snap, client, shared, audit, &run_id).instrument(span).await
}

async fn run_pass(snap: Snapshot, client: &Client, shared: &Shared, audit: Option<&AuditLog>, run_id: &str) {
    let cfg = &shared.cfg;
    let source = snap.source.clone();
    let pass = match engine::plan_snapshots(
        cfg,
        client,
        vec![source.clone()],
        vec![snap],
        Vec::new(),
        chrono::Utc::now(),
        false,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "Planning failed");
            shared.metrics.runs.with_label_values(&[&source, "failed"]).inc();
            shared.metrics.errors.with_label_values(&["litellm"]).inc();
            shared.source_result(&source, Err(e.to_string()));
            return;
        }
    };
    shared.metrics.managed_users.with_label_values(&[&source]).set(pass.plan.managed_users as i64);
    shared.metrics.deletions_held.with_label_values(&[&source]).set(pass.plan.held.len() as i64);
    let managed_teams = pass
        .actual
        .teams
        .iter()
        .filter(|t| crate::reconcile::read_marker::<crate::reconcile::TeamMarker>(&t.metadata).is_some())
        .count();
    shared.metrics.managed_teams.set(managed_teams as i64);
    if let Some(r) = &pass.plan.hold_reason {
        tracing::warn!(held = pass.plan.held.len(), reason = %r, "Destructive changes held by the safety limit");
    }
    let opts = ApplyOptions { concurrency: cfg.litellm.concurrency, adopt_existing: cfg.safety.adopt_existing };
    let on_result = |op: &Op, r: &OpResult| {
        let result = match &r.outcome {
            Outcome::Applied => "applied",
            Outcome::AlreadyDone { .. } => "already_done",
            Outcome::Skipped => "skipped",
            Outcome::Failed { .. } => "failed",
        };
        shared.metrics.operations.with_label_values(&[op.kind(), result]).inc();
        if let Some(a) = audit {
            a.record(run_id, &source, op, r);
        }
    };
    let report = apply(client, &pass.plan.ops, &opts, &on_result).await;
    let failed = report.failed();
    let outcome = if failed > 0 || !pass.plan.refused_sources.is_empty() {
        "failed"
    } else if !pass.plan.held.is_empty() {
        "held"
    } else {
        "success"
    };
    shared.metrics.runs.with_label_values(&[&source, outcome]).inc();
    if outcome == "failed" {
        shared.metrics.errors.with_label_values(&["apply"]).inc();
        shared.source_result(&source, Err(format!("{failed} operation(s) failed")));
    } else {
        shared.source_result(&source, Ok(()));
        shared.metrics.last_success.with_label_values(&[&source]).set(chrono::Utc::now().timestamp());
    }
    tracing::info!(
        ops = pass.plan.ops.len(),
        applied = report.applied(),
        failed,
        held = pass.plan.held.len(),
        "Run finished"
    );
}
