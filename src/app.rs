//! `litellm-sync run`, wiring only: the store, the LiteLLM client, the sources (each runs itself), the reconciler
//! actor, the drift check's schedule and the HTTP server, and the shutdown that stops them. What each part does
//! is in `daemon/`, `sources/`, `http/`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::daemon::actor::{Actor, Work};
use crate::daemon::health::DaemonHealth;
use crate::daemon::Reconciler;
use crate::directory::{OutboxStatus, PostgresStore, Store};
use crate::litellm::Client;
use crate::reconcile::key_sink::KeySink;
use crate::sources::scim::service::Services;
use crate::sources::{Delivery, Source, SourceContext, SourceStatus};
use crate::telemetry::audit::AuditLog;
use crate::telemetry::metrics::Metrics;

/// Work waiting for the reconciler; senders wait (backpressure) beyond this.
const CHANNEL_CAPACITY: usize = 16;

/// The audit trail and the key file a run writes to.
pub type Outputs = (Option<Arc<AuditLog>>, Option<Arc<KeySink>>);

/// The audit trail and the key file the configuration names.
pub fn outputs(cfg: &Config) -> anyhow::Result<Outputs> {
    let audit = match &cfg.log.audit_path {
        Some(p) => Some(Arc::new(
            AuditLog::open(p).map_err(|e| anyhow::anyhow!("cannot open the audit log {}: {e}", p.display()))?,
        )),
        None => None,
    };
    let sink = match &cfg.keys {
        Some(k) => Some(Arc::new(KeySink::open(&k.path)?)),
        None => None,
    };
    Ok((audit, sink))
}

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let metrics = Metrics::new()?;
    let (store, postgres) = crate::directory::open(&cfg.store).await?;
    let key = cfg.litellm.api_key.resolve("litellm.api_key")?;
    let client = Client::with_observer(&cfg.litellm, key, false, Box::new(metrics.clone()))?;
    let (audit, key_sink) = outputs(&cfg)?;
    metrics.init_global();
    for s in &cfg.sources {
        metrics.init_source(&s.name);
    }
    let token = CancellationToken::new();
    crate::shutdown::on_signals(token.clone());

    let statuses: BTreeMap<String, Arc<SourceStatus>> =
        cfg.sources.iter().map(|s| (s.name.clone(), Arc::new(SourceStatus::default()))).collect();
    let health = Arc::new(DaemonHealth::new(cfg.server.clone(), store.clone(), statuses.clone()));
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.server.listen))?;
    let shown = match &cfg.store.postgres {
        Some(pg) => pg.url.clone(),
        None => cfg.store.path.display().to_string(),
    };
    tracing::info!(listen = %cfg.server.listen, store = %shown, "Serving /metrics, /healthz, /readyz");
    // Every replica serves SCIM, leader or not: writes are committed to the store, which the leader plans.
    let scim = Services::build(&cfg, store.clone(), &metrics)?;
    for s in scim.iter() {
        tracing::info!(source = %s.name(), path = %s.path(), "Serving SCIM");
        let s = s.clone();
        tokio::spawn(async move { s.preflight().await });
    }
    let http = {
        let t = token.clone();
        let app = crate::http::router(health.clone(), metrics.clone(), scim.router());
        tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(t.cancelled_owned()).await })
    };
    let probe = tokio::spawn(health.clone().probe_litellm(client.clone(), token.clone()));

    let lead =
        Leading { cfg: &cfg, store: store.clone(), client, metrics: metrics.clone(), statuses, audit, key_sink, scim };
    match postgres {
        // One replica: it leads as long as it runs.
        None => {
            metrics.leader.set(1);
            lead.run(token.clone(), None).await?
        }
        // Several: only the leader runs the schedules, the drift check and the applier; every replica serves.
        Some(pg) => {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
            let holder = format!("{host}:{}", std::process::id());
            let (ltx, lrx) = watch::channel(None);
            let campaign =
                tokio::spawn(crate::daemon::leader::campaign(pg.clone(), holder, metrics.clone(), token.clone(), ltx));
            loop {
                let mut wait = lrx.clone();
                tokio::select! {
                    _ = token.cancelled() => break,
                    r = wait.wait_for(|e| e.is_some()) => if r.is_err() { break },
                }
                let term = token.child_token();
                let watcher = {
                    let (mut rx, t) = (lrx.clone(), term.clone());
                    tokio::spawn(async move {
                        let _ = rx.wait_for(|e| e.is_none()).await;
                        t.cancel();
                    })
                };
                lead.run(term, Some(&pg)).await?;
                watcher.abort();
            }
            let _ = campaign.await;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = probe.await;
        let _ = http.await;
    })
    .await;
    store.close().await;
    tracing::info!("Stopped");
    Ok(())
}

/// What the leader runs: the sources, the reconciler actor and the drift check.
struct Leading<'a> {
    cfg: &'a Config,
    store: Arc<dyn Store>,
    client: Client,
    metrics: Metrics,
    statuses: BTreeMap<String, Arc<SourceStatus>>,
    audit: Option<Arc<AuditLog>>,
    key_sink: Option<Arc<KeySink>>,
    scim: Services,
}

