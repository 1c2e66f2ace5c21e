//! The daemon's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (process alive), `/readyz` (LiteLLM
//! reachable and authorised, no source failing for too long; names the failed check).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::Shared;

pub fn router(state: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render())
}

async fn readyz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let failed = s.readiness_failures().await;
    if failed.is_empty() {
        (StatusCode::OK, Json(json!({"ready": true})))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false, "failed": failed})))
    }
}
