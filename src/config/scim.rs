//! The settings of a SCIM source that are plain configuration: the `[sources.auth]` section, as read
//! ([`ScimAuthConfig`]) and as validated ([`AuthSettings`]), and the attribute map ([`ScimAttrMap`]). They live in
//! `config` so that validating a configuration needs nothing from `sources` (which uses them: `sources::scim::auth`
//! re-exports the auth types).
//!
//! Validation is pure (no IO, no clock) and reports every problem with its key path, like `config::validate`.
//!
//! ```toml
//! [sources.auth]
//! tokens = ["sha256:…"]                       # litellm-sync hash-token; several at once for rotation
//! [sources.auth.oidc]
//! issuer = "https://idp.example.com/"          # exact; discovery must report the same string
//! audience = "https://litellm-sync.example.com/scim"
//! algorithms = ["RS256"]                       # fixed here, never taken from a token
//! leeway = "30s"                               # at most 60s
//! required_scopes = ["scim.write"]
//! required_claims = { client_id = "okta-scim" }
//! allowed_typ = ["at+jwt", "JWT"]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use openidconnect::IssuerUrl;
use serde::Deserialize;
use serde_json::Value;

use crate::config::Problem;

/// How a stored token hash starts.
pub const HASH_PREFIX: &str = "sha256:";
/// How a generated token starts, so that a leaked one is recognisable (secret scanners, logs, code review).
pub const TOKEN_PREFIX: &str = "lsync_";

/// Parses a `sha256:<64 hex>` hash; the message says what is wrong (for config validation).
pub fn parse_hash(s: &str) -> Result<[u8; 32], String> {
    if s.starts_with(TOKEN_PREFIX) {
        return Err(format!(
            "this looks like a plaintext token ({TOKEN_PREFIX}…); store its hash instead \
             (`litellm-sync hash-token`), and treat the token as leaked if this file was shared"
        ));
    }
    let Some(hex) = s.strip_prefix(HASH_PREFIX) else {
        return Err(format!("expected {HASH_PREFIX}<64 hex digits>, the output of `litellm-sync hash-token`"));
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("expected {HASH_PREFIX} followed by exactly 64 hex digits"));
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        // Both bytes are ASCII hex digits (checked above), so this cannot fail; map instead of unwrap anyway.
        let pair = std::str::from_utf8(chunk).map_err(|_| "not ASCII".to_string())?;
        out[i] = u8::from_str_radix(pair, 16).map_err(|_| "not hex".to_string())?;
    }
    Ok(out)
}

