//! Authentication for the SCIM endpoint: one [`Authenticator`] per SCIM source, called by the HTTP layer with the
//! request's `Authorization` header. It accepts hashed static bearer tokens ([`static_tokens`]) and OIDC JWT access
//! tokens ([`jwt`], with keys from a [`keystore::KeyStore`] fed by OIDC discovery in [`discovery`]).
//!
//! It answers who the caller is ([`Principal`]) or why not ([`AuthFailure`]: a bounded reason label for metrics, the
//! HTTP status and the RFC 6750 `WWW-Authenticate` value). It does not route, render SCIM errors or count metrics.
//! The token is a `SecretString` from the moment it is parsed: it never reaches a log, a `Debug` or an error.

pub mod config;
mod crypto;
pub mod discovery;
pub mod jwt;
pub mod keystore;
pub mod static_tokens;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use axum::http::StatusCode;
use secrecy::SecretString;

pub use config::{
    validate_value, AuthSettings, EntraPin, OidcAuthConfig, OidcSettings, ScimAuthConfig, ENTRA_PROVISIONING_AUDIENCE,
};
pub use discovery::{HttpJwks, LimitedHttp};
pub use jwt::OidcVerifier;
pub use keystore::{Clock, JwksError, JwksSource, KeyStore, SystemClock};
pub use static_tokens::{generate_token, hash_token, StaticTokens};

/// The realm in every challenge.
pub const REALM: &str = "litellm-sync";

/// How a caller authenticated (or tried to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Static,
    Oidc,
    /// No credentials could be read, so no method was tried.
    None,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Static => "static",
            Method::Oidc => "oidc",
            Method::None => "none",
        }
    }
}

/// Why authentication failed: a closed set, so it can be a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No `Authorization` header.
    Missing,
    /// `Bearer` with no token, a token with characters RFC 6750 does not allow, or several tokens.
    Malformed,
    /// Another scheme (`Basic …`).
    UnsupportedScheme,
    /// Not a JWT and no configured hash matches.
    UnknownToken,
    /// Looks like a JWT but cannot be decoded.
    MalformedJwt,
    BadAlg,
    BadTyp,
    UnknownKid,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    Expired,
    NotYetValid,
    BadIat,
    /// A claim the config requires (or `exp`) is absent.
    MissingClaim,
    WrongClaim,
    /// Carries claims only ID tokens have.
    IdToken,
    WrongTenant,
    WrongApp,
    MissingScope,
    /// The key is not cached and the JWKS could not be fetched.
    JwksUnavailable,
}

