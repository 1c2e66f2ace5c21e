//! The planner: desired state + actual LiteLLM state → ordered operations. Pure: the clock comes in as `now`.
//!
//! Only owned fields are compared; metadata is merged so keys litellm-sync does not own survive; objects
//! without the ownership marker are never changed unless adoption is on; deprovisioning happens only for
//! sources read completely in this run, never for an empty snapshot, and a run whose destructive operations
//! exceed the safety limit holds all of them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{read_marker, MetadataPatch, TeamMarker, UserMarker, MARKER_KEY, SCIM_ACTIVE};
use crate::config::{Deprovision, Safety};
use crate::litellm::types::{MemberSpec, NewUserRequest, TeamRequest, TeamRow, UpdateUserRequest, UserRow};
use crate::mapper::{normalize_models, DesiredState, DesiredTeam, DesiredUser, ExternalKey, ALL_MODELS};
use crate::model::{Role, TeamRole};

/// What LiteLLM holds now.
#[derive(Debug, Clone, Default)]
pub struct Actual {
    pub users: Vec<UserRow>,
    pub teams: Vec<TeamRow>,
}

#[derive(Debug, Clone)]
pub struct PlanContext<'a> {
    pub safety: &'a Safety,
    pub now: DateTime<Utc>,
    /// Sources whose complete snapshot is part of this run: only their users may be deprovisioned.
    pub complete_sources: BTreeSet<String>,
    /// Users each complete snapshot contained (an empty snapshot never deprovisions).
    pub source_user_counts: BTreeMap<String, usize>,
    /// Operator approval to exceed the deletion limit for this run.
    pub allow_mass_deprovision: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    CreateTeam {
        team_id: String,
        request: TeamRequest,
    },
    UpdateTeam {
        team_id: String,
        request: TeamRequest,
        changes: Vec<Change>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata_patch: Option<MetadataPatch>,
    },
    CreateUser {
        user_id: String,
        key: ExternalKey,
        request: NewUserRequest,
        /// Kept for a 409 (exists already → update). Left out of `plan --output json`; the outbox stores it
        /// beside the operation.
        #[serde(skip)]
        desired: Box<DesiredUser>,
    },
    UpdateUser {
        user_id: String,
        key: ExternalKey,
        /// "update", "reactivate" or "adopt".
        reason: String,
        request: UpdateUserRequest,
        changes: Vec<Change>,
        unblock_keys: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata_patch: Option<MetadataPatch>,
    },
    DeactivateUser {
        user_id: String,
        key: ExternalKey,
        reason: String,
        metadata_patch: MetadataPatch,
    },
    DeleteUser {
        user_id: String,
        key: ExternalKey,
        reason: String,
    },
    AddMembers {
        team_id: String,
        members: Vec<MemberSpec>,
    },
    UpdateMember {
        team_id: String,
        user_id: String,
        role: String,
    },
    RemoveMember {
        team_id: String,
        user_id: String,
    },
}

impl Op {
    /// Dependency order: teams, then users, then memberships, then deprovisioning.
    pub fn phase(&self) -> u8 {
        match self {
            Op::CreateTeam { .. } => 0,
            Op::UpdateTeam { .. } => 1,
            Op::CreateUser { .. } => 2,
            Op::UpdateUser { .. } => 3,
            Op::AddMembers { .. } => 4,
            Op::UpdateMember { .. } => 5,
            Op::RemoveMember { .. } => 6,
            Op::DeactivateUser { .. } => 7,
            Op::DeleteUser { .. } => 8,
        }
    }

