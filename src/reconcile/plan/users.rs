//! Users: which identity gets which LiteLLM `user_id`, the create / update / reactivate / adopt operations, and
//! the deprovisioning of managed users that a complete snapshot no longer has.
//!
//! The owner of a `user_id` (the identity whose marker the LiteLLM user carries) keeps it whatever the record or
//! source order; another identity rendering the same id is reported as a [`Collision`] and not provisioned.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::{Collision, Op, Plan, PlanContext};
use crate::config::Deprovision;
use crate::litellm::types::{NewUserRequest, UpdateUserRequest, UserRow};
use crate::mapper::{normalize_models, DesiredState, DesiredUser, ExternalKey, ALL_MODELS};
use crate::model::Role;
use crate::reconcile::op::Change;
use crate::reconcile::{read_marker, MetadataPatch, UserMarker, MARKER_KEY, SCIM_ACTIVE};

/// LiteLLM's users by marker.
pub(super) struct Index<'a> {
    pub managed: BTreeMap<ExternalKey, (&'a UserRow, UserMarker)>,
    /// Every user of the listing (or ledger).
    pub all: &'a [UserRow],
}

impl<'a> Index<'a> {
    pub fn new(actual: &'a super::Actual, notes: &mut Vec<String>) -> Index<'a> {
        let mut found: Vec<(ExternalKey, (&UserRow, UserMarker))> = Vec::new();
        for u in &actual.users {
            if let Some(m) = read_marker::<UserMarker>(&u.metadata) {
                let key = ExternalKey { source: m.source.clone(), external_id: m.external_id.clone() };
                found.push((key, (u, m)));
            }
        }
        // Built at once in key order rather than inserted one by one in listing order. Of several users carrying
        // one marker the first listed is managed; the notes about the others keep listing order.
        let order = crate::mapper::key_order(found.iter().map(|(k, _)| k));
        let mut slots: Vec<Option<(ExternalKey, (&UserRow, UserMarker))>> = found.into_iter().map(Some).collect();
        let mut managed: Vec<(ExternalKey, (&UserRow, UserMarker))> = Vec::with_capacity(slots.len());
        let mut shared: Vec<(usize, String)> = Vec::new();
        for i in order {
            let Some(entry) = slots[i].take() else { continue };
            match managed.last() {
                Some((key, (other, _))) if *key == entry.0 => shared.push((
                    i,
                    format!(
                        "LiteLLM users {:?} and {:?} both carry the marker of {key}; only {:?} is managed",
                        other.user_id, entry.1 .0.user_id, other.user_id
                    ),
                )),
                _ => managed.push(entry),
            }
        }
        shared.sort_by_key(|(i, _)| *i);
        notes.extend(shared.into_iter().map(|(_, n)| n));
        Index { managed: managed.into_iter().collect(), all: &actual.users }
    }
}

pub(super) struct Users<'a> {
    /// ExternalKey → the LiteLLM user_id it has or will have (for team rosters), borrowed from the desired state or
    /// the listing.
    pub resolved: BTreeMap<&'a ExternalKey, &'a str>,
    /// Deactivations and deletions, before the safety limit.
    pub deprovision: Vec<Op>,
}

