//! Unit tests of the pure planner on plain data (desired users and teams against LiteLLM rows). Over 600
//! lines: one table of cases per concern (users, teams, safety, collisions, markers) over shared fixtures.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::TimeZone;
use serde_json::{json, Map, Value};

use chrono::{DateTime, Utc};

use super::users::{deactivation_patch, marker_for, marker_matches};
use super::*;
use crate::config::{Deprovision, Safety};
use crate::litellm::types::NewUserRequest;
use crate::litellm::types::{TeamMemberRow, TeamRow, UserRow};
use crate::mapper::{CreateOptions, DesiredState, DesiredTeam, DesiredUser, ExternalKey};
use crate::mapper::{TeamOwner, ALL_MODELS};
use crate::model::{Grants, Role, TeamRole};
use crate::reconcile::{read_marker, TeamMarker, UserMarker, MARKER_KEY, SCIM_ACTIVE};

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
        provenance: Default::default(),
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

fn cx(safety: &Safety, count: usize) -> PlanContext<'_> {
    PlanContext {
        safety,
        now: now(),
        complete_sources: BTreeSet::from(["corp".to_string()]),
        source_user_counts: BTreeMap::from([("corp".to_string(), count)]),
        doubt: BTreeMap::new(),
        configured_sources: BTreeSet::from(["corp".to_string()]),
        push_sources: BTreeSet::new(),
        approval: Approval::None,
    }
}

fn run(desired: &DesiredState, actual: &Actual, safety: &Safety, count: usize) -> Plan {
    plan(desired, actual, &cx(safety, count))
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
    assert_eq!(p.collisions.len(), 1);
    assert!(p.collisions[0].describe().contains("belongs to hr/9"), "{:?}", p.collisions);
    assert!(p.has_errors(), "a collision fails the run so someone looks");
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
    let approved = PlanContext { approval: Approval::All, ..cx(&strict, 5) };
    let p = plan(&keep, &actual, &approved);
    assert_eq!(p.ops.len(), 15);
    assert_eq!(p.approved.len(), 15, "the approval is recorded");
    // An approval of exactly what a person saw held releases those and nothing more.
    let held = run(&keep, &actual, &strict, 5).held;
    let seen: BTreeSet<String> = held.iter().take(3).map(Op::id).collect();
    let p = plan(&keep, &actual, &PlanContext { approval: Approval::Ops(seen.clone()), ..cx(&strict, 5) });
    assert_eq!(p.ops.iter().map(Op::id).collect::<BTreeSet<_>>(), seen);
    assert_eq!(p.held.len(), 12);
}

#[test]
fn empty_or_absent_snapshots_never_deprovision() {
    let a = want("1", "alice");
    let actual = Actual { users: vec![synced(&a)], teams: vec![] };
    let p = run(&DesiredState::default(), &actual, &safety(), 0);
    assert!(p.ops.is_empty() && p.held.is_empty());
    assert!(p.notes.iter().any(|n| n.contains("returned no users")));
    assert_eq!(p.refused_sources, vec!["corp"]);
    let s = safety();
    // The source's read failed: it is not among the complete sources.
    let failed = PlanContext { complete_sources: BTreeSet::new(), source_user_counts: BTreeMap::new(), ..cx(&s, 0) };
    assert!(plan(&DesiredState::default(), &actual, &failed).is_empty());
}

