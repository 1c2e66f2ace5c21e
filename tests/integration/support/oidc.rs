//! A real OpenID provider for the SCIM authentication tests: npm `oidc-provider` run by node
//! (scripts/peers/oidc-provider/server.mjs) on a free loopback port, with signing keys the test generates and so
//! also holds (to sign tokens the provider would not issue: expired, not yet valid, forged headers).
//!
//! Needs node and the peer's packages (`scripts/peers/oidc-provider/install.sh`); without them the tests fail and
//! say so. Nothing here needs LiteLLM. The provider is killed on drop; every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use litellm_sync::sources::scim::auth::Clock;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The resource (audience) the provider issues SCIM tokens for by default, and another one.
pub const SCIM_AUDIENCE: &str = "https://scim.test/";
pub const OTHER_AUDIENCE: &str = "https://other.test/";
/// The client-credentials client and the CIBA client (the ID-token source) that server.mjs registers.
pub const CLIENT: (&str, &str) = ("scim-client", "scim-secret");
pub const RP: (&str, &str) = ("rp", "rp-secret");

const START_TIMEOUT: Duration = Duration::from_secs(20);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers/oidc-provider")
}

fn check_installed() {
    let dir = peer_dir();
    assert!(
        dir.join("node_modules/oidc-provider/package.json").exists(),
        "the OIDC test peer is not installed: run {}/install.sh (needs node 20+ and npm)",
        dir.display()
    );
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An RSA key made by node (ring cannot generate RSA keys): its private JWK for the provider, its PKCS#8 form for
/// signing here, and its public key as PEM (the HS256-confusion attack uses those bytes as an HMAC secret).
pub struct RsaKey {
    pub kid: String,
    private_jwk: Value,
    pair: RsaKeyPair,
    pub spki_pem: String,
}

impl RsaKey {
    pub async fn generate(kid: &str) -> RsaKey {
        check_installed();
        let out = tokio::time::timeout(
            START_TIMEOUT,
            Command::new("node")
                .arg(peer_dir().join("server.mjs"))
                .args(["keygen", "--kid", kid])
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("node server.mjs keygen did not finish in time")
        .expect("run node (is Node.js installed?)");
        assert!(out.status.success(), "keygen failed: {}", String::from_utf8_lossy(&out.stderr));
        let doc: Value = serde_json::from_slice(&out.stdout).expect("keygen prints JSON");
        let der = base64::engine::general_purpose::STANDARD.decode(doc["pkcs8"].as_str().expect("pkcs8")).expect("b64");
        RsaKey {
            kid: kid.to_string(),
            private_jwk: doc["jwk"].clone(),
            pair: RsaKeyPair::from_pkcs8(&der).expect("an RSA PKCS#8 key"),
            spki_pem: doc["spki_pem"].as_str().expect("spki_pem").to_string(),
        }
    }

    /// The public half as a JWK (what an attacker would embed in a `jwk` header).
    pub fn public_jwk(&self) -> Value {
        let j = &self.private_jwk;
        json!({"kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig", "n": j["n"], "e": j["e"]})
    }

    /// The modulus bytes (another spelling of "the public key" for the HMAC confusion).
    pub fn modulus(&self) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(self.private_jwk["n"].as_str().expect("n")).expect("n is base64url")
    }

    /// RS256 compact JWS of `header` (`alg` RS256 and this key's `kid` unless `header` sets them) and `claims`.
    pub fn sign(&self, header: Value, claims: &Value) -> String {
        let mut h = header.as_object().cloned().expect("header object");
        h.entry("alg").or_insert(json!("RS256"));
        h.entry("kid").or_insert(json!(self.kid));
        let msg = format!("{}.{}", b64(Value::Object(h).to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg.as_bytes(), &mut sig).expect("RSA signing");
        format!("{msg}.{}", b64(&sig))
    }
}

/// Wall clock plus an offset the test moves forward, so the keystore's once-a-minute limit and token lifetimes
/// can be crossed without sleeping.
#[derive(Default)]
pub struct ShiftedClock(Mutex<Duration>);

impl ShiftedClock {
    pub fn new() -> Arc<ShiftedClock> {
        Arc::new(ShiftedClock::default())
    }

    pub fn advance(&self, d: Duration) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += d;
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> SystemTime {
        SystemTime::now() + *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Seconds since the epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// One oidc-provider process.
pub struct OidcPeer {
    pub port: u16,
    /// `http://127.0.0.1:PORT` (no trailing slash: oidc-provider's issuer is exactly that).
    pub issuer: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl OidcPeer {
    /// Starts the provider on a free port signing with `keys[0]` and publishing all of `keys`.
    pub async fn start(keys: &[&RsaKey]) -> OidcPeer {
        check_installed();
        let mut peer = OidcPeer {
            port: 0,
            issuer: String::new(),
            child: None,
            dir: tempfile::tempdir().expect("temporary directory"),
            http: reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().expect("HTTP client"),
        };
        peer.launch(keys).await;
        peer
    }

    /// Stops the provider and starts it again on the same port (the issuer keeps its URL) with other keys.
    pub async fn restart(&mut self, keys: &[&RsaKey]) {
        self.stop().await;
        self.launch(keys).await;
    }

    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            tokio::time::timeout(START_TIMEOUT, child.wait())
                .await
                .expect("oidc-provider did not exit after SIGKILL")
                .expect("wait for oidc-provider");
        }
    }

    async fn launch(&mut self, keys: &[&RsaKey]) {
        let keys_file = self.dir.path().join("keys.json");
        let jwks = json!({"keys": keys.iter().map(|k| k.private_jwk.clone()).collect::<Vec<_>>()});
        std::fs::write(&keys_file, jwks.to_string()).expect("write keys.json");
        let mut child = Command::new("node")
            .arg(peer_dir().join("server.mjs"))
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--keys")
            .arg(&keys_file)
            .env_remove("OIDC_CLIENTS")
            .env_remove("OIDC_RESOURCES")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run node (is Node.js installed?)");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("ready port=") {
                    return rest.split_whitespace().next().and_then(|p| p.parse::<u16>().ok());
                }
            }
            None
        })
        .await;
        let port = match ready {
            Ok(Some(port)) => port,
            _ => {
                let _ = child.start_kill();
                let mut err = String::new();
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err),
                )
                .await;
                panic!("oidc-provider did not print its ready line within {START_TIMEOUT:?}; stderr:\n{err}");
            }
        };
        // Drain the pipes so a chatty provider never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        tokio::spawn(async move {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut stderr, &mut sink).await;
        });
        assert!(self.port == 0 || self.port == port, "restarted on port {port}, wanted {}", self.port);
        self.port = port;
        self.issuer = format!("http://127.0.0.1:{port}");
        self.child = Some(child);
    }

    async fn token_request(&self, auth: (&str, &str), form: &[(&str, &str)]) -> Value {
        let resp = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(auth.0, Some(auth.1))
            .form(form)
            .send()
            .await
            .expect("token request");
        let status = resp.status();
        let body: Value = resp.json().await.expect("token response is JSON");
        assert!(status.is_success(), "token request {form:?} failed: {status} {body}");
        body
    }

    /// A client-credentials access token (JWT) for `resource` (the default resource, the SCIM audience, if none).
    pub async fn access_token(&self, scope: &str, resource: Option<&str>) -> String {
        let mut form = vec![("grant_type", "client_credentials"), ("scope", scope)];
        if let Some(r) = resource {
            form.push(("resource", r));
        }
        let body = self.token_request(CLIENT, &form).await;
        body["access_token"].as_str().expect("access_token").to_string()
    }

    /// A real ID token for `login_hint`, through CIBA (server.mjs approves the request at once).
    pub async fn id_token(&self, login_hint: &str) -> String {
        let resp = self
            .http
            .post(format!("{}/backchannel", self.issuer))
            .basic_auth(RP.0, Some(RP.1))
            .form(&[("scope", "openid"), ("login_hint", login_hint)])
            .send()
            .await
            .expect("backchannel request");
        let body: Value = resp.json().await.expect("backchannel response is JSON");
        let id = body["auth_req_id"].as_str().unwrap_or_else(|| panic!("no auth_req_id: {body}")).to_string();
        let body =
            self.token_request(RP, &[("grant_type", "urn:openid:params:grant-type:ciba"), ("auth_req_id", &id)]).await;
        body["id_token"].as_str().unwrap_or_else(|| panic!("no id_token: {body}")).to_string()
    }

    /// GET /jwks requests the provider has served since it (re)started.
    pub async fn jwks_requests(&self) -> u64 {
        let body: Value = self
            .http
            .get(format!("{}/test/stats", self.issuer))
            .send()
            .await
            .expect("stats request")
            .json()
            .await
            .expect("stats JSON");
        body["jwks_requests"].as_u64().expect("jwks_requests")
    }
}