/// Which SCIM User attribute carries what (paths as in a filter: `userName`, `emails`, `name.formatted`,
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter`). The paths are checked against the
/// SCIM schema by `sources::scim::mapping::check_map` (at start-up and in `check-config`), because the schema is
/// the SCIM source's.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimAttrMap {
    pub user_name: String,
    pub email: String,
    pub display_name: String,
    /// Override field (`max_budget`, `role`, …) → SCIM attribute path.
    pub overrides: BTreeMap<String, String>,
}

impl Default for ScimAttrMap {
    fn default() -> Self {
        ScimAttrMap {
            user_name: "userName".into(),
            email: "emails".into(),
            display_name: "displayName".into(),
            overrides: BTreeMap::new(),
        }
    }
}

/// The audience of every token Entra ID's provisioning service sends when the app's "Secret Token" is left blank:
/// the application id of Entra's own provisioning service, the same for every app in every tenant.
pub const ENTRA_PROVISIONING_AUDIENCE: &str = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621";
/// The largest clock-skew allowance: beyond it an expired token stays usable for too long.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Both spellings real IdPs use for access tokens: RFC 9068's `at+jwt` (oidc-provider, Keycloak, Auth0 with the
/// profile) and plain `JWT` (Entra ID, Okta, older Keycloak).
pub const DEFAULT_ALLOWED_TYP: &[&str] = &["at+jwt", "JWT"];
/// Claims that the verifier checks itself; a `required_claims` entry for them would be ignored or contradict it.
const CHECKED_CLAIMS: &[&str] = &["iss", "aud", "exp", "nbf", "iat"];

/// `[sources.auth]`: static token hashes and/or OIDC access tokens. At least one of the two must be set.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ScimAuthConfig {
    /// `sha256:<hex>` hashes of the accepted static tokens.
    #[serde(default)]
    pub tokens: Vec<String>,
    #[serde(default)]
    pub oidc: Option<OidcAuthConfig>,
}

/// `[sources.auth.oidc]`: JWT access tokens from one issuer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OidcAuthConfig {
    /// The issuer identifier, compared byte for byte with `iss` and with the discovery document's `issuer`.
    /// Derived in Entra blank-secret mode.
    pub issuer: Option<String>,
    /// The value that must be one of the token's `aud`: the identifier of this SCIM API at the IdP (a resource
    /// indicator, an Entra application id URI…). Fixed in Entra blank-secret mode.
    pub audience: Option<String>,
    /// Accepted signature algorithms; default `["RS256"]`. Asymmetric only.
    pub algorithms: Option<Vec<String>>,
    /// Clock-skew allowance for `exp`, `nbf` and `iat` (humantime, e.g. "30s"); default 30s, at most 60s.
    pub leeway: Option<String>,
    /// Scopes that must all be granted (`scope`, space-separated, or `scp`, a string or an array).
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Claims that must have the given value (or, for an array claim, contain it), e.g. `roles = "SCIM.Write"`.
    #[serde(default)]
    pub required_claims: BTreeMap<String, Value>,
    /// Accepted `typ` headers (case-insensitive, `application/` optional); default `["at+jwt", "JWT"]`.
    pub allowed_typ: Option<Vec<String>>,
    /// Accept the tokens Entra ID sends when the provisioning "Secret Token" is blank. See [`EntraPin`].
    pub entra_blank_secret: Option<EntraBlankSecretConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EntraBlankSecretConfig {
    pub tenant_id: Option<String>,
    pub app_id: Option<String>,
}

/// A validated `[sources.auth]`.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub token_hashes: Vec<[u8; 32]>,
    pub oidc: Option<OidcSettings>,
}

/// A validated `[sources.auth.oidc]`.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: IssuerUrl,
    pub audience: String,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub required_scopes: Vec<String>,
    pub required_claims: BTreeMap<String, Value>,
    /// Normalised: lower case, without `application/`.
    pub allowed_typ: Vec<String>,
    pub entra: Option<EntraPin>,
}

/// Entra ID "blank secret token" mode.
///
/// When an Entra enterprise app's provisioning "Secret Token" is left blank, Entra sends a token it issued itself:
/// `iss` is `https://sts.windows.net/<tenant id>/` and `aud` is `8adf8e6e-67b2-4cf2-a259-e3dc5476c621`, the id of
/// Entra's provisioning service. That audience is **shared by every Entra app in every tenant**, so checking
/// signature, issuer *discovery* and audience alone would accept a token that *anyone* can obtain: an attacker
/// creates a free tenant, points an app's provisioning at this endpoint, and Entra signs tokens for them with the
/// same keys and the same audience. Two pins close that:
///
/// - the **tenant** (`tid`, and the issuer derived from it): only your tenant's tokens, not another tenant's;
/// - the **application** (`appid` for v1 tokens, `azp` for v2): only the app you configured, not another enterprise
///   app in your own tenant whose provisioning an app owner (not necessarily a global admin) pointed at this URL.
///
/// Microsoft itself recommends a long-lived secret token over this mode; prefer a static token or a proper OIDC
/// client-credentials setup, and use this only where neither is possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraPin {
    pub tenant_id: String,
    pub app_id: String,
}

impl EntraPin {
    pub fn issuer(&self) -> String {
        format!("https://sts.windows.net/{}/", self.tenant_id)
    }
}

/// Normalises a `typ` value as RFC 7515 §4.1.9 compares them: case-insensitively, with `application/` optional.
pub fn normalise_typ(typ: &str) -> String {
    let lower = typ.trim().to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_string(),
        None => lower,
    }
}

/// Validates a raw `[sources.auth]` table under `path` (e.g. `sources[1].auth`): unknown keys are problems too.
pub fn validate_value(path: &str, raw: &Value) -> Result<AuthSettings, Vec<Problem>> {
    let (result, unknown) = crate::config::deserialize_reporting::<ScimAuthConfig>(raw.clone());
    let mut problems: Vec<Problem> = unknown
        .into_iter()
        // serde_ignored writes `?` for the inside of an Option (`oidc.?.x`); the key path is `oidc.x`.
        .map(|k| Problem { path: join(path, &k.replace(".?", "")), message: "unknown key".into() })
        .collect();
    match result {
        Ok(cfg) => match cfg.validate(path) {
            Ok(settings) if problems.is_empty() => Ok(settings),
            Ok(_) => Err(problems),
            Err(mut more) => {
                problems.append(&mut more);
                Err(problems)
            }
        },
        Err(p) => {
            problems.push(Problem { path: join(path, &p.path), message: p.message });
            Err(problems)
        }
    }
}