fn team(members: &[(&str, TeamRole)]) -> DesiredTeam {
    DesiredTeam {
        team_id: "eng".into(),
        alias: "Engineering".into(),
        source: "corp".into(),
        group_id: "g-eng".into(),
        owners: vec![TeamOwner {
            source: "corp".into(),
            group_id: "g-eng".into(),
            group_name: "eng".into(),
            templated: true,
        }],
        source_members: members.len().max(1),
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
    TeamRow {
        members_with_roles: members
            .iter()
            .map(|(id, role)| TeamMemberRow {
                user_id: Some(id.to_string()),
                user_email: None,
                role: Some(role.to_string()),
            })
            .collect(),
        ..TeamRow::created(&teams::new_team_request(dt))
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
    assert_eq!(kinds(&p), vec!["add_member", "update_member", "remove_member"]);
    let Op::RemoveMember { user_id, .. } = &p.ops[2] else { unreachable!() };
    assert_eq!(user_id, "carol");
    // A new team is created first, then filled.
    let mut fresh = state(vec![a.clone()]);
    fresh.teams.insert(dt.team_id.clone(), team(&[("1", TeamRole::User)]));
    let p = run(&fresh, &Actual { users: vec![synced(&a)], teams: vec![] }, &safety(), 1);
    assert_eq!(kinds(&p), vec!["create_team", "add_member"]);
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
        Op::AddMember { team_id: "t".into(), user_id: "u".into(), role: "user".into() },
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
    assert_eq!(k, vec!["create_team", "create_user", "add_member", "delete_user"]);
}

fn with_doubt<'a>(s: &'a Safety, count: usize, doubt: Doubt) -> PlanContext<'a> {
    PlanContext { doubt: BTreeMap::from([("corp".to_string(), doubt)]), ..cx(s, count) }
}

#[test]
fn an_entry_seen_but_unreadable_keeps_its_user() {
    let (a, b) = (want("1", "alice"), want("2", "bob"));
    let actual = Actual { users: vec![synced(&a), synced(&b)], teams: vec![] };
    let s = safety();
    // bob's entry came back without a readable user name: doubt, not a departure.
    let doubt =
        Doubt { unreadable: BTreeMap::from([("2".to_string(), "uid=bob: no uid".to_string())]), unidentified: 0 };
    let p = plan(&state(vec![a.clone()]), &actual, &with_doubt(&s, 1, doubt));
    assert!(p.is_empty(), "{:?}", p.ops);
    assert!(p.notes.iter().any(|n| n.contains("kept as it was") && n.contains("no uid")), "{:?}", p.notes);
    // An entry without a readable id could be anyone: nobody of the source is deprovisioned, and the run fails.
    let p = plan(&state(vec![a]), &actual, &with_doubt(&s, 1, Doubt { unidentified: 1, ..Default::default() }));
    assert!(p.is_empty(), "{:?}", p.ops);
    assert_eq!(p.refused_sources, vec!["corp"]);
}

#[test]
fn the_owner_of_a_user_id_keeps_it_whatever_the_order() {
    let owner = want("1", "alice");
    let mut newcomer = want("2", "alice");
    newcomer.user_name = "alice2".into();
    let actual = Actual { users: vec![synced(&owner)], teams: vec![] };
    // The newcomer sorts first: it still does not get the id, and the owner is untouched.
    for order in [vec![newcomer.clone(), owner.clone()], vec![owner.clone(), newcomer.clone()]] {
        let p = run(&state(order), &actual, &safety(), 2);
        assert!(p.ops.is_empty() && p.held.is_empty(), "{:?}", p.ops);
        assert_eq!(p.collisions.len(), 1);
        assert_eq!(p.collisions[0].claimant, newcomer.key);
        assert_eq!(p.collisions[0].owner.as_ref(), Some(&owner.key));
    }
    // The owner left (deactivated, row kept): a recycled name still does not take its id.
    let mut gone = synced(&owner);
    gone.metadata.insert(SCIM_ACTIVE.into(), json!(false));
    let p = run(&state(vec![newcomer.clone()]), &Actual { users: vec![gone], teams: vec![] }, &safety(), 1);
    assert_eq!(p.collisions.len(), 1);
    // Nobody owns it and two want it: neither is created.
    let p = run(&state(vec![owner.clone(), newcomer.clone()]), &Actual::default(), &safety(), 2);
    assert!(p.ops.is_empty());
    assert_eq!(p.collisions.len(), 2);
    assert!(p.collisions.iter().all(|c| c.owner.is_none()));
}

fn members(n: usize) -> (Vec<DesiredUser>, Vec<(String, String)>) {
    let users: Vec<DesiredUser> = (0..n).map(|i| want(&i.to_string(), &format!("u{i}"))).collect();
    let roster = users.iter().map(|u| (u.user_id.clone(), "user".to_string())).collect();
    (users, roster)
}