pub(super) fn plan_users<'a>(
    desired: &'a DesiredState,
    ix: &Index<'a>,
    cx: &PlanContext<'_>,
    p: &mut Plan,
    ops: &mut Vec<Op>,
) -> Users<'a> {
    let mut out = Users { resolved: BTreeMap::new(), deprovision: Vec::new() };
    // Identities without a LiteLLM user yet, by the user_id they render.
    let mut claims: BTreeMap<&str, Vec<&DesiredUser>> = BTreeMap::new();
    // Both maps are ordered by ExternalKey: walk them side by side (one comparison per step) instead of searching
    // the index for every desired user.
    let mut managed = ix.managed.iter().peekable();
    for (key, d) in &desired.users {
        while managed.next_if(|(k, _)| *k < key).is_some() {}
        let hit = managed.next_if(|(k, _)| *k == key).map(|(_, v)| v);
        if let Some((row, marker)) = hit {
            out.resolved.insert(key, row.user_id.as_str());
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
                        desired: Some(Box::new(d.clone())),
                    });
                }
            } else if let Some(op) = deprovision(row, marker, key, "disabled in the source", cx) {
                out.deprovision.push(op);
            }
        } else if d.active {
            claims.entry(d.user_id.as_str()).or_default().push(d);
        }
    }

    // Only identities without a managed user need LiteLLM's users by id (none, in a scheduled no-op run).
    let by_id: BTreeMap<&str, &UserRow> =
        if claims.is_empty() { BTreeMap::new() } else { ix.all.iter().map(|u| (u.user_id.as_str(), u)).collect() };
    for (id, claimants) in claims {
        let collide = |p: &mut Plan, owner: Option<ExternalKey>| {
            for d in &claimants {
                p.collisions.push(Collision {
                    user_id: id.to_string(),
                    claimant: d.key.clone(),
                    user_name: d.user_name.clone(),
                    owner: owner.clone(),
                });
            }
        };
        match by_id.get(id) {
            Some(row) => match read_marker::<UserMarker>(&row.metadata) {
                Some(m) => collide(p, Some(ExternalKey { source: m.source, external_id: m.external_id })),
                None if claimants.len() > 1 => collide(p, None),
                None if cx.safety.adopt_existing => {
                    let d = claimants[0];
                    out.resolved.insert(&d.key, row.user_id.as_str());
                    let u = user_update(d, row, None);
                    ops.push(Op::UpdateUser {
                        user_id: row.user_id.clone(),
                        key: d.key.clone(),
                        reason: "adopt".into(),
                        request: u.request,
                        changes: u.changes,
                        unblock_keys: Vec::new(),
                        metadata_patch: u.metadata_patch,
                        desired: Some(Box::new(d.clone())),
                    });
                }
                None => p.notes.push(format!(
                    "user_id {id:?} already exists in LiteLLM and is not managed by litellm-sync; left alone (set \
                     safety.adopt_existing = true to take it over)"
                )),
            },
            None if claimants.len() > 1 => collide(p, None),
            None => {
                let d = claimants[0];
                out.resolved.insert(&d.key, d.user_id.as_str());
                ops.push(Op::CreateUser {
                    user_id: d.user_id.clone(),
                    key: d.key.clone(),
                    request: new_user_request(d),
                    desired: Box::new(d.clone()),
                });
            }
        }
    }

    // Managed users that the complete snapshots no longer contain.
    let mut empty_guard: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unidentified_guard: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut wanted = desired.users.keys().peekable();
    for (key, (row, marker)) in &ix.managed {
        while wanted.next_if(|k| *k < key).is_some() {}
        if !cx.complete_sources.contains(&key.source) || wanted.next_if(|k| *k == key).is_some() {
            continue;
        }
        if let Some(doubt) = cx.doubt.get(&key.source) {
            if let Some(why) = doubt.unreadable.get(&key.external_id) {
                p.notes.push(format!(
                    "{:?} ({key}) is kept as it was: the source returned its entry but could not read it ({why})",
                    row.user_id
                ));
                continue;
            }
            if doubt.blocks_removals() {
                unidentified_guard.entry(key.source.as_str()).or_insert((doubt.unidentified, 0)).1 += 1;
                continue;
            }
        }
        if cx.source_user_counts.get(&key.source).copied().unwrap_or(0) == 0 && !cx.empty_is_explicit(&key.source) {
            *empty_guard.entry(key.source.as_str()).or_default() += 1;
            continue;
        }
        let reason = match desired.excluded.iter().find(|e| &e.key == key) {
            Some(e) => format!("out of scope: {}", e.reason),
            None => format!("no longer in source {:?}", key.source),
        };
        if let Some(op) = deprovision(row, marker, key, &reason, cx) {
            out.deprovision.push(op);
        }
    }
    for (source, n) in empty_guard {
        p.notes.push(format!(
            "source {source:?} returned no users: refusing to deprovision its {n} managed user(s) (an empty read \
             is treated as a failed read)"
        ));
        p.refused_sources.push(source.to_string());
    }
    for (source, (entries, n)) in unidentified_guard {
        p.notes.push(format!(
            "source {source:?} returned {entries} entr{} it could not identify or read (see the log): refusing to \
             deprovision its {n} missing managed user(s) (any of them could be one of those entries)",
            if entries == 1 { "y" } else { "ies" }
        ));
        if !p.refused_sources.iter().any(|s| s == source) {
            p.refused_sources.push(source.to_string());
        }
    }
    out
}

