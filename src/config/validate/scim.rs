//! `type = "scim"` sources: where the SCIM service provider is mounted (`path`, `public_url`), how clients
//! authenticate (`[sources.auth]`, checked by `config::scim`), which SCIM attributes carry what
//! (`[sources.attributes]`), and the request limits.
//!
//! Only the SCIM source's own keys live here; the keys every source has are `sources.rs`'s, and the checks across
//! SCIM sources (one source per path) are made there too. Nothing here listens or fetches an issuer.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ctx::{Ctx, Known};
use super::sources::SOURCE_COMMON;
use super::suggest::did_you_mean;
use crate::config::ldap::OVERRIDE_FIELDS;
use crate::config::scim::ScimAttrMap;
use crate::config::ScimSourceConfig;

/// Where a SCIM source is mounted unless told otherwise.
pub const DEFAULT_PATH: &str = "/scim/v2";
/// The daemon's own endpoints, which no SCIM path may cover.
const RESERVED: &[&str] = &["/metrics", "/healthz", "/readyz"];
const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
/// Okta's whole-list `replace members` of a large group is one body; beyond this, split the group.
const MAX_MAX_BODY: u64 = 64 * 1024 * 1024;
const DEFAULT_MAX_RESULTS: u64 = 1000;
const MAX_MAX_RESULTS: u64 = 10_000;

#[derive(Deserialize)]
struct RawScim {
    path: Option<String>,
    public_url: Option<String>,
    /// Taken out and read by the auth module; listed here so that a misspelt key can be told `auth`.
    #[allow(dead_code)]
    auth: Option<Value>,
    #[serde(default)]
    attributes: RawAttrs,
    max_body_bytes: Option<u64>,
    max_results: Option<u64>,
}

#[derive(Deserialize, Default)]
struct RawAttrs {
    user_name: Option<String>,
    email: Option<String>,
    display_name: Option<String>,
    #[serde(default)]
    overrides: BTreeMap<String, String>,
}

/// The SCIM-specific keys of the source at `path` (`rest`: all but the common ones).
pub(super) fn source(cx: &mut Ctx, path: &str, rest: Map<String, Value>) -> Option<ScimSourceConfig> {
    let mut rest = rest;
    // `auth` is checked by the auth module, with its own unknown-key report.
    let auth_raw = rest.remove("auth");
    let known = Known::of::<RawScim>().table("", SOURCE_COMMON).nested::<RawAttrs>("attributes");
    let raw: RawScim = cx.de(path, Value::Object(rest), &known)?;
    let mount = raw.path.unwrap_or_else(|| DEFAULT_PATH.to_string());
    if let Err(e) = check_mount(&mount) {
        cx.problem(format!("{path}.path"), e);
    }
    let public_url = match raw.public_url {
        None => None,
        Some(u) => match url::Url::parse(&u) {
            Ok(p) if matches!(p.scheme(), "http" | "https") && p.query().is_none() && p.fragment().is_none() => {
                Some(u.trim_end_matches('/').to_string())
            }
            Ok(_) => {
                cx.problem(format!("{path}.public_url"), format!("{u:?}: use an http(s) URL without query"));
                None
            }
            Err(e) => {
                cx.problem(format!("{path}.public_url"), format!("{u:?} is not a URL: {e}"));
                None
            }
        },
    };
    let auth = match auth_raw {
        None => {
            cx.problem(
                format!("{path}.auth"),
                "required: [sources.auth] with tokens = [\"sha256:…\"] (from `litellm-sync hash-token`) and/or \
                 [sources.auth.oidc]",
            );
            None
        }
        Some(v) => match crate::config::scim::validate_value(&format!("{path}.auth"), &v) {
            Ok(a) => Some(a),
            Err(problems) => {
                for p in problems {
                    cx.problem(p.path, p.message);
                }
                None
            }
        },
    };
    let a = raw.attributes;
    let defaults = ScimAttrMap::default();
    let mut attr = |key: &str, v: Option<String>, default: &str| -> String {
        match v {
            Some(v) if v.trim().is_empty() => {
                cx.problem(format!("{path}.attributes.{key}"), "must not be empty");
                v
            }
            Some(v) => v,
            None => default.to_string(),
        }
    };
    let user_name = attr("user_name", a.user_name, &defaults.user_name);
    let email = attr("email", a.email, &defaults.email);
    let display_name = attr("display_name", a.display_name, &defaults.display_name);
    // The paths themselves are checked against the SCIM schema when the source is built (the schema is the
    // source's): `sources::scim::mapping::check_map`.
    for field in a.overrides.keys() {
        let key = format!("{path}.attributes.overrides.{field}");
        if !OVERRIDE_FIELDS.contains(&field.as_str()) {
            let hint = match did_you_mean(field, OVERRIDE_FIELDS.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? Use one of"),
                None => "use one of".to_string(),
            };
            cx.problem(key, format!("not an override field; {hint} {}", OVERRIDE_FIELDS.join(", ")));
        }
    }
    let max_body = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if !(1024..=MAX_MAX_BODY).contains(&max_body) {
        cx.problem(format!("{path}.max_body_bytes"), format!("{max_body} is out of range 1024..={MAX_MAX_BODY}"));
    }
    let max_results = raw.max_results.unwrap_or(DEFAULT_MAX_RESULTS);
    if !(1..=MAX_MAX_RESULTS).contains(&max_results) {
        cx.problem(format!("{path}.max_results"), format!("{max_results} is out of range 1..={MAX_MAX_RESULTS}"));
    }
    Some(ScimSourceConfig {
        path: mount,
        public_url,
        auth: auth?,
        attributes: ScimAttrMap { user_name, email, display_name, overrides: a.overrides },
        max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
        max_results: usize::try_from(max_results).unwrap_or(usize::MAX),
    })
}