fn team_of(n_members: usize, keep: usize) -> (DesiredState, Actual) {
    let (users, roster) = members(n_members);
    let mut dt = team(&[]);
    dt.members = users.iter().take(keep).map(|u| (u.key.clone(), TeamRole::User)).collect();
    dt.source_members = keep;
    let roster_refs: Vec<(&str, &str)> = roster.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let row = team_row(&dt, &roster_refs);
    let actual = Actual { users: users.iter().map(synced).collect(), teams: vec![row] };
    let mut desired = state(users);
    desired.teams.insert(dt.team_id.clone(), dt);
    (desired, actual)
}

#[test]
fn member_removals_count_under_the_safety_limits() {
    let s = Safety { max_deletions: 10, max_deletions_percent: 10.0, ..safety() };
    // 1 of 20 members leaves the group: within the team's 10 % (2).
    let (d, a) = team_of(20, 19);
    let p = plan(&d, &a, &cx(&s, 20));
    assert_eq!(kinds(&p), vec!["remove_member"]);
    // 5 of 20 leave: held (over 10 % of the team's managed members), and nothing else is affected.
    let (d, a) = team_of(20, 15);
    let p = plan(&d, &a, &cx(&s, 20));
    assert!(p.ops.is_empty(), "{:?}", p.ops);
    assert_eq!(p.held.len(), 5);
    assert!(p.hold_reason.as_deref().is_some_and(|r| r.contains("team \"eng\"") && r.contains("5 member removals")));
    // Approved: applied.
    let p = plan(&d, &a, &PlanContext { approval: Approval::All, ..cx(&s, 20) });
    assert_eq!(p.ops.len(), 5);
    // Removals and deactivations together over max_deletions hold everything destructive.
    let loose = Safety { max_deletions: 6, max_deletions_percent: 100.0, ..safety() };
    let (mut d, mut a) = team_of(20, 15);
    let leavers: Vec<DesiredUser> = (100..102).map(|i| want(&i.to_string(), &format!("x{i}"))).collect();
    a.users.extend(leavers.iter().map(synced));
    d.users.retain(|_, u| !u.user_name.starts_with('x'));
    let p = plan(&d, &a, &cx(&loose, 20));
    assert_eq!(p.held.len(), 7, "5 removals + 2 deactivations > 6: {:?}", p.ops);
    assert!(p.hold_reason.as_deref().is_some_and(|r| r.contains("7 destructive operations")));
}

#[test]
fn a_group_that_reads_empty_strips_nobody() {
    let s = Safety { max_deletions: 100, max_deletions_percent: 100.0, ..safety() };
    let (mut d, a) = team_of(3, 0);
    d.teams.get_mut("eng").unwrap().source_members = 0;
    let p = plan(&d, &a, &cx(&s, 3));
    assert!(p.ops.is_empty() && p.held.is_empty(), "{:?}", p.ops);
    assert!(p.errors.iter().any(|e| e.contains("read with no members")), "{:?}", p.errors);
    assert!(p.has_errors());
    // The same removals from a group that reads with other members are ordinary (and within the limits).
    d.teams.get_mut("eng").unwrap().source_members = 5;
    assert_eq!(plan(&d, &a, &cx(&s, 3)).ops.len(), 3);
}

#[test]
fn a_half_done_deactivation_is_finished_without_counting_again() {
    let a = want("1", "alice");
    let mut row = synced(&a);
    let mut m: UserMarker = read_marker(&row.metadata).unwrap();
    m.deactivated_at = Some(now());
    m.blocked_keys = vec!["hash1".into(), "hash2".into()];
    m.blocking = true;
    row.metadata.insert(MARKER_KEY.into(), serde_json::to_value(&m).unwrap());
    row.metadata.insert(SCIM_ACTIVE.into(), json!(false));
    let strict = Safety { max_deletions: 0, ..safety() };
    let p = run(&DesiredState::default(), &Actual { users: vec![row.clone()], teams: vec![] }, &strict, 1);
    assert!(p.held.is_empty(), "resuming is not a new deactivation");
    assert!(matches!(&p.ops[..], [Op::DeactivateUser { resume: true, .. }]), "{:?}", p.ops);
    let patch = deactivation_patch(&m, now());
    let kept: UserMarker = serde_json::from_value(patch.set[MARKER_KEY].clone()).unwrap();
    assert_eq!(kept.blocked_keys, m.blocked_keys, "the recorded keys are kept");
    // The user comes back: every recorded key is unblocked, whatever the state.
    let p = run(&state(vec![a]), &Actual { users: vec![row], teams: vec![] }, &safety(), 1);
    let Op::UpdateUser { unblock_keys, reason, .. } = &p.ops[0] else { panic!("{:?}", p.ops) };
    assert_eq!((unblock_keys.len(), reason.as_str()), (2, "reactivate"));
}

