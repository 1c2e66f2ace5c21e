//! The SCIM 2.0 service provider over HTTP: one [`Service`] per `type = "scim"` source, its axum router
//! ([`Service::router`], nested at the source's path), and the loop that tells the reconciler what changed
//! ([`Service::run`]).
//!
//! Handlers stay thin: read the request, call the pure core (`resource`, `patch`, `filter`, `mapping`), read or
//! write the store, map the error through the one table (`error`). Every write is committed to the store, with
//! the directory's rows the reconciler reads, before the 2xx; then the touched users are marked and the source's
//! loop wakes. Every replica serves this router: on a follower nobody runs the loop, and the leader learns of the
//! write from the store (PostgreSQL notifies it); a replica that becomes leader plans the stored view once.
//!
//! Nothing here talks to LiteLLM or imports the daemon.

mod handlers;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use tokio::sync::Notify;

use super::auth::{AuthSettings, Authenticator, Reason};
use super::discovery::{AuthScheme, ServiceProviderOptions};
use super::error::ScimError;
use super::mapping::ScimAttrMap;
use crate::config::{Config, ScimSourceConfig, SourceKind};
use crate::directory::{ScimKind, Store};
use crate::model::SourceEvent;
use crate::sources::{SourceContext, SourceError};
use crate::telemetry::metrics::{status_class, Metrics};

/// Touched users kept for one event; beyond it the event names none (the reconciler plans the whole view anyway).
const MAX_PENDING: usize = 10_000;
/// Stripes of the per-resource write locks.
const WRITE_LOCKS: usize = 64;
/// At most one log line per source about refused authentication in this interval.
const AUTH_LOG_EVERY: Duration = Duration::from_secs(10);

/// What a handler needs to know about its source, beyond the store.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    /// Mount path (`/scim/v2`).
    pub path: String,
    /// SCIM base URL for `meta.location` and `$ref`, without a trailing slash.
    pub base_url: String,
    pub attributes: ScimAttrMap,
    pub max_body_bytes: usize,
    pub max_results: usize,
}

impl Settings {
    /// The settings of SCIM source `name`; `listen` is the daemon's address, for the default base URL.
    pub fn from_config(name: &str, c: &ScimSourceConfig, listen: std::net::SocketAddr) -> Settings {
        Settings {
            name: name.to_string(),
            path: c.path.clone(),
            base_url: c.public_url.clone().unwrap_or_else(|| format!("http://{listen}{}", c.path)),
            attributes: c.attributes.clone(),
            max_body_bytes: c.max_body_bytes,
            max_results: c.max_results,
        }
    }
}

/// Users touched by writes the reconciler has not been told about yet.
#[derive(Default)]
struct Pending {
    users: BTreeSet<String>,
    /// When the oldest of those writes was committed (for the push delay).
    since: Option<Instant>,
}

/// One SCIM source's service provider.
pub struct Service {
    settings: Settings,
    store: Arc<dyn Store>,
    auth: Authenticator,
    metrics: Metrics,
    spc_auth: Vec<AuthScheme>,
    pending: Mutex<Pending>,
    wake: Notify,
    last_auth_log: Mutex<Option<Instant>>,
    auth_suppressed: AtomicU64,
    /// One read-modify-write at a time per resource in this process (striped by id): concurrent PATCHes of one
    /// group (Entra sends them) queue instead of racing; writes of different resources proceed together and are
    /// committed in groups by the store. A race with another replica is read again (`handlers::lost_race`).
    locks: Vec<tokio::sync::Mutex<()>>,
}