fn join(base: &str, rest: &str) -> String {
    match (base.is_empty(), rest.is_empty() || rest == "?") {
        (_, true) => base.to_string(),
        (true, false) => rest.to_string(),
        (false, false) if rest.starts_with('[') => format!("{base}{rest}"),
        (false, false) => format!("{base}.{rest}"),
    }
}

struct Problems<'a> {
    base: &'a str,
    list: Vec<Problem>,
}

impl Problems<'_> {
    fn add(&mut self, key: &str, message: impl Into<String>) {
        self.list.push(Problem { path: join(self.base, key), message: message.into() });
    }
}

impl ScimAuthConfig {
    /// Checks the section and returns it in usable form, or every problem (paths under `path`).
    pub fn validate(&self, path: &str) -> Result<AuthSettings, Vec<Problem>> {
        let mut p = Problems { base: path, list: Vec::new() };
        let mut token_hashes = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            match parse_hash(t) {
                Ok(h) if !seen.insert(h) => p.add(&format!("tokens[{i}]"), "duplicate hash"),
                Ok(h) => token_hashes.push(h),
                Err(e) => p.add(&format!("tokens[{i}]"), e),
            }
        }
        let oidc = self.oidc.as_ref().and_then(|o| o.validate(&mut p));
        if self.tokens.is_empty() && self.oidc.is_none() {
            p.add(
                "",
                "no way to authenticate SCIM clients: set tokens (hashes from `litellm-sync hash-token`) and/or \
                 [oidc]",
            );
        }
        if p.list.is_empty() {
            Ok(AuthSettings { token_hashes, oidc })
        } else {
            Err(p.list)
        }
    }
}

impl OidcAuthConfig {
    fn validate(&self, p: &mut Problems<'_>) -> Option<OidcSettings> {
        let start = p.list.len();
        let entra = self.entra_blank_secret.as_ref().and_then(|e| entra_pin(e, p));
        let issuer = match (&self.issuer, &entra) {
            (Some(i), Some(pin)) if *i != pin.issuer() => {
                p.add(
                    "oidc.issuer",
                    format!(
                        "Entra blank-secret tokens are issued by {:?} (derived from tenant_id); remove issuer or set \
                         it to that",
                        pin.issuer()
                    ),
                );
                None
            }
            (_, Some(pin)) => Some(pin.issuer()),
            (Some(i), None) => Some(i.clone()),
            (None, None) => {
                p.add("oidc.issuer", "required (the issuer identifier, e.g. https://idp.example.com/)");
                None
            }
        };
        let issuer = issuer.and_then(|i| check_issuer(&i, p));
        let audience = match (&self.audience, &entra) {
            (Some(a), Some(_)) if a != ENTRA_PROVISIONING_AUDIENCE => {
                p.add(
                    "oidc.audience",
                    format!("Entra blank-secret tokens always have audience {ENTRA_PROVISIONING_AUDIENCE}; remove it"),
                );
                None
            }
            (_, Some(_)) => Some(ENTRA_PROVISIONING_AUDIENCE.to_string()),
            (Some(a), None) if a.trim().is_empty() => {
                p.add("oidc.audience", "must not be empty");
                None
            }
            (Some(a), None) if a == ENTRA_PROVISIONING_AUDIENCE => {
                p.add(
                    "oidc.audience",
                    "this is Entra's shared provisioning audience, valid for every tenant's apps: use \
                     [oidc.entra_blank_secret] with tenant_id and app_id instead",
                );
                None
            }
            (Some(a), None) => Some(a.clone()),
            (None, None) => {
                p.add("oidc.audience", "required: the identifier of this SCIM API at the IdP (the token's aud)");
                None
            }
        };
        let algorithms = match &self.algorithms {
            None => vec![Algorithm::RS256],
            Some(list) if list.is_empty() => {
                p.add("oidc.algorithms", "must list at least one algorithm, e.g. [\"RS256\"]");
                Vec::new()
            }
            Some(list) => {
                let mut out = Vec::new();
                for (i, a) in list.iter().enumerate() {
                    match parse_algorithm(a) {
                        Ok(alg) if !out.contains(&alg) => out.push(alg),
                        Ok(_) => p.add(&format!("oidc.algorithms[{i}]"), "duplicate"),
                        Err(e) => p.add(&format!("oidc.algorithms[{i}]"), e),
                    }
                }
                out
            }
        };
        let leeway = match self.leeway.as_deref() {
            None => DEFAULT_LEEWAY,
            Some(s) => match humantime::parse_duration(s) {
                Ok(d) if d <= MAX_LEEWAY => d,
                Ok(_) => {
                    p.add("oidc.leeway", format!("{s:?} is more than the maximum of 60s"));
                    DEFAULT_LEEWAY
                }
                Err(e) => {
                    p.add("oidc.leeway", format!("invalid duration {s:?} ({e}); use e.g. 30s"));
                    DEFAULT_LEEWAY
                }
            },
        };
        for (i, s) in self.required_scopes.iter().enumerate() {
            if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                p.add(&format!("oidc.required_scopes[{i}]"), format!("{s:?} is not a scope (no spaces, not empty)"));
            }
        }
        for (name, value) in &self.required_claims {
            let key = format!("oidc.required_claims.{name}");
            if CHECKED_CLAIMS.contains(&name.as_str()) {
                p.add(&key, format!("{name} is always checked; configure it with issuer/audience instead"));
            } else if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                p.add(&key, "expected a string, number or boolean");
            }
        }
        let allowed_typ: Vec<String> = match &self.allowed_typ {
            None => DEFAULT_ALLOWED_TYP.iter().map(|t| normalise_typ(t)).collect(),
            Some(list) => {
                if list.is_empty() {
                    p.add("oidc.allowed_typ", "must list at least one typ, e.g. [\"at+jwt\"]");
                }
                for (i, t) in list.iter().enumerate() {
                    if t.trim().is_empty() {
                        p.add(&format!("oidc.allowed_typ[{i}]"), "must not be empty");
                    }
                }
                list.iter().map(|t| normalise_typ(t)).collect()
            }
        };
        if p.list.len() != start {
            return None;
        }
        Some(OidcSettings {
            issuer: issuer?,
            audience: audience?,
            algorithms,
            leeway,
            required_scopes: self.required_scopes.clone(),
            required_claims: self.required_claims.clone(),
            allowed_typ,
            entra,
        })
    }
}

