//! Teams: create or update each desired team, and diff its roster (add, change role, remove).
//!
//! Removing a member is destructive (LiteLLM deletes the member's keys of that team), so removals are returned to
//! the safety limit per team instead of going straight into the plan, and a team whose groups read empty while it
//! has managed members is doubt: nobody is removed.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::users::{models_eq, money_eq, Index};
use super::{Actual, Op, Plan, PlanContext};
use crate::litellm::types::{TeamRequest, TeamRow};
use crate::mapper::{DesiredState, DesiredTeam, ExternalKey};
use crate::model::TeamRole;
use crate::reconcile::op::Change;
use crate::reconcile::{read_marker, MetadataPatch, TeamMarker, MARKER_KEY};

/// One team's member removals, before the safety limit.
pub(super) struct TeamRemovals {
    pub team_id: String,
    pub ops: Vec<Op>,
    /// Members of the team managed by a source of this run (what a percentage limit is taken of).
    pub managed_members: usize,
}

pub(super) fn plan_teams(
    desired: &DesiredState,
    actual: &Actual,
    ix: &Index<'_>,
    resolved: &BTreeMap<&ExternalKey, &str>,
    cx: &PlanContext<'_>,
    p: &mut Plan,
    ops: &mut Vec<Op>,
) -> Vec<TeamRemovals> {
    let mut out = Vec::new();
    // Only rosters need these sets of every user: without a desired team they are not built.
    let (active_ids, managed_ids): (BTreeSet<&str>, BTreeSet<&str>) = if desired.teams.is_empty() {
        Default::default()
    } else {
        (
            desired.users.values().filter(|d| d.active).filter_map(|d| resolved.get(&d.key).copied()).collect(),
            ix.managed
                .iter()
                .filter(|(k, _)| cx.complete_sources.contains(&k.source))
                .map(|(_, (row, _))| row.user_id.as_str())
                .collect(),
        )
    };
    let teams_by_id: BTreeMap<&str, &TeamRow> = actual.teams.iter().map(|t| (t.team_id.as_str(), t)).collect();
    for dt in desired.teams.values() {
        let members: BTreeMap<String, TeamRole> =
            dt.members.iter().filter_map(|(k, role)| resolved.get(k).map(|id| (id.to_string(), *role))).collect();
        let roster_of = match teams_by_id.get(dt.team_id.as_str()) {
            Some(row) => {
                let marker = read_marker::<TeamMarker>(&row.metadata);
                if marker.is_none() && !cx.safety.adopt_existing {
                    p.notes.push(format!(
                        "team {:?} exists in LiteLLM and is not managed by litellm-sync; its settings and members are \
                         left alone (set safety.adopt_existing = true to take it over)",
                        dt.team_id
                    ));
                    continue;
                }
                let u = team_update(dt, row, marker.as_ref(), cx);
                if !u.changes.is_empty() {
                    ops.push(Op::UpdateTeam {
                        team_id: dt.team_id.clone(),
                        request: u.request,
                        changes: u.changes,
                        metadata_patch: u.metadata_patch,
                    });
                }
                Some(*row)
            }
            None => {
                ops.push(Op::CreateTeam { team_id: dt.team_id.clone(), request: new_team_request(dt) });
                None
            }
        };
        let current: BTreeMap<&str, TeamRole> = roster_of
            .map(|row| {
                row.members_with_roles
                    .iter()
                    .filter_map(|m| {
                        let role = if m.role.as_deref() == Some("admin") { TeamRole::Admin } else { TeamRole::User };
                        m.user_id.as_deref().map(|id| (id, role))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (id, role) in &members {
            match current.get(id.as_str()) {
                None => ops.push(Op::AddMember {
                    team_id: dt.team_id.clone(),
                    user_id: id.clone(),
                    role: role.as_str().into(),
                }),
                Some(cur) if cur != role => ops.push(Op::UpdateMember {
                    team_id: dt.team_id.clone(),
                    user_id: id.clone(),
                    role: role.as_str().into(),
                }),
                Some(_) => {}
            }
        }
        // Remove only managed, still-active users who are no longer in the group; deactivated users keep their
        // memberships, and members added by hand (or `default_user_id`) are not ours to remove.
        let removals: Vec<Op> = current
            .keys()
            .filter(|id| !members.contains_key(**id) && managed_ids.contains(*id) && active_ids.contains(*id))
            .map(|id| Op::RemoveMember { team_id: dt.team_id.clone(), user_id: id.to_string(), team_keys: None })
            .collect();
        if removals.is_empty() {
            continue;
        }
        if let Some(o) = dt.owners.iter().find(|o| cx.doubt.get(&o.source).is_some_and(|d| d.blocks_removals())) {
            p.notes.push(format!(
                "team {:?}: {} member removal(s) not planned: source {:?} returned entries it could not read, so \
                 its group memberships are in doubt",
                dt.team_id,
                removals.len(),
                o.source
            ));
            continue;
        }
        if dt.source_members == 0 && !dt.owners.iter().all(|o| cx.empty_is_explicit(&o.source)) {
            p.errors.push(format!(
                "team {:?}: its group {} read with no members, while {} managed member(s) would be removed (and \
                 their team keys deleted); an empty group read is treated as doubt, so nobody is removed. If the \
                 group really is empty now, remove the members by hand or drop the team rule",
                dt.team_id,
                dt.owners.iter().map(|o| format!("{:?} ({})", o.group_name, o.source)).collect::<Vec<_>>().join(", "),
                removals.len()
            ));
            continue;
        }
        let managed_members = current.keys().filter(|id| managed_ids.contains(*id)).count();
        out.push(TeamRemovals { team_id: dt.team_id.clone(), ops: removals, managed_members });
    }
    for row in &actual.teams {
        if let Some(m) = read_marker::<TeamMarker>(&row.metadata) {
            if cx.complete_sources.contains(&m.source)
                && !desired.teams.contains_key(&row.team_id)
                && !desired.team_conflicts.contains(&row.team_id)
            {
                p.notes.push(format!(
                    "team {:?} is managed but no rule maps a group to it any more; it is kept (delete it by hand if \
                     it should go)",
                    row.team_id
                ));
            }
        }
    }
    out
}

/// The marker a team carries. A merged team keeps the owner it has while that owner still feeds it, or while the
/// owner is a configured source this run did not read: the marker does not flip between sources.
fn team_marker(dt: &DesiredTeam, old: Option<&TeamMarker>, cx: &PlanContext<'_>) -> TeamMarker {
    let keep = old.filter(|m| {
        dt.owners.iter().any(|o| o.source == m.source && o.group_id == m.group_id)
            || (!cx.complete_sources.contains(&m.source) && cx.configured_sources.contains(&m.source))
    });
    let (source, group_id) = match keep {
        Some(m) => (m.source.clone(), m.group_id.clone()),
        None => (dt.source.clone(), dt.group_id.clone()),
    };
    TeamMarker { source, group_id, fields: owned_team_fields(dt), metadata_keys: dt.metadata.keys().cloned().collect() }
}

fn owned_team_fields(dt: &DesiredTeam) -> BTreeSet<String> {
    [
        ("max_budget", dt.max_budget.is_some()),
        ("soft_budget", dt.soft_budget.is_some()),
        ("budget_duration", dt.budget_duration.is_some()),
        ("models", dt.models.is_some()),
        ("tpm_limit", dt.tpm_limit.is_some()),
        ("rpm_limit", dt.rpm_limit.is_some()),
    ]
    .into_iter()
    .filter(|(_, owned)| *owned)
    .map(|(f, _)| f.to_string())
    .collect()
}

fn marker_value(m: &TeamMarker) -> Value {
    serde_json::to_value(m).unwrap_or(Value::Null)
}

/// The `/team/new` body for a desired team (the marker included).
pub fn new_team_request(dt: &DesiredTeam) -> TeamRequest {
    let mut metadata: Map<String, Value> = dt.metadata.clone().into_iter().collect();
    let marker = TeamMarker {
        source: dt.source.clone(),
        group_id: dt.group_id.clone(),
        fields: owned_team_fields(dt),
        metadata_keys: dt.metadata.keys().cloned().collect(),
    };
    metadata.insert(MARKER_KEY.into(), marker_value(&marker));
    TeamRequest {
        team_id: dt.team_id.clone(),
        team_alias: Some(dt.alias.clone()),
        max_budget: dt.max_budget.map(Some),
        soft_budget: dt.soft_budget.map(Some),
        budget_duration: dt.budget_duration.clone().map(Some),
        models: dt.models.clone(),
        tpm_limit: dt.tpm_limit.map(Some),
        rpm_limit: dt.rpm_limit.map(Some),
        metadata: Some(metadata),
    }
}

struct TeamUpdate {
    request: TeamRequest,
    changes: Vec<Change>,
    metadata_patch: Option<MetadataPatch>,
}

/// The update that brings a team to its desired settings: changed owned fields, fields owned last time but no
/// longer (cleared: `/team/update` stores an explicit null), and merged metadata.
fn team_update(dt: &DesiredTeam, row: &TeamRow, old: Option<&TeamMarker>, cx: &PlanContext<'_>) -> TeamUpdate {
    let mut req = TeamRequest { team_id: dt.team_id.clone(), ..Default::default() };
    let mut changes = Vec::new();
    let mut change = |field: &str, from: Value, to: Value| changes.push(Change { field: field.into(), from, to });
    let was_owned = |field: &str| old.is_some_and(|m| m.fields.contains(field));
    if row.team_alias.as_deref() != Some(dt.alias.as_str()) {
        req.team_alias = Some(dt.alias.clone());
        change("team_alias", json!(row.team_alias), json!(dt.alias));
    }
    for (name, want, have, slot) in [
        ("max_budget", dt.max_budget, row.max_budget, &mut req.max_budget),
        ("soft_budget", dt.soft_budget, row.soft_budget, &mut req.soft_budget),
    ] {
        match want {
            Some(v) if !money_eq(have, Some(v)) => {
                *slot = Some(Some(v));
                change(name, json!(have), json!(v));
            }
            None if was_owned(name) && have.is_some() => {
                *slot = Some(None);
                change(name, json!(have), Value::Null);
            }
            _ => {}
        }
    }
    match &dt.budget_duration {
        Some(b) if row.budget_duration.as_deref() != Some(b.as_str()) => {
            req.budget_duration = Some(Some(b.clone()));
            change("budget_duration", json!(row.budget_duration), json!(b));
        }
        None if was_owned("budget_duration") && row.budget_duration.is_some() => {
            req.budget_duration = Some(None);
            change("budget_duration", json!(row.budget_duration), Value::Null);
        }
        _ => {}
    }
    match &dt.models {
        Some(m) if !models_eq(&row.models, m) => {
            req.models = Some(m.clone());
            change("models", json!(row.models), json!(m));
        }
        // A team with no model list may use every model of the proxy.
        None if was_owned("models") && !row.models.is_empty() => {
            req.models = Some(Vec::new());
            change("models", json!(row.models), json!([]));
        }
        _ => {}
    }
    for (name, want, have, slot) in [
        ("tpm_limit", dt.tpm_limit, row.tpm_limit, &mut req.tpm_limit),
        ("rpm_limit", dt.rpm_limit, row.rpm_limit, &mut req.rpm_limit),
    ] {
        match want {
            Some(v) if have != Some(v) => {
                *slot = Some(Some(v));
                change(name, json!(have), json!(v));
            }
            None if was_owned(name) && have.is_some() => {
                *slot = Some(None);
                change(name, json!(have), Value::Null);
            }
            _ => {}
        }
    }
    let mut patch = MetadataPatch::default();
    for k in old.map(|m| &m.metadata_keys).into_iter().flatten() {
        if !dt.metadata.contains_key(k) {
            patch.remove.push(k.clone());
        }
    }
    for (k, v) in &dt.metadata {
        patch.set.insert(k.clone(), v.clone());
    }
    patch.set.insert(MARKER_KEY.into(), marker_value(&team_marker(dt, old, cx)));
    let merged = patch.apply(&row.metadata);
    let mut metadata_patch = None;
    if merged != row.metadata {
        change("metadata", Value::Object(row.metadata.clone()), Value::Object(merged.clone()));
        req.metadata = Some(merged);
        metadata_patch = Some(patch);
    }
    TeamUpdate { request: req, changes, metadata_patch }
}
