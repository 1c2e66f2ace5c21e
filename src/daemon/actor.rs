//! The reconciler actor: handles the sources' events, outbox retries and drift checks one at a time, on one task.
//!
//! A snapshot is planned together with every other source's stored view (one plan for all sources); deltas of
//! one source queued together are folded into its stored view and planned once. Operations LiteLLM could not
//! take stay in the outbox and are retried with backoff; a run that finds the store leased by another process
//! (a CLI sync) waits for it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::reconciler::{new_run_id, Reconciler, RunReport, RunRequest};
use crate::model::{Snapshot, SourceEvent};
use crate::reconcile::plan::Approval;
use crate::sources::{Delivery, SourceStatus};
use crate::telemetry::metrics::Metrics;

/// Outbox retry backoff bounds.
const RETRY_MIN: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(120);
/// How long a run waits for another process's lease before it is tried again later.
const LEASE_WAIT: Duration = Duration::from_secs(5);

pub enum Work {
    /// A source event, acknowledged when handled (so the source's runs never overlap).
    Event(Box<Delivery>),
    /// Apply what is still pending in the outbox.
    Resume,
    /// Plan every source's stored view again and apply (after a run could not be made).
    Replan,
    /// List LiteLLM, replace the ledger, and repair drift.
    DriftCheck,
}

pub struct Actor {
    rec: Reconciler,
    metrics: Metrics,
    sources: BTreeMap<String, Arc<SourceStatus>>,
    /// For retries the actor schedules itself.
    tx: mpsc::Sender<Work>,
    stop: CancellationToken,
    retries: u32,
    /// A drift check is queued and not started yet: another tick adds nothing.
    pub drift_queued: Arc<AtomicBool>,
}

impl Actor {
    pub fn new(
        rec: Reconciler,
        metrics: Metrics,
        sources: BTreeMap<String, Arc<SourceStatus>>,
        tx: mpsc::Sender<Work>,
        stop: CancellationToken,
    ) -> Actor {
        Actor { rec, metrics, sources, tx, stop, retries: 0, drift_queued: Arc::new(AtomicBool::new(false)) }
    }

    fn all_sources(&self) -> Vec<String> {
        self.rec.config().sources.iter().map(|s| s.name.clone()).collect()
    }

