//! SCIM authentication against a real OpenID provider (npm oidc-provider, support/oidc.rs): discovery, its JWKS,
//! its RS256 `at+jwt` access tokens and its ID tokens, plus tokens signed here with the provider's own key for
//! the cases a provider will not issue (expired, not yet valid, forged headers). No LiteLLM needed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use litellm_sync::sources::scim::auth::{validate_value, Authenticator, Method, Principal, Reason};
use serde_json::{json, Value};

use crate::support::oidc::*;

fn authenticator(peer: &OidcPeer, clock: &Arc<ShiftedClock>, extra: Value) -> Authenticator {
    let mut oidc = json!({"issuer": peer.issuer, "audience": SCIM_AUDIENCE, "required_scopes": ["scim:write"]});
    for (k, v) in extra.as_object().expect("object") {
        oidc[k] = v.clone();
    }
    let settings = validate_value("auth", &json!({ "oidc": oidc })).unwrap_or_else(|p| panic!("{p:?}"));
    Authenticator::with_clock(&settings, clock.clone()).expect("authenticator")
}

async fn check(auth: &Authenticator, token: &str) -> Result<Principal, Reason> {
    auth.authenticate(Some(&format!("Bearer {token}"))).await.map_err(|f| {
        assert_eq!(f.method, Method::Oidc, "{f:?}");
        f.reason
    })
}

/// Claims as oidc-provider puts them in a SCIM access token, valid from now for five minutes.
fn claims(peer: &OidcPeer) -> Value {
    let now = unix_now();
    json!({
        "jti": "t1", "sub": CLIENT.0, "client_id": CLIENT.0, "iss": peer.issuer, "aud": SCIM_AUDIENCE,
        "iat": now, "exp": now + 300, "scope": "scim:write",
    })
}

fn at_jwt() -> Value {
    json!({"typ": "at+jwt"})
}

#[tokio::test]
async fn oidc_access_token_from_the_provider_is_accepted() {
    let key = RsaKey::generate("k-main").await;
    let peer = OidcPeer::start(&[&key]).await;
    let clock = ShiftedClock::new();
    let auth = authenticator(&peer, &clock, json!({}));
    assert!(auth.preflight().await, "discovery and JWKS at start-up");
    let token = peer.access_token("scim:read scim:write", None).await;
    let p = check(&auth, &token).await.unwrap();
    assert_eq!(p.method, Method::Oidc);
    assert_eq!(p.subject, CLIENT.0);
    assert_eq!(p.client_id.as_deref(), Some(CLIENT.0));
    assert_eq!(p.issuer.as_deref(), Some(peer.issuer.as_str()));
    assert_eq!(p.scopes, vec!["scim:read", "scim:write"]);
    // A token the test signs with the provider's key verifies the same way (the helper is sound).
    check(&auth, &key.sign(at_jwt(), &claims(&peer))).await.unwrap();
    // The scope is enforced on real tokens too: 403 material.
    let read_only = peer.access_token("scim:read", None).await;
    assert_eq!(check(&auth, &read_only).await, Err(Reason::MissingScope));
}

#[tokio::test]
async fn oidc_wrong_audience_and_wrong_issuer_are_rejected() {
    let key = RsaKey::generate("k-main").await;
    let peer = OidcPeer::start(&[&key]).await;
    let clock = ShiftedClock::new();
    let auth = authenticator(&peer, &clock, json!({}));
    // A real token for another resource of the same provider.
    let other = peer.access_token("other", Some(OTHER_AUDIENCE)).await;
    assert_eq!(check(&auth, &other).await, Err(Reason::WrongAudience));
    // The provider's key, another issuer.
    let c = json!({"iss": "http://127.0.0.1:1"});
    let mut forged = claims(&peer);
    forged["iss"] = c["iss"].clone();
    assert_eq!(check(&auth, &key.sign(at_jwt(), &forged)).await, Err(Reason::WrongIssuer));
    forged["iss"] = json!(format!("{}/", peer.issuer));
    assert_eq!(check(&auth, &key.sign(at_jwt(), &forged)).await, Err(Reason::WrongIssuer), "exact, even the slash");

    // A configured issuer that differs from what discovery reports (here: a trailing slash) is refused by
    // discovery itself, so no key is ever trusted for it.
    let settings =
        validate_value("auth", &json!({"oidc": {"issuer": format!("{}/", peer.issuer), "audience": SCIM_AUDIENCE}}))
            .unwrap();
    let auth = Authenticator::with_clock(&settings, clock.clone()).unwrap();
    assert!(!auth.preflight().await);
    let good = peer.access_token("scim:write", None).await;
    assert_eq!(check(&auth, &good).await, Err(Reason::JwksUnavailable));
}