pub(crate) fn scim_inactive(metadata: &Map<String, Value>) -> bool {
    metadata.get(SCIM_ACTIVE) == Some(&Value::Bool(false))
}

fn deprovision(row: &UserRow, marker: &UserMarker, key: &ExternalKey, why: &str, cx: &PlanContext<'_>) -> Option<Op> {
    let user_id = row.user_id.clone();
    match cx.safety.deprovision {
        Deprovision::Delete => Some(Op::DeleteUser { user_id, key: key.clone(), reason: why.to_string() }),
        Deprovision::Deactivate => match marker.deactivated_at {
            // An earlier attempt recorded the keys to block but did not finish blocking them.
            Some(_) if marker.blocking => Some(Op::DeactivateUser {
                user_id,
                key: key.clone(),
                reason: format!("{why}; finishing the deactivation (blocking the keys it recorded)"),
                metadata_patch: deactivation_patch(marker, cx.now),
                resume: true,
            }),
            Some(at) if scim_inactive(&row.metadata) => {
                let grace = cx.safety.delete_after?;
                let grace = chrono::Duration::from_std(grace).ok()?;
                (cx.now - at >= grace).then(|| Op::DeleteUser {
                    user_id,
                    key: key.clone(),
                    reason: format!("{why}; deactivated since {} and the grace period has passed", at.to_rfc3339()),
                })
            }
            _ => Some(Op::DeactivateUser {
                user_id,
                key: key.clone(),
                reason: why.to_string(),
                metadata_patch: deactivation_patch(marker, cx.now),
                resume: false,
            }),
        },
    }
}

/// The metadata a deactivation writes: LiteLLM's `scim_active=false` (every key of the user stops working) and
/// the marker with the deactivation time. The applier re-bases it on a fresh read and adds the keys it blocks.
pub fn deactivation_patch(marker: &UserMarker, now: chrono::DateTime<chrono::Utc>) -> MetadataPatch {
    let mut m = marker.clone();
    m.deactivated_at.get_or_insert(now);
    let mut set = Map::new();
    set.insert(SCIM_ACTIVE.into(), Value::Bool(false));
    set.insert(MARKER_KEY.into(), serde_json::to_value(&m).unwrap_or(Value::Null));
    MetadataPatch { set, remove: Vec::new() }
}