    /// Handles work until shutdown began and nothing is queued.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Work>) {
        // Work taken off the channel while coalescing deltas, to handle next, in order.
        let mut stash: VecDeque<Work> = VecDeque::new();
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
                Work::Event(d) if matches!(d.event, SourceEvent::Snapshot(_)) => {
                    let Delivery { event: SourceEvent::Snapshot(snap), done } = *d else { continue };
                    let source = snap.source.clone();
                    let req = self.request(&source, vec![snap]);
                    self.run_and_record(Some(&source), req).await;
                    let _ = done.send(());
                }
                Work::Event(d) => {
                    let Delivery { event, done } = *d;
                    // Coalesce: this change and the changes of the same source queued right behind it are planned
                    // once, from the source's stored view (already committed by the source).
                    let source = event.source().to_string();
                    let mut dones = vec![done];
                    while let Ok(next) = rx.try_recv() {
                        match next {
                            Work::Event(d)
                                if d.event.source() == source && !matches!(d.event, SourceEvent::Snapshot(_)) =>
                            {
                                dones.push(d.done);
                            }
                            other => {
                                stash.push_back(other);
                                break;
                            }
                        }
                    }
                    self.changed_run(&source, dones.len()).await;
                    for d in dones {
                        let _ = d.send(());
                    }
                }
                Work::Resume => self.resume().await,
                Work::Replan => {
                    let req = self.request("retry", Vec::new());
                    self.run_and_record(None, req).await;
                }
                Work::DriftCheck => {
                    self.drift_queued.store(false, Ordering::SeqCst);
                    let req = RunRequest { refresh: true, ..self.request("drift check", Vec::new()) };
                    self.run_and_record(None, req).await;
                }
            }
        }
    }

    fn request(&self, trigger: &str, fresh: Vec<Snapshot>) -> RunRequest {
        RunRequest {
            trigger: trigger.to_string(),
            fresh,
            failures: Vec::new(),
            sources: self.all_sources(),
            use_stored: true,
            refresh: false,
            approval: Approval::None,
            apply: true,
            digests: BTreeMap::new(),
            push_change: false,
        }
    }

    /// Plans a push source's stored view (its rows, which the source committed before it answered) with every
    /// other source's: a user a change removed is deprovisioned, as an explicit removal should be.
    async fn changed_run(&mut self, source: &str, changes: usize) {
        let view = match self.rec.store().last_snapshot(source).await {
            Ok(Some(s)) => s,
            Ok(None) => Snapshot::empty(source),
            Err(e) => {
                // The change is committed; the next run (a retry, or the next change) plans it.
                tracing::error!(source, error = %e, "Cannot read the stored view of the source");
                self.metrics.errors.with_label_values(&["store"]).inc();
                self.schedule(Work::Replan);
                return;
            }
        };
        tracing::info!(source, changes, users = view.users.len(), "Applying the source's changes");
        let req = RunRequest { push_change: true, ..self.request(source, vec![view]) };
        self.run_and_record_view(Some(source), req).await;
    }

    /// One run under the lease, with its metrics; a busy store or pending operations schedule a retry. Fresh
    /// snapshots are stored first, so a run that cannot be made now still plans them later.
    async fn run_and_record(&mut self, source: Option<&str>, req: RunRequest) {
        self.run_stored(source, req, true).await
    }

    /// [`Actor::run_and_record`] for a view read from the store itself (nothing to store again).
    async fn run_and_record_view(&mut self, source: Option<&str>, req: RunRequest) {
        self.run_stored(source, req, false).await
    }

    async fn run_stored(&mut self, source: Option<&str>, mut req: RunRequest, save: bool) {
        let started = std::time::Instant::now();
        // A read the quiet record says is the stored view already (any change of that view deletes the record)
        // is not stored again.
        let recorded = if save && !req.fresh.is_empty() { self.rec.quiet_record().await } else { None };
        for s in req.fresh.iter().filter(|_| save) {
            let digest = req.digests.entry(s.source.clone()).or_insert_with(|| s.digest());
            if recorded.as_ref().is_some_and(|q| q.views.get(&s.source).is_some_and(|v| v.as_ref() == Some(digest))) {
                tracing::debug!(source = %s.source, "The read is the stored view: not stored again");
                continue;
            }
            if let Err(e) = self.rec.store().save_snapshot(s).await {
                tracing::error!(source = %s.source, error = %e, "Cannot store the snapshot; planning it anyway");
                self.metrics.errors.with_label_values(&["store"]).inc();
            }
        }
        let result = match self.rec.lease(LEASE_WAIT).await {
            Ok(()) => {
                let r = self.rec.run(req).await;
                self.rec.release().await;
                r
            }
            Err(e) => Err(e),
        };
        let label = source.unwrap_or("");
        match result {
            Ok(report) => self.account(source, &report),
            Err(e) => {
                tracing::error!(error = %e, "Run failed; it is tried again later");
                self.metrics.errors.with_label_values(&[e.metric_label()]).inc();
                if let Some(s) = source {
                    self.metrics.runs.with_label_values(&[s, "failed"]).inc();
                    self.status(s, Err(e.to_string()));
                }
                self.schedule(Work::Replan);
            }
        }
        release_freed_memory();
        if !label.is_empty() {
            tracing::debug!(source = label, elapsed_ms = started.elapsed().as_millis() as u64, "Run finished");
        }
    }

    fn status(&self, source: &str, r: Result<(), String>) {
        if let Some(s) = self.sources.get(source) {
            s.result(r);
        }
    }

    fn account(&mut self, source: Option<&str>, report: &RunReport) {
        let m = self.metrics.clone();
        let p = &report.pass.plan;
        for (s, n) in &report.drift {
            if self.sources.contains_key(s) {
                m.drift_repaired.with_label_values(&[s]).inc_by(*n as u64);
            }
        }
        let mut collisions: BTreeMap<&str, i64> = self.sources.keys().map(|s| (s.as_str(), 0)).collect();
        for c in &p.collisions {
            if let Some(n) = collisions.get_mut(c.claimant.source.as_str()) {
                *n += 1;
            }
        }
        for (s, n) in collisions {
            m.user_id_collisions.with_label_values(&[s]).set(n);
        }
        let c = report.counts;
        if c.pending > 0 {
            self.schedule(Work::Resume);
        } else {
            self.retries = 0;
        }
        let Some(source) = source else { return };
        let outcome = if p.has_errors() || c.pending > 0 || c.refused > 0 {
            "failed"
        } else if !p.held.is_empty() {
            "held"
        } else {
            "success"
        };
        m.runs.with_label_values(&[source, outcome]).inc();
        if outcome == "failed" {
            let why = if !p.refused_sources.is_empty() {
                format!("read refused as doubt: {}", p.refused_sources.join(", "))
            } else if !p.collisions.is_empty() {
                format!("{} user_id collision(s)", p.collisions.len())
            } else if !p.errors.is_empty() {
                p.errors.join("; ")
            } else {
                "operations failed or are pending".to_string()
            };
            self.status(source, Err(why));
        } else {
            self.status(source, Ok(()));
            m.last_success.with_label_values(&[source]).set(chrono::Utc::now().timestamp());
        }
    }

    async fn resume(&mut self) {
        let run_id = new_run_id();
        let span = tracing::info_span!("resume", run_id = %run_id);
        async {
            match self.rec.lease(LEASE_WAIT).await {
                Ok(()) => {
                    let r = self.rec.drain(&run_id).await;
                    self.rec.release().await;
                    match r {
                        Ok((_, c)) if c.pending > 0 => self.schedule(Work::Resume),
                        Ok(_) => self.retries = 0,
                        Err(e) => {
                            tracing::error!(error = %e, "Cannot drain the outbox");
                            self.metrics.errors.with_label_values(&[e.metric_label()]).inc();
                            self.schedule(Work::Resume);
                        }
                    }
                }
                Err(e) => {
                    tracing::info!(error = %e, "Outbox retry postponed");
                    self.schedule(Work::Resume);
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Queues `work` after a backoff that grows with consecutive retries.
    fn schedule(&mut self, work: Work) {
        if self.stop.is_cancelled() {
            return;
        }
        self.retries = self.retries.saturating_add(1);
        let wait = RETRY_MIN.saturating_mul(1 << self.retries.min(8)).min(RETRY_MAX);
        tracing::info!(wait_s = wait.as_secs(), "Work left to do; retrying later");
        let (tx, stop) = (self.tx.clone(), self.stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(wait) => { let _ = tx.send(work).await; }
            }
        });
    }
}

/// A oneshot acknowledgement for tests that feed the actor directly.
pub fn delivery(event: SourceEvent) -> (Delivery, oneshot::Receiver<()>) {
    let (done, wait) = oneshot::channel();
    (Delivery { event, done }, wait)
}

/// Hands back to the system what a run freed. A run holds a snapshot, the desired state and the plan of every
/// user at once, and glibc's allocator keeps the freed pages (across its per-thread arenas) for the process's
/// lifetime: without this a daemon that provisioned 10,000 users kept ~500 MiB resident between runs.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim(3) has no preconditions; it only returns free pages of glibc's own heaps, under their
    // locks, and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
