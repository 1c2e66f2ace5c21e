//! The process's own sections: `[store]`, `[server]`, `[log]`, `[drift]` and `[keys]`.
//!
//! Only their keys, defaults and forms live here. Whether a path is writable or a port free is found out when
//! the daemon opens them (or by `check-config`), never during validation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::checks::check_cron;
use super::ctx::{Ctx, Known};
use crate::config::{DriftConfig, KeysConfig, LogConfig, LogFormat, PostgresConfig, ServerConfig, StoreConfig};

#[derive(Deserialize)]
struct RawStore {
    path: Option<PathBuf>,
    url: Option<String>,
    password: Option<Value>,
    password_file: Option<PathBuf>,
}

/// Where the daemon keeps its store when `store.path` is not given (the container's volume).
const DEFAULT_STORE: &str = "/var/lib/litellm-sync/state.db";

pub(super) fn store(cx: &mut Ctx, v: Value) -> StoreConfig {
    let raw: Option<RawStore> = cx.de("store", v, &Known::of::<RawStore>());
    let Some(raw) = raw else {
        return StoreConfig { path: PathBuf::from(DEFAULT_STORE), configured: false, postgres: None };
    };
    // An absent `[store]` reaches here as an empty table: only a path or a URL makes the store "configured".
    let configured = raw.path.is_some() || raw.url.is_some();
    let postgres = match raw.url {
        None => {
            if raw.password.is_some() || raw.password_file.is_some() {
                cx.problem("store.password", "only for a PostgreSQL store (store.url)");
            }
            None
        }
        Some(url) => {
            if raw.path.is_some() {
                cx.problem(
                    "store.url",
                    "set either store.path (SQLite) or store.url (PostgreSQL), not both: a SQLite store is not \
                     carried over into PostgreSQL, so the PostgreSQL store would start empty and list LiteLLM again",
                );
            }
            match url::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {
                    if u.password().is_some() {
                        cx.problem(
                            "store.url",
                            "holds a password: give it as store.password (from LITELLM_SYNC__STORE__PASSWORD) or \
                             store.password_file instead, so the URL can be logged",
                        );
                    }
                }
                _ => cx.problem("store.url", format!("{url:?} is not a postgres:// URL")),
            }
            let password = if raw.password.is_some() || raw.password_file.is_some() {
                cx.secret("store", "password", raw.password, raw.password_file, "")
            } else {
                None
            };
            Some(PostgresConfig { url, password })
        }
    };
    StoreConfig { configured, path: raw.path.unwrap_or_else(|| PathBuf::from(DEFAULT_STORE)), postgres }
}

#[derive(Deserialize)]
struct RawKeys {
    path: Option<PathBuf>,
}

/// `[keys]`, if the section is there at all.
pub(super) fn keys(cx: &mut Ctx, v: Option<Value>) -> Option<KeysConfig> {
    let raw: RawKeys = cx.de("keys", v?, &Known::of::<RawKeys>())?;
    match raw.path {
        Some(p) if !p.as_os_str().is_empty() => Some(KeysConfig { path: p }),
        _ => {
            cx.problem("keys.path", "required: the JSON-lines file minted keys are delivered to");
            None
        }
    }
}

#[derive(Deserialize, Default)]
struct RawServer {
    listen: Option<String>,
    shutdown_grace: Option<String>,
    unready_after: Option<String>,
    probe_interval: Option<String>,
}

pub(super) fn server(cx: &mut Ctx, v: Value) -> ServerConfig {
    let default: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 8080));
    let raw: RawServer = cx.de("server", v, &Known::of::<RawServer>()).unwrap_or_default();
    let shutdown_grace = cx.duration("server.shutdown_grace", raw.shutdown_grace.as_deref(), Duration::from_secs(30));
    let unready_after = cx.duration("server.unready_after", raw.unready_after.as_deref(), Duration::from_secs(900));
    let probe_interval = cx.duration("server.probe_interval", raw.probe_interval.as_deref(), Duration::from_secs(15));
    let listen = match raw.listen {
        None => default,
        Some(s) => s.parse().unwrap_or_else(|e| {
            cx.problem("server.listen", format!("{s:?} is not an address:port ({e})"));
            default
        }),
    };
    ServerConfig { listen, shutdown_grace, unready_after, probe_interval }
}

#[derive(Deserialize, Default)]
struct RawDrift {
    schedule: Option<String>,
    enabled: Option<bool>,
}

pub(super) fn drift(cx: &mut Ctx, v: Value) -> DriftConfig {
    let raw: RawDrift = cx.de("drift", v, &Known::of::<RawDrift>()).unwrap_or_default();
    let schedule = raw.schedule.unwrap_or_else(|| "0 7 * * * *".to_string());
    if let Err(e) = check_cron(&schedule) {
        cx.problem("drift.schedule", e);
    }
    DriftConfig { schedule: raw.enabled.unwrap_or(true).then_some(schedule) }
}

#[derive(Deserialize)]
struct RawLog {
    #[serde(default)]
    format: LogFormat,
    level: Option<String>,
    audit_path: Option<PathBuf>,
}

pub(super) fn log(cx: &mut Ctx, v: Value) -> LogConfig {
    let raw: Option<RawLog> = cx.de("log", v, &Known::of::<RawLog>());
    let raw = raw.unwrap_or(RawLog { format: LogFormat::Pretty, level: None, audit_path: None });
    let level = raw.level.unwrap_or_else(|| "info".to_string());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        cx.problem("log.level", format!("{level:?} is not a log filter (e.g. info, debug, litellm_sync=debug)"));
    }
    LogConfig { format: raw.format, level, audit_path: raw.audit_path }
}