    /// Every value [`Op::kind`] can return (metric labels are created up front from it).
    pub const KINDS: [&'static str; 9] = [
        "create_team",
        "update_team",
        "create_user",
        "update_user",
        "deactivate_user",
        "delete_user",
        "add_members",
        "update_member",
        "remove_member",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Op::CreateTeam { .. } => "create_team",
            Op::UpdateTeam { .. } => "update_team",
            Op::CreateUser { .. } => "create_user",
            Op::UpdateUser { .. } => "update_user",
            Op::DeactivateUser { .. } => "deactivate_user",
            Op::DeleteUser { .. } => "delete_user",
            Op::AddMembers { .. } => "add_members",
            Op::UpdateMember { .. } => "update_member",
            Op::RemoveMember { .. } => "remove_member",
        }
    }

    /// The user or team the operation is about.
    pub fn target(&self) -> String {
        match self {
            Op::CreateTeam { team_id, .. } | Op::UpdateTeam { team_id, .. } | Op::AddMembers { team_id, .. } => {
                format!("team {team_id}")
            }
            Op::UpdateMember { team_id, user_id, .. } | Op::RemoveMember { team_id, user_id } => {
                format!("team {team_id} member {user_id}")
            }
            Op::CreateUser { user_id, .. }
            | Op::UpdateUser { user_id, .. }
            | Op::DeactivateUser { user_id, .. }
            | Op::DeleteUser { user_id, .. } => format!("user {user_id}"),
        }
    }

    /// Lock keys: no two operations on one user or one team run at once.
    pub fn resources(&self) -> Vec<String> {
        let mut r = match self {
            Op::CreateTeam { team_id, .. } | Op::UpdateTeam { team_id, .. } => vec![format!("team:{team_id}")],
            Op::AddMembers { team_id, members } => std::iter::once(format!("team:{team_id}"))
                .chain(members.iter().map(|m| format!("user:{}", m.user_id)))
                .collect(),
            Op::UpdateMember { team_id, user_id, .. } | Op::RemoveMember { team_id, user_id } => {
                vec![format!("team:{team_id}"), format!("user:{user_id}")]
            }
            Op::CreateUser { user_id, .. }
            | Op::UpdateUser { user_id, .. }
            | Op::DeactivateUser { user_id, .. }
            | Op::DeleteUser { user_id, .. } => vec![format!("user:{user_id}")],
        };
        r.sort();
        r.dedup();
        r
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// Destructive operations held by the safety limit (or the empty-snapshot guard); not applied.
    pub held: Vec<Op>,
    pub hold_reason: Option<String>,
    /// Sources whose read came back empty while they manage users: treated as a failed read (the run fails).
    pub refused_sources: Vec<String>,
    pub notes: Vec<String>,
    /// Users carrying the marker of a source read in this run.
    pub managed_users: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.held.is_empty()
    }
}

