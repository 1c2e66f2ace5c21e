//! `[litellm]`: where the proxy is, the admin key it is called with, and how hard it may be pushed.
//!
//! Only this section's keys and rules live here. The key is taken as given (`api_key`) or as a path
//! (`api_key_file`); the file is read by the load step, never here.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::ctx::{Ctx, Known};
use crate::config::LiteLlmConfig;

#[derive(Deserialize)]
struct RawLiteLlm {
    url: Option<String>,
    api_key: Option<Value>,
    api_key_file: Option<PathBuf>,
    timeout: Option<String>,
    concurrency: Option<usize>,
    max_retries: Option<u32>,
    initial_backoff: Option<String>,
    max_backoff: Option<String>,
    bulk: Option<bool>,
}

pub(super) fn section(cx: &mut Ctx, v: Value) -> Option<LiteLlmConfig> {
    let raw: RawLiteLlm = cx.de("litellm", v, &Known::of::<RawLiteLlm>())?;
    let url = match raw.url.as_deref() {
        None => {
            cx.problem("litellm.url", "required (e.g. http://litellm:4000, or LITELLM_SYNC__LITELLM__URL)");
            None
        }
        Some(s) => match url::Url::parse(s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => {
                cx.problem("litellm.url", format!("{s:?} is not an http(s) URL"));
                None
            }
            Err(e) => {
                cx.problem("litellm.url", format!("{s:?} is not a valid URL: {e}"));
                None
            }
        },
    };
    let api_key = cx.secret(
        "litellm",
        "api_key",
        raw.api_key,
        raw.api_key_file,
        "required: set LITELLM_SYNC__LITELLM__API_KEY or litellm.api_key_file (a master key or a proxy_admin \
         user's key)",
    );
    let timeout = cx.duration("litellm.timeout", raw.timeout.as_deref(), Duration::from_secs(30));
    let initial_backoff =
        cx.duration("litellm.initial_backoff", raw.initial_backoff.as_deref(), Duration::from_millis(500));
    let max_backoff = cx.duration("litellm.max_backoff", raw.max_backoff.as_deref(), Duration::from_secs(30));
    if initial_backoff > max_backoff {
        cx.problem("litellm.initial_backoff", "must not be larger than litellm.max_backoff");
    }
    let concurrency = raw.concurrency.unwrap_or(4);
    if !(1..=64).contains(&concurrency) {
        cx.problem("litellm.concurrency", format!("{concurrency} is out of range 1..=64"));
    }
    let max_retries = raw.max_retries.unwrap_or(5);
    if max_retries > 100 {
        cx.problem("litellm.max_retries", format!("{max_retries} is out of range 0..=100"));
    }
    Some(LiteLlmConfig {
        url: url?,
        api_key: api_key?,
        timeout,
        concurrency,
        max_retries,
        initial_backoff,
        max_backoff,
        bulk: raw.bulk.unwrap_or(true),
    })
}
