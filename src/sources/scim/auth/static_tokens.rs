//! Static bearer tokens: long random secrets that the config stores only as `sha256:<hex>` hashes, several at once
//! so that a token can be rotated without downtime (add the new hash, switch the IdP, remove the old hash).
//!
//! Why SHA-256 and not a password hash (argon2, bcrypt): a password hash is slow on purpose because passwords are
//! guessable. These tokens carry 256 bits of randomness ([`generate_token`]); nobody can enumerate them, so a
//! stolen config file gives an attacker a hash they cannot invert whatever its speed, and a fast hash keeps every
//! SCIM request cheap. A human-chosen "token" would break that argument: only generated tokens belong here.
//!
//! Nothing here logs, prints or keeps the presented token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use ring::digest;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

pub use crate::config::scim::{parse_hash, HASH_PREFIX, TOKEN_PREFIX};
/// Random bytes in a generated token.
const TOKEN_BYTES: usize = 32;

/// The config form of `token`'s hash: `sha256:` and 64 lower-case hex digits (for `litellm-sync hash-token`).
pub fn hash_token(token: &str) -> String {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = String::with_capacity(HASH_PREFIX.len() + 64);
    out.push_str(HASH_PREFIX);
    for b in d.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A new random token: `lsync_` and 32 random bytes in base64url (43 characters).
///
/// `rand::rng()` is a CSPRNG (ChaCha12) seeded and periodically reseeded from the operating system.
pub fn generate_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The configured token hashes.
#[derive(Clone, Default)]
pub struct StaticTokens {
    hashes: Vec<[u8; 32]>,
}

impl std::fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticTokens({} hashes)", self.hashes.len())
    }
}

impl StaticTokens {
    pub fn new(hashes: Vec<[u8; 32]>) -> StaticTokens {
        StaticTokens { hashes }
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// The index of the hash `token` matches, if any.
    ///
    /// Every stored hash is compared, in constant time and without stopping at a match, so the time taken says
    /// neither whether nor where the token matched.
    pub fn find(&self, token: &SecretString) -> Option<usize> {
        let presented = digest::digest(&digest::SHA256, token.expose_secret().as_bytes());
        let mut found = None;
        for (i, h) in self.hashes.iter().enumerate() {
            let eq: bool = h.as_slice().ct_eq(presented.as_ref()).into();
            if eq && found.is_none() {
                found = Some(i);
            }
        }
        found
    }

    /// A label naming the matched hash for logs and audit (`sha256:1a2b3c4d`): the first 8 hex digits of a hash
    /// that is already in the config file, enough to tell rotated tokens apart and useless to an attacker.
    pub fn label(&self, index: usize) -> String {
        match self.hashes.get(index) {
            Some(h) => format!("{HASH_PREFIX}{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3]),
            None => format!("{HASH_PREFIX}?"),
        }
    }
}