/// Computes the plan.
pub fn plan(desired: &DesiredState, actual: &Actual, cx: &PlanContext<'_>) -> Plan {
    let mut p = Plan { notes: desired.warnings.clone(), ..Default::default() };
    for ex in &desired.excluded {
        p.notes.push(format!("{} ({}) is not provisioned: {}", ex.user_name, ex.key, ex.reason));
    }

    // Index LiteLLM users by marker and by id.
    let mut managed: BTreeMap<ExternalKey, (&UserRow, UserMarker)> = BTreeMap::new();
    let by_id: BTreeMap<&str, &UserRow> = actual.users.iter().map(|u| (u.user_id.as_str(), u)).collect();
    for u in &actual.users {
        if let Some(m) = read_marker::<UserMarker>(&u.metadata) {
            let key = ExternalKey { source: m.source.clone(), external_id: m.external_id.clone() };
            if let Some((other, _)) = managed.get(&key) {
                p.notes.push(format!(
                    "LiteLLM users {:?} and {:?} both carry the marker of {key}; only {:?} is managed",
                    other.user_id, u.user_id, other.user_id
                ));
                continue;
            }
            managed.insert(key, (u, m));
        }
    }
    p.managed_users = managed.keys().filter(|k| cx.complete_sources.contains(&k.source)).count();

    // Users: create / update / reactivate / adopt.
    let mut ops: Vec<Op> = Vec::new();
    let mut deprov: Vec<Op> = Vec::new();
    // ExternalKey → the LiteLLM user_id it has or will have, for team rosters.
    let mut resolved: BTreeMap<&ExternalKey, String> = BTreeMap::new();
    for (key, d) in &desired.users {
        if let Some((row, marker)) = managed.get(key) {
            resolved.insert(key, row.user_id.clone());
            if d.active {
                let u = user_update(d, row, Some(marker));
                if !u.request.is_empty() || !u.unblock_keys.is_empty() {
                    let reactivating = marker.deactivated_at.is_some() || scim_inactive(&row.metadata);
                    ops.push(Op::UpdateUser {
                        user_id: row.user_id.clone(),
                        key: key.clone(),
                        reason: if reactivating { "reactivate" } else { "update" }.into(),
                        request: u.request,
                        changes: u.changes,
                        unblock_keys: u.unblock_keys,
                        metadata_patch: u.metadata_patch,
                    });
                }
            } else if let Some(op) = deprovision(row, marker, key, "disabled in the source", cx) {
                deprov.push(op);
            }
        } else if let Some(row) = by_id.get(d.user_id.as_str()) {
            match read_marker::<UserMarker>(&row.metadata) {
                Some(m) => p.notes.push(format!(
                    "{} ({key}) wants user_id {:?}, which belongs to {}/{}; not touching it",
                    d.user_name, d.user_id, m.source, m.external_id
                )),
                None if cx.safety.adopt_existing && d.active => {
                    resolved.insert(key, row.user_id.clone());
                    let u = user_update(d, row, None);
                    ops.push(Op::UpdateUser {
                        user_id: row.user_id.clone(),
                        key: key.clone(),
                        reason: "adopt".into(),
                        request: u.request,
                        changes: u.changes,
                        unblock_keys: Vec::new(),
                        metadata_patch: u.metadata_patch,
                    });
                }
                None if d.active => p.notes.push(format!(
                    "user_id {:?} already exists in LiteLLM and is not managed by litellm-sync; left alone (set \
                     safety.adopt_existing = true to take it over)",
                    d.user_id
                )),
                None => {}
            }
        } else if d.active {
            resolved.insert(key, d.user_id.clone());
            ops.push(Op::CreateUser {
                user_id: d.user_id.clone(),
                key: key.clone(),
                request: new_user_request(d),
                desired: Box::new(d.clone()),
            });
        }
    }

    // Managed users that the complete snapshots no longer contain.
    let mut empty_guard: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, (row, marker)) in &managed {
        if !cx.complete_sources.contains(&key.source) || desired.users.contains_key(key) {
            continue;
        }
        if cx.source_user_counts.get(&key.source).copied().unwrap_or(0) == 0 {
            *empty_guard.entry(key.source.as_str()).or_default() += 1;
            continue;
        }
        let reason = match desired.excluded.iter().find(|e| &e.key == key) {
            Some(e) => format!("out of scope: {}", e.reason),
            None => format!("no longer in source {:?}", key.source),
        };
        if let Some(op) = deprovision(row, marker, key, &reason, cx) {
            deprov.push(op);
        }
    }
    for (source, n) in empty_guard {
        p.notes.push(format!(
            "source {source:?} returned no users: refusing to deprovision its {n} managed user(s) (an empty read \
             is treated as a failed read)"
        ));
        p.refused_sources.push(source.to_string());
    }

    // Teams and rosters.
    let active_keys: BTreeSet<&str> =
        desired.users.values().filter(|d| d.active).filter_map(|d| resolved.get(&d.key).map(String::as_str)).collect();
    let managed_ids: BTreeSet<&str> = managed
        .iter()
        .filter(|(k, _)| cx.complete_sources.contains(&k.source))
        .map(|(_, (row, _))| row.user_id.as_str())
        .collect();
    let teams_by_id: BTreeMap<&str, &TeamRow> = actual.teams.iter().map(|t| (t.team_id.as_str(), t)).collect();
    for dt in desired.teams.values() {
        let members: BTreeMap<String, TeamRole> =
            dt.members.iter().filter_map(|(k, role)| resolved.get(k).map(|id| (id.clone(), *role))).collect();
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
                let (request, changes, metadata_patch) = team_update(dt, row, marker.as_ref());
                if !changes.is_empty() {
                    ops.push(Op::UpdateTeam { team_id: dt.team_id.clone(), request, changes, metadata_patch });
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
        let adds: Vec<MemberSpec> = members
            .iter()
            .filter(|(id, _)| !current.contains_key(id.as_str()))
            .map(|(id, role)| MemberSpec { user_id: id.clone(), role: role.as_str().into() })
            .collect();
        if !adds.is_empty() {
            ops.push(Op::AddMembers { team_id: dt.team_id.clone(), members: adds });
        }
        for (id, role) in &members {
            if let Some(cur) = current.get(id.as_str()) {
                if cur != role {
                    ops.push(Op::UpdateMember {
                        team_id: dt.team_id.clone(),
                        user_id: id.clone(),
                        role: role.as_str().into(),
                    });
                }
            }
        }
        // Remove only managed, still-active users who are no longer in the group; deactivated users keep their
        // memberships, and members added by hand (or `default_user_id`) are not ours to remove.
        for id in current.keys() {
            if !members.contains_key(*id) && managed_ids.contains(id) && active_keys.contains(id) {
                ops.push(Op::RemoveMember { team_id: dt.team_id.clone(), user_id: id.to_string() });
            }
        }
    }
    for row in &actual.teams {
        if let Some(m) = read_marker::<TeamMarker>(&row.metadata) {
            if cx.complete_sources.contains(&m.source) && !desired.teams.contains_key(&row.team_id) {
                p.notes.push(format!(
                    "team {:?} is managed but no rule maps a group to it any more; it is kept (delete it by hand if \
                     it should go)",
                    row.team_id
                ));
            }
        }
    }

    // Safety limit over the destructive operations.
    let n = deprov.len();
    if n > 0 && !cx.allow_mass_deprovision {
        let pct_allowance = (cx.safety.max_deletions_percent / 100.0 * p.managed_users as f64).ceil() as usize;
        let reason = if n > cx.safety.max_deletions as usize {
            Some(format!("{n} deactivations/deletions exceed safety.max_deletions = {}", cx.safety.max_deletions))
        } else if n > pct_allowance {
            Some(format!(
                "{n} deactivations/deletions exceed safety.max_deletions_percent = {}% of {} managed users (at most {})",
                cx.safety.max_deletions_percent, p.managed_users, pct_allowance
            ))
        } else {
            None
        };
        if let Some(r) = reason {
            p.hold_reason =
                Some(format!("{r}; nothing destructive was applied. Re-run with --allow-deletions to approve."));
            p.held = deprov;
            deprov = Vec::new();
        }
    }
    ops.extend(deprov);
    ops.sort_by_key(|o| o.phase());
    p.ops = ops;
    p
}