#[test]
fn a_merged_team_keeps_its_owner_and_settles() {
    let dt = team(&[]);
    let mut row = team_row(&dt, &[]);
    // The team was created by another configured source that this run (CLI --source corp) did not read.
    let mut m: TeamMarker = read_marker(&row.metadata).unwrap();
    m.source = "scim".into();
    m.group_id = "g-scim".into();
    row.metadata.insert(MARKER_KEY.into(), serde_json::to_value(&m).unwrap());
    let mut desired = DesiredState::default();
    desired.teams.insert(dt.team_id.clone(), dt.clone());
    let s = safety();
    let both = PlanContext { configured_sources: BTreeSet::from(["corp".into(), "scim".into()]), ..cx(&s, 1) };
    let p = plan(&desired, &Actual { users: vec![], teams: vec![row.clone()] }, &both);
    assert!(p.ops.is_empty(), "no marker rewrite: {:?}", p.ops);
    // A source that is no longer configured loses the team to the one that feeds it now.
    let p = plan(&desired, &Actual { users: vec![], teams: vec![row] }, &cx(&s, 1));
    assert_eq!(kinds(&p), vec!["update_team"]);
}

#[test]
fn team_fields_a_rule_stops_setting_are_cleared() {
    let mut dt = team(&[]);
    dt.tpm_limit = Some(100);
    dt.models = Some(vec!["gpt-4o".into()]);
    let mut row = team_row(&dt, &[]);
    row.tpm_limit = Some(100);
    row.models = vec!["gpt-4o".into()];
    let mut now_rule = dt.clone();
    now_rule.tpm_limit = None;
    now_rule.models = None;
    now_rule.max_budget = None;
    let mut desired = DesiredState::default();
    desired.teams.insert(dt.team_id.clone(), now_rule);
    let p = run(&desired, &Actual { users: vec![], teams: vec![row] }, &safety(), 1);
    let Op::UpdateTeam { request, .. } = &p.ops[0] else { panic!("{:?}", p.ops) };
    let body = serde_json::to_value(request).unwrap();
    assert_eq!(body["tpm_limit"], Value::Null);
    assert_eq!(body["max_budget"], Value::Null);
    assert_eq!(body["models"], json!([]), "an empty list clears a team's models (null would be a 500)");
    assert!(body.as_object().unwrap().contains_key("tpm_limit"));
}

#[test]
fn creates_never_ask_litellm_for_a_key() {
    let mut d = want("1", "alice");
    d.create.key = Some(crate::config::KeySpec { alias: Some("{user_name}-key".into()), duration: None });
    let p = run(&state(vec![d]), &Actual::default(), &safety(), 1);
    let Op::CreateUser { request, .. } = &p.ops[0] else { unreachable!() };
    let body = serde_json::to_value::<&NewUserRequest>(request).unwrap();
    assert_eq!(body["auto_create_key"], false, "the key is minted separately, under a unique alias");
    assert!(body.get("key_alias").is_none());
}

#[test]
fn an_unreadable_group_strips_no_team() {
    let s = Safety { max_deletions: 100, max_deletions_percent: 100.0, ..safety() };
    let (d, a) = team_of(5, 2);
    let snap = crate::model::Snapshot {
        source: "corp".into(),
        users: vec![],
        groups: vec![],
        unreadable: vec![crate::model::Unreadable {
            external_id: Some("g-other".into()),
            kind: crate::model::EntryKind::Group,
            entry: "cn=other".into(),
            reason: "member;range=0-1499".into(),
        }],
    };
    let p = plan(&d, &a, &with_doubt(&s, 5, Doubt::of(&snap)));
    assert!(p.ops.is_empty() && p.held.is_empty(), "{:?}", p.ops);
    assert!(p.notes.iter().any(|n| n.contains("memberships are in doubt")), "{:?}", p.notes);
}

