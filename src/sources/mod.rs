//! Source adapters: they translate the outside world into [`Snapshot`]s and `SourceEvent`s and never talk to
//! LiteLLM. A read either returns a complete snapshot or fails; there is no partial success, because only a
//! complete snapshot may lead to deprovisioning (entries a read saw but could not convert travel in the snapshot
//! as doubt).
//!
//! In the daemon each source runs itself with a [`SourceContext`] (its name, the channel to the reconciler, the
//! store, the metrics, the shutdown signal, its status for `/readyz`): a poller owns its schedule, a push source
//! its listener. Nothing here imports the daemon.

pub mod file;
pub mod ldap;
pub mod scim;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, Problem, SourceConfig, SourceKind};
use crate::directory::Store;
use crate::model::{Snapshot, SourceEvent};
use crate::telemetry::metrics::Metrics;

/// An event for the reconciler, acknowledged once it is handled (a poller's runs never overlap).
pub struct Delivery {
    pub event: SourceEvent,
    pub done: oneshot::Sender<()>,
}

/// How a source is doing, for `/readyz` and the overlap guard.
#[derive(Debug, Default)]
pub struct SourceStatus {
    pub running: AtomicBool,
    /// Since when the source's runs have been failing, and why (None: last run fine, or none yet).
    pub failing_since: Mutex<Option<(Instant, String)>>,
}

impl SourceStatus {
    pub fn result(&self, result: Result<(), String>) {
        let mut f = self.failing_since.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => *f = None,
            Err(e) => match &mut *f {
                Some((_, why)) => *why = e,
                None => *f = Some((Instant::now(), e)),
            },
        }
    }
}

/// Everything a running source gets, and all it may use.
#[derive(Clone)]
pub struct SourceContext {
    pub name: String,
    pub out: mpsc::Sender<Delivery>,
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    pub status: Arc<SourceStatus>,
}

impl SourceContext {
    /// Hands an event to the reconciler and waits until it is handled; false when the reconciler is gone.
    pub async fn send(&self, event: SourceEvent) -> bool {
        let (done, wait) = oneshot::channel();
        if self.out.send(Delivery { event, done }).await.is_err() {
            return false;
        }
        let _ = wait.await;
        true
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {source_name:?}: cannot read {path}: {message}")]
    Io { source_name: String, path: String, message: String },
    #[error("source {source_name:?}: {path} is not valid {format}: {message}")]
    Parse { source_name: String, path: String, format: &'static str, message: String },
    #[error("source {source_name:?} (LDAP): {message}")]
    Ldap { source_name: String, message: String },
    #[error("source {source_name:?}: cannot schedule its runs: {message}")]
    Schedule { source_name: String, message: String },
    #[error(
        "source {source_name:?} is a SCIM source: the IdP pushes its users to the daemon at {path}, and its view \
             is in the daemon's store; configure that store ([store]) to plan it here, or leave the source out \
             with --source"
    )]
    Push { source_name: String, path: String },
    #[error("source {source_name:?}: {path} has {} problem(s):\n{}", .problems.len(),
        .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { source_name: String, path: String, problems: Vec<Problem> },
}

impl SourceError {
    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SourceError::Io { .. } => "io",
            SourceError::Parse { .. } => "parse",
            SourceError::Ldap { .. } => "ldap",
            SourceError::Schedule { .. } => "schedule",
            SourceError::Invalid { .. } => "invalid",
            SourceError::Push { .. } => "push",
        }
    }

    pub fn source_name(&self) -> &str {
        match self {
            SourceError::Io { source_name, .. }
            | SourceError::Parse { source_name, .. }
            | SourceError::Ldap { source_name, .. }
            | SourceError::Schedule { source_name, .. }
            | SourceError::Push { source_name, .. }
            | SourceError::Invalid { source_name, .. } => source_name,
        }
    }
}

/// A configured source, ready to read.
pub enum Source {
    File(file::FileSource),
    Ldap(Box<ldap::LdapSource>),
    /// A push source: its service (served by the HTTP server) when the daemon runs it.
    Scim {
        name: String,
        path: String,
        attributes: scim::mapping::ScimAttrMap,
        /// Its authentication (`check-config` fetches the OIDC issuer's keys).
        auth: Box<crate::config::scim::AuthSettings>,
        service: Option<Arc<scim::service::Service>>,
    },
}

impl Source {
    pub fn new(cfg: &SourceConfig) -> Source {
        match &cfg.kind {
            SourceKind::File(f) => Source::File(file::FileSource::new(&cfg.name, f)),
            SourceKind::Ldap(l) => Source::Ldap(Box::new(ldap::LdapSource::new(&cfg.name, l))),
            SourceKind::Scim(s) => Source::Scim {
                name: cfg.name.clone(),
                path: s.path.clone(),
                attributes: s.attributes.clone(),
                auth: Box::new(s.auth.clone()),
                service: None,
            },
        }
    }

    /// The source `cfg`, with the daemon's SCIM services (a SCIM source then tells the reconciler of their writes).
    pub fn with_services(cfg: &SourceConfig, services: &scim::service::Services) -> Source {
        match Source::new(cfg) {
            Source::Scim { name, path, attributes, auth, .. } => {
                let service = services.get(&name);
                Source::Scim { name, path, attributes, auth, service }
            }
            other => other,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Source::File(f) => f.name(),
            Source::Ldap(l) => l.name(),
            Source::Scim { name, .. } => name,
        }
    }