fn scim_inactive(metadata: &Map<String, Value>) -> bool {
    metadata.get(SCIM_ACTIVE) == Some(&Value::Bool(false))
}

fn deprovision(row: &UserRow, marker: &UserMarker, key: &ExternalKey, why: &str, cx: &PlanContext<'_>) -> Option<Op> {
    let user_id = row.user_id.clone();
    match cx.safety.deprovision {
        Deprovision::Delete => Some(Op::DeleteUser { user_id, key: key.clone(), reason: why.to_string() }),
        Deprovision::Deactivate => match marker.deactivated_at {
            Some(at) if scim_inactive(&row.metadata) => {
                let grace = cx.safety.delete_after?;
                let grace = chrono::Duration::from_std(grace).ok()?;
                (cx.now - at >= grace).then(|| Op::DeleteUser {
                    user_id,
                    key: key.clone(),
                    reason: format!("{why}; deactivated since {} and the grace period has passed", at.to_rfc3339()),
                })
            }
            _ => {
                let mut m = marker.clone();
                m.deactivated_at = Some(cx.now);
                let mut set = Map::new();
                set.insert(SCIM_ACTIVE.into(), Value::Bool(false));
                set.insert(MARKER_KEY.into(), serde_json::to_value(&m).unwrap_or(Value::Null));
                let metadata_patch = MetadataPatch { set, remove: Vec::new() };
                Some(Op::DeactivateUser { user_id, key: key.clone(), reason: why.to_string(), metadata_patch })
            }
        },
    }
}

/// Names of the user fields the desired state owns.
fn owned_fields(d: &DesiredUser) -> BTreeSet<String> {
    let f = &d.fields;
    let mut s = BTreeSet::new();
    let mut add = |name: &str, present: bool| {
        if present {
            s.insert(name.to_string());
        }
    };
    add("user_role", f.role.is_some());
    add("max_budget", f.max_budget.is_some());
    add("budget_duration", f.budget_duration.is_some());
    add("models", f.models.is_some());
    add("tpm_limit", f.tpm_limit.is_some());
    add("rpm_limit", f.rpm_limit.is_some());
    add("max_parallel_requests", f.max_parallel_requests.is_some());
    add("model_max_budget", f.model_max_budget.is_some());
    add("user_email", d.email.is_some());
    add("user_alias", d.alias.is_some());
    s
}