impl Reason {
    pub const ALL: &'static [Reason] = &[
        Reason::Missing,
        Reason::Malformed,
        Reason::UnsupportedScheme,
        Reason::UnknownToken,
        Reason::MalformedJwt,
        Reason::BadAlg,
        Reason::BadTyp,
        Reason::UnknownKid,
        Reason::BadSignature,
        Reason::WrongIssuer,
        Reason::WrongAudience,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::BadIat,
        Reason::MissingClaim,
        Reason::WrongClaim,
        Reason::IdToken,
        Reason::WrongTenant,
        Reason::WrongApp,
        Reason::MissingScope,
        Reason::JwksUnavailable,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::UnsupportedScheme => "unsupported_scheme",
            Reason::UnknownToken => "unknown_token",
            Reason::MalformedJwt => "malformed_jwt",
            Reason::BadAlg => "bad_alg",
            Reason::BadTyp => "bad_typ",
            Reason::UnknownKid => "unknown_kid",
            Reason::BadSignature => "bad_signature",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::BadIat => "bad_iat",
            Reason::MissingClaim => "missing_claim",
            Reason::WrongClaim => "wrong_claim",
            Reason::IdToken => "id_token",
            Reason::WrongTenant => "wrong_tenant",
            Reason::WrongApp => "wrong_app",
            Reason::MissingScope => "missing_scope",
            Reason::JwksUnavailable => "jwks_unavailable",
        }
    }

    /// Said to the client in `error_description`. Fixed strings: nothing from the token is echoed.
    fn description(self) -> &'static str {
        match self {
            Reason::Missing | Reason::UnsupportedScheme => "",
            Reason::Malformed => "the Authorization header is not a single bearer token",
            Reason::UnknownToken => "unknown token",
            Reason::MalformedJwt => "the token is not a well-formed JWT",
            Reason::BadAlg => "signature algorithm not accepted",
            Reason::BadTyp => "token type not accepted",
            Reason::UnknownKid => "unknown signing key",
            Reason::BadSignature => "invalid signature",
            Reason::WrongIssuer => "wrong issuer",
            Reason::WrongAudience => "wrong audience",
            Reason::Expired => "the token has expired",
            Reason::NotYetValid => "the token is not yet valid",
            Reason::BadIat => "the token's issue time is in the future",
            Reason::MissingClaim => "a required claim is missing",
            Reason::WrongClaim => "a required claim has the wrong value",
            Reason::IdToken => "an ID token is not an access token",
            Reason::WrongTenant => "wrong tenant",
            Reason::WrongApp => "wrong application",
            Reason::MissingScope => "insufficient scope",
            Reason::JwksUnavailable => "the signing keys cannot be fetched now; retry later",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SCIM authentication failed ({}): {reason}", method.as_str())]
pub struct AuthFailure {
    pub method: Method,
    pub reason: Reason,
    /// The scopes that were required, for the `insufficient_scope` challenge.
    required_scopes: Vec<String>,
}

impl AuthFailure {
    pub fn new(method: Method, reason: Reason) -> AuthFailure {
        AuthFailure { method, reason, required_scopes: Vec::new() }
    }

    /// 400 for a malformed request, 403 when authenticated but lacking a scope, 503 when the keys cannot be
    /// fetched (the token may be fine: a client should retry, not give up), 401 otherwise.
    pub fn status(&self) -> StatusCode {
        match self.reason {
            Reason::Malformed => StatusCode::BAD_REQUEST,
            Reason::MissingScope => StatusCode::FORBIDDEN,
            Reason::JwksUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3). No error code when the request had no bearer credentials at
    /// all (§3.1), `invalid_request` for a malformed header, `insufficient_scope` with the needed scopes, and
    /// `invalid_token` otherwise.
    pub fn www_authenticate(&self) -> String {
        let error = match self.reason {
            Reason::Missing | Reason::UnsupportedScheme => return format!("Bearer realm=\"{REALM}\""),
            Reason::Malformed => "invalid_request",
            Reason::MissingScope => "insufficient_scope",
            _ => "invalid_token",
        };
        let mut out =
            format!("Bearer realm=\"{REALM}\", error=\"{error}\", error_description=\"{}\"", self.reason.description());
        if self.reason == Reason::MissingScope && !self.required_scopes.is_empty() {
            out.push_str(&format!(", scope=\"{}\"", self.required_scopes.join(" ")));
        }
        out
    }
}

/// Who called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub method: Method,
    /// `sub` (or the client id when there is none) for OIDC; `static:<label>` for a static token.
    pub subject: String,
    /// `client_id`, `azp`, `appid` or `cid`, whichever the token has.
    pub client_id: Option<String>,
    pub issuer: Option<String>,
    pub scopes: Vec<String>,
    /// For a static token: which configured hash matched (`sha256:1a2b3c4d`), so rotation can be watched.
    pub token_label: Option<String>,
}

/// Reads `Authorization: Bearer <token>` (RFC 6750 §2.1): the scheme case-insensitively, any run of spaces or tabs
/// after it, and a token of b64token characters only.
///
/// The HTTP layer passes the header as text; a header that is not visible ASCII should be passed through
/// `String::from_utf8_lossy` rather than as `None`, so that it is reported as malformed, not missing.
pub fn parse_bearer(header: Option<&str>) -> Result<SecretString, Reason> {
    let value = header.ok_or(Reason::Missing)?.trim_matches([' ', '\t']);
    let (scheme, rest) = match value.find([' ', '\t']) {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(if scheme.is_empty() { Reason::Malformed } else { Reason::UnsupportedScheme });
    }
    let token = rest.trim_matches([' ', '\t']);
    if token.is_empty() || !is_b64token(token) {
        return Err(Reason::Malformed);
    }
    Ok(SecretString::from(token.to_string()))
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for OIDC discovery: {0}")]
pub struct BuildError(#[from] reqwest::Error);

/// The single entry point of the HTTP layer: static tokens and, when configured, one OIDC issuer.
pub struct Authenticator<S = HttpJwks> {
    tokens: StaticTokens,
    oidc: Option<OidcVerifier<S>>,
}

impl fmt::Debug for Authenticator<HttpJwks> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens)
            .field("oidc_issuer", &self.oidc.as_ref().map(|o| o.settings().issuer.to_string()))
            .finish()
    }
}

