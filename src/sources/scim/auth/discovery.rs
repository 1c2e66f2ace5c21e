//! The production [`JwksSource`]: OIDC discovery (with `openidconnect`) to learn the issuer's `jwks_uri`, then a
//! plain GET of the JWKS. Discovery runs on the first fetch, not at start-up, so an IdP that is down when the daemon
//! starts delays OIDC logins instead of failing the daemon; once it has succeeded its `jwks_uri` is kept.
//!
//! Every request is bounded: a total timeout, no redirects (a redirect is an invitation to fetch keys from
//! somewhere the operator did not configure), and a body cap checked while reading, not after.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use openidconnect::core::CoreProviderMetadata;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse, IssuerUrl};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::OnceCell;

use super::keystore::{JwksError, JwksSource};

/// Largest discovery document or JWKS read (real ones are a few KiB; Entra's is about 10).
pub const MAX_BODY: usize = 512 * 1024;
/// Per request; the keystore's own deadline covers discovery and JWKS together.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Request(String),
    #[error("the response is larger than {MAX_BODY} bytes")]
    TooLarge,
}

/// A reqwest client with the limits above, also serving `openidconnect` as its `AsyncHttpClient`.
#[derive(Clone)]
pub struct LimitedHttp {
    client: reqwest::Client,
}

impl LimitedHttp {
    pub fn new() -> Result<LimitedHttp, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(crate::litellm::USER_AGENT)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(LimitedHttp { client })
    }

    pub async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let url = parts.uri.to_string();
        let mut response = self
            .client
            .request(parts.method, &url)
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| HttpError::Request(error_chain(&e)))?;
        if response.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(HttpError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| HttpError::Request(error_chain(&e)))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let mut out = http_response(response.status().as_u16(), body)?;
        *out.headers_mut() = response.headers().clone();
        Ok(out)
    }
}

impl<'c> AsyncHttpClient<'c> for LimitedHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(LimitedHttp::call(self, request))
    }
}

fn http_response(status: u16, body: Vec<u8>) -> Result<HttpResponse, HttpError> {
    openidconnect::http::Response::builder().status(status).body(body).map_err(|e| HttpError::Request(e.to_string()))
}

/// reqwest's Display omits the cause ("error sending request"); the chain says what actually happened.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The issuer's JWKS, found through discovery.
pub struct HttpJwks {
    issuer: IssuerUrl,
    http: LimitedHttp,
    jwks_uri: OnceCell<String>,
}

impl HttpJwks {
    pub fn new(issuer: IssuerUrl, http: LimitedHttp) -> HttpJwks {
        HttpJwks { issuer, http, jwks_uri: OnceCell::new() }
    }

    /// Discovery: `openidconnect` fetches `<issuer>/.well-known/openid-configuration`, checks that the document's
    /// `issuer` is exactly the configured one (a mismatch is an error, not a warning) and fetches the JWKS once to
    /// check it parses; we keep only `jwks_uri`.
    async fn discover(&self) -> Result<String, JwksError> {
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| JwksError::Discovery { issuer: self.issuer.to_string(), message: error_chain(&e) })?;
        Ok(metadata.jwks_uri().url().to_string())
    }

    async fn get_jwks(&self, url: &str) -> Result<JwkSet, JwksError> {
        let fetch_err = |message: String| JwksError::Fetch { url: url.to_string(), message };
        let request = openidconnect::http::Request::builder()
            .method(openidconnect::http::Method::GET)
            .uri(url)
            .header(openidconnect::http::header::ACCEPT, "application/json, application/jwk-set+json")
            .body(Vec::new())
            .map_err(|e| fetch_err(e.to_string()))?;
        let response = self.http.call(request).await.map_err(|e| fetch_err(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fetch_err(format!("HTTP status {}", response.status())));
        }
        parse_jwks(response.body()).map_err(|message| JwksError::Invalid { url: url.to_string(), message })
    }
}

impl JwksSource for HttpJwks {
    async fn fetch(&self) -> Result<JwkSet, JwksError> {
        let url = self.jwks_uri.get_or_try_init(|| self.discover()).await?;
        self.get_jwks(url).await
    }
}

/// Parses a JWKS key by key, so that one key of a type we do not know (or a malformed one) does not hide the
/// others.
pub fn parse_jwks(body: &[u8]) -> Result<JwkSet, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
        return Err("no \"keys\" array".to_string());
    };
    let keys = keys
        .iter()
        .filter_map(|k| match serde_json::from_value::<Jwk>(k.clone()) {
            Ok(jwk) => Some(jwk),
            Err(e) => {
                tracing::debug!(error = %e, kid = ?k.get("kid"), "Skipping a JWKS key that does not parse.");
                None
            }
        })
        .collect();
    Ok(JwkSet { keys })
}