fn marker_for(d: &DesiredUser) -> UserMarker {
    UserMarker {
        source: d.key.source.clone(),
        external_id: d.key.external_id.clone(),
        fields: owned_fields(d),
        metadata_keys: d.fields.metadata.keys().cloned().collect(),
        deactivated_at: None,
        blocked_keys: Vec::new(),
    }
}

/// The `/user/new` body for a desired user (the marker included).
pub fn new_user_request(d: &DesiredUser) -> NewUserRequest {
    let f = &d.fields;
    let mut metadata: Map<String, Value> = f.metadata.clone().into_iter().collect();
    metadata.insert(MARKER_KEY.into(), serde_json::to_value(marker_for(d)).unwrap_or(Value::Null));
    let key = d.create.key.as_ref();
    NewUserRequest {
        user_id: d.user_id.clone(),
        user_email: d.email.clone(),
        user_alias: d.alias.clone(),
        user_role: f.role.map(|r| r.as_str().to_string()),
        max_budget: f.max_budget,
        budget_duration: f.budget_duration.clone(),
        models: f.models.clone(),
        tpm_limit: f.tpm_limit,
        rpm_limit: f.rpm_limit,
        max_parallel_requests: f.max_parallel_requests,
        model_max_budget: f.model_max_budget.clone(),
        metadata,
        auto_create_key: key.is_some(),
        key_alias: key.and_then(|k| k.alias.as_deref()).map(|t| {
            t.replace("{user_name}", &d.user_name)
                .replace("{user_id}", &d.user_id)
                .replace("{email}", d.email.as_deref().unwrap_or(""))
        }),
        duration: key.and_then(|k| k.duration.clone()),
        send_invite_email: d.create.send_invite_email,
    }
}

fn money_eq(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        (None, None) => true,
        _ => false,
    }
}

/// Models as LiteLLM means them: `[]` and `["all-proxy-models"]` both mean every model.
fn models_eq(actual: &[String], desired: &[String]) -> bool {
    let norm = |m: &[String]| {
        let n = normalize_models(m.iter().cloned());
        if n.is_empty() {
            vec![ALL_MODELS.to_string()]
        } else {
            n
        }
    };
    norm(actual) == norm(desired)
}

fn mmb_eq(actual: &Map<String, Value>, desired: &BTreeMap<String, f64>) -> bool {
    actual.len() == desired.len()
        && desired
            .iter()
            .all(|(k, v)| actual.get(k).and_then(Value::as_f64).is_some_and(|a| money_eq(Some(a), Some(*v))))
}

/// What [`user_update`] computed.
pub struct UserUpdate {
    pub request: UpdateUserRequest,
    pub changes: Vec<Change>,
    /// Keys blocked at deactivation, to unblock on reactivation.
    pub unblock_keys: Vec<String>,
    /// Set when metadata changes: the applier re-bases it on a fresh read.
    pub metadata_patch: Option<MetadataPatch>,
}

