//! OIDC JWT access tokens: header policy, signature (jsonwebtoken over our ring provider, keys from the
//! [`KeyStore`]) and claims, each a separate step so the pure ones are tested with plain data.
//!
//! Why not `openidconnect`'s verifier: it verifies *ID tokens* (it requires `azp == client_id` where `azp` is set,
//! and rejects `typ: at+jwt` unless told otherwise); a SCIM server receives *access tokens*, which have other rules
//! (RFC 9068). openidconnect is used for discovery only.
//!
//! What is never trusted from the token: the algorithm (it must be one the config lists, and the key's own `alg`
//! when the JWKS gives one), and where keys come from (`jku`, `x5u`, `jwk` and `x5c` are not even parsed here; only
//! `kid` selects a key, and only among the JWKS's keys).
//!
//! Telling an ID token from an access token. Both are JWTs signed by the same keys, so a client holding an ID
//! token (any RP of the same IdP) must not be able to use it here. In order of strength:
//! 1. `aud`: an ID token's audience is the client that requested it; an access token for this API names the API
//!    (`audience` in the config). This is the check that actually holds, as long as `audience` is the API's
//!    identifier and not some client's id.
//! 2. `typ`: RFC 9068 access tokens say `at+jwt` (signed, so not forgeable); ID tokens say `JWT`. Where the IdP
//!    follows RFC 9068, set `allowed_typ = ["at+jwt"]` and the distinction becomes exact. The default also allows
//!    `JWT` because Entra ID and Okta use it for access tokens too.
//! 3. ID-token-only claims: `nonce`, `at_hash`, `c_hash`, `s_hash` (OpenID Connect Core §2, §3.3.2.11) never
//!    appear in an access token obtained by client credentials, so their presence rejects the token.
//!
//! `azp == aud` is *not* used: Entra issues exactly that shape for an app that calls its own API.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::config::{normalise_typ, OidcSettings};
use super::keystore::{Clock, JwksSource, KeyStore, Lookup};
use super::{Method, Principal, Reason};

/// A longer "token" is not a JWT we would accept (real ones are 1-3 KiB); refusing early bounds the work.
pub const MAX_JWT_LEN: usize = 16 * 1024;
/// Claims that only ID tokens carry.
const ID_TOKEN_CLAIMS: &[&str] = &["nonce", "at_hash", "c_hash", "s_hash"];

/// The header fields the policy reads. Everything else is ignored on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderView {
    pub alg: String,
    pub typ: Option<String>,
    pub kid: Option<String>,
}

/// Whether `token` has the shape of a compact JWS (three base64url segments); used to route a bearer token to
/// the OIDC verifier rather than the static-token check.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut n = 0;
    for seg in token.split('.') {
        n += 1;
        if seg.is_empty() && n < 3 {
            return false;
        }
        if !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return false;
        }
    }
    n == 3
}

/// Decodes the protected header (no verification: only to decide which key and whether the algorithm is allowed).
pub fn read_header(token: &str) -> Result<HeaderView, Reason> {
    if token.len() > MAX_JWT_LEN || !looks_like_jwt(token) {
        return Err(Reason::MalformedJwt);
    }
    let first = token.split('.').next().ok_or(Reason::MalformedJwt)?;
    let bytes = URL_SAFE_NO_PAD.decode(first).map_err(|_| Reason::MalformedJwt)?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|_| Reason::MalformedJwt)?;
    let text = |name: &str| -> Result<Option<String>, Reason> {
        match header.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Reason::MalformedJwt),
        }
    };
    Ok(HeaderView { alg: text("alg")?.ok_or(Reason::BadAlg)?, typ: text("typ")?, kid: text("kid")? })
}

/// The header policy: the algorithm must be configured (so `none` and HS256 never pass an RS256 config) and the
/// `typ` allowed. Returns the algorithm to verify with.
pub fn check_header(h: &HeaderView, s: &OidcSettings) -> Result<Algorithm, Reason> {
    let alg = s.algorithms.iter().copied().find(|a| alg_name(*a) == h.alg).ok_or(Reason::BadAlg)?;
    match &h.typ {
        Some(t) if s.allowed_typ.contains(&normalise_typ(t)) => {}
        // A token without typ is rejected: every IdP we know sets it, and an allowlist that a missing value
        // passes would not be one.
        _ => return Err(Reason::BadTyp),
    }
    Ok(alg)
}

fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        // HMAC (and anything newer) is never configured; an impossible name matches no header.
        _ => "\u{0}",
    }
}

fn seconds(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number, possibly fractional. Anything else is malformed, not absent.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, Reason> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()).map(Some).ok_or(Reason::MalformedJwt),
        Some(_) => Err(Reason::MalformedJwt),
    }
}