impl Authenticator<HttpJwks> {
    /// Builds the authenticator; no network IO (discovery happens on the first JWT, or in [`Self::preflight`]).
    pub fn new(settings: &AuthSettings) -> Result<Authenticator<HttpJwks>, BuildError> {
        Self::with_clock(settings, Arc::new(SystemClock))
    }

    /// [`Authenticator::new`] with another clock (tests: token lifetimes and the refetch limit without sleeping).
    pub fn with_clock(settings: &AuthSettings, clock: Arc<dyn Clock>) -> Result<Authenticator<HttpJwks>, BuildError> {
        let http = LimitedHttp::new()?;
        Ok(Self::with_source(settings, |o| HttpJwks::new(o.issuer.clone(), http), clock))
    }
}

impl<S: JwksSource> Authenticator<S> {
    /// With a JWKS source of the caller's choosing; `source` is called only when OIDC is configured.
    pub fn with_source(
        settings: &AuthSettings,
        source: impl FnOnce(&OidcSettings) -> S,
        clock: Arc<dyn Clock>,
    ) -> Authenticator<S> {
        let oidc = settings.oidc.as_ref().map(|o| OidcVerifier::new(o.clone(), source(o), clock));
        Authenticator { tokens: StaticTokens::new(settings.token_hashes.clone()), oidc }
    }

    /// The OIDC verifier, when configured (for its keystore's counters).
    pub fn oidc(&self) -> Option<&OidcVerifier<S>> {
        self.oidc.as_ref()
    }

    /// `check-config`: fetches the OIDC issuer's discovery document and keys now, and says what it found.
    pub async fn check(&self) -> Result<String, String> {
        let n = self.tokens.len();
        let Some(o) = &self.oidc else { return Ok(format!("{n} static token(s)")) };
        let issuer = o.settings().issuer.as_str();
        if o.keystore().preload().await {
            Ok(format!("{n} static token(s); OIDC issuer {issuer}: {} signing key(s)", o.keystore().len()))
        } else {
            let why = o.keystore().last_error().unwrap_or_else(|| "no usable signing key".into());
            Err(format!("OIDC issuer {issuer}: cannot load its signing keys: {why}"))
        }
    }

    /// Loads the issuer's keys now, so a misconfigured issuer shows at start-up; `false` when it could not (the
    /// daemon should warn and carry on: the keystore retries on the next token, at most once a minute).
    pub async fn preflight(&self) -> bool {
        match &self.oidc {
            Some(o) => o.keystore().preload().await,
            None => true,
        }
    }

    /// Authenticates one request from its `Authorization` header.
    ///
    /// A token shaped like a JWT goes to the OIDC verifier when one is configured; anything else is compared with
    /// the static hashes. `#[instrument(skip_all)]` keeps the header out of any span.
    #[tracing::instrument(skip_all)]
    pub async fn authenticate(&self, authorization_header: Option<&str>) -> Result<Principal, AuthFailure> {
        let token = parse_bearer(authorization_header).map_err(|r| AuthFailure::new(Method::None, r))?;
        if let Some(oidc) = &self.oidc {
            if jwt::looks_like_jwt(secrecy::ExposeSecret::expose_secret(&token)) {
                return oidc.verify(&token).await.map_err(|reason| AuthFailure {
                    method: Method::Oidc,
                    reason,
                    required_scopes: oidc.settings().required_scopes.clone(),
                });
            }
        }
        match self.tokens.find(&token) {
            Some(i) => {
                let label = self.tokens.label(i);
                Ok(Principal {
                    method: Method::Static,
                    subject: format!("static:{label}"),
                    client_id: None,
                    issuer: None,
                    scopes: Vec::new(),
                    token_label: Some(label),
                })
            }
            None => Err(AuthFailure::new(Method::Static, Reason::UnknownToken)),
        }
    }
}