/// The update that brings `actual` to `desired`: changed owned fields, fields owned last time but no longer
/// (reset where LiteLLM can clear them), and merged metadata. Also used by the applier after a 409 on create.
pub fn user_update(d: &DesiredUser, actual: &UserRow, old: Option<&UserMarker>) -> UserUpdate {
    let f = &d.fields;
    let mut req = UpdateUserRequest { user_id: actual.user_id.clone(), ..Default::default() };
    let mut changes = Vec::new();
    let mut change = |field: &str, from: Value, to: Value| changes.push(Change { field: field.into(), from, to });
    let was_owned = |field: &str| old.is_some_and(|m| m.fields.contains(field));

    if let Some(e) = &d.email {
        if actual.user_email.as_deref() != Some(e.as_str()) {
            req.user_email = Some(e.clone());
            change("user_email", json!(actual.user_email), json!(e));
        }
    }
    if let Some(a) = &d.alias {
        if actual.user_alias.as_deref() != Some(a.as_str()) {
            req.user_alias = Some(a.clone());
            change("user_alias", json!(actual.user_alias), json!(a));
        }
    }
    let actual_role = actual.user_role.as_deref().and_then(Role::parse);
    match f.role {
        Some(r) if actual_role != Some(r) => {
            req.user_role = Some(r.as_str().into());
            change("user_role", json!(actual.user_role), json!(r.as_str()));
        }
        // A role no rule grants any more falls back to LiteLLM's default for users.
        None if was_owned("user_role") && actual_role.is_some_and(|r| r != Role::InternalUser) => {
            req.user_role = Some(Role::InternalUser.as_str().into());
            change("user_role", json!(actual.user_role), json!(Role::InternalUser.as_str()));
        }
        _ => {}
    }
    match f.max_budget {
        Some(b) if !money_eq(actual.max_budget, Some(b)) => {
            req.max_budget = Some(Some(b));
            change("max_budget", json!(actual.max_budget), json!(b));
        }
        None if was_owned("max_budget") && actual.max_budget.is_some() => {
            req.max_budget = Some(None);
            change("max_budget", json!(actual.max_budget), Value::Null);
        }
        _ => {}
    }
    match &f.budget_duration {
        Some(b) if actual.budget_duration.as_deref() != Some(b.as_str()) => {
            req.budget_duration = Some(Some(b.clone()));
            change("budget_duration", json!(actual.budget_duration), json!(b));
        }
        None if was_owned("budget_duration") && actual.budget_duration.is_some() => {
            req.budget_duration = Some(None);
            change("budget_duration", json!(actual.budget_duration), Value::Null);
        }
        _ => {}
    }
    for (name, want, have, slot) in [
        ("tpm_limit", f.tpm_limit, actual.tpm_limit, &mut req.tpm_limit),
        ("rpm_limit", f.rpm_limit, actual.rpm_limit, &mut req.rpm_limit),
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
    // LiteLLM cannot clear max_parallel_requests; a limit that drops out of the rules stays as it is.
    if let Some(v) = f.max_parallel_requests {
        if actual.max_parallel_requests != Some(v) {
            req.max_parallel_requests = Some(v);
            change("max_parallel_requests", json!(actual.max_parallel_requests), json!(v));
        }
    }
    match &f.models {
        Some(m) if !models_eq(&actual.models, m) => {
            req.models = Some(m.clone());
            change("models", json!(actual.models), json!(m));
        }
        None if was_owned("models") && !models_eq(&actual.models, &[]) => {
            req.models = Some(vec![ALL_MODELS.into()]);
            change("models", json!(actual.models), json!([ALL_MODELS]));
        }
        _ => {}
    }
    match &f.model_max_budget {
        Some(m) if !mmb_eq(&actual.model_max_budget, m) => {
            req.model_max_budget = Some(m.clone());
            change("model_max_budget", json!(actual.model_max_budget), json!(m));
        }
        None if was_owned("model_max_budget") && !actual.model_max_budget.is_empty() => {
            req.model_max_budget = Some(BTreeMap::new());
            change("model_max_budget", json!(actual.model_max_budget), json!({}));
        }
        _ => {}
    }
    // Guard against LiteLLM overwriting budgets with its internal-user globals when only a role is sent.
    if req.user_role.is_some() {
        if req.max_budget.is_none() && f.max_budget.is_some() {
            req.max_budget = Some(f.max_budget);
        }
        if req.budget_duration.is_none() && f.budget_duration.is_some() {
            req.budget_duration = Some(f.budget_duration.clone());
        }
    }

    // Metadata: keep foreign keys, drop keys we owned and no longer want, set ours, and re-activate.
    let mut patch = MetadataPatch::default();
    for k in old.map(|m| &m.metadata_keys).into_iter().flatten() {
        if !f.metadata.contains_key(k) {
            patch.remove.push(k.clone());
        }
    }
    for (k, v) in &f.metadata {
        patch.set.insert(k.clone(), v.clone());
    }
    let unblock = if old.is_some_and(|m| m.deactivated_at.is_some()) || scim_inactive(&actual.metadata) {
        patch.remove.push(SCIM_ACTIVE.into());
        old.map(|m| m.blocked_keys.clone()).unwrap_or_default()
    } else {
        Vec::new()
    };
    patch.set.insert(MARKER_KEY.into(), serde_json::to_value(marker_for(d)).unwrap_or(Value::Null));
    let merged = patch.apply(&actual.metadata);
    let mut metadata_patch = None;
    if merged != actual.metadata {
        let keys: BTreeSet<&String> = merged.keys().chain(actual.metadata.keys()).collect();
        for k in keys {
            let (a, b) = (actual.metadata.get(k), merged.get(k));
            if a != b {
                change(&format!("metadata.{k}"), a.cloned().unwrap_or(Value::Null), b.cloned().unwrap_or(Value::Null));
            }
        }
        req.metadata = Some(merged);
        metadata_patch = Some(patch);
    }
    UserUpdate { request: req, changes, unblock_keys: unblock, metadata_patch }
}

fn team_marker(dt: &DesiredTeam) -> Value {
    serde_json::to_value(TeamMarker {
        source: dt.source.clone(),
        group_id: dt.group_id.clone(),
        metadata_keys: dt.metadata.keys().cloned().collect(),
    })
    .unwrap_or(Value::Null)
}

fn new_team_request(dt: &DesiredTeam) -> TeamRequest {
    let mut metadata: Map<String, Value> = dt.metadata.clone().into_iter().collect();
    metadata.insert(MARKER_KEY.into(), team_marker(dt));
    TeamRequest {
        team_id: dt.team_id.clone(),
        team_alias: Some(dt.alias.clone()),
        max_budget: dt.max_budget,
        soft_budget: dt.soft_budget,
        budget_duration: dt.budget_duration.clone(),
        models: dt.models.clone(),
        tpm_limit: dt.tpm_limit,
        rpm_limit: dt.rpm_limit,
        metadata: Some(metadata),
    }
}

fn team_update(
    dt: &DesiredTeam,
    row: &TeamRow,
    old: Option<&TeamMarker>,
) -> (TeamRequest, Vec<Change>, Option<MetadataPatch>) {
    let mut req = TeamRequest { team_id: dt.team_id.clone(), ..Default::default() };
    let mut changes = Vec::new();
    let mut change = |field: &str, from: Value, to: Value| changes.push(Change { field: field.into(), from, to });
    if row.team_alias.as_deref() != Some(dt.alias.as_str()) {
        req.team_alias = Some(dt.alias.clone());
        change("team_alias", json!(row.team_alias), json!(dt.alias));
    }
    if dt.max_budget.is_some() && !money_eq(row.max_budget, dt.max_budget) {
        req.max_budget = dt.max_budget;
        change("max_budget", json!(row.max_budget), json!(dt.max_budget));
    }
    if dt.soft_budget.is_some() && !money_eq(row.soft_budget, dt.soft_budget) {
        req.soft_budget = dt.soft_budget;
        change("soft_budget", json!(row.soft_budget), json!(dt.soft_budget));
    }
    if dt.budget_duration.is_some() && row.budget_duration != dt.budget_duration {
        req.budget_duration = dt.budget_duration.clone();
        change("budget_duration", json!(row.budget_duration), json!(dt.budget_duration));
    }
    if let Some(m) = &dt.models {
        if !models_eq(&row.models, m) {
            req.models = Some(m.clone());
            change("models", json!(row.models), json!(m));
        }
    }
    if dt.tpm_limit.is_some() && row.tpm_limit != dt.tpm_limit {
        req.tpm_limit = dt.tpm_limit;
        change("tpm_limit", json!(row.tpm_limit), json!(dt.tpm_limit));
    }
    if dt.rpm_limit.is_some() && row.rpm_limit != dt.rpm_limit {
        req.rpm_limit = dt.rpm_limit;
        change("rpm_limit", json!(row.rpm_limit), json!(dt.rpm_limit));
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
    patch.set.insert(MARKER_KEY.into(), team_marker(dt));
    let merged = patch.apply(&row.metadata);
    let mut metadata_patch = None;
    if merged != row.metadata {
        change("metadata", Value::Object(row.metadata.clone()), Value::Object(merged.clone()));
        req.metadata = Some(merged);
        metadata_patch = Some(patch);
    }
    (req, changes, metadata_patch)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
