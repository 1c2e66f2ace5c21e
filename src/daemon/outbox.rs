//! The outbox side of a run: the pending operations applied and each result recorded — the ledger's writes and
//! the entry's removal in one transaction, in batches — with the metrics and the audit trail of each, and the
//! write guard that stops a replica that is no longer the leader.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::reconciler::{Counts, Reconciler, RECORD_BATCH};
use super::DaemonError;
use crate::directory::{OutboxStatus, OutboxUpdate, Store};
use crate::reconcile::apply::{apply, ApplyOptions, OpResult, Outcome};
use crate::reconcile::op::Op;
use crate::telemetry::metrics::Metrics;

/// The applier's write guard: the store says whether this process is still the leader.
struct StoreGuard(Arc<dyn Store>);

#[async_trait::async_trait]
impl crate::reconcile::apply::WriteGuard for StoreGuard {
    async fn may_write(&self) -> bool {
        match self.0.still_leader().await {
            Ok(yes) => yes,
            // Cannot tell: do not write (the outbox keeps the work).
            Err(e) => {
                tracing::warn!(error = %e, "Cannot check the leadership before writing");
                false
            }
        }
    }
}

impl Reconciler {
    /// Applies the outbox's pending operations and records each result. Results flow to the recorder while the
    /// applier runs, so a crash loses at most the operations in flight (which are safe to apply again).
    pub async fn drain(&mut self, run_id: &str) -> Result<(Vec<OpResult>, Counts), DaemonError> {
        let entries = self.store.outbox().await?;
        let failed_before = entries.iter().filter(|e| e.status == OutboxStatus::Failed).count();
        let (ops, ids): (Vec<Op>, Vec<i64>) =
            entries.into_iter().filter(|e| e.status == OutboxStatus::Pending).map(|e| (e.op, e.id)).unzip();
        self.drain_ops(run_id, ops, &ids, failed_before).await
    }

    /// [`Reconciler::drain`] of the operations a run just wrote to the outbox (`ids`: their entries), which are
    /// all of it: what the store would give back is in memory already.
    pub(super) async fn drain_planned(
        &mut self,
        run_id: &str,
        ops: Vec<Op>,
        ids: &[i64],
    ) -> Result<(Vec<OpResult>, Counts), DaemonError> {
        self.drain_ops(run_id, ops, ids, 0).await
    }

