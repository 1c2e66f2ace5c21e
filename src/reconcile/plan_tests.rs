use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::TimeZone;
use serde_json::{json, Map, Value};

use super::*;
use crate::config::{Deprovision, Safety};
use crate::litellm::types::{TeamMemberRow, TeamRow, UserRow};
use crate::mapper::{CreateOptions, DesiredState, DesiredTeam, DesiredUser, ExternalKey};
use crate::model::{Grants, Role, TeamRole};

fn safety() -> Safety {
    Safety {
        max_deletions: 10,
        max_deletions_percent: 100.0,
        deprovision: Deprovision::Deactivate,
        delete_after: None,
        adopt_existing: false,
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

fn key(id: &str) -> ExternalKey {
    ExternalKey { source: "corp".into(), external_id: id.into() }
}

fn want(id: &str, user_id: &str) -> DesiredUser {
    DesiredUser {
        key: key(id),
        user_id: user_id.into(),
        user_name: user_id.into(),
        email: Some(format!("{user_id}@example.com")),
        alias: Some(user_id.to_uppercase()),
        active: true,
        fields: Grants {
            role: Some(Role::InternalUser),
            max_budget: Some(10.0),
            budget_duration: Some("30d".into()),
            models: Some(vec!["gpt-4o".into()]),
            tpm_limit: Some(100),
            rpm_limit: Some(10),
            max_parallel_requests: Some(2),
            model_max_budget: Some([("gpt-4o".to_string(), 5.0)].into()),
            metadata: [("dept".to_string(), json!("eng"))].into(),
        },
        create: CreateOptions::default(),
        provenance: BTreeMap::new(),
        groups: vec![],
        rules: vec![],
    }
}

/// The LiteLLM row a previous sync of `d` would have left.
fn synced(d: &DesiredUser) -> UserRow {
    let req = new_user_request(d);
    UserRow {
        user_id: d.user_id.clone(),
        user_email: req.user_email,
        user_alias: req.user_alias,
        user_role: req.user_role,
        max_budget: req.max_budget,
        budget_duration: req.budget_duration,
        models: req.models.unwrap_or_default(),
        tpm_limit: req.tpm_limit,
        rpm_limit: req.rpm_limit,
        max_parallel_requests: req.max_parallel_requests,
        model_max_budget: req
            .model_max_budget
            .map(|m| m.into_iter().map(|(k, v)| (k, json!(v))).collect())
            .unwrap_or_default(),
        metadata: req.metadata,
        teams: vec![],
    }
}

fn state(users: Vec<DesiredUser>) -> DesiredState {
    DesiredState { users: users.into_iter().map(|u| (u.key.clone(), u)).collect(), ..Default::default() }
}

fn run(desired: &DesiredState, actual: &Actual, safety: &Safety, count: usize) -> Plan {
    let cx = PlanContext {
        safety,
        now: now(),
        complete_sources: BTreeSet::from(["corp".to_string()]),
        source_user_counts: BTreeMap::from([("corp".to_string(), count)]),
        allow_mass_deprovision: false,
    };
    plan(desired, actual, &cx)
}

fn kinds(p: &Plan) -> Vec<&'static str> {
    p.ops.iter().map(|o| o.kind()).collect()
}

#[test]
fn in_sync_means_no_operations() {
    let d = want("1", "alice");
    let p = run(&state(vec![d.clone()]), &Actual { users: vec![synced(&d)], teams: vec![] }, &safety(), 1);
    assert!(p.is_empty(), "{:?}", p.ops);
    assert_eq!(p.managed_users, 1);
}

#[test]
fn missing_user_is_created_with_marker_and_without_a_key() {
    let d = want("1", "alice");
    let p = run(&state(vec![d]), &Actual::default(), &safety(), 1);
    assert_eq!(kinds(&p), vec!["create_user"]);
    let Op::CreateUser { request, .. } = &p.ops[0] else { unreachable!() };
    assert!(!request.auto_create_key);
    let m: UserMarker = read_marker(&request.metadata).unwrap();
    assert_eq!((m.source.as_str(), m.external_id.as_str()), ("corp", "1"));
    assert!(m.fields.contains("max_budget") && m.metadata_keys.contains("dept"));
}

/// Every owned field, changed on its own, yields exactly that field in the update.
#[test]
fn each_owned_field_is_diffed() {
    let d = want("1", "alice");
    type Mutation = Box<dyn Fn(&mut UserRow)>;
    let cases: Vec<(&str, Mutation, Value)> = vec![
        ("user_email", Box::new(|u| u.user_email = Some("old@example.com".into())), json!("alice@example.com")),
        ("user_alias", Box::new(|u| u.user_alias = None), json!("ALICE")),
        ("user_role", Box::new(|u| u.user_role = Some("proxy_admin".into())), json!("internal_user")),
        ("max_budget", Box::new(|u| u.max_budget = Some(99.0)), json!(10.0)),
        ("budget_duration", Box::new(|u| u.budget_duration = Some("1d".into())), json!("30d")),
        ("models", Box::new(|u| u.models = vec!["claude".into()]), json!(["gpt-4o"])),
        ("tpm_limit", Box::new(|u| u.tpm_limit = None), json!(100)),
        ("rpm_limit", Box::new(|u| u.rpm_limit = Some(11)), json!(10)),
        ("max_parallel_requests", Box::new(|u| u.max_parallel_requests = Some(1)), json!(2)),
        ("model_max_budget", Box::new(|u| u.model_max_budget = Map::new()), json!({"gpt-4o": 5.0})),
        (
            "metadata.dept",
            Box::new(|u| {
                u.metadata.insert("dept".into(), json!("sales"));
            }),
            json!("eng"),
        ),
    ];
    for (field, mutate, to) in cases {
        let mut row = synced(&d);
        mutate(&mut row);
        let UserUpdate { request: req, changes, .. } = user_update(&d, &row, read_marker(&row.metadata).as_ref());
        let names: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(names, vec![field], "changing {field}");
        assert_eq!(changes[0].to, to, "{field}");
        let body = serde_json::to_value(&req).unwrap();
        let mut sent: Vec<&String> = body.as_object().unwrap().keys().filter(|k| *k != "user_id").collect();
        sent.sort();
        let expect = field.split('.').next().unwrap();
        if expect == "user_role" {
            // A role change carries the owned budget along (LiteLLM would overwrite it with its globals).
            assert_eq!(sent, vec!["budget_duration", "max_budget", "user_role"], "{field}");
        } else {
            assert_eq!(sent, vec![expect], "{field}");
        }
    }
}

#[test]
fn equivalent_values_are_not_changes() {
    let d = want("1", "alice");
    let mut row = synced(&d);
    row.max_budget = Some(10.000000000001); // float noise
    row.models = vec!["gpt-4o".into(), "gpt-4o".into()];
    let UserUpdate { request: req, changes, .. } = user_update(&d, &row, read_marker(&row.metadata).as_ref());
    assert!(req.is_empty() && changes.is_empty(), "{changes:?}");
    // "All models" is [] or ["all-proxy-models"].
    let mut all = want("2", "bob");
    all.fields.models = Some(vec![ALL_MODELS.into()]);
    let mut row = synced(&all);
    row.models = vec![];
    assert!(user_update(&all, &row, read_marker(&row.metadata).as_ref()).request.is_empty());
}

#[test]
fn fields_no_longer_owned_are_reset_where_litellm_can_clear_them() {
    let full = want("1", "alice");
    let row = synced(&full);
    let mut bare = full.clone();
    bare.fields = Grants::default();
    let req = user_update(&bare, &row, read_marker(&row.metadata).as_ref()).request;
    let body = serde_json::to_value(&req).unwrap();
    assert_eq!(body["max_budget"], Value::Null);
    assert!(body.as_object().unwrap().contains_key("max_budget"), "null is sent to clear");
    assert_eq!(body["budget_duration"], Value::Null);
    assert_eq!(body["tpm_limit"], Value::Null);
    assert_eq!(body["rpm_limit"], Value::Null);
    assert_eq!(body["models"], json!([ALL_MODELS]));
    assert_eq!(body["model_max_budget"], json!({}));
    assert!(body.get("max_parallel_requests").is_none(), "cannot be cleared: not sent");
    assert!(body.get("user_role").is_none(), "internal_user already");
    assert!(body["metadata"].get("dept").is_none(), "our metadata key is removed");
    // A field the user never had from us is left alone.
    let mut foreign = row.clone();
    foreign.metadata.insert(MARKER_KEY.into(), json!({"source": "corp", "external_id": "1"}));
    let req = user_update(&bare, &foreign, read_marker(&foreign.metadata).as_ref()).request;
    assert!(req.max_budget.is_none() && req.models.is_none());
}

#[test]
fn foreign_metadata_keys_survive() {
    let d = want("1", "alice");
    let mut row = synced(&d);
    row.metadata.insert("cost_center".into(), json!("42"));
    row.max_budget = Some(1.0);
    let req = user_update(&d, &row, read_marker(&row.metadata).as_ref()).request;
    assert!(req.metadata.is_none(), "metadata unchanged, not sent");
    let mut d2 = d.clone();
    d2.fields.metadata.insert("dept".into(), json!("sales"));
    let req = user_update(&d2, &row, read_marker(&row.metadata).as_ref()).request;
    let u = user_update(&d2, &row, read_marker(&row.metadata).as_ref());
    let patch = u.metadata_patch.unwrap();
    assert!(!patch.set.contains_key("cost_center"), "foreign keys are not in the patch: a fresh read supplies them");
    let md = req.metadata.unwrap();
    assert_eq!(md["cost_center"], json!("42"));
    assert_eq!(md["dept"], json!("sales"));
    assert!(md.contains_key(MARKER_KEY));
}

#[test]
fn unmanaged_users_are_left_alone_unless_adopted() {
    let d = want("1", "alice");
    let mut row = synced(&d);
    row.metadata = Map::new();
    row.max_budget = Some(1.0);
    let actual = Actual { users: vec![row], teams: vec![] };
    let p = run(&state(vec![d.clone()]), &actual, &safety(), 1);
    assert!(p.ops.is_empty());
    assert!(p.notes.iter().any(|n| n.contains("not managed by litellm-sync")), "{:?}", p.notes);
    let adopt = Safety { adopt_existing: true, ..safety() };
    let p = run(&state(vec![d]), &actual, &adopt, 1);
    assert_eq!(kinds(&p), vec!["update_user"]);
    let Op::UpdateUser { reason, request, .. } = &p.ops[0] else { unreachable!() };
    assert_eq!(reason, "adopt");
    assert!(request.metadata.as_ref().unwrap().contains_key(MARKER_KEY), "the marker is added first");
}

#[test]
fn a_user_id_owned_by_another_identity_is_not_touched() {
    let d = want("1", "alice");
    // Owned by another source (not read in this run), under the same user_id.
    let mut other = want("9", "alice");
    other.key.source = "hr".into();
    let mut row = synced(&other);
    row.max_budget = Some(1.0);
    let p = run(&state(vec![d]), &Actual { users: vec![row], teams: vec![] }, &safety(), 1);
    assert!(p.ops.is_empty(), "{:?}", p.ops);
    assert!(p.notes.iter().any(|n| n.contains("belongs to hr/9")), "{:?}", p.notes);
}

#[test]
fn managed_user_keeps_its_id_when_the_template_would_now_give_another() {
    let old = want("1", "alice");
    let mut renamed = old.clone();
    renamed.user_id = "alice.smith".into();
    let p = run(&state(vec![renamed]), &Actual { users: vec![synced(&old)], teams: vec![] }, &safety(), 1);
    assert!(p.is_empty(), "matched by marker, not by id: {:?}", p.ops);
}

#[test]
fn missing_and_disabled_users_are_deactivated_then_deleted_after_grace() {
    let a = want("1", "alice");
    let b = want("2", "bob");
    let mut b_disabled = b.clone();
    b_disabled.active = false;
    let actual = Actual { users: vec![synced(&a), synced(&b)], teams: vec![] };
    let p = run(&state(vec![b_disabled.clone()]), &actual, &safety(), 1);
    assert_eq!(kinds(&p), vec!["deactivate_user", "deactivate_user"]);
    for (op, row) in p.ops.iter().zip(&actual.users) {
        let Op::DeactivateUser { metadata_patch, .. } = op else { unreachable!() };
        let metadata = metadata_patch.apply(&row.metadata);
        assert_eq!(metadata[SCIM_ACTIVE], json!(false));
        let m: UserMarker = read_marker(&metadata).unwrap();
        assert_eq!(m.deactivated_at, Some(now()));
        assert_eq!(metadata["dept"], json!("eng"), "other metadata kept");
        assert!(!metadata_patch.set.contains_key("dept"), "only our keys are in the patch");
    }
    // Already deactivated: nothing until the grace period has passed.
    let deactivated = |d: &DesiredUser, at: DateTime<Utc>| {
        let mut row = synced(d);
        let mut m: UserMarker = read_marker(&row.metadata).unwrap();
        m.deactivated_at = Some(at);
        row.metadata.insert(MARKER_KEY.into(), serde_json::to_value(m).unwrap());
        row.metadata.insert(SCIM_ACTIVE.into(), json!(false));
        row
    };
    let graced = Safety { delete_after: Some(Duration::from_secs(7 * 86400)), ..safety() };
    let recent = Actual { users: vec![deactivated(&a, now() - chrono::Duration::days(1))], teams: vec![] };
    assert!(run(&state(vec![b_disabled.clone()]), &recent, &graced, 1).ops.is_empty());
    let old = Actual { users: vec![deactivated(&a, now() - chrono::Duration::days(8))], teams: vec![] };
    let p = run(&state(vec![b_disabled]), &old, &graced, 1);
    assert_eq!(kinds(&p), vec!["delete_user"]);
    // Policy delete: at once.
    let del = Safety { deprovision: Deprovision::Delete, ..safety() };
    let p = run(&state(vec![b.clone()]), &actual, &del, 1);
    assert_eq!(kinds(&p), vec!["delete_user"]);
}

#[test]
fn returning_users_are_reactivated_and_their_keys_unblocked() {
    let a = want("1", "alice");
    let mut row = synced(&a);
    let mut m: UserMarker = read_marker(&row.metadata).unwrap();
    m.deactivated_at = Some(now());
    m.blocked_keys = vec!["hash1".into()];
    row.metadata.insert(MARKER_KEY.into(), serde_json::to_value(m).unwrap());
    row.metadata.insert(SCIM_ACTIVE.into(), json!(false));
    let p = run(&state(vec![a]), &Actual { users: vec![row], teams: vec![] }, &safety(), 1);
    let Op::UpdateUser { reason, unblock_keys, request, metadata_patch, .. } = &p.ops[0] else { panic!("{:?}", p.ops) };
    assert_eq!(reason, "reactivate");
    assert!(metadata_patch.as_ref().unwrap().remove.contains(&SCIM_ACTIVE.to_string()));
    assert_eq!(unblock_keys, &vec!["hash1".to_string()]);
    let md = request.metadata.as_ref().unwrap();
    assert!(!md.contains_key(SCIM_ACTIVE));
    assert!(read_marker::<UserMarker>(md).unwrap().deactivated_at.is_none());
}

#[test]
fn safety_limit_holds_every_destructive_operation() {
    let users: Vec<DesiredUser> = (0..20).map(|i| want(&i.to_string(), &format!("u{i}"))).collect();
    let actual = Actual { users: users.iter().map(synced).collect(), teams: vec![] };
    let keep = state(users[..5].to_vec());
    let strict = Safety { max_deletions: 10, ..safety() };
    let p = run(&keep, &actual, &strict, 5);
    assert!(p.ops.is_empty());
    assert_eq!(p.held.len(), 15);
    assert!(p.hold_reason.as_deref().unwrap().contains("max_deletions = 10"));
    let pct = Safety { max_deletions: 100, max_deletions_percent: 10.0, ..safety() };
    let p = run(&state(users[..17].to_vec()), &actual, &pct, 17);
    assert_eq!(p.held.len(), 3, "3 of 20 is over 10% (2 allowed)");
    let p = run(&state(users[..18].to_vec()), &actual, &pct, 18);
    assert!(p.held.is_empty() && kinds(&p) == vec!["deactivate_user"; 2], "2 of 20 is within 10%");
    // Operator approval.
    let cx = PlanContext {
        safety: &strict,
        now: now(),
        complete_sources: BTreeSet::from(["corp".to_string()]),
        source_user_counts: BTreeMap::from([("corp".to_string(), 5)]),
        allow_mass_deprovision: true,
    };
    assert_eq!(plan(&keep, &actual, &cx).ops.len(), 15);
}

#[test]
fn empty_or_absent_snapshots_never_deprovision() {
    let a = want("1", "alice");
    let actual = Actual { users: vec![synced(&a)], teams: vec![] };
    let p = run(&DesiredState::default(), &actual, &safety(), 0);
    assert!(p.ops.is_empty() && p.held.is_empty());
    assert!(p.notes.iter().any(|n| n.contains("returned no users")));
    assert_eq!(p.refused_sources, vec!["corp"]);
    let cx = PlanContext {
        safety: &safety(),
        now: now(),
        complete_sources: BTreeSet::new(), // the source's read failed
        source_user_counts: BTreeMap::new(),
        allow_mass_deprovision: false,
    };
    assert!(plan(&DesiredState::default(), &actual, &cx).is_empty());
}

fn team(members: &[(&str, TeamRole)]) -> DesiredTeam {
    DesiredTeam {
        team_id: "eng".into(),
        alias: "Engineering".into(),
        source: "corp".into(),
        group_id: "g-eng".into(),
        rule: "r".into(),
        max_budget: Some(50.0),
        soft_budget: None,
        budget_duration: None,
        models: None,
        tpm_limit: None,
        rpm_limit: None,
        metadata: BTreeMap::new(),
        members: members.iter().map(|(id, r)| (key(id), *r)).collect(),
    }
}

fn team_row(dt: &DesiredTeam, members: &[(&str, &str)]) -> TeamRow {
    let req = new_team_request(dt);
    TeamRow {
        team_id: dt.team_id.clone(),
        team_alias: req.team_alias,
        max_budget: req.max_budget,
        soft_budget: None,
        budget_duration: None,
        models: vec![],
        tpm_limit: None,
        rpm_limit: None,
        metadata: req.metadata.unwrap_or_default(),
        members_with_roles: members
            .iter()
            .map(|(id, role)| TeamMemberRow {
                user_id: Some(id.to_string()),
                user_email: None,
                role: Some(role.to_string()),
            })
            .collect(),
    }
}

#[test]
fn team_roster_diff_adds_before_removing_and_spares_foreign_members() {
    let (a, b, c) = (want("1", "alice"), want("2", "bob"), want("3", "carol"));
    let dt = team(&[("1", TeamRole::User), ("2", TeamRole::Admin)]);
    let mut desired = state(vec![a.clone(), b.clone(), c.clone()]);
    desired.teams.insert(dt.team_id.clone(), dt.clone());
    // bob is a user (should be admin), carol left the group, default_user_id is LiteLLM's own.
    let row = team_row(&dt, &[("bob", "user"), ("carol", "user"), ("default_user_id", "admin")]);
    let actual = Actual { users: vec![synced(&a), synced(&b), synced(&c)], teams: vec![row] };
    let p = run(&desired, &actual, &safety(), 3);
    assert_eq!(kinds(&p), vec!["add_members", "update_member", "remove_member"]);
    let Op::RemoveMember { user_id, .. } = &p.ops[2] else { unreachable!() };
    assert_eq!(user_id, "carol");
    // A new team is created first, then filled.
    let mut fresh = state(vec![a.clone()]);
    fresh.teams.insert(dt.team_id.clone(), team(&[("1", TeamRole::User)]));
    let p = run(&fresh, &Actual { users: vec![synced(&a)], teams: vec![] }, &safety(), 1);
    assert_eq!(kinds(&p), vec!["create_team", "add_members"]);
}

#[test]
fn unmanaged_teams_and_deactivated_members_are_left_alone() {
    let a = want("1", "alice");
    let mut b = want("2", "bob");
    b.active = false;
    let dt = team(&[("1", TeamRole::User)]);
    let mut desired = state(vec![a.clone(), b.clone()]);
    desired.teams.insert(dt.team_id.clone(), dt.clone());
    let mut row = team_row(&dt, &[("alice", "user"), ("bob", "user")]);
    // bob is deactivated in LiteLLM already.
    let mut brow = synced(&b);
    let mut m: UserMarker = read_marker(&brow.metadata).unwrap();
    m.deactivated_at = Some(now());
    brow.metadata.insert(MARKER_KEY.into(), serde_json::to_value(m).unwrap());
    brow.metadata.insert(SCIM_ACTIVE.into(), json!(false));
    let actual = Actual { users: vec![synced(&a), brow], teams: vec![row.clone()] };
    assert!(run(&desired, &actual, &safety(), 2).is_empty(), "deactivated bob keeps his membership");
    row.metadata = Map::new();
    row.max_budget = Some(1.0);
    let p = run(&desired, &Actual { users: actual.users.clone(), teams: vec![row] }, &safety(), 2);
    assert!(p.ops.is_empty());
    assert!(p.notes.iter().any(|n| n.contains("team \"eng\" exists in LiteLLM and is not managed")));
}

#[test]
fn team_settings_are_diffed() {
    let dt = team(&[]);
    let mut row = team_row(&dt, &[]);
    row.max_budget = Some(1.0);
    row.team_alias = Some("old".into());
    row.metadata.insert("foreign".into(), json!(1));
    let mut desired = DesiredState::default();
    desired.teams.insert(dt.team_id.clone(), dt);
    let p = run(&desired, &Actual { users: vec![], teams: vec![row] }, &safety(), 1);
    let Op::UpdateTeam { request, changes, .. } = &p.ops[0] else { panic!("{:?}", p.ops) };
    let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, vec!["team_alias", "max_budget"]);
    assert!(request.metadata.is_none(), "foreign metadata untouched and not resent");
}

#[test]
fn operations_come_in_dependency_order() {
    let ops = [
        Op::DeleteUser { user_id: "x".into(), key: key("x"), reason: String::new() },
        Op::CreateTeam { team_id: "t".into(), request: Default::default() },
        Op::AddMembers { team_id: "t".into(), members: vec![] },
        Op::CreateUser {
            user_id: "u".into(),
            key: key("u"),
            request: Default::default(),
            desired: Box::new(want("u", "u")),
        },
    ];
    let mut sorted = ops.to_vec();
    sorted.sort_by_key(|o| o.phase());
    let k: Vec<&str> = sorted.iter().map(|o| o.kind()).collect();
    assert_eq!(k, vec!["create_team", "create_user", "add_members", "delete_user"]);
}