#[tokio::test]
async fn oidc_expired_and_not_yet_valid_tokens_are_rejected() {
    let key = RsaKey::generate("k-main").await;
    let peer = OidcPeer::start(&[&key]).await;
    let clock = ShiftedClock::new();
    let auth = authenticator(&peer, &clock, json!({"leeway": "30s"}));
    let now = unix_now();

    // Signed with the provider's key: exp in the past (beyond the leeway), nbf in the future.
    let mut expired = claims(&peer);
    expired["iat"] = json!(now - 600);
    expired["exp"] = json!(now - 60);
    assert_eq!(check(&auth, &key.sign(at_jwt(), &expired)).await, Err(Reason::Expired));
    let mut early = claims(&peer);
    early["nbf"] = json!(now + 300);
    assert_eq!(check(&auth, &key.sign(at_jwt(), &early)).await, Err(Reason::NotYetValid));
    let mut future_iat = claims(&peer);
    future_iat["iat"] = json!(now + 300);
    assert_eq!(check(&auth, &key.sign(at_jwt(), &future_iat)).await, Err(Reason::BadIat));

    // A real provider token (five-minute TTL) expires: move the verifier's clock past exp plus the leeway.
    let token = peer.access_token("scim:write", None).await;
    check(&auth, &token).await.unwrap();
    clock.advance(Duration::from_secs(300 + 31 + 2));
    assert_eq!(check(&auth, &token).await, Err(Reason::Expired));
}

#[tokio::test]
async fn oidc_key_rotation_is_picked_up_on_an_unknown_kid() {
    let (a, b) = (RsaKey::generate("k-a").await, RsaKey::generate("k-b").await);
    let mut peer = OidcPeer::start(&[&a]).await;
    let clock = ShiftedClock::new();
    let auth = authenticator(&peer, &clock, json!({}));
    let token_a = peer.access_token("scim:write", None).await;
    check(&auth, &token_a).await.unwrap();

    // The provider restarts with a new key (same issuer URL) and signs with it.
    peer.restart(&[&b]).await;
    let token_b = peer.access_token("scim:write", None).await;
    assert!(token_b != token_a);
    // Within a minute of the last fetch the keystore does not refetch…
    assert_eq!(check(&auth, &token_b).await, Err(Reason::UnknownKid));
    assert_eq!(peer.jwks_requests().await, 0);
    // …after it, the unknown kid triggers one fetch and the new key is accepted.
    clock.advance(Duration::from_secs(61));
    check(&auth, &token_b).await.unwrap();
    assert_eq!(peer.jwks_requests().await, 1);
    // The old key left the JWKS: revoked.
    assert_eq!(check(&auth, &a.sign(at_jwt(), &claims(&peer))).await, Err(Reason::UnknownKid));

    // Two keys published at once (a rotation in progress): both verify.
    peer.restart(&[&b, &a]).await;
    clock.advance(Duration::from_secs(61));
    check(&auth, &a.sign(at_jwt(), &claims(&peer))).await.unwrap();
    check(&auth, &peer.access_token("scim:write", None).await).await.unwrap();
    assert_eq!(auth.oidc().map(|o| o.keystore().len()), Some(2));
}