/// A mount path: absolute, no trailing slash, plain segments, not over the daemon's own endpoints.
fn check_mount(p: &str) -> Result<(), String> {
    let segments_ok = p.strip_prefix('/').is_some_and(|rest| {
        !rest.is_empty()
            && rest.split('/').all(|s| {
                !s.is_empty()
                    && s != "."
                    && s != ".."
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
            })
    });
    if !segments_ok {
        return Err(format!(
            "{p:?}: use an absolute path of plain segments without a trailing slash, e.g. {DEFAULT_PATH:?}"
        ));
    }
    if let Some(r) = RESERVED.iter().find(|r| overlaps(p, r)) {
        return Err(format!("{p:?} overlaps the daemon's own endpoint {r}"));
    }
    Ok(())
}

/// True when one path is the other or lies below it.
pub(super) fn overlaps(a: &str, b: &str) -> bool {
    let below = |x: &str, y: &str| x == y || x.strip_prefix(y).is_some_and(|r| r.starts_with('/'));
    below(a, b) || below(b, a)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::config::validate::validate;
    use crate::config::SourceKind;

    const HASH: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    fn with(source: serde_json::Value) -> serde_json::Value {
        json!({"litellm": {"url": "http://127.0.0.1:4000", "api_key": "sk-x"}, "sources": [source]})
    }

    fn problems(raw: serde_json::Value) -> String {
        match validate(&raw) {
            Ok(_) => panic!("expected problems"),
            Err(p) => p.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"),
        }
    }

    #[test]
    fn a_minimal_scim_source_gets_the_defaults() {
        let cfg = validate(&with(json!({"name": "okta", "type": "scim", "auth": {"tokens": [HASH]}}))).unwrap();
        let SourceKind::Scim(s) = &cfg.sources[0].kind else { panic!("not scim") };
        assert_eq!(s.path, "/scim/v2");
        assert_eq!(s.attributes.user_name, "userName");
        assert_eq!(s.auth.token_hashes.len(), 1);
        assert_eq!(s.max_results, 1000);
    }

    #[test]
    fn malformed_scim_sources_name_every_problem() {
        let all = problems(with(json!({
            "name": "okta", "type": "scim", "path": "scim/v2/", "schedule": "0 * * * * *", "max_body_bytes": 10,
            "max_results": 0, "public_url": "ftp://x",
            "auth": {"tokens": ["lsync_plaintext"], "oidc": {"issuer": "http://idp.example.com/", "audence": "x"}},
            "attributes": {"user_name": "", "emial": "x", "overrides": {"max_budgt": "title", "role": "name"}},
        })));
        for needle in [
            "sources[0].path:",
            "sources[0].schedule:",
            "sources[0].max_body_bytes:",
            "sources[0].max_results:",
            "sources[0].public_url:",
            "sources[0].auth.tokens[0]: this looks like a plaintext token",
            "sources[0].auth.oidc.audence: unknown key",
            "sources[0].auth.oidc.issuer:",
            "sources[0].attributes.user_name:",
            "sources[0].attributes.emial:",
            "sources[0].attributes.overrides.max_budgt: not an override field; did you mean `max_budget`?",
        ] {
            assert!(all.contains(needle), "{needle} missing in:\n{all}");
        }
    }

    #[test]
    fn auth_is_required_and_paths_are_unique() {
        let all = problems(with(json!({"name": "okta", "type": "scim"})));
        assert!(all.contains("sources[0].auth: required"), "{all}");
        let mut raw = with(json!({"name": "okta", "type": "scim", "auth": {"tokens": [HASH]}}));
        raw["sources"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "entra", "type": "scim", "path": "/scim/v2", "auth": {"tokens": [HASH]}}));
        let all = problems(raw.clone());
        assert!(all.contains("sources[1].path: \"/scim/v2\" is already the path of SCIM source \"okta\""), "{all}");
        raw["sources"][1]["path"] = json!("/scim/v2/entra");
        let all = problems(raw.clone());
        assert!(all.contains("sources[1].path:"), "nested under another source's path: {all}");
        raw["sources"][1]["path"] = json!("/entra/scim/v2");
        assert!(validate(&raw).is_ok());
        let all =
            problems(with(json!({"name": "m", "type": "scim", "path": "/metrics/x", "auth": {"tokens": [HASH]}})));
        assert!(all.contains("overlaps the daemon's own endpoint /metrics"), "{all}");
    }
}