impl Leading<'_> {
    /// Leads until `stop` (shutdown, or the leadership lost): what is in flight then stays in the outbox.
    async fn run(&self, stop: CancellationToken, postgres: Option<&Arc<PostgresStore>>) -> anyhow::Result<()> {
        let (cfg, store, metrics) = (self.cfg, &self.store, &self.metrics);
        let (tx, rx) = mpsc::channel::<Work>(CHANNEL_CAPACITY);
        // Work left by the previous process (or the previous leader) goes first.
        if store.outbox().await?.iter().any(|e| e.status == OutboxStatus::Pending) {
            tracing::info!("Resuming operations left in the outbox");
            tx.send(Work::Resume).await?;
        }

        // The sources run themselves; their deliveries reach the actor's queue.
        let (dtx, mut drx) = mpsc::channel::<Delivery>(CHANNEL_CAPACITY);
        let bridge = {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(d) = drx.recv().await {
                    if tx.send(Work::Event(Box::new(d))).await.is_err() {
                        return;
                    }
                }
            })
        };
        // SCIM writes committed by any replica reach the leader as notifications.
        let notifications =
            postgres.map(|pg| tokio::spawn(forward_notifications(pg.clone(), dtx.clone(), stop.clone())));
        let mut source_tasks = Vec::new();
        for s in &cfg.sources {
            let ctx = SourceContext {
                name: s.name.clone(),
                out: dtx.clone(),
                store: store.clone(),
                metrics: metrics.clone(),
                shutdown: stop.clone(),
                status: self.statuses.get(&s.name).cloned().unwrap_or_default(),
            };
            let source = Source::with_services(s, &self.scim);
            let schedule = s.schedule.clone();
            source_tasks.push(tokio::spawn(async move {
                if let Err(e) = source.run(ctx, schedule).await {
                    tracing::error!(error = %e, "Source stopped");
                }
            }));
        }
        drop(dtx);

        let reconciler = Reconciler::new(cfg.clone(), self.client.clone(), store.clone(), "daemon")
            .for_daemon(metrics.clone(), self.audit.clone(), stop.clone())
            .with_key_sink(self.key_sink.clone());
        let actor = Actor::new(reconciler, metrics.clone(), self.statuses.clone(), tx.clone(), stop.clone());
        let mut drift = None;
        if let Some(expr) = &cfg.drift.schedule {
            let sched = JobScheduler::new().await?;
            let (tx2, queued) = (tx.clone(), actor.drift_queued.clone());
            let job = Job::new_async(expr.as_str(), move |_, _| {
                let (tx, queued) = (tx2.clone(), queued.clone());
                Box::pin(async move {
                    // One queued drift check is enough; source events must not wait behind a row of them.
                    if queued.swap(true, Ordering::SeqCst) {
                        return;
                    }
                    if tx.try_send(Work::DriftCheck).is_err() {
                        queued.store(false, Ordering::SeqCst);
                        tracing::warn!("Drift check skipped: the reconciler is busy");
                    }
                })
            })
            .map_err(|e| anyhow::anyhow!("invalid drift.schedule {expr:?}: {e}"))?;
            sched.add(job).await?;
            sched.start().await?;
            drift = Some(sched);
        }
        drop(tx);

        // The actor runs on this task: the applier's futures borrow and need not be Send.
        let reconcile = actor.run(rx);
        let supervise = async {
            stop.cancelled().await;
            tracing::info!(
                grace_s = cfg.server.shutdown_grace.as_secs(),
                "Stopping: no new runs; finishing in-flight work"
            );
            if let Some(mut s) = drift.take() {
                let _ = s.shutdown().await;
            }
            for t in source_tasks {
                let _ = t.await;
            }
            if let Some(n) = notifications {
                let _ = n.await;
            }
            let _ = bridge.await;
        };
        let grace = async {
            stop.cancelled().await;
            tokio::time::sleep(cfg.server.shutdown_grace).await;
        };
        tokio::select! {
            _ = async { tokio::join!(reconcile, supervise) } => {}
            _ = grace => tracing::warn!("In-flight work did not finish within the shutdown grace period; it stays in the outbox"),
        }
        Ok(())
    }
}

/// Turns PostgreSQL notifications of committed SCIM writes (any replica's) into events for the actor.
async fn forward_notifications(pg: Arc<PostgresStore>, out: mpsc::Sender<Delivery>, stop: CancellationToken) {
    let mut listener = match sqlx::postgres::PgListener::connect_with(pg.pool()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "Cannot listen for other replicas' SCIM writes; they are planned at the next run");
            return;
        }
    };
    if let Err(e) = listener.listen(crate::directory::postgres::CHANGES_CHANNEL).await {
        tracing::error!(error = %e, "Cannot listen for other replicas' SCIM writes");
        return;
    }
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => return,
            n = listener.recv() => n,
        };
        match n {
            Ok(n) => {
                let (done, _) = tokio::sync::oneshot::channel();
                let event = crate::model::SourceEvent::Changed { source: n.payload().to_string(), users: Vec::new() };
                if out.send(Delivery { event, done }).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Lost the notification connection; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