/// The names [`owned_fields`] holds, in its (sorted) order, without allocating.
fn owned_field_names(d: &DesiredUser) -> impl Iterator<Item = &'static str> + Clone + '_ {
    let f = &d.fields;
    // Sorted by name, as a BTreeSet<String> iterates them (pinned by a test).
    [
        ("budget_duration", f.budget_duration.is_some()),
        ("max_budget", f.max_budget.is_some()),
        ("max_parallel_requests", f.max_parallel_requests.is_some()),
        ("model_max_budget", f.model_max_budget.is_some()),
        ("models", f.models.is_some()),
        ("rpm_limit", f.rpm_limit.is_some()),
        ("tpm_limit", f.tpm_limit.is_some()),
        ("user_alias", d.alias.is_some()),
        ("user_email", d.email.is_some()),
        ("user_role", f.role.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
}

/// Whether `v` is exactly the JSON `serde_json::to_value(marker_for(d))` makes, without building it: `source`,
/// `external_id`, and `fields` / `metadata_keys` when they are not empty, nothing else.
pub(super) fn marker_matches(v: Option<&Value>, d: &DesiredUser) -> bool {
    fn strings_eq<'x>(v: Option<&Value>, mut want: impl Iterator<Item = &'x str>) -> bool {
        match v {
            Some(Value::Array(a)) => {
                a.iter().all(|x| x.as_str().is_some_and(|s| want.next() == Some(s))) && want.next().is_none()
            }
            _ => false,
        }
    }
    let Some(Value::Object(m)) = v else { return false };
    let fields = owned_field_names(d);
    let has_fields = fields.clone().next().is_some();
    let keys = &d.fields.metadata;
    m.len() == 2 + usize::from(has_fields) + usize::from(!keys.is_empty())
        && m.get("source").and_then(Value::as_str) == Some(d.key.source.as_str())
        && m.get("external_id").and_then(Value::as_str) == Some(d.key.external_id.as_str())
        && (!has_fields || strings_eq(m.get("fields"), fields))
        && (keys.is_empty() || strings_eq(m.get("metadata_keys"), keys.keys().map(String::as_str)))
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

pub(super) fn marker_for(d: &DesiredUser) -> UserMarker {
    UserMarker {
        source: d.key.source.clone(),
        external_id: d.key.external_id.clone(),
        fields: owned_fields(d),
        metadata_keys: d.fields.metadata.keys().cloned().collect(),
        deactivated_at: None,
        blocked_keys: Vec::new(),
        blocking: false,
    }
}

/// The `/user/new` body for a desired user (the marker included).
pub fn new_user_request(d: &DesiredUser) -> NewUserRequest {
    let f = &d.fields;
    let mut metadata: Map<String, Value> = f.metadata.clone().into_iter().collect();
    metadata.insert(MARKER_KEY.into(), serde_json::to_value(marker_for(d)).unwrap_or(Value::Null));
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
        // Never a key here: two `/user/new` calls racing (a retry after a lost answer) would mint two. A key a
        // rule asks for is minted afterwards under a unique alias (the applier).
        auto_create_key: false,
        send_invite_email: d.create.send_invite_email,
    }
}

pub(super) fn money_eq(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        (None, None) => true,
        _ => false,
    }
}

/// Models as LiteLLM means them: `[]` and `["all-proxy-models"]` both mean every model.
pub(super) fn models_eq(actual: &[String], desired: &[String]) -> bool {
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
    if old.is_some_and(|m| m.deactivated_at.is_some()) || scim_inactive(&actual.metadata) {
        patch.remove.push(SCIM_ACTIVE.into());
    }
    // The marker written below forgets the blocked keys, so every one of them is unblocked first, whatever state
    // an interrupted deactivation left.
    let unblock = reactivation_unblocks(old);
    // Most users of a scheduled run carry exactly the marker they should, and nothing else changes: that is seen
    // without building the marker or a merged copy of their metadata (the marker only adds to `set`, so a patch
    // that changes nothing without it changes nothing with it when it is already there).
    let mut metadata_patch = None;
    let current = marker_matches(actual.metadata.get(MARKER_KEY), d) && !patch.changes(&actual.metadata);
    if !current {
        patch.set.insert(MARKER_KEY.into(), serde_json::to_value(marker_for(d)).unwrap_or(Value::Null));
    }
    if !current && patch.changes(&actual.metadata) {
        let merged = patch.apply(&actual.metadata);
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

/// The keys an active user's update must unblock: those litellm-sync blocked when it deactivated the user.
pub fn reactivation_unblocks(old: Option<&UserMarker>) -> Vec<String> {
    old.map(|m| m.blocked_keys.clone()).unwrap_or_default()
}