fn string_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// Scopes granted by `scope` (RFC 9068/8693: space-separated) and `scp` (Entra: space-separated string; Okta: array).
pub fn granted_scopes(claims: &Map<String, Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_string)),
            Some(Value::Array(a)) => out.extend(a.iter().filter_map(Value::as_str).map(str::to_string)),
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The claims policy, pure: issuer, ID-token markers, audience, lifetimes (with leeway), the Entra pins, required
/// claims, and last the scopes (a missing scope is "authenticated but not allowed": 403, not 401).
pub fn check_claims(claims: &Map<String, Value>, s: &OidcSettings, now: SystemTime) -> Result<Principal, Reason> {
    if string_claim(claims, "iss") != Some(s.issuer.as_str()) {
        return Err(Reason::WrongIssuer);
    }
    if ID_TOKEN_CLAIMS.iter().any(|c| claims.contains_key(*c)) {
        return Err(Reason::IdToken);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == s.audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(s.audience.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err(Reason::WrongAudience);
    }
    let now = seconds(now);
    let leeway = s.leeway.as_secs_f64();
    let exp = numeric_date(claims, "exp")?.ok_or(Reason::MissingClaim)?;
    if now > exp + leeway {
        return Err(Reason::Expired);
    }
    if let Some(nbf) = numeric_date(claims, "nbf")? {
        if now + leeway < nbf {
            return Err(Reason::NotYetValid);
        }
    }
    if let Some(iat) = numeric_date(claims, "iat")? {
        // Issued in the future, or after it expires: a broken or forged clock, not skew.
        if iat > now + leeway || iat > exp {
            return Err(Reason::BadIat);
        }
    }
    if let Some(pin) = &s.entra {
        let tid = string_claim(claims, "tid").map(str::to_ascii_lowercase);
        if tid.as_deref() != Some(pin.tenant_id.as_str()) {
            return Err(Reason::WrongTenant);
        }
        let app = string_claim(claims, "appid").or_else(|| string_claim(claims, "azp")).map(str::to_ascii_lowercase);
        if app.as_deref() != Some(pin.app_id.as_str()) {
            return Err(Reason::WrongApp);
        }
    }
    for (name, expected) in &s.required_claims {
        match claims.get(name) {
            None => return Err(Reason::MissingClaim),
            Some(v) if v == expected => {}
            Some(Value::Array(list)) if list.contains(expected) => {}
            Some(_) => return Err(Reason::WrongClaim),
        }
    }
    let scopes = granted_scopes(claims);
    if !s.required_scopes.iter().all(|r| scopes.contains(r)) {
        return Err(Reason::MissingScope);
    }
    let client_id =
        ["client_id", "azp", "appid", "cid"].iter().find_map(|c| string_claim(claims, c)).map(str::to_string);
    let subject = string_claim(claims, "sub").map(str::to_string).or_else(|| client_id.clone()).unwrap_or_default();
    Ok(Principal {
        method: Method::Oidc,
        subject,
        client_id,
        issuer: Some(s.issuer.to_string()),
        scopes,
        token_label: None,
    })
}

/// Verifies access tokens of one issuer.
pub struct OidcVerifier<S> {
    settings: OidcSettings,
    keys: KeyStore<S>,
    clock: Arc<dyn Clock>,
}

impl<S: JwksSource> OidcVerifier<S> {
    pub fn new(settings: OidcSettings, source: S, clock: Arc<dyn Clock>) -> OidcVerifier<S> {
        super::crypto::install();
        OidcVerifier { settings, keys: KeyStore::new(source, clock.clone()), clock }
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    pub fn keystore(&self) -> &KeyStore<S> {
        &self.keys
    }

    pub async fn verify(&self, token: &SecretString) -> Result<Principal, Reason> {
        let token = token.expose_secret();
        let header = read_header(token)?;
        let alg = check_header(&header, &self.settings)?;
        // No kid: we will not guess among the keys (and trying each would multiply the work per bad token).
        let kid = header.kid.as_deref().ok_or(Reason::UnknownKid)?;
        let key = match self.keys.get(kid).await {
            Lookup::Found(k) => k,
            Lookup::Unknown => return Err(Reason::UnknownKid),
            Lookup::Unavailable => return Err(Reason::JwksUnavailable),
        };
        if key.alg.is_some_and(|a| a != alg) {
            return Err(Reason::BadAlg);
        }
        // Signature only: every claim is checked by check_claims, with our clock and our reasons.
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation).map_err(|e| {
            match e.kind() {
                ErrorKind::InvalidSignature => Reason::BadSignature,
                // The key's family does not fit the algorithm (an RSA key for an ES256 token, say).
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Reason::BadAlg,
                _ => Reason::MalformedJwt,
            }
        })?;
        check_claims(&data.claims, &self.settings, self.clock.now())
    }
}
