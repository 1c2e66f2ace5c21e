//! The quiet record: what a daemon run that found nothing to do planned. A later run whose fresh reads have the
//! digests recorded, with nothing else changed, would plan the same nothing again; it is not mapped or planned,
//! its snapshot is not stored again, and the ledger is not loaded. At 100,000 LDAP users that is most of a
//! scheduled run's time and memory.
//!
//! Why the record can be trusted:
//! - every change of a stored view (a snapshot stored, a SCIM write or delete, by any process) deletes it in its
//!   own transaction (`directory::FORGET_QUIET`);
//! - the ledger and the outbox are written by runs only, under the run lease, and every applying run first
//!   replaces the record with its claim (the CLI's runs with nothing). Only the claiming run turns its claim into
//!   a record, by a compare-and-set after it applied: a change made meanwhile deleted the claim, and no record is
//!   written;
//! - the record names the LiteLLM, the configuration's fingerprint and this version, the set of sources, and the
//!   first moment time alone changes the plan (a deactivated user's grace period);
//! - the drift check lists LiteLLM and never takes the quiet path; nor does a run with a failed read.
//!
//! Pure: the reconciler reads and writes the record.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Safety;
use crate::directory::Ledger;
use crate::reconcile::{read_marker, UserMarker};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quiet {
    /// The run that found nothing to do.
    pub run_id: String,
    pub at: DateTime<Utc>,
    /// The LiteLLM the ledger describes.
    pub url: String,
    /// [`crate::config::Config::plan_fingerprint`].
    pub config: String,
    /// Every source the run covered, with the digest of the view it planned ([`crate::model::Snapshot::digest`];
    /// `None`: the source had no view yet).
    pub views: BTreeMap<String, Option<String>>,
    /// When the same inputs plan something after all: the first deactivated user's grace period ends.
    pub due: Option<DateTime<Utc>>,
    /// Managed users per source and managed teams, for the gauges of a process that has not loaded the ledger.
    pub managed_users: BTreeMap<String, usize>,
    pub managed_teams: usize,
}

/// What a run writes in place of the record while it plans and applies.
pub fn claim(run_id: &str) -> String {
    format!("claim:{run_id}")
}

impl Quiet {
    /// The record in `text`; `None` for a claim, an empty value, or a record this version cannot read (which
    /// only costs a full run).
    pub fn parse(text: &str) -> Option<Quiet> {
        if !text.starts_with('{') {
            return None;
        }
        serde_json::from_str(text).ok()
    }

