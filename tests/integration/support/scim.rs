//! A SCIM client for the tests (what an IdP sends, byte for byte where it matters: content types, tokens), the
//! `[[sources]]` table of a SCIM source, a token made by the binary's own `hash-token`, and the PyPI conformance
//! testers (`scripts/peers/scim-testers/install.sh`).

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::Fixture;

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// What one request got back.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Answer {
    /// `scimType` of an error body.
    pub fn scim_type(&self) -> Option<&str> {
        self.body["scimType"].as_str()
    }
}

/// A SCIM client with one bearer token.
pub struct ScimClient {
    pub base: String,
    pub token: String,
    http: reqwest::Client,
}

impl ScimClient {
    pub fn new(base: &str, token: &str) -> ScimClient {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("HTTP client");
        ScimClient { base: base.to_string(), token: token.to_string(), http }
    }

    /// `method path` with a JSON body sent as `application/scim+json`, as Okta and Entra send it.
    pub async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        self.raw(method, path, body.map(Value::to_string), Some("application/scim+json"), Some(&self.token)).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None).await
    }

    /// Any request: the body as given, the content type and the token only when given.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        content_type: Option<&str>,
        token: Option<&str>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            if let Some(ct) = content_type {
                req = req.header("Content-Type", ct);
            }
            req = req.body(b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("SCIM {path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("SCIM body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Answer { status, body, headers }
    }

    /// A request that must answer `status`; its body.
    #[track_caller]
    pub fn expect(a: Answer, status: u16, what: &str) -> Value {
        assert_eq!(a.status, status, "{what}: {}", a.body);
        a.body
    }

    /// `filter` URL-encoded for a query string.
    pub fn filter(f: &str) -> String {
        url::form_urlencoded::byte_serialize(f.as_bytes()).collect()
    }
}

/// A new static token and its hash, from `litellm-sync hash-token` (the command an operator runs).
pub async fn token_from_cli(fx: &Fixture) -> (String, String) {
    let run = fx.run(&["hash-token"]).await;
    run.expect(0);
    let field = |name: &str| {
        run.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("hash-token printed no {name}\n{}", run.dump()))
    };
    (field("token:"), field("hash:"))
}

/// The `[[sources]]` table of this test's SCIM source at `/scim/v2`: `more` (source keys first, then tables such
/// as `[sources.attributes]`), then `auth` (the lines of `[sources.auth]`, sub-tables last).
pub fn scim_source(fx: &Fixture, auth: &str, more: &str) -> String {
    format!(
        "[[sources]]\nname = \"{source}\"\ntype = \"scim\"\nuser_id_template = \"{prefix}{{user_name}}\"\n{more}\n\n\
         [sources.auth]\n{auth}\n",
        source = fx.source,
        prefix = fx.prefix(),
    )
}

/// The venv of the PyPI conformance testers; the tests fail, and say how to install it, when it is missing.
pub fn testers_venv() -> PathBuf {
    let venv = std::env::var_os("SCIM_TESTERS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/scim-testers/venv"));
    assert!(
        venv.join("bin/scim2").exists(),
        "the SCIM conformance testers are not installed in {}: run scripts/peers/scim-testers/install.sh",
        venv.display()
    );
    venv
}
