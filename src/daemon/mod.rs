//! The daemon's core: the [`reconciler`] (one run: plan against the store's ledger, apply through the outbox —
//! also what `sync` runs), the [`actor`] that feeds it the sources' events one at a time, and [`health`] for
//! `/readyz`. Wiring (building the store, the sources, the HTTP server) is `app.rs`'s; reading sources is the
//! sources' own business; nothing here knows HTTP.

pub mod actor;
pub mod health;
pub mod leader;
mod outbox;
pub mod quiet;
pub mod reconciler;

use crate::directory::StoreError;
use crate::litellm::ApiError;
use crate::reconcile::pass::PassError;

pub use reconciler::{Basis, Counts, Reconciler, RunReport, RunRequest};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    LiteLlm(#[from] ApiError),
    #[error(transparent)]
    Pass(#[from] PassError),
    #[error(
        "the store is in use by {holder} (a daemon, or another sync): wait for its run to end, or use \
         `litellm-sync approve` to release held deletions to a running daemon"
    )]
    Busy { holder: String },
}

impl DaemonError {
    /// A short, bounded label for `litellm_sync_errors_total{kind}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            DaemonError::Store(_) | DaemonError::Busy { .. } => "store",
            DaemonError::LiteLlm(_) => "litellm",
            DaemonError::Pass(PassError::LiteLlm(_)) => "litellm",
            DaemonError::Pass(PassError::UnknownSource(_)) => "config",
        }
    }
}