    /// Reads the complete current view of the source.
    pub async fn snapshot(&self) -> Result<Snapshot, SourceError> {
        match self {
            Source::File(f) => f.snapshot().await,
            Source::Ldap(l) => l.snapshot().await,
            Source::Scim { name, path, .. } => Err(SourceError::Push { source_name: name.clone(), path: path.clone() }),
        }
    }

    /// Runs a polling source in the daemon: a full read at start-up and on every tick of `schedule`; a tick that
    /// comes while a read is going is skipped and counted. Returns on shutdown.
    pub async fn run(self, ctx: SourceContext, schedule: Option<String>) -> Result<(), SourceError> {
        if let Source::Scim { service, .. } = self {
            match service {
                Some(s) => s.run(ctx).await,
                None => ctx.shutdown.cancelled().await,
            }
            return Ok(());
        }
        let (tick_tx, mut ticks) = mpsc::channel::<()>(1);
        let _ = tick_tx.try_send(());
        let mut scheduler = None;
        if let Some(expr) = schedule {
            let err = |e: tokio_cron_scheduler::JobSchedulerError| SourceError::Schedule {
                source_name: ctx.name.clone(),
                message: e.to_string(),
            };
            let sched = JobScheduler::new().await.map_err(err)?;
            let (status, metrics, name) = (ctx.status.clone(), ctx.metrics.clone(), ctx.name.clone());
            let job = Job::new_async(expr.as_str(), move |_, _| {
                let (status, metrics, name, tick) = (status.clone(), metrics.clone(), name.clone(), tick_tx.clone());
                Box::pin(async move {
                    if status.running.load(Ordering::SeqCst) || tick.try_send(()).is_err() {
                        tracing::warn!(source = %name, "Scheduled run skipped: the previous run is still going");
                        metrics.runs_skipped.with_label_values(&[&name]).inc();
                    }
                })
            })
            .map_err(err)?;
            sched.add(job).await.map_err(err)?;
            sched.start().await.map_err(err)?;
            scheduler = Some(sched);
        }
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                t = ticks.recv() => if t.is_none() { break },
            }
            ctx.status.running.store(true, Ordering::SeqCst);
            let started = Instant::now();
            let read = tokio::select! {
                _ = ctx.shutdown.cancelled() => { ctx.status.running.store(false, Ordering::SeqCst); break }
                r = self.snapshot().instrument(tracing::info_span!("read", source = %ctx.name)) => r,
            };
            let name = ctx.name.as_str();
            match read {
                Ok(snap) => {
                    ctx.metrics.events_received.with_label_values(&[name, "snapshot"]).inc();
                    ctx.metrics.source_users.with_label_values(&[name]).set(snap.users.len() as i64);
                    ctx.metrics.entries_skipped.with_label_values(&[name]).inc_by(snap.unreadable.len() as u64);
                    ctx.metrics
                        .source_read_duration
                        .with_label_values(&[name])
                        .observe(started.elapsed().as_secs_f64());
                    if !ctx.send(SourceEvent::Snapshot(snap)).await {
                        ctx.status.running.store(false, Ordering::SeqCst);
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(source = %name, error = %e, "Source read failed; nothing of it is deprovisioned");
                    ctx.metrics.runs.with_label_values(&[name, "failed"]).inc();
                    ctx.metrics.errors.with_label_values(&["source"]).inc();
                    ctx.status.result(Err(e.to_string()));
                }
            }
            ctx.metrics.run_duration.with_label_values(&[name]).observe(started.elapsed().as_secs_f64());
            ctx.status.running.store(false, Ordering::SeqCst);
        }
        if let Some(mut s) = scheduler {
            let _ = s.shutdown().await;
        }
        Ok(())
    }

    /// `check-config`: a short description of what the source can see, or why it cannot.
    pub async fn check(&self) -> Result<String, SourceError> {
        match self {
            Source::Ldap(l) => l.check().await,
            Source::Scim { name, path, attributes, auth, .. } => {
                let mut problems = scim::mapping::check_map("attributes", attributes);
                let authenticator = scim::auth::Authenticator::new(auth).map_err(|e| SourceError::Invalid {
                    source_name: name.clone(),
                    path: "the configuration".into(),
                    problems: vec![crate::config::Problem { path: "auth".into(), message: e.to_string() }],
                })?;
                let found = authenticator.check().await;
                if let Err(e) = &found {
                    problems.push(crate::config::Problem { path: "auth.oidc".into(), message: e.clone() });
                }
                if !problems.is_empty() {
                    return Err(SourceError::Invalid {
                        source_name: name.clone(),
                        path: "the configuration".into(),
                        problems,
                    });
                }
                Ok(format!(
                    "SCIM service provider at {path} (the IdP pushes to it); auth: {}",
                    found.unwrap_or_default()
                ))
            }
            Source::File(f) => {
                let s = f.snapshot().await?;
                Ok(format!("{} users, {} groups", s.users.len(), s.groups.len()))
            }
        }
    }
}

/// Reads the named sources concurrently: the snapshots that came back and the reads that failed.
pub async fn read_all(cfg: &Config, names: &[String]) -> (Vec<Snapshot>, Vec<SourceError>) {
    let selected: Vec<Source> = cfg.sources.iter().filter(|s| names.contains(&s.name)).map(Source::new).collect();
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
    (snaps, fails)
}
