//! The `[sources.auth]` section: its types and validation are plain configuration and live in
//! `crate::config::scim`; re-exported here for the verifier's use.

pub use crate::config::scim::*;
