//! Readiness: the store answers, LiteLLM answers and the key may write (a proxy_admin_viewer's key reads
//! everything and fails every write), and no source has been failing for longer than `server.unready_after`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::directory::Store;
use crate::litellm::{Client, ErrorClass};
use crate::sources::SourceStatus;

pub struct DaemonHealth {
    pub server: ServerConfig,
    pub store: Arc<dyn Store>,
    pub sources: BTreeMap<String, Arc<SourceStatus>>,
    /// The last LiteLLM probe: when, and what it found.
    litellm: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl DaemonHealth {
    pub fn new(server: ServerConfig, store: Arc<dyn Store>, sources: BTreeMap<String, Arc<SourceStatus>>) -> Self {
        DaemonHealth { server, store, sources, litellm: Mutex::new(None) }
    }

    /// Probes LiteLLM every `probe_interval` until shutdown.
    pub async fn probe_litellm(self: Arc<Self>, client: Client, stop: CancellationToken) {
        loop {
            let r = match client.check_write_access().await {
                Ok(()) => Ok(()),
                Err(e) if e.class() == ErrorClass::Auth => Err(format!(
                    "{e} — the key must be the master key or a key of a proxy_admin user (a proxy_admin_viewer's \
                     key cannot write)"
                )),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = &r {
                tracing::warn!(error = %e, "LiteLLM probe failed");
            }
            *self.litellm.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), r));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.server.probe_interval) => {}
            }
        }
    }
}

#[async_trait::async_trait]
impl crate::http::Health for DaemonHealth {
    async fn failures(&self) -> Vec<String> {
        let mut failed = Vec::new();
        if let Err(e) = self.store.ping().await {
            failed.push(format!("store: {e}"));
        }
        match &*self.litellm.lock().unwrap_or_else(|p| p.into_inner()) {
            None => failed.push("litellm: not probed yet".to_string()),
            Some((_, Err(e))) => failed.push(format!("litellm: {e}")),
            Some((at, Ok(()))) if at.elapsed() > self.server.probe_interval * 4 => {
                failed.push(format!("litellm: last successful probe {}s ago", at.elapsed().as_secs()))
            }
            Some(_) => {}
        }
        for (name, st) in &self.sources {
            if let Some((since, why)) = &*st.failing_since.lock().unwrap_or_else(|p| p.into_inner()) {
                if since.elapsed() > self.server.unready_after {
                    failed.push(format!("source {name}: failing for {}s: {why}", since.elapsed().as_secs()));
                }
            }
        }
        failed
    }
}
