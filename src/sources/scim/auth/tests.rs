//! Unit tests, no network: tokens are signed here with ring (ES256/EdDSA keys generated per test), the JWKS is a
//! [`FakeJwks`], and time is a [`TestClock`]. The real-issuer tests are in tests/integration/oidc.rs.
//! Long because it is a table of hostile tokens (alg confusion, expiry, audience, issuer, key rotation, rate
//! limits), one test each; the fixtures they share are at the top.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use super::config::*;
use super::keystore::Lookup;
use super::*;

const ISSUER: &str = "https://idp.example.com/";
const AUDIENCE: &str = "https://scim.example.com/";
/// 2026-11-01T00:00:00Z: every token in these tests is relative to it.
const T0: u64 = 1_793_491_200;

// ------------------------------------------------------------------------------------------------ fixtures

struct TestClock(Mutex<SystemTime>);

impl TestClock {
    fn new() -> Arc<TestClock> {
        Arc::new(TestClock(Mutex::new(SystemTime::UNIX_EPOCH + Duration::from_secs(T0))))
    }
    fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

/// A JWKS that the test swaps at will, counting fetches; `yields` makes a fetch take a few polls, so concurrent
/// lookups really overlap it.
#[derive(Clone)]
struct FakeJwks(Arc<FakeInner>);

struct FakeInner {
    set: Mutex<Option<Value>>,
    fetches: AtomicUsize,
    yields: usize,
}

impl FakeJwks {
    fn new(set: Value) -> FakeJwks {
        FakeJwks(Arc::new(FakeInner { set: Mutex::new(Some(set)), fetches: AtomicUsize::new(0), yields: 0 }))
    }
    fn slow(set: Value) -> FakeJwks {
        FakeJwks(Arc::new(FakeInner { set: Mutex::new(Some(set)), fetches: AtomicUsize::new(0), yields: 20 }))
    }
    fn serve(&self, set: Value) {
        *self.0.set.lock().unwrap() = Some(set);
    }
    fn fail(&self) {
        *self.0.set.lock().unwrap() = None;
    }
    fn fetches(&self) -> usize {
        self.0.fetches.load(Ordering::SeqCst)
    }
}

impl JwksSource for FakeJwks {
    async fn fetch(&self) -> Result<JwkSet, JwksError> {
        self.0.fetches.fetch_add(1, Ordering::SeqCst);
        for _ in 0..self.0.yields {
            tokio::task::yield_now().await;
        }
        let set = self.0.set.lock().unwrap().clone();
        match set {
            Some(v) => discovery::parse_jwks(v.to_string().as_bytes())
                .map_err(|message| JwksError::Invalid { url: "fake".into(), message }),
            None => Err(JwksError::Fetch { url: "fake".into(), message: "connection refused".into() }),
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key of the test's own: ES256 (P-256) or EdDSA.
enum Signer {
    Es256(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

struct TestKey {
    kid: String,
    signer: Signer,
}

impl TestKey {
    fn es256(kid: &str) -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        TestKey { kid: kid.into(), signer: Signer::Es256(pair) }
    }

    fn ed25519(kid: &str) -> TestKey {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        TestKey { kid: kid.into(), signer: Signer::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()) }
    }

    fn public_bytes(&self) -> Vec<u8> {
        match &self.signer {
            Signer::Es256(p) => p.public_key().as_ref().to_vec(),
            Signer::Ed(p) => p.public_key().as_ref().to_vec(),
        }
    }

    fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Es256(_) => "ES256",
            Signer::Ed(_) => "EdDSA",
        }
    }

    fn jwk(&self) -> Value {
        let public = self.public_bytes();
        match self.signer {
            Signer::Es256(_) => json!({
                "kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
                "x": b64(&public[1..33]), "y": b64(&public[33..65]),
            }),
            Signer::Ed(_) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "alg": "EdDSA", "x": b64(&public)})
            }
        }
    }

    fn sign_raw(&self, msg: &[u8]) -> Vec<u8> {
        match &self.signer {
            Signer::Es256(p) => p.sign(&SystemRandom::new(), msg).unwrap().as_ref().to_vec(),
            Signer::Ed(p) => p.sign(msg).as_ref().to_vec(),
        }
    }

    /// A compact JWS of `header` (alg and kid added unless present) and `claims`.
    fn sign(&self, header: Value, claims: &Value) -> String {
        let mut header = header.as_object().cloned().unwrap();
        header.entry("alg").or_insert(json!(self.alg()));
        header.entry("kid").or_insert(json!(self.kid));
        let msg =
            format!("{}.{}", b64(Value::Object(header).to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let sig = self.sign_raw(msg.as_bytes());
        format!("{msg}.{}", b64(&sig))
    }

    fn token(&self, claims: &Value) -> String {
        self.sign(json!({"typ": "at+jwt"}), claims)
    }
}

fn jwks_of(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
}

/// Claims of a good client-credentials access token, issued at T0 for an hour.
fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "scim-client", "client_id": "scim-client",
        "iat": T0, "nbf": T0, "exp": T0 + 3600, "scope": "scim:read scim:write", "jti": "1",
    })
}

fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

