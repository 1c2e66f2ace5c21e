//! A `jsonwebtoken` crypto provider backed by `ring`, for signature *verification* only.
//!
//! Why not one of jsonwebtoken's own backends: `aws_lc_rs` would put a second crypto library with its own rustls
//! provider into the binary (DESIGN.md §8: two providers make ldap3's TLS set-up panic unless one is installed as
//! the process default), and `rust_crypto` would add yet another RustCrypto generation (rsa 0.10, sha2 0.11, hmac
//! 0.13) beside the one openidconnect already pulls in. ring is already here for TLS, its verifiers are the ones
//! rustls trusts for certificates, and it refuses RSA keys under 2048 bits.
//!
//! The daemon never signs a JWT, so the signer factory refuses every algorithm, and HMAC is refused too: a SCIM
//! server verifies tokens with the IdP's *public* keys, and accepting HS256 is what makes the classic "HS256 signed
//! with the RSA public key" attack work.

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::Verifier;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self as sig, RsaParameters, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};

enum Scheme {
    Rsa(&'static RsaParameters),
    Other(&'static dyn VerificationAlgorithm),
}

struct RingVerifier {
    alg: Algorithm,
    scheme: Scheme,
    key: DecodingKey,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), jsonwebtoken::signature::Error> {
        let ok = match (&self.scheme, self.key.kind()) {
            (Scheme::Rsa(params), DecodingKeyKind::RsaModulusExponent { n, e }) => {
                RsaPublicKeyComponents { n, e }.verify(params, msg, signature).is_ok()
            }
            // PKCS#1 RSAPublicKey DER (from a PEM key), which is what ring's RSA verifiers parse.
            (Scheme::Rsa(params), DecodingKeyKind::SecretOrDer(der)) => {
                UnparsedPublicKey::new(*params, der).verify(msg, signature).is_ok()
            }
            // EC keys are the uncompressed point (0x04 ‖ x ‖ y), Ed25519 keys the 32 raw bytes: both are what
            // DecodingKey::from_jwk stores and what ring expects.
            (Scheme::Other(alg), DecodingKeyKind::SecretOrDer(raw)) => {
                UnparsedPublicKey::new(*alg, raw).verify(msg, signature).is_ok()
            }
            (Scheme::Other(_), DecodingKeyKind::RsaModulusExponent { .. }) => false,
        };
        if ok {
            Ok(())
        } else {
            Err(jsonwebtoken::signature::Error::new())
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let (family, scheme) = match alg {
        Algorithm::RS256 => (AlgorithmFamily::Rsa, Scheme::Rsa(&sig::RSA_PKCS1_2048_8192_SHA256)),
        Algorithm::RS384 => (AlgorithmFamily::Rsa, Scheme::Rsa(&sig::RSA_PKCS1_2048_8192_SHA384)),
        Algorithm::RS512 => (AlgorithmFamily::Rsa, Scheme::Rsa(&sig::RSA_PKCS1_2048_8192_SHA512)),
        Algorithm::PS256 => (AlgorithmFamily::Rsa, Scheme::Rsa(&sig::RSA_PSS_2048_8192_SHA256)),
        Algorithm::PS384 => (AlgorithmFamily::Rsa, Scheme::Rsa(&sig::RSA_PSS_2048_8192_SHA384)),
        Algorithm::PS512 => (AlgorithmFamily::Rsa, Scheme::Rsa(&sig::RSA_PSS_2048_8192_SHA512)),
        Algorithm::ES256 => (AlgorithmFamily::Ec, Scheme::Other(&sig::ECDSA_P256_SHA256_FIXED)),
        Algorithm::ES384 => (AlgorithmFamily::Ec, Scheme::Other(&sig::ECDSA_P384_SHA384_FIXED)),
        Algorithm::EdDSA => (AlgorithmFamily::Ed, Scheme::Other(&sig::ED25519)),
        // HMAC and anything newer: never.
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    // The key's family must match the algorithm's: an RSA key is never used as an HMAC secret or vice versa.
    if key.family() != family {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(RingVerifier { alg: *alg, scheme, key: key.clone() }))
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn unsupported_rsa(_: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn unsupported_ec(_: &[u8], _: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn unsupported_ed(_: &[u8], _: &EllipticCurve) -> Result<Vec<u8>, Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>, Error> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(ring::digest::digest(alg, data).as_ref().to_vec())
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: unsupported_rsa,
        rsa_pub_components_from_public_key: unsupported_rsa,
        ec_pub_components_from_private_key: unsupported_ec,
        ed_pub_components_from_private_key: unsupported_ed,
        compute_digest: digest,
    },
};

/// Installs the ring provider as jsonwebtoken's process default (once). Without a backend feature jsonwebtoken
/// has no default and would panic on the first `decode`, so every verifier calls this before it is used.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first; jsonwebtoken then uses that one. Nothing in this crate
        // does so, and either way decode has a provider.
        let _ = PROVIDER.install_default();
    });
}