/// A push source (SCIM) states what the IdP wrote: the last user DELETEd and a group PATCHed to no members are
/// instructions, within the safety limits; a pull source's empty read stays doubt (tests above).
#[test]
fn a_push_sources_empty_view_is_an_instruction_within_the_limits() {
    let s = Safety { max_deletions: 100, max_deletions_percent: 100.0, ..safety() };
    let push = |s| PlanContext { push_sources: BTreeSet::from(["corp".to_string()]), ..cx(s, 0) };
    let a = want("1", "alice");
    let actual = Actual { users: vec![synced(&a)], teams: vec![] };
    let p = plan(&DesiredState::default(), &actual, &push(&s));
    assert_eq!(kinds(&p), vec!["deactivate_user"], "{:?}", p.notes);
    assert!(p.refused_sources.is_empty());
    // The safety limit still holds a mass deprovisioning.
    let strict = Safety { max_deletions: 0, max_deletions_percent: 100.0, ..safety() };
    let p = plan(&DesiredState::default(), &actual, &push(&strict));
    assert!(p.ops.is_empty() && p.held.len() == 1, "{:?}", p.ops);

    let (mut d, a) = team_of(3, 0);
    d.teams.get_mut("eng").unwrap().source_members = 0;
    let p = plan(&d, &a, &PlanContext { push_sources: BTreeSet::from(["corp".to_string()]), ..cx(&s, 3) });
    assert_eq!(kinds(&p), vec!["remove_member"; 3], "{:?}", p.errors);
    assert!(!p.has_errors());
}

#[test]
fn marker_matches_is_equality_with_the_marker_json() {
    let full = want("1", "alice");
    let mut bare = want("2", "bob");
    bare.fields = Grants::default();
    bare.email = None;
    bare.alias = None;
    let mut some = want("3", "carol");
    some.fields.metadata.clear();
    some.fields.models = None;
    some.fields.role = None;
    let mut keys_only = bare.clone();
    keys_only.fields.metadata = [("b".to_string(), json!(1)), ("a".to_string(), json!(2))].into();
    for d in [&full, &bare, &some, &keys_only] {
        let v = serde_json::to_value(marker_for(d)).unwrap();
        assert!(marker_matches(Some(&v), d), "{v}");
        assert!(!marker_matches(None, d));
        assert!(!marker_matches(Some(&json!("yes")), d));
        // Any difference at all is a mismatch.
        let mut m = marker_for(d);
        m.deactivated_at = Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        assert!(!marker_matches(Some(&serde_json::to_value(&m).unwrap()), d));
        let mut m = marker_for(d);
        m.source = "other".into();
        assert!(!marker_matches(Some(&serde_json::to_value(&m).unwrap()), d));
        let mut m = marker_for(d);
        m.fields.insert("zzz".into());
        assert!(!marker_matches(Some(&serde_json::to_value(&m).unwrap()), d));
        let mut m = marker_for(d);
        m.metadata_keys.insert("zzz".into());
        assert!(!marker_matches(Some(&serde_json::to_value(&m).unwrap()), d));
        let mut m = marker_for(d);
        m.blocked_keys.push("k".into());
        assert!(!marker_matches(Some(&serde_json::to_value(&m).unwrap()), d));
        let mut extra = v.clone();
        extra.as_object_mut().unwrap().insert("note".into(), json!("x"));
        assert!(!marker_matches(Some(&extra), d));
    }
    // Each desired user's marker is another's mismatch.
    assert!(!marker_matches(Some(&serde_json::to_value(marker_for(&full)).unwrap()), &some));
    assert!(!marker_matches(Some(&serde_json::to_value(marker_for(&bare)).unwrap()), &keys_only));
}
