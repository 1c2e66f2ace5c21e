//! The daemon's HTTP server: `/metrics` (Prometheus text), `/healthz` (process alive), `/readyz` (named failed
//! checks), and a push source's router nested under its path (SCIM). It knows the daemon only through the
//! [`Health`] trait, and owns no state of its own.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::telemetry::metrics::Metrics;

/// What `/readyz` asks.
#[async_trait::async_trait]
pub trait Health: Send + Sync {
    /// The failed readiness checks, each named ("store: …", "litellm: …"); empty when ready.
    async fn failures(&self) -> Vec<String>;
}

#[derive(Clone)]
struct Web {
    health: Arc<dyn Health>,
    metrics: Metrics,
}

/// The whole router; `extra` holds routers already nested at their paths (a SCIM source's).
pub fn router(health: Arc<dyn Health>, metrics: Metrics, extra: Option<Router>) -> Router {
    let base = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Web { health, metrics });
    match extra {
        Some(r) => base.merge(r),
        None => base,
    }
}

async fn metrics_text(State(w): State<Web>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], w.metrics.render())
}

async fn readyz(State(w): State<Web>) -> impl IntoResponse {
    let failed = w.health.failures().await;
    if failed.is_empty() {
        (StatusCode::OK, Json(json!({"ready": true})))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false, "failed": failed})))
    }
}
