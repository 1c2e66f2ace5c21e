//! Desired vs actual → plan (pure, [`plan`]) → LiteLLM calls ([`apply`]).
//!
//! Ownership lives in LiteLLM itself: every user and team litellm-sync creates carries a marker object under
//! `metadata.litellm_sync` (source, external id, the fields and metadata keys it owns, and its deactivation
//! time), so no local state is needed to know what is managed, what to reset, or when a grace period ends.

pub mod apply;
pub mod key_sink;
pub mod op;
pub mod pass;
pub mod plan;
pub mod render;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::model::{MARKER_KEY, SCIM_ACTIVE};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserMarker {
    pub source: String,
    pub external_id: String,
    /// User fields litellm-sync set last time; a field that drops out of the rules is reset.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub fields: BTreeSet<String>,
    /// Metadata keys litellm-sync set last time; a key that drops out of the rules is removed.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub metadata_keys: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivated_at: Option<DateTime<Utc>>,
    /// Hashed tokens of the keys litellm-sync blocks when it deactivates the user (unblocked on return). Written
    /// *before* the keys are blocked, so an interrupted deactivation still knows every key it must undo.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_keys: Vec<String>,
    /// `blocked_keys` are recorded but not all blocked yet: the next run finishes the deactivation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocking: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamMarker {
    /// The owning source and group (the first in configuration order when groups of one name in several sources
    /// feed the team).
    pub source: String,
    pub group_id: String,
    /// Team fields litellm-sync set last time; a field that drops out of the rule is reset.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub fields: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub metadata_keys: BTreeSet<String>,
}

/// The metadata keys an operation owns: what to set and what to remove. LiteLLM replaces `metadata` as a whole,
/// so the applier re-reads the object and applies this patch to its fresh metadata just before writing; a key
/// someone added meanwhile survives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataPatch {
    pub set: Map<String, Value>,
    pub remove: Vec<String>,
}

impl MetadataPatch {
    /// Whether [`MetadataPatch::apply`] would return something other than `base`, without building it (a no-op
    /// run asks this of every managed user).
    pub fn changes(&self, base: &Map<String, Value>) -> bool {
        self.set.iter().any(|(k, v)| base.get(k) != Some(v))
            || self.remove.iter().any(|k| base.contains_key(k) && !self.set.contains_key(k))
    }

    pub fn apply(&self, base: &Map<String, Value>) -> Map<String, Value> {
        let mut out = base.clone();
        for k in &self.remove {
            out.remove(k);
        }
        for (k, v) in &self.set {
            out.insert(k.clone(), v.clone());
        }
        out
    }
}

/// Reads a marker; a malformed one (edited by hand, or written by something else) counts as no marker, so the
/// object is treated as unmanaged and left alone.
pub fn read_marker<T: for<'de> Deserialize<'de>>(metadata: &Map<String, Value>) -> Option<T> {
    // Deserialized from the borrowed value: no copy of the marker per user and per lookup.
    metadata.get(MARKER_KEY).and_then(|v| T::deserialize(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_markers_mean_unmanaged() {
        let mut m = Map::new();
        assert!(read_marker::<UserMarker>(&m).is_none());
        m.insert(MARKER_KEY.into(), Value::String("yes".into()));
        assert!(read_marker::<UserMarker>(&m).is_none());
        m.insert(MARKER_KEY.into(), serde_json::json!({"source": 1, "external_id": "x"}));
        assert!(read_marker::<UserMarker>(&m).is_none());
        m.insert(
            MARKER_KEY.into(),
            serde_json::json!({"source": "s", "external_id": "x", "deactivated_at": "yesterday"}),
        );
        assert!(read_marker::<UserMarker>(&m).is_none());
        m.insert(MARKER_KEY.into(), serde_json::json!({"source": "s", "external_id": "x", "extra": true}));
        assert_eq!(read_marker::<UserMarker>(&m).map(|m| m.external_id), Some("x".to_string()));
    }

    #[test]
    fn metadata_patch_keeps_foreign_keys() {
        let base: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"a": 1, "old": 2, "foreign": 3})).unwrap();
        let p = MetadataPatch {
            set: serde_json::from_value(serde_json::json!({"a": 10, "new": 4})).unwrap(),
            remove: vec!["old".into(), "absent".into()],
        };
        assert_eq!(serde_json::to_value(p.apply(&base)).unwrap(), serde_json::json!({"a": 10, "foreign": 3, "new": 4}));
    }
}