    /// Whether a run covering `sources`, with fresh reads of the digests in `fresh`, would plan nothing, as the
    /// recorded run did.
    pub fn holds(
        &self,
        url: &str,
        config: &str,
        sources: &[String],
        fresh: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> bool {
        let mut covered: Vec<&str> = sources.iter().map(String::as_str).collect();
        covered.sort_unstable();
        covered.dedup();
        self.url == url
            && self.config == config
            && self.views.keys().map(String::as_str).eq(covered)
            && fresh.iter().all(|(s, d)| self.views.get(s).is_some_and(|v| v.as_deref() == Some(d.as_str())))
            && self.due.is_none_or(|due| now < due)
    }
}

/// When time alone changes the plan of the ledger's users: the end of the first grace period of a deactivated
/// user managed for one of `sources` (`safety.delete_after`), if deletions follow deactivations. Users another
/// configuration's sources own (a listing of a shared LiteLLM finds them too) are never planned here, so their
/// grace periods, long over perhaps, are not this plan's.
pub fn due(ledger: &Ledger, safety: &Safety, sources: &[String]) -> Option<DateTime<Utc>> {
    let grace = chrono::Duration::from_std(safety.delete_after?).ok()?;
    ledger
        .users
        .values()
        .filter_map(|u| read_marker::<UserMarker>(&u.metadata))
        .filter(|m| sources.contains(&m.source))
        .filter_map(|m| m.deactivated_at)
        .min()
        .map(|at| at + grace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::litellm::types::UserRow;

    fn record() -> Quiet {
        Quiet {
            run_id: "r1".into(),
            at: Utc::now(),
            url: "http://litellm:4000/".into(),
            config: "cfg".into(),
            views: [("corp".to_string(), Some("d1".to_string())), ("scim".to_string(), None)].into(),
            due: None,
            managed_users: BTreeMap::new(),
            managed_teams: 0,
        }
    }

    fn fresh(d: &str) -> BTreeMap<String, String> {
        [("corp".to_string(), d.to_string())].into()
    }

    #[test]
    fn the_record_holds_only_for_the_same_inputs() {
        let q = record();
        let (url, sources, now) = ("http://litellm:4000/", vec!["scim".to_string(), "corp".to_string()], Utc::now());
        assert!(q.holds(url, "cfg", &sources, &fresh("d1"), now));
        assert!(q.holds(url, "cfg", &sources, &BTreeMap::new(), now), "nothing read: the stored views");
        assert!(!q.holds(url, "cfg", &sources, &fresh("d2"), now), "another read");
        assert!(!q.holds(url, "cfg2", &sources, &fresh("d1"), now), "another configuration");
        assert!(!q.holds("http://other:4000/", "cfg", &sources, &fresh("d1"), now), "another LiteLLM");
        assert!(!q.holds(url, "cfg", &sources[1..], &fresh("d1"), now), "fewer sources");
        let more = vec!["scim".to_string(), "corp".to_string(), "hr".to_string()];
        assert!(!q.holds(url, "cfg", &more, &fresh("d1"), now), "more sources");
        let scim_read: BTreeMap<String, String> = [("scim".to_string(), "d9".to_string())].into();
        assert!(!q.holds(url, "cfg", &sources, &scim_read, now), "a view the record has none of");
        let q = Quiet { due: Some(now), ..record() };
        assert!(!q.holds(url, "cfg", &sources, &fresh("d1"), now), "a grace period ends");
        assert!(q.holds(url, "cfg", &sources, &fresh("d1"), now - chrono::Duration::seconds(1)));
    }

    #[test]
    fn claims_and_unreadable_records_are_no_record() {
        assert_eq!(Quiet::parse(&claim("r1")), None);
        assert_eq!(Quiet::parse(""), None);
        assert_eq!(Quiet::parse("{\"run_id\": 3}"), None);
        let q = record();
        assert_eq!(Quiet::parse(&serde_json::to_string(&q).unwrap()), Some(q));
    }

    #[test]
    fn the_first_grace_period_to_end_is_due() {
        let at = |days: i64| Utc::now() - chrono::Duration::days(days);
        let user = |id: &str, deactivated: Option<DateTime<Utc>>| {
            let marker = UserMarker {
                source: if id == "z" { "other".into() } else { "corp".into() },
                external_id: id.into(),
                fields: Default::default(),
                metadata_keys: Default::default(),
                deactivated_at: deactivated,
                blocked_keys: Vec::new(),
                blocking: false,
            };
            let mut row: UserRow = serde_json::from_value(serde_json::json!({"user_id": id})).unwrap();
            row.metadata.insert(crate::model::MARKER_KEY.into(), serde_json::to_value(marker).unwrap());
            (id.to_string(), row)
        };
        let (a, b, z) = (at(3), at(1), at(400));
        // z: another source's user, deactivated long ago; this plan never deletes it.
        let ledger = Ledger {
            users: [user("a", Some(a)), user("b", Some(b)), user("c", None), user("z", Some(z))].into_iter().collect(),
            teams: BTreeMap::new(),
        };
        let mut safety = crate::config::validate(&serde_json::json!({
            "litellm": {"url": "http://127.0.0.1:4000", "api_key": "sk-x"},
            "sources": [{"name": "corp", "type": "file", "path": "users.yaml"}],
        }))
        .unwrap()
        .safety;
        let corp = ["corp".to_string()];
        safety.delete_after = None;
        assert_eq!(due(&ledger, &safety, &corp), None, "deactivated users are kept for ever");
        safety.delete_after = Some(std::time::Duration::from_secs(7 * 86_400));
        assert_eq!(due(&ledger, &safety, &corp), Some(a + chrono::Duration::days(7)));
        let both = ["corp".to_string(), "other".to_string()];
        assert_eq!(due(&ledger, &safety, &both), Some(z + chrono::Duration::days(7)));
        assert_eq!(due(&ledger, &safety, &["hr".to_string()]), None, "nobody of hr is deactivated");
        let empty = Ledger::default();
        assert_eq!(due(&empty, &safety, &corp), None);
    }
}