fn entra_pin(e: &EntraBlankSecretConfig, p: &mut Problems<'_>) -> Option<EntraPin> {
    let mut guid = |key: &str, v: &Option<String>, what: &str| match v {
        Some(s) if is_guid(s) => Some(s.to_ascii_lowercase()),
        Some(s) => {
            p.add(&format!("oidc.entra_blank_secret.{key}"), format!("{s:?} is not a GUID ({what})"));
            None
        }
        None => {
            p.add(
                &format!("oidc.entra_blank_secret.{key}"),
                format!("required: without it any {what} would be accepted, because the audience is shared"),
            );
            None
        }
    };
    let tenant_id = guid("tenant_id", &e.tenant_id, "tenant");
    let app_id = guid("app_id", &e.app_id, "application");
    Some(EntraPin { tenant_id: tenant_id?, app_id: app_id? })
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12]) && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// HTTPS, or HTTP to a loopback address (tests, a sidecar IdP): keys fetched in clear over a network can be
/// replaced on the way.
fn check_issuer(issuer: &str, p: &mut Problems<'_>) -> Option<IssuerUrl> {
    let url = match url::Url::parse(issuer) {
        Ok(u) => u,
        Err(e) => {
            p.add("oidc.issuer", format!("{issuer:?} is not a URL: {e}"));
            return None;
        }
    };
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            p.add("oidc.issuer", format!("{issuer:?}: must be https (http only for a loopback address)"));
            return None;
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        p.add("oidc.issuer", "an issuer has no query or fragment (OpenID Connect Discovery §2)");
        return None;
    }
    match IssuerUrl::new(issuer.to_string()) {
        Ok(u) => Some(u),
        Err(e) => {
            p.add("oidc.issuer", format!("{issuer:?}: {e}"));
            None
        }
    }
}

fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    match s {
        "RS256" => Ok(Algorithm::RS256),
        "RS384" => Ok(Algorithm::RS384),
        "RS512" => Ok(Algorithm::RS512),
        "PS256" => Ok(Algorithm::PS256),
        "PS384" => Ok(Algorithm::PS384),
        "PS512" => Ok(Algorithm::PS512),
        "ES256" => Ok(Algorithm::ES256),
        "ES384" => Ok(Algorithm::ES384),
        "EdDSA" => Ok(Algorithm::EdDSA),
        "HS256" | "HS384" | "HS512" => Err(format!(
            "{s} is symmetric: the key would be a secret shared with the IdP, not its public JWKS, and allowing it \
             opens the \"HS256 signed with the RSA public key\" attack; use the IdP's asymmetric algorithm"
        )),
        "none" | "None" | "NONE" => Err("\"none\" means unsigned tokens; never".to_string()),
        _ => Err(format!(
            "unknown algorithm {s:?}; expected one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
        )),
    }
}
