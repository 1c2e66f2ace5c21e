//! The planner: desired state + what LiteLLM holds → ordered operations. Pure: the clock, the sources' doubt and
//! any approval come in through [`PlanContext`]; nothing here does IO.
//!
//! - `users.rs`: who gets which `user_id` (the owner of an id keeps it; collisions are reported), create / update /
//!   reactivate / adopt, and deprovisioning of managed users a complete snapshot no longer has;
//! - `teams.rs`: teams and their rosters;
//! - `safety.rs`: the limits that hold destructive operations (deactivations, deletions, team member removals).
//!
//! Only owned fields are compared; metadata is merged so keys litellm-sync does not own survive; objects without
//! the ownership marker are never changed unless adoption is on; doubt (a failed, empty or partly unreadable read)
//! never deprovisions.

mod safety;
pub(crate) mod teams;
mod users;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use super::op::{Change, Op};
use crate::config::Safety;
use crate::litellm::types::{TeamRow, UserRow};
use crate::mapper::{DesiredState, ExternalKey};
use crate::model::{EntryKind, Snapshot};
pub use users::{new_user_request, reactivation_unblocks, user_update, UserUpdate};

/// What LiteLLM holds now (a listing, or the store's ledger of what was last applied).
#[derive(Debug, Clone, Default)]
pub struct Actual {
    pub users: Vec<UserRow>,
    pub teams: Vec<TeamRow>,
}

/// What a source's read left in doubt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Doubt {
    /// External id → why its entry could not be read: that user is kept as it was.
    pub unreadable: BTreeMap<String, String>,
    /// Entries without a readable id, and groups whose members could not be read: they could stand for anyone,
    /// so nobody of the source is deprovisioned and no team of the source loses a member.
    pub unidentified: usize,
}

impl Doubt {
    pub fn of(snapshot: &Snapshot) -> Doubt {
        let mut d = Doubt::default();
        for u in &snapshot.unreadable {
            match (&u.external_id, u.kind) {
                (Some(id), EntryKind::User) => {
                    d.unreadable.insert(id.clone(), format!("{}: {}", u.entry, u.reason));
                }
                // A group that could not be read: every membership (and through nesting, every grant) of the
                // source is uncertain.
                (_, EntryKind::Group) | (None, _) => d.unidentified += 1,
            }
        }
        d
    }

    /// Whether nothing of the source may be taken away in this read.
    pub fn blocks_removals(&self) -> bool {
        self.unidentified > 0
    }
}

/// An operator's approval of destructive operations the safety limit holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Approval {
    #[default]
    None,
    /// Everything this run would hold (`sync --allow-deletions`).
    All,
    /// These operations (by [`Op::id`]), as a person saw them held (`litellm-sync approve`).
    Ops(BTreeSet<String>),
}

#[derive(Debug, Clone)]
pub struct PlanContext<'a> {
    pub safety: &'a Safety,
    pub now: DateTime<Utc>,
    /// Sources whose complete snapshot is part of this run: only their users may be deprovisioned.
    pub complete_sources: BTreeSet<String>,
    /// Users each complete snapshot contained (an empty snapshot never deprovisions).
    pub source_user_counts: BTreeMap<String, usize>,
    /// Per source, what its read could not convert.
    pub doubt: BTreeMap<String, Doubt>,
    /// Every source in the configuration (a team keeps an owner that is configured but not part of this run).
    pub configured_sources: BTreeSet<String>,
    /// Push sources (SCIM): their view is the state the IdP wrote, one explicit change at a time, so an empty
    /// view (the last user DELETEd, a group PATCHed to no members) is an instruction, not a failed read. The
    /// safety limits still hold.
    pub push_sources: BTreeSet<String>,
    pub approval: Approval,
}

