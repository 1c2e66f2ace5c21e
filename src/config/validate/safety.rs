//! `[safety]`: how many deprovisionings a run may make before it is held, what deprovisioning does, and whether
//! pre-existing LiteLLM users are adopted.
//!
//! Only the section's keys and limits live here; how the limits hold a run is the planner's (`reconcile::plan`).

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::ctx::{Ctx, Known};
use crate::config::{Deprovision, Safety};

#[derive(Deserialize)]
struct RawSafety {
    max_deletions: Option<u32>,
    max_deletions_percent: Option<f64>,
    #[serde(default)]
    deprovision: Deprovision,
    delete_after: Option<String>,
    #[serde(default)]
    adopt_existing: bool,
}

pub(super) fn section(cx: &mut Ctx, v: Value) -> Safety {
    let raw: Option<RawSafety> = cx.de("safety", v, &Known::of::<RawSafety>());
    let raw = raw.unwrap_or(RawSafety {
        max_deletions: None,
        max_deletions_percent: None,
        deprovision: Deprovision::Deactivate,
        delete_after: None,
        adopt_existing: false,
    });
    let pct = raw.max_deletions_percent.unwrap_or(10.0);
    if !(0.0..=100.0).contains(&pct) || !pct.is_finite() {
        cx.problem("safety.max_deletions_percent", format!("{pct} is out of range 0..=100"));
    }
    let delete_after = raw
        .delete_after
        .as_deref()
        .map(|s| cx.duration("safety.delete_after", Some(s), Duration::from_secs(30 * 86400)));
    if delete_after.is_some() && raw.deprovision == Deprovision::Delete {
        cx.problem("safety.delete_after", "has no effect with deprovision = \"delete\" (users are deleted at once)");
    }
    Safety {
        max_deletions: raw.max_deletions.unwrap_or(10),
        max_deletions_percent: pct,
        deprovision: raw.deprovision,
        delete_after,
        adopt_existing: raw.adopt_existing,
    }
}