impl Service {
    pub fn new(
        settings: Settings,
        auth: &AuthSettings,
        store: Arc<dyn Store>,
        metrics: Metrics,
    ) -> Result<Service, super::auth::BuildError> {
        let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        metrics.init_scim_source(&settings.name, &reasons);
        Ok(Service {
            auth: Authenticator::new(auth)?,
            spc_auth: vec![AuthScheme::bearer_token(true)],
            settings,
            store,
            metrics,
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            last_auth_log: Mutex::new(None),
            auth_suppressed: AtomicU64::new(0),
            locks: (0..WRITE_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
        })
    }

    /// The lock of resource `id` for a read-modify-write.
    async fn lock(&self, kind: ScimKind, id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (kind as u8, id).hash(&mut h);
        self.locks[(h.finish() % self.locks.len() as u64) as usize].lock().await
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn path(&self) -> &str {
        &self.settings.path
    }

    fn provider_options(&self) -> ServiceProviderOptions {
        ServiceProviderOptions {
            base_url: self.settings.base_url.clone(),
            max_results: self.settings.max_results,
            authentication_schemes: self.spc_auth.clone(),
            documentation_uri: None,
        }
    }

    /// The router with every SCIM endpoint, nested at the source's path, behind authentication.
    pub fn router(self: &Arc<Self>) -> Router {
        let inner = handlers::routes()
            .route("/Bulk", any(|| async { ScimError::not_implemented("bulk") }))
            .route("/Me", any(|| async { ScimError::not_implemented("/Me") }))
            .fallback(|req: Request| async move { ScimError::no_endpoint(req.uri().path()) })
            .method_not_allowed_fallback(|req: Request| async move {
                ScimError::method_not_allowed(req.method().as_str(), req.uri().path())
            })
            .layer(middleware::from_fn_with_state(self.clone(), guard))
            // Bodies are read with this source's own limit and answered with a SCIM 413.
            .layer(DefaultBodyLimit::disable())
            .with_state(self.clone());
        Router::new().nest(&self.settings.path, inner)
    }

    /// Loads the OIDC issuer's keys now, so that a wrong issuer shows at start-up (it is retried on use).
    pub async fn preflight(&self) {
        if !self.auth.preflight().await {
            tracing::warn!(
                source = %self.settings.name,
                "Cannot load the OIDC issuer's signing keys now; SCIM JWTs are refused until they can be fetched"
            );
        }
    }

    /// Marks users touched by a committed write and wakes the source's loop.
    fn touched(&self, users: impl IntoIterator<Item = String>) {
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for u in users {
                if p.users.len() >= MAX_PENDING {
                    break;
                }
                p.users.insert(u);
            }
            p.since.get_or_insert_with(Instant::now);
        }
        self.wake.notify_one();
    }

    /// The leader's side: tells the reconciler about committed writes, coalesced, until shutdown. The first
    /// event goes out at once, so writes committed while no replica led (or before a crash) are planned too.
    pub async fn run(self: Arc<Self>, ctx: SourceContext) {
        let mut first = true;
        loop {
            if !first {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = self.wake.notified() => {}
                }
            }
            first = false;
            let (users, since) = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let p = std::mem::take(&mut *p);
                (p.users.into_iter().collect::<Vec<_>>(), p.since)
            };
            ctx.metrics.events_received.with_label_values(&[&ctx.name, "changed"]).inc();
            if !ctx.send(SourceEvent::Changed { source: ctx.name.clone(), users }).await {
                break;
            }
            if let Some(t) = since {
                ctx.metrics.scim_push_delay.with_label_values(&[&ctx.name]).observe(t.elapsed().as_secs_f64());
            }
        }
    }

    /// A refused request: counted, and logged at most once per interval (never with the token).
    fn auth_failed(&self, f: &super::auth::AuthFailure) {
        let name = &self.settings.name;
        self.metrics.scim_auth_failures.with_label_values(&[name, f.method.as_str(), f.reason.as_str()]).inc();
        let mut last = self.last_auth_log.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < AUTH_LOG_EVERY) {
            self.auth_suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(Instant::now());
        let suppressed = self.auth_suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            source = %name,
            method = f.method.as_str(),
            reason = f.reason.as_str(),
            suppressed,
            "SCIM request refused: authentication failed"
        );
    }
}

/// Every SCIM source's service, built once by the daemon and served by every replica.
#[derive(Clone, Default)]
pub struct Services(Vec<Arc<Service>>);