#[tokio::test]
async fn oidc_a_flood_of_unknown_kids_costs_at_most_one_jwks_fetch_a_minute() {
    let key = RsaKey::generate("k-main").await;
    let peer = OidcPeer::start(&[&key]).await;
    let clock = ShiftedClock::new();
    let auth = Arc::new(authenticator(&peer, &clock, json!({})));
    check(&auth, &peer.access_token("scim:write", None).await).await.unwrap();
    // Discovery fetches the JWKS once to check it, then the keystore fetches it: both at start-up.
    let warm = peer.jwks_requests().await;
    assert_eq!(warm, 2);

    let flood = |round: usize| {
        let auth = auth.clone();
        let tokens: Vec<String> = (0..100)
            .map(|i| key.sign(json!({"typ": "at+jwt", "kid": format!("made-up-{round}-{i}")}), &claims(&peer)))
            .collect();
        async move {
            let unknown = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = tokens
                .into_iter()
                .map(|t| {
                    let (auth, unknown) = (auth.clone(), unknown.clone());
                    tokio::spawn(async move {
                        let f = auth.authenticate(Some(&format!("Bearer {t}"))).await.unwrap_err();
                        if f.reason == Reason::UnknownKid {
                            unknown.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("flood task");
            }
            unknown.load(Ordering::SeqCst)
        }
    };
    // Right after a fetch: the flood is answered from the cache, no fetch at all.
    assert_eq!(flood(0).await, 100);
    assert_eq!(peer.jwks_requests().await, warm);
    // A minute later: 100 concurrent unknown kids share a single fetch.
    clock.advance(Duration::from_secs(61));
    assert_eq!(flood(1).await, 100);
    assert_eq!(peer.jwks_requests().await, warm + 1);
    // And the good token still works from the cache.
    check(&auth, &peer.access_token("scim:write", None).await).await.unwrap();
    assert_eq!(peer.jwks_requests().await, warm + 1);
}

#[tokio::test]
async fn oidc_alg_none_and_hs256_with_the_rsa_public_key_are_rejected() {
    let key = RsaKey::generate("k-main").await;
    let peer = OidcPeer::start(&[&key]).await;
    let clock = ShiftedClock::new();
    let auth = authenticator(&peer, &clock, json!({"algorithms": ["RS256"]}));
    check(&auth, &peer.access_token("scim:write", None).await).await.unwrap();
    let body = b64(claims(&peer).to_string().as_bytes());

    for alg in ["none", "None", "NONE"] {
        let header = b64(json!({"alg": alg, "typ": "at+jwt", "kid": key.kid}).to_string().as_bytes());
        assert_eq!(check(&auth, &format!("{header}.{body}.")).await, Err(Reason::BadAlg), "{alg}");
    }
    // The classic: the verifier's RSA public key (PEM, as a library would load it; or the modulus) used as the
    // HMAC secret of an HS256 token.
    let secrets = [key.spki_pem.clone().into_bytes(), key.modulus(), key.public_jwk().to_string().into_bytes()];
    for (i, secret) in secrets.iter().enumerate() {
        let header = b64(json!({"alg": "HS256", "typ": "at+jwt", "kid": key.kid}).to_string().as_bytes());
        let msg = format!("{header}.{body}");
        let mac = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret), msg.as_bytes());
        assert_eq!(check(&auth, &format!("{msg}.{}", b64(mac.as_ref()))).await, Err(Reason::BadAlg), "secret {i}");
    }
    // An RS256 token re-labelled RS512 (allowed by no one here) or PS256.
    let good = key.sign(at_jwt(), &claims(&peer));
    let (_, rest) = good.split_once('.').unwrap();
    for alg in ["RS512", "PS256"] {
        let header = b64(json!({"alg": alg, "typ": "at+jwt", "kid": key.kid}).to_string().as_bytes());
        assert_eq!(check(&auth, &format!("{header}.{rest}")).await, Err(Reason::BadAlg), "{alg}");
    }
}

#[tokio::test]
async fn oidc_key_location_headers_are_ignored() {
    let key = RsaKey::generate("k-main").await;
    let attacker = RsaKey::generate("k-attacker").await;
    let peer = OidcPeer::start(&[&key]).await;
    let clock = ShiftedClock::new();
    let auth = authenticator(&peer, &clock, json!({}));
    check(&auth, &peer.access_token("scim:write", None).await).await.unwrap();

    // Where the headers point: a listener that counts connections, so "ignored" means "never contacted".
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_url = format!("http://{}/jwks", trap.local_addr().unwrap());
    let contacted = Arc::new(AtomicUsize::new(0));
    let seen = contacted.clone();
    let trap_task = tokio::spawn(async move {
        while trap.accept().await.is_ok() {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });

    let headers = [
        json!({"typ": "at+jwt", "jwk": attacker.public_jwk()}),
        json!({"typ": "at+jwt", "jku": trap_url}),
        json!({"typ": "at+jwt", "x5u": trap_url}),
        json!({"typ": "at+jwt", "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
        json!({"typ": "at+jwt", "jwk": attacker.public_jwk(), "jku": trap_url, "x5u": trap_url}),
    ];
    for h in &headers {
        // Signed by the attacker under the attacker's kid: no such key in the JWKS.
        assert_eq!(check(&auth, &attacker.sign(h.clone(), &claims(&peer))).await, Err(Reason::UnknownKid), "{h}");
        // Signed by the attacker under the provider's kid: the provider's key does not verify it.
        let mut with_kid = h.clone();
        with_kid["kid"] = json!(key.kid);
        assert_eq!(check(&auth, &attacker.sign(with_kid, &claims(&peer))).await, Err(Reason::BadSignature), "{h}");
        // Signed by the provider's key, the headers are harmless: they are not what makes it valid.
        let mut real = h.clone();
        real["kid"] = json!(key.kid);
        if h.get("jwk").is_none() {
            check(&auth, &key.sign(real, &claims(&peer))).await.unwrap();
        }
    }
    assert_eq!(contacted.load(Ordering::SeqCst), 0, "a jku/x5u URL was fetched");
    trap_task.abort();
}

#[tokio::test]
async fn oidc_an_id_token_is_not_accepted_as_an_access_token() {
    let key = RsaKey::generate("k-main").await;
    let peer = OidcPeer::start(&[&key]).await;
    let clock = ShiftedClock::new();
    let auth = authenticator(&peer, &clock, json!({"required_scopes": []}));
    check(&auth, &peer.access_token("scim:write", None).await).await.unwrap();

    // A real ID token from the same provider, same keys (CIBA): oidc-provider gives ID tokens no typ.
    let id_token = peer.id_token("alice").await;
    assert_eq!(check(&auth, &id_token).await, Err(Reason::BadTyp));
    // The same claims under typ JWT (as other IdPs write ID tokens): its audience is the client, not the API.
    let payload = id_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], json!(RP.0), "{claims}");
    assert_eq!(check(&auth, &key.sign(json!({"typ": "JWT"}), &claims)).await, Err(Reason::WrongAudience));
    // An ID token of the authorization-code shape (nonce, azp) even with the API as audience: rejected as such.
    let mut shaped = claims.clone();
    shaped["aud"] = json!([RP.0, SCIM_AUDIENCE]);
    shaped["azp"] = json!(RP.0);
    shaped["nonce"] = json!("n-0S6_WzA2Mj");
    assert_eq!(check(&auth, &key.sign(json!({"typ": "JWT"}), &shaped)).await, Err(Reason::IdToken));
}

/// `check-config` fetches the issuer's discovery document and keys, and names why when it cannot.
#[tokio::test]
async fn oidc_check_config_loads_the_issuers_keys_or_says_why_not() {
    let key = RsaKey::generate("k-check").await;
    let mut peer = OidcPeer::start(&[&key]).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("scim.toml");
    let closed = crate::support::free_port();
    std::fs::write(
        &config,
        format!(
            r#"
[litellm]
url = "http://127.0.0.1:{closed}"
api_key = "sk-unused"

[[sources]]
name = "idp"
type = "scim"

[sources.auth.oidc]
issuer = "{issuer}"
audience = "{SCIM_AUDIENCE}"

[[rules]]
name = "all"
match = {{ groups = ["*"] }}

[store]
path = "{store}"
"#,
            issuer = peer.issuer,
            store = dir.path().join("state.db").display(),
        ),
    )
    .expect("write the config");
    let run = || async {
        let out = tokio::process::Command::new(crate::support::binary())
            .arg("--config")
            .arg(&config)
            .arg("check-config")
            .output()
            .await
            .expect("run check-config");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = run().await;
    let line = out.lines().find(|l| l.contains("source \"idp\"")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.starts_with('✓') && line.contains("1 signing key(s)"), "{out}");
    assert!(out.contains("✗ LiteLLM"), "LiteLLM is not there: {out}");
    // The issuer down: the source's check fails and says what it could not do.
    peer.stop().await;
    let out = run().await;
    let line = out.lines().find(|l| l.contains("source \"idp\"")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.starts_with('✗'), "{out}");
    assert!(out.contains("auth.oidc: OIDC issuer") && out.contains("cannot load its signing keys"), "{out}");
}