fn settings(oidc: Value) -> AuthSettings {
    let mut o = json!({"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["ES256", "EdDSA"]});
    for (k, v) in oidc.as_object().unwrap() {
        o[k] = v.clone();
    }
    validate_value("auth", &json!({"oidc": o})).unwrap_or_else(|p| panic!("{p:?}"))
}

struct Rig {
    auth: Authenticator<FakeJwks>,
    jwks: FakeJwks,
    clock: Arc<TestClock>,
}

fn rig_with(oidc: Value, keys: &[&TestKey]) -> Rig {
    rig_from(&settings(oidc), keys)
}

fn rig_from(settings: &AuthSettings, keys: &[&TestKey]) -> Rig {
    let clock = TestClock::new();
    let jwks = FakeJwks::new(jwks_of(keys));
    let auth = Authenticator::with_source(settings, |_| jwks.clone(), clock.clone());
    Rig { auth, jwks, clock }
}

impl Rig {
    async fn check(&self, token: &str) -> Result<Principal, Reason> {
        self.auth.authenticate(Some(&format!("Bearer {token}"))).await.map_err(|f| {
            assert_eq!(f.method, Method::Oidc, "{f:?}");
            f.reason
        })
    }
}

// ------------------------------------------------------------------------------------------------ static tokens

#[test]
fn hash_token_is_sha256_hex_with_prefix() {
    // FIPS 180-2 test vector for "abc".
    assert_eq!(hash_token("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

#[test]
fn generated_tokens_are_prefixed_random_and_url_safe() {
    let a = generate_token();
    let b = generate_token();
    assert_ne!(a, b);
    assert!(a.starts_with("lsync_"), "{a}");
    assert_eq!(a.len(), "lsync_".len() + 43);
    assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'), "{a}");
    // A generated token is accepted by the header parser and is not mistaken for a JWT.
    assert!(parse_bearer(Some(&format!("Bearer {a}"))).is_ok());
    assert!(!jwt::looks_like_jwt(&a));
}

fn static_auth(tokens: &[&str]) -> Authenticator<FakeJwks> {
    let hashes: Vec<String> = tokens.iter().map(|t| hash_token(t)).collect();
    let s = validate_value("auth", &json!({ "tokens": hashes })).unwrap();
    Authenticator::with_source(&s, |_| FakeJwks::new(json!({"keys": []})), TestClock::new())
}

#[tokio::test]
async fn static_tokens_rotate_with_two_hashes_active() {
    let (old, new) = (generate_token(), generate_token());
    let auth = static_auth(&[&old, &new]);
    let p_old = auth.authenticate(Some(&format!("Bearer {old}"))).await.unwrap();
    let p_new = auth.authenticate(Some(&format!("Bearer {new}"))).await.unwrap();
    assert_eq!(p_old.method, Method::Static);
    assert_ne!(p_old.token_label, p_new.token_label, "the label tells which hash matched");
    assert_eq!(p_old.token_label.as_deref(), Some(&hash_token(&old)[..15]));
    assert_eq!(p_old.subject, format!("static:{}", &hash_token(&old)[..15]));

    // After rotation only the new one is configured.
    let auth = static_auth(&[&new]);
    let f = auth.authenticate(Some(&format!("Bearer {old}"))).await.unwrap_err();
    assert_eq!((f.method, f.reason), (Method::Static, Reason::UnknownToken));
    assert!(auth.authenticate(Some(&format!("Bearer {new}"))).await.is_ok());
}

#[tokio::test]
async fn static_token_must_match_exactly() {
    let t = generate_token();
    let auth = static_auth(&[&t]);
    let near_misses = [
        format!("{t}x"),
        t[..t.len() - 1].to_string(),
        t.replacen("lsync_", "lsynd_", 1),
        t.to_uppercase(),
        // The hash itself is not the token.
        hash_token(&t).trim_start_matches("sha256:").to_string(),
    ];
    for bad in near_misses {
        let f = auth.authenticate(Some(&format!("Bearer {bad}"))).await.unwrap_err();
        assert_eq!(f.reason, Reason::UnknownToken, "{bad}");
        assert_eq!(f.status(), StatusCode::UNAUTHORIZED);
    }
}

#[test]
fn static_tokens_compare_every_hash() {
    // Constant time is by construction (subtle's ct_eq over every hash, no early return); what can be checked is
    // that a match anywhere in the list is found and a miss is a miss.
    let tokens: Vec<String> = (0..5).map(|_| generate_token()).collect();
    let st = StaticTokens::new(tokens.iter().map(|t| static_tokens::parse_hash(&hash_token(t)).unwrap()).collect());
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(st.find(&SecretString::from(t.clone())), Some(i));
    }
    assert_eq!(st.find(&SecretString::from(generate_token())), None);
    assert_eq!(format!("{st:?}"), "StaticTokens(5 hashes)");
}

#[tokio::test]
async fn a_jwt_is_not_checked_against_static_hashes_when_oidc_is_on_and_vice_versa() {
    let key = TestKey::es256("k1");
    let static_token = generate_token();
    let mut s = settings(json!({}));
    s.token_hashes = vec![static_tokens::parse_hash(&hash_token(&static_token)).unwrap()];
    let auth = Authenticator::with_source(&s, |_| FakeJwks::new(jwks_of(&[&key])), TestClock::new());
    let p = auth.authenticate(Some(&format!("Bearer {static_token}"))).await.unwrap();
    assert_eq!(p.method, Method::Static);
    let p = auth.authenticate(Some(&format!("Bearer {}", key.token(&claims())))).await.unwrap();
    assert_eq!(p.method, Method::Oidc);

    // Without OIDC a JWT is just an unknown static token.
    let auth = static_auth(&[&static_token]);
    let f = auth.authenticate(Some(&format!("Bearer {}", key.token(&claims())))).await.unwrap_err();
    assert_eq!((f.method, f.reason), (Method::Static, Reason::UnknownToken));
}

// ------------------------------------------------------------------------------------------------ header parsing

#[test]
fn bearer_scheme_is_case_insensitive_and_tolerates_extra_spaces() {
    for h in [
        "Bearer abc",
        "bearer abc",
        "BEARER abc",
        "bEaReR abc",
        "Bearer    abc",
        "Bearer abc   ",
        "  Bearer abc",
        "Bearer\tabc",
        "Bearer a-b.c_d~e+f/g==",
        "Bearer abc=",
    ] {
        let t = parse_bearer(Some(h)).unwrap_or_else(|r| panic!("{h:?}: {r}"));
        assert!(secrecy::ExposeSecret::expose_secret(&t).starts_with('a'), "{h:?}");
    }
}

#[test]
fn bad_authorization_headers_are_classified() {
    let cases: &[(Option<&str>, Reason)] = &[
        (None, Reason::Missing),
        (Some(""), Reason::Malformed),
        (Some("   "), Reason::Malformed),
        (Some("Bearer"), Reason::Malformed),
        (Some("Bearer "), Reason::Malformed),
        (Some("Bearer    "), Reason::Malformed),
        (Some("Bearer abc def"), Reason::Malformed),
        (Some("Bearer tökén"), Reason::Malformed),
        (Some("Bearer ab\u{0}c"), Reason::Malformed),
        (Some("Bearer ==="), Reason::Malformed),
        (Some("Bearer a=b"), Reason::Malformed),
        (Some("Bearer \"abc\""), Reason::Malformed),
        (Some("Bearer,abc"), Reason::UnsupportedScheme),
        (Some("Basic dXNlcjpwYXNz"), Reason::UnsupportedScheme),
        (Some("Bearerabc"), Reason::UnsupportedScheme),
        (Some("Tökén abc"), Reason::UnsupportedScheme),
    ];
    for (h, want) in cases {
        assert_eq!(parse_bearer(*h).map(|_| ()), Err(*want), "{h:?}");
    }
}

#[tokio::test]
async fn failures_map_to_rfc6750_challenges() {
    let auth = static_auth(&[&generate_token()]);
    let f = auth.authenticate(None).await.unwrap_err();
    assert_eq!((f.method, f.reason, f.status()), (Method::None, Reason::Missing, StatusCode::UNAUTHORIZED));
    assert_eq!(f.www_authenticate(), "Bearer realm=\"litellm-sync\"");

    let f = auth.authenticate(Some("Bearer ")).await.unwrap_err();
    assert_eq!(f.status(), StatusCode::BAD_REQUEST);
    assert!(f.www_authenticate().contains("error=\"invalid_request\""), "{}", f.www_authenticate());

    let f = auth.authenticate(Some("Bearer nope")).await.unwrap_err();
    assert!(f.www_authenticate().starts_with("Bearer realm=\"litellm-sync\", error=\"invalid_token\""));

    let f = AuthFailure {
        method: Method::Oidc,
        reason: Reason::MissingScope,
        required_scopes: vec!["a".into(), "b".into()],
    };
    assert_eq!(f.status(), StatusCode::FORBIDDEN);
    assert!(f.www_authenticate().contains("error=\"insufficient_scope\""));
    assert!(f.www_authenticate().ends_with(", scope=\"a b\""), "{}", f.www_authenticate());

    assert_eq!(AuthFailure::new(Method::Oidc, Reason::JwksUnavailable).status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn reason_labels_are_unique_snake_case() {
    let labels: std::collections::BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels.len(), Reason::ALL.len());
    assert!(labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    // Descriptions go into a quoted header parameter: no quotes or backslashes.
    assert!(Reason::ALL.iter().all(|r| !r.description().contains(['"', '\\'])));
}

#[tokio::test]
async fn the_token_never_appears_in_debug_or_errors() {
    let t = generate_token();
    let auth = static_auth(&[&generate_token()]);
    let f = auth.authenticate(Some(&format!("Bearer {t}"))).await.unwrap_err();
    for text in [
        format!("{f:?}"),
        f.to_string(),
        f.www_authenticate(),
        format!("{:?}", parse_bearer(Some(&format!("Bearer {t}")))),
    ] {
        assert!(!text.contains(&t[6..]), "{text}");
    }
}

// ------------------------------------------------------------------------------------------------ JWT verification

#[tokio::test]
async fn a_good_access_token_is_accepted() {
    let key = TestKey::es256("k1");
    let rig = rig_with(json!({"required_scopes": ["scim:write"]}), &[&key]);
    let p = rig.check(&key.token(&claims())).await.unwrap();
    assert_eq!(p.method, Method::Oidc);
    assert_eq!(p.subject, "scim-client");
    assert_eq!(p.client_id.as_deref(), Some("scim-client"));
    assert_eq!(p.issuer.as_deref(), Some(ISSUER));
    assert_eq!(p.scopes, vec!["scim:read", "scim:write"]);
    // EdDSA too, and an aud array that contains ours.
    let ed = TestKey::ed25519("k2");
    let rig = rig_with(json!({}), &[&key, &ed]);
    rig.check(&ed.token(&with(claims(), json!({"aud": ["other", AUDIENCE]})))).await.unwrap();
    assert_eq!(rig.jwks.fetches(), 1, "one fetch loads both keys");
}

#[tokio::test]
async fn issuer_and_audience_must_match_exactly() {
    let key = TestKey::es256("k1");
    let rig = rig_with(json!({}), &[&key]);
    let cases = [
        (json!({"iss": "https://idp.example.com"}), Reason::WrongIssuer),
        (json!({"iss": "https://evil.example.com/"}), Reason::WrongIssuer),
        (json!({"iss": null}), Reason::WrongIssuer),
        (json!({"iss": [ISSUER]}), Reason::WrongIssuer),
        (json!({"aud": "https://scim.example.com"}), Reason::WrongAudience),
        (json!({"aud": ["a", "b"]}), Reason::WrongAudience),
        (json!({"aud": null}), Reason::WrongAudience),
        (json!({"aud": {"v": AUDIENCE}}), Reason::WrongAudience),
    ];
    for (change, want) in cases {
        assert_eq!(rig.check(&key.token(&with(claims(), change.clone()))).await, Err(want), "{change}");
    }
}

#[tokio::test]
async fn lifetimes_are_checked_with_the_leeway() {
    let key = TestKey::es256("k1");
    let rig = rig_with(json!({"leeway": "30s"}), &[&key]);
    let c = with(claims(), json!({"exp": T0 + 100}));
    rig.clock.advance(Duration::from_secs(129));
    assert!(rig.check(&key.token(&c)).await.is_ok(), "within the leeway");
    rig.clock.advance(Duration::from_secs(2));
    assert_eq!(rig.check(&key.token(&c)).await, Err(Reason::Expired));

    let rig = rig_with(json!({"leeway": "30s"}), &[&key]);
    assert!(rig.check(&key.token(&with(claims(), json!({"nbf": T0 + 30})))).await.is_ok());
    assert_eq!(rig.check(&key.token(&with(claims(), json!({"nbf": T0 + 31})))).await, Err(Reason::NotYetValid));
    assert_eq!(rig.check(&key.token(&with(claims(), json!({"iat": T0 + 600})))).await, Err(Reason::BadIat));
    assert_eq!(rig.check(&key.token(&with(claims(), json!({"exp": null})))).await, Err(Reason::MissingClaim));
    // Type confusion: a string date is malformed, not absent.
    assert_eq!(rig.check(&key.token(&with(claims(), json!({"exp": "9999999999"})))).await, Err(Reason::MalformedJwt));
    assert_eq!(rig.check(&key.token(&with(claims(), json!({"nbf": "0"})))).await, Err(Reason::MalformedJwt));
    // Fractional NumericDates are valid.
    assert!(rig.check(&key.token(&with(claims(), json!({"exp": T0 as f64 + 10.5})))).await.is_ok());
    // No nbf, no iat: fine (only exp is required).
    assert!(rig.check(&key.token(&with(claims(), json!({"nbf": null, "iat": null})))).await.is_ok());
}

#[tokio::test]
async fn the_algorithm_comes_from_the_config_never_from_the_token() {
    let key = TestKey::es256("k1");
    let rig = rig_with(json!({"algorithms": ["ES256"]}), &[&key]);
    let body = b64(claims().to_string().as_bytes());

    // alg: none, with and without a signature.
    let none = format!("{}.{body}.", b64(br#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#));
    assert_eq!(rig.check(&none).await, Err(Reason::BadAlg));
    assert_eq!(rig.check(&format!("{none}c2ln")).await, Err(Reason::BadAlg));
    // No alg at all.
    let no_alg = format!("{}.{body}.c2ln", b64(br#"{"typ":"at+jwt","kid":"k1"}"#));
    assert_eq!(rig.check(&no_alg).await, Err(Reason::BadAlg));

    // HS256 "signed" with the public key bytes as the HMAC secret (and with the JWK JSON): the classic confusion.
    for secret in [key.public_bytes(), key.jwk().to_string().into_bytes()] {
        let msg = format!("{}.{body}", b64(br#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#));
        let mac = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret), msg.as_bytes());
        assert_eq!(rig.check(&format!("{msg}.{}", b64(mac.as_ref()))).await, Err(Reason::BadAlg));
    }

    // An allowed algorithm that does not fit the key: EdDSA header, kid of the EC key.
    let ed = TestKey::ed25519("k1");
    let rig = rig_with(json!({"algorithms": ["ES256", "EdDSA"]}), &[&key]);
    assert_eq!(rig.check(&ed.token(&claims())).await, Err(Reason::BadAlg));
}

#[tokio::test]
async fn key_headers_other_than_kid_are_ignored() {
    let key = TestKey::es256("k1");
    let attacker = TestKey::es256("evil");
    let rig = rig_with(json!({}), &[&key]);
    // The attacker's own key embedded in the token, with jku/x5u pointing at the attacker.
    let header = json!({
        "typ": "at+jwt", "jwk": attacker.jwk(), "jku": "https://evil.example/jwks", "x5u": "https://evil.example/cert",
    });
    assert_eq!(rig.check(&attacker.sign(header.clone(), &claims())).await, Err(Reason::UnknownKid));
    // The same, but claiming the real kid: the real key does not verify the attacker's signature.
    let mut h = header;
    h["kid"] = json!("k1");
    assert_eq!(rig.check(&attacker.sign(h, &claims())).await, Err(Reason::BadSignature));
    // The JWKS was fetched once (for the first unknown kid), never the jku.
    assert_eq!(rig.jwks.fetches(), 1);
    // A token without kid is not matched against keys by trial.
    let no_kid = attacker.sign(json!({"typ": "at+jwt", "kid": null}), &claims());
    let no_kid = {
        // Rebuild without the kid member at all.
        let mut parts = no_kid.split('.');
        let _ = parts.next();
        let msg = format!("{}.{}", b64(br#"{"alg":"ES256","typ":"at+jwt"}"#), parts.next().unwrap());
        format!("{msg}.{}", b64(&key.sign_raw(msg.as_bytes())))
    };
    assert_eq!(rig.check(&no_kid).await, Err(Reason::UnknownKid));
}

#[tokio::test]
async fn a_tampered_token_fails_its_signature() {
    let key = TestKey::es256("k1");
    let rig = rig_with(json!({}), &[&key]);
    let good = key.token(&claims());
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[1] = b64(with(claims(), json!({"sub": "admin"})).to_string().as_bytes());
    assert_eq!(rig.check(&parts.join(".")).await, Err(Reason::BadSignature));
    let mut sig = URL_SAFE_NO_PAD.decode(good.rsplit('.').next().unwrap()).unwrap();
    sig[0] ^= 1;
    let flipped = format!("{}.{}", good.rsplit_once('.').unwrap().0, b64(&sig));
    assert_eq!(rig.check(&flipped).await, Err(Reason::BadSignature));
    let junk: &[(&str, Method, Reason)] = &[
        ("a.b.c", Method::Oidc, Reason::MalformedJwt),
        ("e30.e30.", Method::Oidc, Reason::BadAlg),
        ("e30.e30.e30", Method::Oidc, Reason::BadAlg),
        ("!!.e30.e30", Method::None, Reason::Malformed),
        // Not three segments: not a JWT, so it is a (wrong) static token.
        ("a.b", Method::Static, Reason::UnknownToken),
        ("a.b.c.d", Method::Static, Reason::UnknownToken),
    ];
    for (token, method, reason) in junk {
        let f = rig.auth.authenticate(Some(&format!("Bearer {token}"))).await.unwrap_err();
        assert_eq!((f.method, f.reason), (*method, *reason), "{token}");
    }
    let huge = format!("{}.{}.{}", "a".repeat(9000), "b".repeat(9000), "c");
    assert_eq!(rig.check(&huge).await, Err(Reason::MalformedJwt));
    assert_eq!(rig.jwks.fetches(), 1);
}

#[tokio::test]
async fn typ_is_checked_against_the_allowlist() {
    let key = TestKey::es256("k1");
    let rig = rig_with(json!({}), &[&key]);
    for ok in ["at+jwt", "JWT", "application/at+JWT", "jwt"] {
        assert!(rig.check(&key.sign(json!({"typ": ok}), &claims())).await.is_ok(), "{ok}");
    }
    for bad in ["id_token+jwt", "secevent+jwt", ""] {
        assert_eq!(rig.check(&key.sign(json!({"typ": bad}), &claims())).await, Err(Reason::BadTyp), "{bad}");
    }
    assert_eq!(rig.check(&key.sign(json!({}), &claims())).await, Err(Reason::BadTyp), "no typ");
    let strict = rig_with(json!({"allowed_typ": ["at+jwt"]}), &[&key]);
    assert_eq!(strict.check(&key.sign(json!({"typ": "JWT"}), &claims())).await, Err(Reason::BadTyp));
}

#[tokio::test]
async fn an_id_token_is_not_an_access_token() {
    let key = TestKey::es256("k1");
    let rig = rig_with(json!({}), &[&key]);
    // Shaped like an ID token for client "rp": aud = client id, azp, nonce, typ JWT.
    let id = with(claims(), json!({"aud": "rp", "azp": "rp", "nonce": "n-0S6_WzA2Mj", "scope": null}));
    assert_eq!(rig.check(&key.sign(json!({"typ": "JWT"}), &id)).await, Err(Reason::IdToken));
    // Even if some IdP put our audience into it, the ID-token-only claims give it away.
    for marker in ["nonce", "at_hash", "c_hash", "s_hash"] {
        let c = with(claims(), json!({ marker: "x" }));
        assert_eq!(rig.check(&key.sign(json!({"typ": "JWT"}), &c)).await, Err(Reason::IdToken), "{marker}");
    }
    // Without markers, the audience still stops it.
    let plain = with(claims(), json!({"aud": "rp", "azp": "rp"}));
    assert_eq!(rig.check(&key.sign(json!({"typ": "JWT"}), &plain)).await, Err(Reason::WrongAudience));
}

#[tokio::test]
async fn scopes_and_required_claims() {
    let key = TestKey::es256("k1");
    let rig = rig_with(
        json!({"required_scopes": ["scim:write"], "required_claims": {"roles": "SCIM.Write", "tenant": "acme"}}),
        &[&key],
    );
    let good = with(claims(), json!({"roles": ["Other", "SCIM.Write"], "tenant": "acme"}));
    assert!(rig.check(&key.token(&good)).await.is_ok());
    // scp as an array (Okta) or a string (Entra).
    assert!(rig.check(&key.token(&with(good.clone(), json!({"scope": null, "scp": ["scim:write"]})))).await.is_ok());
    assert!(rig.check(&key.token(&with(good.clone(), json!({"scope": null, "scp": "a scim:write"})))).await.is_ok());
    let f = rig
        .auth
        .authenticate(Some(&format!("Bearer {}", key.token(&with(good.clone(), json!({"scope": "scim:read"}))))))
        .await
        .unwrap_err();
    assert_eq!((f.reason, f.status()), (Reason::MissingScope, StatusCode::FORBIDDEN));
    assert!(f.www_authenticate().contains("scope=\"scim:write\""));
    assert_eq!(
        rig.check(&key.token(&with(good.clone(), json!({"scope": "scim:writer"})))).await,
        Err(Reason::MissingScope)
    );
    assert_eq!(rig.check(&key.token(&with(good.clone(), json!({"roles": null})))).await, Err(Reason::MissingClaim));
    assert_eq!(rig.check(&key.token(&with(good.clone(), json!({"roles": "Other"})))).await, Err(Reason::WrongClaim));
    assert_eq!(rig.check(&key.token(&with(good, json!({"tenant": "ACME"})))).await, Err(Reason::WrongClaim));
}

#[tokio::test]
async fn entra_blank_secret_tokens_need_the_pinned_tenant_and_app() {
    let tenant = "11111111-2222-3333-4444-555555555555";
    let app = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    let key = TestKey::es256("k1");
    let s = validate_value(
        "auth",
        &json!({"oidc": {"algorithms": ["ES256"], "entra_blank_secret": {"tenant_id": tenant, "app_id": app.to_uppercase()}}}),
    )
    .unwrap();
    let o = s.oidc.as_ref().unwrap();
    assert_eq!(o.issuer.as_str(), format!("https://sts.windows.net/{tenant}/"));
    assert_eq!(o.audience, ENTRA_PROVISIONING_AUDIENCE);
    let rig = rig_from(&s, &[&key]);
    let entra = with(
        claims(),
        json!({"iss": format!("https://sts.windows.net/{tenant}/"), "aud": ENTRA_PROVISIONING_AUDIENCE, "tid": tenant,
               "appid": app, "scope": null}),
    );
    let jwt = |c: &Value| key.sign(json!({"typ": "JWT"}), c);
    assert!(rig.check(&jwt(&entra)).await.is_ok());
    assert!(rig.check(&jwt(&with(entra.clone(), json!({"appid": null, "azp": app})))).await.is_ok());
    let other = "99999999-2222-3333-4444-555555555555";
    assert_eq!(rig.check(&jwt(&with(entra.clone(), json!({"tid": other})))).await, Err(Reason::WrongTenant));
    assert_eq!(rig.check(&jwt(&with(entra.clone(), json!({"tid": null})))).await, Err(Reason::WrongTenant));
    assert_eq!(rig.check(&jwt(&with(entra.clone(), json!({"appid": other})))).await, Err(Reason::WrongApp));
    assert_eq!(rig.check(&jwt(&with(entra.clone(), json!({"appid": null})))).await, Err(Reason::WrongApp));
    let other_iss = format!("https://sts.windows.net/{other}/");
    assert_eq!(rig.check(&jwt(&with(entra, json!({"iss": other_iss, "tid": other})))).await, Err(Reason::WrongIssuer));
}

// ------------------------------------------------------------------------------------------------ keystore

fn store(keys: &[&TestKey]) -> (KeyStore<FakeJwks>, FakeJwks, Arc<TestClock>) {
    let clock = TestClock::new();
    let jwks = FakeJwks::new(jwks_of(keys));
    (KeyStore::new(jwks.clone(), clock.clone()), jwks, clock)
}

fn found(l: &Lookup) -> bool {
    matches!(l, Lookup::Found(_))
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_a_minute() {
    let k1 = TestKey::es256("k1");
    let (ks, jwks, clock) = store(&[&k1]);
    assert!(found(&ks.get("k1").await));
    assert!(found(&ks.get("k1").await));
    assert_eq!(jwks.fetches(), 1, "a known kid never fetches");
    // A flood of made-up kids within the minute: no fetch at all (the first fetch was just now).
    for i in 0..500 {
        assert!(matches!(ks.get(&format!("made-up-{i}")).await, Lookup::Unknown));
    }
    assert_eq!(jwks.fetches(), 1);
    clock.advance(Duration::from_secs(59));
    assert!(matches!(ks.get("made-up").await, Lookup::Unknown));
    assert_eq!(jwks.fetches(), 1, "59 s after the last fetch");
    clock.advance(Duration::from_secs(2));
    for i in 0..500 {
        assert!(matches!(ks.get(&format!("again-{i}")).await, Lookup::Unknown));
    }
    assert_eq!(jwks.fetches(), 2, "one fetch for the whole flood, 61 s after the previous one");
    assert_eq!(ks.fetch_count(), 2);
}

#[tokio::test]
async fn rotation_is_picked_up_and_removed_keys_are_revoked() {
    let (k1, k2) = (TestKey::es256("k1"), TestKey::es256("k2"));
    let (ks, jwks, clock) = store(&[&k1]);
    assert!(found(&ks.get("k1").await));
    jwks.serve(jwks_of(&[&k2]));
    assert!(matches!(ks.get("k2").await, Lookup::Unknown), "rotated within the minute: not yet");
    clock.advance(Duration::from_secs(61));
    assert!(found(&ks.get("k2").await));
    assert!(matches!(ks.get("k1").await, Lookup::Unknown), "k1 left the JWKS: revoked");
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_old_keys_and_is_rate_limited_too() {
    let k1 = TestKey::es256("k1");
    let (ks, jwks, clock) = store(&[&k1]);
    assert!(found(&ks.get("k1").await));
    jwks.fail();
    clock.advance(Duration::from_secs(61));
    assert!(matches!(ks.get("k2").await, Lookup::Unavailable));
    assert!(found(&ks.get("k1").await), "old keys kept");
    for _ in 0..100 {
        assert!(matches!(ks.get("k2").await, Lookup::Unavailable));
    }
    assert_eq!(jwks.fetches(), 2, "a failing IdP is not hammered");
    // A JWKS without usable keys is a failure too, not a reason to drop every key.
    jwks.serve(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k9"}]}));
    clock.advance(Duration::from_secs(61));
    assert!(matches!(ks.get("k9").await, Lookup::Unavailable));
    assert!(found(&ks.get("k1").await));
    // Recovery.
    jwks.serve(jwks_of(&[&k1]));
    clock.advance(Duration::from_secs(61));
    assert!(matches!(ks.get("k2").await, Lookup::Unknown));
}

#[tokio::test]
async fn the_first_fetch_failing_reports_unavailable() {
    let k1 = TestKey::es256("k1");
    let (ks, jwks, _clock) = store(&[&k1]);
    jwks.fail();
    assert!(matches!(ks.get("k1").await, Lookup::Unavailable));
    assert!(!ks.preload().await);
    assert_eq!(jwks.fetches(), 1, "preload respects the rate limit too");
    assert!(ks.is_empty());

    let rig = rig_with(json!({}), &[&k1]);
    rig.jwks.fail();
    assert!(!rig.auth.preflight().await);
    let f = rig.auth.authenticate(Some(&format!("Bearer {}", k1.token(&claims())))).await.unwrap_err();
    assert_eq!((f.reason, f.status()), (Reason::JwksUnavailable, StatusCode::SERVICE_UNAVAILABLE));
    rig.jwks.serve(jwks_of(&[&k1]));
    rig.clock.advance(Duration::from_secs(60));
    assert!(rig.auth.preflight().await);
    assert!(rig.check(&k1.token(&with(claims(), json!({"exp": T0 + 3600})))).await.is_ok());
}

#[tokio::test]
async fn concurrent_misses_share_one_fetch() {
    let k1 = TestKey::es256("k1");
    let clock = TestClock::new();
    let jwks = FakeJwks::slow(jwks_of(&[&k1]));
    let ks = KeyStore::new(jwks.clone(), clock.clone());
    // One task polling 50 lookups round-robin: the first starts the (slow) fetch, the others queue on the lock.
    let results = futures::future::join_all((0..50).map(|i| ks.get(if i % 2 == 0 { "k1" } else { "nope" }))).await;
    assert_eq!(jwks.fetches(), 1);
    assert_eq!(results.iter().filter(|l| found(l)).count(), 25);
}

#[test]
fn unusable_jwks_entries_are_skipped() {
    let k1 = TestKey::es256("k1");
    let mut no_kid = k1.jwk();
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut enc = k1.jwk();
    enc["kid"] = json!("enc");
    enc["use"] = json!("enc");
    let set = json!({"keys": [
        k1.jwk(), no_kid, enc,
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "RSA", "kid": "broken"},
        {"kty": "weird", "kid": "future"},
        "not an object",
    ]});
    let parsed = discovery::parse_jwks(set.to_string().as_bytes()).unwrap();
    let clock = TestClock::new();
    let ks = KeyStore::new(FakeJwks::new(set), clock);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert!(found(&ks.get("k1").await));
        for kid in ["enc", "hmac", "broken", "future"] {
            assert!(matches!(ks.get(kid).await, Lookup::Unknown), "{kid}");
        }
    });
    assert_eq!(ks.len(), 1);
    assert!(parsed.keys.len() >= 3, "one bad key does not hide the others");
    assert!(discovery::parse_jwks(b"[]").is_err());
    assert!(discovery::parse_jwks(b"{").is_err());
}

// ------------------------------------------------------------------------------------------------ config validation

fn problems(raw: Value) -> Vec<(String, String)> {
    match validate_value("sources[0].auth", &raw) {
        Ok(s) => panic!("expected problems, got {s:?}"),
        Err(p) => p.into_iter().map(|p| (p.path, p.message)).collect(),
    }
}

fn has(problems: &[(String, String)], path: &str, needle: &str) -> bool {
    problems.iter().any(|(p, m)| p == path && m.contains(needle))
}

#[test]
fn config_accepts_tokens_only_oidc_only_and_both() {
    let h = hash_token(&generate_token());
    let s = validate_value("auth", &json!({"tokens": [h]})).unwrap();
    assert_eq!(s.token_hashes.len(), 1);
    assert!(s.oidc.is_none());
    let s = validate_value("auth", &json!({"oidc": {"issuer": ISSUER, "audience": AUDIENCE}})).unwrap();
    let o = s.oidc.unwrap();
    assert_eq!(o.algorithms, vec![jsonwebtoken::Algorithm::RS256]);
    assert_eq!(o.leeway, Duration::from_secs(30));
    assert_eq!(o.allowed_typ, vec!["at+jwt", "jwt"]);
    assert_eq!(o.issuer.as_str(), ISSUER, "kept byte for byte (trailing slash included)");
    let s = validate_value(
        "auth",
        &json!({"tokens": [h.to_uppercase().replace("SHA256:", "sha256:")], "oidc": {"issuer": "http://127.0.0.1:9/x", "audience": "a", "leeway": "60s"}}),
    )
    .unwrap();
    assert_eq!(s.oidc.unwrap().leeway, Duration::from_secs(60));
}

#[test]
fn config_reports_every_problem_with_its_path() {
    let p = problems(json!({
        "tokens": ["lsync_plaintextplaintext", "sha256:abc", "md5:00", hash_token("x"), hash_token("x")],
        "extra": 1,
        "oidc": {
            "issuer": "http://idp.example.com/", "audience": "",
            "algorithms": ["RS256", "HS256", "none", "RS256", "XY1"],
            "leeway": "61s", "required_scopes": ["a b", ""],
            "required_claims": {"iss": "x", "roles": ["a"]},
            "allowed_typ": [" "],
            "unknown_thing": true,
        },
    }));
    let want = [
        ("sources[0].auth.tokens[0]", "plaintext token"),
        ("sources[0].auth.tokens[1]", "64 hex digits"),
        ("sources[0].auth.tokens[2]", "hash-token"),
        ("sources[0].auth.tokens[4]", "duplicate"),
        ("sources[0].auth.extra", "unknown key"),
        ("sources[0].auth.oidc.unknown_thing", "unknown key"),
        ("sources[0].auth.oidc.issuer", "must be https"),
        ("sources[0].auth.oidc.audience", "must not be empty"),
        ("sources[0].auth.oidc.algorithms[1]", "symmetric"),
        ("sources[0].auth.oidc.algorithms[2]", "unsigned"),
        ("sources[0].auth.oidc.algorithms[3]", "duplicate"),
        ("sources[0].auth.oidc.algorithms[4]", "unknown algorithm"),
        ("sources[0].auth.oidc.leeway", "maximum of 60s"),
        ("sources[0].auth.oidc.required_scopes[0]", "not a scope"),
        ("sources[0].auth.oidc.required_scopes[1]", "not a scope"),
        ("sources[0].auth.oidc.required_claims.iss", "always checked"),
        ("sources[0].auth.oidc.required_claims.roles", "string, number or boolean"),
        ("sources[0].auth.oidc.allowed_typ[0]", "must not be empty"),
    ];
    for (path, needle) in want {
        assert!(has(&p, path, needle), "{path} / {needle} not in {p:#?}");
    }
    assert_eq!(p.len(), want.len(), "{p:#?}");
}

#[test]
fn config_needs_some_way_to_authenticate() {
    let p = problems(json!({}));
    assert!(has(&p, "sources[0].auth", "no way to authenticate"), "{p:?}");
    let p = problems(json!({"oidc": {}}));
    assert!(has(&p, "sources[0].auth.oidc.issuer", "required"), "{p:?}");
    assert!(has(&p, "sources[0].auth.oidc.audience", "required"), "{p:?}");
    let p =
        problems(json!({"oidc": {"issuer": "https://idp/?x=1", "audience": "a", "algorithms": [], "allowed_typ": []}}));
    assert!(has(&p, "sources[0].auth.oidc.issuer", "query"), "{p:?}");
    assert!(has(&p, "sources[0].auth.oidc.algorithms", "at least one"), "{p:?}");
    assert!(has(&p, "sources[0].auth.oidc.allowed_typ", "at least one"), "{p:?}");
    let p = problems(json!({"tokens": "sha256:00"}));
    assert!(p.iter().any(|(path, _)| path.starts_with("sources[0].auth.tokens")), "{p:?}");
}

#[test]
fn config_entra_mode_requires_both_pins() {
    let p = problems(json!({"oidc": {"entra_blank_secret": {}}}));
    assert!(has(&p, "sources[0].auth.oidc.entra_blank_secret.tenant_id", "required"), "{p:?}");
    assert!(has(&p, "sources[0].auth.oidc.entra_blank_secret.app_id", "required"), "{p:?}");
    let p = problems(json!({"oidc": {"entra_blank_secret": {"tenant_id": "common", "app_id": "x"}}}));
    assert!(has(&p, "sources[0].auth.oidc.entra_blank_secret.tenant_id", "not a GUID"), "{p:?}");
    assert!(has(&p, "sources[0].auth.oidc.entra_blank_secret.app_id", "not a GUID"), "{p:?}");
    let guid = "11111111-2222-3333-4444-555555555555";
    let p = problems(json!({"oidc": {"issuer": "https://login.microsoftonline.com/x/v2.0", "audience": "api://x",
        "entra_blank_secret": {"tenant_id": guid, "app_id": guid}}}));
    assert!(has(&p, "sources[0].auth.oidc.issuer", "sts.windows.net"), "{p:?}");
    assert!(has(&p, "sources[0].auth.oidc.audience", "always have audience"), "{p:?}");
    // The shared audience without the pins is refused outright.
    let p = problems(
        json!({"oidc": {"issuer": format!("https://sts.windows.net/{guid}/"), "audience": ENTRA_PROVISIONING_AUDIENCE}}),
    );
    assert!(has(&p, "sources[0].auth.oidc.audience", "entra_blank_secret"), "{p:?}");
}