impl Services {
    /// Builds every SCIM source's service; an attribute map that names no SCIM attribute fails here, at start-up.
    pub fn build(cfg: &Config, store: Arc<dyn Store>, metrics: &Metrics) -> Result<Services, SourceError> {
        let mut out = Vec::new();
        for (i, s) in cfg.sources.iter().enumerate() {
            if let SourceKind::Scim(c) = &s.kind {
                let problems = super::mapping::check_map(&format!("sources[{i}].attributes"), &c.attributes);
                if !problems.is_empty() {
                    return Err(SourceError::Invalid {
                        source_name: s.name.clone(),
                        path: "the configuration".into(),
                        problems,
                    });
                }
                let settings = Settings::from_config(&s.name, c, cfg.server.listen);
                let svc = Service::new(settings, &c.auth, store.clone(), metrics.clone()).map_err(|e| {
                    SourceError::Io { source_name: s.name.clone(), path: c.path.clone(), message: e.to_string() }
                })?;
                out.push(Arc::new(svc));
            }
        }
        Ok(Services(out))
    }

    /// Every service's router, merged; `None` when there is no SCIM source.
    pub fn router(&self) -> Option<Router> {
        self.0.iter().map(|s| s.router()).reduce(Router::merge)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Service>> {
        self.0.iter().find(|s| s.name() == name).cloned()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.0.iter()
    }
}

/// A bounded label for the resource a request is for.
fn resource_label(rest: &str) -> &'static str {
    let first = rest.trim_start_matches('/').split('/').next().unwrap_or("");
    match first {
        "Users" => "Users",
        "Groups" => "Groups",
        "ServiceProviderConfig" | "ResourceTypes" | "Schemas" => "discovery",
        _ => "other",
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// Authentication, the content type and the declared body size, and the request metrics, for every endpoint.
async fn guard(State(svc): State<Arc<Service>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let resource = resource_label(req.uri().path());
    let method = method_label(req.method());
    let resp = match admit(&svc, resource, req.method(), req.headers()).await {
        Ok(()) => next.run(req).await,
        Err(r) => r,
    };
    let name = svc.settings.name.as_str();
    let class = status_class(Some(resp.status().as_u16()));
    svc.metrics.scim_requests.with_label_values(&[name, resource, method, class]).inc();
    svc.metrics
        .scim_request_duration
        .with_label_values(&[name, resource, method])
        .observe(started.elapsed().as_secs_f64());
    resp
}

async fn admit(
    svc: &Service,
    resource: &str,
    method: &Method,
    headers: &axum::http::HeaderMap,
) -> Result<(), Response> {
    let header_text = headers.get(header::AUTHORIZATION).map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
    if let Err(f) = svc.auth.authenticate(header_text.as_deref()).await {
        svc.auth_failed(&f);
        let mut e = ScimError::unauthorized();
        e.status = f.status().as_u16();
        if e.status != 401 {
            e.detail = format!("Authorization failure: {}", f.reason.as_str().replace('_', " "));
        }
        let mut resp = e.into_response();
        if let Ok(v) = HeaderValue::from_str(&f.www_authenticate()) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        return Err(resp);
    }
    // Bodies go only to Users and Groups; a write to another endpoint is answered 405 by the router.
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH) && matches!(resource, "Users" | "Groups") {
        let ct = headers.get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if !ct.as_deref().is_some_and(acceptable_content_type) {
            return Err(ScimError::unsupported_media_type(ct.as_deref().unwrap_or("(none)")).into_response());
        }
    }
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > svc.settings.max_body_bytes as u64) {
        return Err(ScimError::payload_too_large(svc.settings.max_body_bytes).into_response());
    }
    Ok(())
}

/// `application/scim+json` (RFC 7644 §3.1) or `application/json`, with any parameters (`charset=utf-8`).
fn acceptable_content_type(ct: &str) -> bool {
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/scim+json") || essence.eq_ignore_ascii_case("application/json")
}

/// Reads a request body up to the source's limit: 413 beyond it.
async fn read_body(svc: &Service, body: Body) -> Result<axum::body::Bytes, ScimError> {
    axum::body::to_bytes(body, svc.settings.max_body_bytes)
        .await
        .map_err(|_| ScimError::payload_too_large(svc.settings.max_body_bytes))
}
