//! Logging set-up. Logs go to stderr so that stdout carries only command output (plans, JSON).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` wins over the configured level; `-v` raises it.
pub fn init(format: LogFormat, level: &str, verbose: u8) {
    let level = match verbose {
        0 => level.to_string(),
        1 => "debug".to_string(),
        _ => "trace".to_string(),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.with_target(false).try_init(),
    };
}

pub mod audit;
pub mod metrics;