impl<'a> PlanContext<'a> {
    /// The context for planning `snapshots` (the complete views of this run).
    pub fn for_snapshots(
        safety: &'a Safety,
        configured_sources: BTreeSet<String>,
        snapshots: &[Snapshot],
        now: DateTime<Utc>,
        approval: Approval,
    ) -> PlanContext<'a> {
        PlanContext {
            safety,
            now,
            complete_sources: snapshots.iter().map(|s| s.source.clone()).collect(),
            source_user_counts: snapshots.iter().map(|s| (s.source.clone(), s.users.len())).collect(),
            doubt: snapshots.iter().map(|s| (s.source.clone(), Doubt::of(s))).collect(),
            configured_sources,
            push_sources: BTreeSet::new(),
            approval,
        }
    }

    /// The same, with the sources whose views are pushed state rather than reads.
    pub fn with_push_sources(mut self, push_sources: BTreeSet<String>) -> Self {
        self.push_sources = push_sources;
        self
    }

    /// Whether an empty view of `source` means "nobody", not doubt.
    pub fn empty_is_explicit(&self, source: &str) -> bool {
        self.push_sources.contains(source)
    }
}

/// Two identities rendered one `user_id`: the one that owns it keeps it, the other is not provisioned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Collision {
    pub user_id: String,
    /// The identity that is not provisioned.
    pub claimant: ExternalKey,
    pub user_name: String,
    /// The identity whose marker the LiteLLM user carries; `None` when nobody owns it yet and several want it.
    pub owner: Option<ExternalKey>,
}

impl Collision {
    pub fn describe(&self) -> String {
        match &self.owner {
            Some(o) => format!(
                "user_id {:?} of {} ({}) already belongs to {o}: {} is not provisioned",
                self.user_id, self.claimant, self.user_name, self.claimant
            ),
            None => format!(
                "user_id {:?} of {} ({}) is wanted by several identities and owned by none: none of them is provisioned",
                self.user_id, self.claimant, self.user_name
            ),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// Destructive operations held by the safety limit; not applied.
    pub held: Vec<Op>,
    pub hold_reason: Option<String>,
    /// Held operations an approval released in this run (by [`Op::id`]), for the audit trail.
    pub approved: Vec<String>,
    /// Sources whose read is treated as failed (empty while they manage users, or unidentifiable entries).
    pub refused_sources: Vec<String>,
    /// `user_id` collisions: someone must look (the run exits 1).
    pub collisions: Vec<Collision>,
    /// Problems that fail the run without failing a source read: a team id two groups render, a team whose
    /// group read empty while it has managed members.
    pub errors: Vec<String>,
    pub notes: Vec<String>,
    /// Users carrying the marker of a source read in this run.
    pub managed_users: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.held.is_empty()
    }

    /// Something in the plan needs a person: a refused source, a collision, or an error.
    pub fn has_errors(&self) -> bool {
        !self.refused_sources.is_empty() || !self.collisions.is_empty() || !self.errors.is_empty()
    }
}

/// Computes the plan.
pub fn plan(desired: &DesiredState, actual: &Actual, cx: &PlanContext<'_>) -> Plan {
    let mut p = Plan { notes: desired.warnings.clone(), errors: desired.errors.clone(), ..Default::default() };
    for ex in &desired.excluded {
        p.notes.push(format!("{} ({}) is not provisioned: {}", ex.user_name, ex.key, ex.reason));
    }
    let index = users::Index::new(actual, &mut p.notes);
    p.managed_users = index.managed.keys().filter(|k| cx.complete_sources.contains(&k.source)).count();

    let mut ops: Vec<Op> = Vec::new();
    let users = users::plan_users(desired, &index, cx, &mut p, &mut ops);
    let removals = teams::plan_teams(desired, actual, &index, &users.resolved, cx, &mut p, &mut ops);
    safety::limit(cx, &mut p, users.deprovision, removals, &mut ops);
    ops.sort_by_key(|o| o.phase());
    p.ops = ops;
    p
}

#[cfg(test)]
mod tests;
