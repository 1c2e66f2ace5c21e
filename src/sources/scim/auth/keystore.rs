//! The JWKS keystore: the issuer's verification keys cached by `kid`, refetched when a token names a `kid` the
//! cache does not have (the IdP rotated its keys), at most once a minute, after crates.io's trusted-publishing
//! keystore (rust-lang/crates.io `crates/crates_io_trustpub/src/keystore/`).
//!
//! - A flood of tokens with made-up `kid`s costs the IdP at most one JWKS fetch a minute.
//! - Concurrent misses share one fetch: the first takes the fetch lock, the others wait for it and look again.
//! - A failed fetch (or one that yields no usable key) keeps the old keys, and counts as an attempt for the rate
//!   limit, so an IdP outage is not hammered either.
//! - A successful fetch *replaces* the keys: a key the IdP removed is revoked.
//! - The clock is injected ([`Clock`]) so the rate limit is tested without sleeping.
//!
//! Only the JWKS decides which keys exist: a token's `jku`, `x5u`, `jwk` or `x5c` header is never looked at.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The shortest time between two JWKS fetches.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// A fetch (discovery included) that takes longer is abandoned; the old keys stay.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(15);

/// Wall-clock time, injectable for tests. Token lifetimes are wall-clock facts (`exp`, `nbf`, `iat`), and the
/// refetch limit uses the same clock; a clock that jumps backwards only ever allows a fetch sooner.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Why a JWKS could not be had. Messages name the URL and never contain a token.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("OIDC discovery for issuer {issuer} failed: {message}")]
    Discovery { issuer: String, message: String },
    #[error("cannot fetch the JWKS from {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("the JWKS from {url} is not valid: {message}")]
    Invalid { url: String, message: String },
}

/// Where the keys come from: the issuer's `jwks_uri` in production ([`super::HttpJwks`]), a fixed set in tests.
pub trait JwksSource: Send + Sync {
    fn fetch(&self) -> impl Future<Output = Result<JwkSet, JwksError>> + Send;
}

/// One usable verification key.
#[derive(Clone)]
pub struct VerifyKey {
    pub key: DecodingKey,
    /// The JWK's `alg`, when it has one: a token must then use exactly that algorithm.
    pub alg: Option<Algorithm>,
}

/// What a lookup found.
#[derive(Clone)]
pub enum Lookup {
    Found(Arc<VerifyKey>),
    /// The JWKS (as last fetched) has no such key.
    Unknown,
    /// The key is not cached and the last fetch failed: the token may be fine, the IdP is not reachable.
    Unavailable,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Arc<VerifyKey>>,
    last_attempt: Option<SystemTime>,
    /// Why the last fetch failed, while it is the last one.
    last_error: Option<String>,
}

impl Cache {
    fn recently_attempted(&self, now: SystemTime) -> bool {
        // duration_since fails when the clock went backwards: treat that as "long ago".
        self.last_attempt.is_some_and(|t| now.duration_since(t).is_ok_and(|age| age < MIN_REFETCH_INTERVAL))
    }

    fn lookup(&self, kid: &str) -> Lookup {
        match self.keys.get(kid) {
            Some(k) => Lookup::Found(k.clone()),
            None if self.last_error.is_some() => Lookup::Unavailable,
            None => Lookup::Unknown,
        }
    }
}

pub struct KeyStore<S> {
    source: S,
    clock: Arc<dyn Clock>,
    cache: RwLock<Cache>,
    /// Held for the whole of a fetch, so concurrent misses wait for one fetch instead of starting their own.
    fetch_lock: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

impl<S: JwksSource> KeyStore<S> {
    pub fn new(source: S, clock: Arc<dyn Clock>) -> KeyStore<S> {
        KeyStore {
            source,
            clock,
            cache: RwLock::new(Cache::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many fetches were started (for tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Why the last fetch of the keys failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.read().last_error.clone()
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.read().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        // A panic while holding the lock cannot leave the cache half-updated (it is replaced in one assignment).
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The key named `kid`, refetching the JWKS first when it is not cached and the last attempt is more than
    /// [`MIN_REFETCH_INTERVAL`] ago.
    pub async fn get(&self, kid: &str) -> Lookup {
        if let Lookup::Found(k) = self.read().lookup(kid) {
            return Lookup::Found(k);
        }
        let _fetching = self.fetch_lock.lock().await;
        {
            // Another task may have fetched while this one waited for the lock.
            let cache = self.read();
            let found = cache.lookup(kid);
            if matches!(found, Lookup::Found(_)) || cache.recently_attempted(self.clock.now()) {
                return found;
            }
        }
        self.refresh().await;
        self.read().lookup(kid)
    }

    /// Fetches the JWKS now (used by [`KeyStore::get`] and at start-up); the lock must be held by the caller or
    /// not matter. Returns whether usable keys were loaded.
    async fn refresh(&self) -> bool {
        self.write().last_attempt = Some(self.clock.now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = match tokio::time::timeout(FETCH_DEADLINE, self.source.fetch()).await {
            Ok(Ok(set)) => {
                let keys = usable_keys(&set);
                if keys.is_empty() {
                    Err(format!("the JWKS has no usable signing key ({} keys in all)", set.keys.len()))
                } else {
                    Ok(keys)
                }
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {FETCH_DEADLINE:?}")),
        };
        let mut cache = self.write();
        match result {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "Loaded the OIDC signing keys.");
                cache.keys = keys;
                cache.last_error = None;
                true
            }
            Err(error) => {
                tracing::warn!(%error, cached = cache.keys.len(), "Cannot refresh the OIDC signing keys; keeping the old ones.");
                cache.last_error = Some(error);
                false
            }
        }
    }

    /// Loads the keys if none are cached and the rate limit allows (a start-up or readiness check); whether
    /// keys are cached afterwards. Bounded by [`FETCH_DEADLINE`].
    pub async fn preload(&self) -> bool {
        let _fetching = self.fetch_lock.lock().await;
        {
            let cache = self.read();
            if !cache.keys.is_empty() {
                return true;
            }
            if cache.recently_attempted(self.clock.now()) {
                return false;
            }
        }
        self.refresh().await
    }
}

/// The keys of `set` that can verify signatures: with a `kid` (tokens are matched by it), not marked for
/// encryption, and public (a symmetric `oct` key in a *public* JWKS is either a mistake or an attack).
fn usable_keys(set: &JwkSet) -> HashMap<String, Arc<VerifyKey>> {
    let mut out = HashMap::new();
    for jwk in &set.keys {
        match usable_key(jwk) {
            Ok((kid, key)) => {
                out.insert(kid, Arc::new(key));
            }
            Err(why) => tracing::debug!(kid = ?jwk.common.key_id, why, "Skipping a JWKS key."),
        }
    }
    out
}

fn usable_key(jwk: &Jwk) -> Result<(String, VerifyKey), &'static str> {
    let kid = jwk.common.key_id.clone().ok_or("no kid")?;
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return Err("not a signature key");
    }
    if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
        return Err("symmetric key");
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(Algorithm::try_from(a).map_err(|_| "unsupported alg")?),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "unsupported or malformed key")?;
    Ok((kid, VerifyKey { key, alg }))
}