    async fn drain_ops(
        &mut self,
        run_id: &str,
        ops: Vec<Op>,
        entry_ids: &[i64],
        failed_before: usize,
    ) -> Result<(Vec<OpResult>, Counts), DaemonError> {
        let ids: HashMap<String, i64> = ops.iter().zip(entry_ids).map(|(op, id)| (op.id(), *id)).collect();
        let opts = ApplyOptions {
            concurrency: self.cfg.litellm.concurrency,
            adopt_existing: self.cfg.safety.adopt_existing,
            stop: Some(self.stop.clone()),
            defer_when_unavailable: self.defer_when_unavailable,
            key_sink: self.key_sink.clone(),
            guard: Some(Arc::new(StoreGuard(self.store.clone()))),
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<(Op, OpResult)>();
        let on_result = move |op: &Op, r: &OpResult| {
            let _ = tx.send((op.clone(), r.clone()));
        };
        let client = self.client.clone();
        let apply_fut = async move {
            apply(&client, &ops, &opts, &on_result).await;
            drop(on_result);
        };
        let mut counts = Counts::default();
        let mut results = Vec::new();
        let mut errors: Vec<DaemonError> = Vec::new();
        let total = entry_ids.len();
        let progress = self.progress.clone();
        let record_fut = async {
            // Results are recorded in batches (one transaction each): what is in flight when the process dies
            // is applied again, which every operation tolerates.
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < RECORD_BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let mut updates = Vec::with_capacity(batch.len());
                for (op, r) in &batch {
                    if let Some(p) = &progress {
                        p(results.len() + updates.len() + 1, total, r);
                    }
                    if let Some(&id) = ids.get(&r.id) {
                        updates.push(self.record(run_id, id, op, r, &mut counts));
                    }
                }
                if let Err(e) = self.store.record_results(&updates).await {
                    tracing::error!(error = %e, results = updates.len(), "Cannot record operation results");
                    errors.push(e.into());
                }
                results.extend(batch.into_iter().map(|(_, r)| r));
            }
        };
        tokio::join!(apply_fut, record_fut);
        if let Some(m) = &self.metrics {
            self.refresh_outbox_metrics(m).await;
        }
        tracing::info!(
            applied = counts.applied,
            pending = counts.pending,
            refused = counts.refused + failed_before,
            "Outbox drained"
        );
        counts.refused += failed_before;
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok((results, counts)),
        }
    }

    /// What one result changes in the store (the ledger in memory is updated here).
    fn record(&mut self, run_id: &str, id: i64, op: &Op, r: &OpResult, counts: &mut Counts) -> OutboxUpdate {
        if let Some(m) = &self.metrics {
            m.operations.with_label_values(&[op.kind(), r.outcome.label()]).inc();
            if r.recreated {
                let source = op.user_key().map(|k| k.source.as_str()).unwrap_or("");
                m.drift_repaired.with_label_values(&[source]).inc();
            }
        }
        if let Some(a) = &self.audit {
            a.record(run_id, op, r);
        }
        let writes = self.ledger.record(op, r);
        match &r.outcome {
            o if o.succeeded() => {
                counts.applied += 1;
                OutboxUpdate::Done { id, writes }
            }
            o @ (Outcome::NotSent { reason: why } | Outcome::Failed { error: why, .. }) if o.is_final() => {
                counts.refused += 1;
                if let Some(m) = &self.metrics {
                    m.errors.with_label_values(&["apply"]).inc();
                }
                // What the applier learnt (a user found deleted) is recorded even though the operation failed.
                OutboxUpdate::Failed { id, error: why.clone(), permanent: true, writes }
            }
            Outcome::Skipped => OutboxUpdate::Failed { id, error: String::new(), permanent: false, writes: Vec::new() },
            o => {
                counts.pending += 1;
                let why = match o {
                    Outcome::Deferred { reason } => reason.clone(),
                    Outcome::Failed { error, .. } => error.clone(),
                    _ => String::new(),
                };
                OutboxUpdate::Failed { id, error: why, permanent: false, writes }
            }
        }
    }

    /// The source of the user a membership operation concerns (its marker in the ledger).
    pub(super) fn member_source(&self, op: &Op) -> Option<String> {
        let row = self.ledger.users.get(op.user_id()?)?;
        crate::reconcile::read_marker::<crate::reconcile::UserMarker>(&row.metadata).map(|m| m.source)
    }

    pub async fn refresh_outbox_metrics(&self, m: &Metrics) {
        self.refresh_outbox_stats(m).await;
        m.managed_teams.set(self.ledger.managed_teams() as i64);
        for s in &self.cfg.sources {
            m.managed_users.with_label_values(&[&s.name]).set(self.ledger.managed_users_of(&s.name) as i64);
        }
    }

    /// The outbox's depth and age.
    pub(super) async fn refresh_outbox_stats(&self, m: &Metrics) {
        match self.store.outbox_stats().await {
            Ok(st) => {
                m.outbox_depth.with_label_values(&["pending"]).set(st.pending as i64);
                m.outbox_depth.with_label_values(&["failed"]).set(st.failed as i64);
                let age = st.oldest.map(|o| (chrono::Utc::now() - o).num_seconds().max(0)).unwrap_or(0);
                m.outbox_oldest_age.set(age);
            }
            Err(e) => tracing::error!(error = %e, "Cannot read outbox statistics"),
        }
    }
}
