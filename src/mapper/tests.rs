use serde_json::json;

use super::*;
use crate::config::validate;
use crate::model::{Grants, Group, Identity, Snapshot};

fn cfg(rules: serde_json::Value, extra: serde_json::Value) -> Config {
    let mut raw = json!({
        "litellm": {"url": "http://127.0.0.1:4000", "api_key": "k"},
        "sources": [{"name": "corp", "type": "file", "path": "u.yaml", "user_id_template": "{user_name}"}],
        "rules": rules,
    });
    if let (Some(r), Some(e)) = (raw.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            r.insert(k.clone(), v.clone());
        }
    }
    validate(&raw).unwrap_or_else(|p| panic!("{p:?}"))
}

fn user(id: &str, name: &str) -> Identity {
    Identity {
        external_id: id.into(),
        user_name: name.into(),
        email: Some(format!("{name}@Example.COM")),
        display_name: Some(name.to_uppercase()),
        active: true,
        groups: vec![],
        overrides: Grants::default(),
    }
}

fn group(id: &str, members: &[&str], nested: &[&str]) -> Group {
    Group {
        external_id: id.into(),
        name: id.into(),
        dn: Some(format!("cn={id},ou=groups,dc=example,dc=org")),
        members: members.iter().map(|s| s.to_string()).collect(),
        member_groups: nested.iter().map(|s| s.to_string()).collect(),
    }
}

fn snap(users: Vec<Identity>, groups: Vec<Group>) -> Snapshot {
    Snapshot { source: "corp".into(), users, groups, unreadable: Vec::new() }
}

fn desired<'a>(s: &'a DesiredState, id: &str) -> &'a DesiredUser {
    s.users.values().find(|d| d.key.external_id == id).unwrap_or_else(|| panic!("no desired user {id}"))
}

#[test]
fn role_is_the_most_privileged() {
    let c = cfg(
        json!([
            {"name": "viewers", "match": {"groups": ["v"]}, "role": "internal_user_viewer"},
            {"name": "admins", "match": {"groups": ["a"]}, "role": "proxy_admin"},
            {"name": "users", "match": {"groups": ["u"]}, "role": "internal_user"},
        ]),
        json!({}),
    );
    let s = Mapper::new(&c).map(&[snap(
        vec![user("1", "alice")],
        vec![group("v", &["1"], &[]), group("a", &["1"], &[]), group("u", &["1"], &[])],
    )]);
    let d = desired(&s, "1");
    assert_eq!(d.fields.role, Some(Role::ProxyAdmin));
    assert!(d.provenance.get("role").unwrap().contains("admins"));
}

#[test]
fn limits_follow_the_configured_precedence() {
    let rules = json!([
        {"name": "small", "match": {"groups": ["s"]}, "max_budget": 10.0, "budget_duration": "1d", "tpm_limit": 100, "rpm_limit": 50, "max_parallel_requests": 2},
        {"name": "big", "match": {"groups": ["b"]}, "max_budget": 100.0, "budget_duration": "30d", "tpm_limit": 1000, "rpm_limit": 5, "max_parallel_requests": 8},
    ]);
    let data = || snap(vec![user("1", "alice")], vec![group("s", &["1"], &[]), group("b", &["1"], &[])]);
    for (prec, budget, dur, tpm, rpm, mpr) in
        [("highest", 100.0, "30d", 1000, 50, 8), ("lowest", 10.0, "1d", 100, 5, 2), ("first", 10.0, "1d", 100, 50, 2)]
    {
        let c = cfg(rules.clone(), json!({"precedence": {"limits": prec}}));
        let s = Mapper::new(&c).map(&[data()]);
        let f = &desired(&s, "1").fields;
        assert_eq!(f.max_budget, Some(budget), "{prec}");
        assert_eq!(f.budget_duration.as_deref(), Some(dur), "{prec}: duration travels with the winning budget");
        assert_eq!(f.tpm_limit, Some(tpm), "{prec}");
        assert_eq!(f.rpm_limit, Some(rpm), "{prec}");
        assert_eq!(f.max_parallel_requests, Some(mpr), "{prec}");
    }
}

#[test]
fn budget_duration_falls_back_to_another_rule_when_the_budget_rule_has_none() {
    let c = cfg(
        json!([
            {"name": "dur", "match": {"groups": ["d"]}, "budget_duration": "7d"},
            {"name": "money", "match": {"groups": ["m"]}, "max_budget": 50.0},
        ]),
        json!({}),
    );
    let s = Mapper::new(&c).map(&[snap(vec![user("1", "a")], vec![group("d", &["1"], &[]), group("m", &["1"], &[])])]);
    let f = &desired(&s, "1").fields;
    assert_eq!((f.max_budget, f.budget_duration.as_deref()), (Some(50.0), Some("7d")));
}

#[test]
fn models_are_a_union_and_all_models_wins() {
    let c = cfg(
        json!([
            {"name": "a", "match": {"groups": ["a"]}, "models": ["gpt-4o", "claude"]},
            {"name": "b", "match": {"groups": ["b"]}, "models": ["gpt-4o", "llama"]},
            {"name": "all", "match": {"groups": ["all"]}, "models": ["all-proxy-models"]},
        ]),
        json!({}),
    );
    let s = Mapper::new(&c).map(&[snap(
        vec![user("1", "union"), user("2", "everything")],
        vec![group("a", &["1", "2"], &[]), group("b", &["1"], &[]), group("all", &["2"], &[])],
    )]);
    assert_eq!(desired(&s, "1").fields.models, Some(vec!["claude".into(), "gpt-4o".into(), "llama".into()]));
    assert_eq!(desired(&s, "2").fields.models, Some(vec![ALL_MODELS.to_string()]));
}

#[test]
fn overrides_beat_rules_and_defaults_fill_gaps() {
    let c = cfg(
        json!([{"name": "eng", "match": {"groups": ["eng"]}, "max_budget": 100.0, "metadata": {"dept": "eng", "tier": "gold"}}]),
        json!({"defaults": {"role": "internal_user", "max_budget": 5.0, "budget_duration": "30d", "metadata": {"tier": "basic", "org": "acme"}}}),
    );
    let mut alice = user("1", "alice");
    alice.overrides = Grants {
        max_budget: Some(999.0),
        metadata: [("dept".to_string(), json!("research"))].into(),
        ..Default::default()
    };
    let s = Mapper::new(&c)
        .map(&[snap(vec![alice, user("2", "bob"), user("3", "nobody")], vec![group("eng", &["1", "2"], &[])])]);
    let a = desired(&s, "1");
    assert_eq!(a.fields.max_budget, Some(999.0));
    assert_eq!(a.provenance.get("max_budget").unwrap(), "per-user override");
    assert_eq!(a.fields.metadata["dept"], json!("research"));
    let b = desired(&s, "2");
    assert_eq!(b.fields.max_budget, Some(100.0), "rule beats defaults");
    assert_eq!(b.fields.budget_duration.as_deref(), Some("30d"), "defaults fill what no rule sets");
    assert_eq!(b.provenance.get("budget_duration").unwrap(), "defaults");
    assert_eq!(b.fields.metadata["tier"], json!("gold"));
    assert_eq!(b.fields.metadata["org"], json!("acme"));
    let n = desired(&s, "3");
    assert_eq!(n.fields.max_budget, Some(5.0), "users matching no rule get the defaults");
    assert!(n.rules.is_empty());
}

#[test]
fn unmatched_users_can_be_out_of_scope() {
    let c =
        cfg(json!([{"name": "eng", "match": {"groups": ["eng"]}}]), json!({"scope": {"unmatched_users": "exclude"}}));
    let s = Mapper::new(&c).map(&[snap(vec![user("1", "in"), user("2", "out")], vec![group("eng", &["1"], &[])])]);
    assert!(s.users.values().any(|d| d.key.external_id == "1"));
    assert!(!s.users.values().any(|d| d.key.external_id == "2"));
    assert_eq!(s.excluded.len(), 1);
    assert!(s.excluded[0].reason.contains("matches no rule"));
}

#[test]
fn nested_groups_are_flattened_and_cycles_reported() {
    let c = cfg(json!([{"name": "top", "match": {"groups": ["top"]}, "max_budget": 1.0}]), json!({}));
    // top ⊃ mid ⊃ leaf ∋ alice; x ⊃ y ⊃ x (cycle) ∋ bob
    let s = Mapper::new(&c).map(&[snap(
        vec![user("1", "alice"), user("2", "bob")],
        vec![
            group("top", &[], &["mid"]),
            group("mid", &[], &["leaf"]),
            group("leaf", &["1"], &[]),
            group("x", &[], &["y"]),
            group("y", &["2"], &["x"]),
        ],
    )]);
    let a = desired(&s, "1");
    assert_eq!(a.groups, vec!["leaf", "mid", "top"]);
    assert_eq!(a.fields.max_budget, Some(1.0));
    assert_eq!(desired(&s, "2").groups, vec!["x", "y"]);
    assert!(s.warnings.iter().any(|w| w.contains("nested group cycle")), "{:?}", s.warnings);
}

#[test]
fn matching_by_dn_glob_and_member_of() {
    let c = cfg(
        json!([
            {"name": "dn", "match": {"groups": ["CN=Admins, OU=Groups, DC=Example, DC=Org"]}, "role": "proxy_admin"},
            {"name": "glob", "match": {"group_glob": "llm-*"}, "tpm_limit": 7},
        ]),
        json!({}),
    );
    let mut bob = user("2", "bob");
    bob.groups = vec!["llm-users".into()]; // memberOf-style direct membership
    let s = Mapper::new(&c).map(&[snap(
        vec![user("1", "alice"), bob],
        vec![group("admins", &["1"], &[]), Group { name: "LLM-Users".into(), ..group("llm-users", &[], &[]) }],
    )]);
    assert_eq!(desired(&s, "1").fields.role, Some(Role::ProxyAdmin));
    assert_eq!(desired(&s, "2").fields.tpm_limit, Some(7), "globs are case-insensitive");
}

#[test]
fn teams_get_deterministic_ids_and_roles() {
    let c = cfg(
        json!([
            {"name": "members", "match": {"group_glob": "team-*"}, "team": {"id": "{source}-{group_name}", "member_role": "user", "max_budget": 20.0}},
            {"name": "leads", "match": {"groups": ["leads"]}, "team": {"id": "{group_name}-alpha-beta", "member_role": "admin"}},
        ]),
        json!({}),
    );
    let mut inactive = user("3", "carol");
    inactive.active = false;
    let s = Mapper::new(&c).map(&[snap(
        vec![user("1", "alice"), user("2", "bob"), inactive],
        vec![
            Group { name: "team-Alpha Beta".into(), ..group("g1", &["1", "2", "3"], &[]) },
            Group { name: "corp-team".into(), ..group("leads", &["1"], &[]) },
        ],
    )]);
    // Two distinct groups of one source render one team id: a configuration error, and neither team exists
    // (merging them would give one group's people the other's access).
    assert!(!s.teams.contains_key("corp-team-alpha-beta"));
    assert!(s.team_conflicts.contains("corp-team-alpha-beta"));
    assert!(s.errors.iter().any(|e| e.contains("two distinct groups") && e.contains("corp-team")), "{:?}", s.errors);

    // A team id written out in a rule is fed by every group the rule matches, on purpose; admin wins.
    let written = cfg(
        json!([
            {"name": "members", "match": {"group_glob": "team-*"}, "team": {"id": "{source}-{group_name}"}},
            {"name": "leads", "match": {"groups": ["leads"]}, "team": {"id": "corp-team-alpha-beta", "member_role": "admin"}},
        ]),
        json!({}),
    );
    let s = Mapper::new(&written).map(&[snap(
        vec![user("1", "alice"), user("2", "bob")],
        vec![
            Group { name: "team-Alpha Beta".into(), ..group("g1", &["1", "2"], &[]) },
            Group { name: "leads".into(), ..group("leads", &["1"], &[]) },
        ],
    )]);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let roles: Vec<(String, TeamRole)> =
        s.teams["corp-team-alpha-beta"].members.iter().map(|(k, r)| (k.external_id.clone(), *r)).collect();
    assert_eq!(roles, vec![("1".into(), TeamRole::Admin), ("2".into(), TeamRole::User)]);

    // Apart, the same rules give each team its members and roles.
    let s = Mapper::new(&c).map(&[snap(
        vec![user("1", "alice"), user("2", "bob"), user("3", "carol")],
        vec![Group { name: "team-Alpha Beta".into(), ..group("g1", &["1", "2", "3"], &[]) }],
    )]);
    let t = &s.teams["corp-team-alpha-beta"];
    assert_eq!(t.alias, "team-Alpha Beta");
    assert_eq!(t.max_budget, Some(20.0));
    assert_eq!(t.source_members, 3, "every user the group holds, active or not");
    let mut inactive = user("3", "carol");
    inactive.active = false;
    let s = Mapper::new(&c).map(&[snap(
        vec![user("1", "alice"), user("2", "bob"), inactive],
        vec![Group { name: "team-Alpha Beta".into(), ..group("g1", &["1", "2", "3"], &[]) }],
    )]);
    let roles: Vec<(String, TeamRole)> =
        s.teams["corp-team-alpha-beta"].members.iter().map(|(k, r)| (k.external_id.clone(), *r)).collect();
    assert_eq!(
        roles,
        vec![("1".into(), TeamRole::User), ("2".into(), TeamRole::User)],
        "inactive users are not members"
    );
}

#[test]
fn groups_of_one_name_in_two_sources_feed_one_team() {
    let mut c = cfg(json!([{"name": "eng", "match": {"groups": ["eng"]}, "team": {"id": "eng"}}]), json!({}));
    let mut second = c.sources[0].clone();
    second.name = "scim".into();
    c.sources.push(second);
    let ldap = snap(vec![user("1", "alice")], vec![group("g-ldap", &["1"], &[])]);
    let mut scim = snap(vec![user("7", "bob")], vec![group("g-scim", &["7"], &[])]);
    scim.source = "scim".into();
    let named = |mut s: Snapshot| {
        for g in &mut s.groups {
            g.name = "eng".into();
        }
        s
    };
    let s = Mapper::new(&c).map([&named(ldap), &named(scim)]);
    let t = &s.teams["eng"];
    assert_eq!((t.source.as_str(), t.group_id.as_str()), ("corp", "g-ldap"), "the first source owns it");
    assert_eq!(t.owners.len(), 2);
    assert_eq!(t.members.len(), 2, "members of both groups");
    assert!(s.errors.is_empty(), "{:?}", s.errors);
}

#[test]
fn user_ids_come_from_the_template_and_collisions_are_left_to_the_planner() {
    let mut c = cfg(json!([]), json!({}));
    c.sources[0].user_id_template = "{email}".into();
    let mut nomail = user("3", "nomail");
    nomail.email = None;
    let s = Mapper::new(&c).map(&[snap(vec![user("1", "alice"), user("2", "alice"), nomail], vec![])]);
    assert_eq!(desired(&s, "1").user_id, "alice@example.com", "e-mails are lower-cased");
    assert_eq!(desired(&s, "1").email.as_deref(), Some("alice@example.com"));
    // Both identities rendering one id stay desired: only the planner knows who owns it in LiteLLM.
    assert_eq!(desired(&s, "2").user_id, "alice@example.com");
    let reasons: Vec<&str> = s.excluded.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("needs an e-mail"), "{reasons:?}");
}

#[test]
fn hostile_names_do_not_break_ids() {
    let c = cfg(json!([]), json!({}));
    let mut evil = user("1", "a\u{0}b");
    evil.display_name = Some("  ".into());
    let long = user("2", &"x".repeat(600));
    let s = Mapper::new(&c).map(&[snap(vec![evil, long], vec![])]);
    assert!(s.users.is_empty());
    assert_eq!(s.excluded.len(), 2);
    assert_eq!(slugify("Ünïcode / Team  (EU)!"), "unicode-team-eu");
}

#[test]
fn non_latin_group_names_get_distinct_team_ids() {
    assert_eq!(slugify("研发"), "yan-fa");
    assert_eq!(slugify("Продажи"), "prodazhi");
    assert_eq!(slugify("営業"), "ying-ye");
    let c = cfg(json!([{"name": "all", "match": {"group_glob": "*"}, "team": {}}]), json!({}));
    let groups = vec![
        Group { name: "研发".into(), ..group("g-rd", &["1"], &[]) },
        Group { name: "Продажи".into(), ..group("g-sales", &["2"], &[]) },
        Group { name: "+++".into(), ..group("g-plus", &["1"], &[]) },
        Group { name: "///".into(), ..group("g-slash", &["2"], &[]) },
    ];
    let s = Mapper::new(&c).map(&[snap(vec![user("1", "alice"), user("2", "bob")], groups)]);
    let ids: Vec<&str> = s.teams.keys().map(String::as_str).collect();
    assert_eq!(ids.len(), 4, "four groups, four teams: {ids:?}");
    assert!(ids.contains(&"yan-fa") && ids.contains(&"prodazhi"), "{ids:?}");
    assert!(ids.iter().filter(|i| i.starts_with("g-")).count() == 2, "symbols fall back to a hash: {ids:?}");
    assert_eq!(slugify("🚀"), "rocket", "even emoji have names");
    assert!(s.errors.is_empty());
}

#[test]
fn provenance_reads_and_serializes_like_a_map() {
    let mut p = Provenance::default();
    p.insert("role".into(), "rule a".into());
    p.insert("max_budget".into(), "defaults".into());
    p.insert("role".into(), "per-user override".into());
    let m: BTreeMap<String, String> =
        [("max_budget".to_string(), "defaults".to_string()), ("role".to_string(), "per-user override".to_string())]
            .into();
    assert_eq!(p.len(), 2);
    assert_eq!(p.get("role").map(String::as_str), Some("per-user override"));
    assert_eq!(p.get("models"), None);
    assert_eq!(serde_json::to_string(&p).unwrap(), serde_json::to_string(&m).unwrap());
    let back: Provenance = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(back, p);
    assert!(p.iter().map(|(k, _)| k.as_str()).eq(["max_budget", "role"]));
}

#[test]
fn users_are_built_in_key_order_and_a_repeated_key_keeps_its_last_entry() {
    let user = |id: &str, name: &str| {
        (
            ExternalKey { source: "corp".into(), external_id: id.into() },
            DesiredUser { user_name: name.into(), ..Default::default() },
        )
    };
    let v = vec![user("c", "c1"), user("a", "a1"), user("d", "d1"), user("a", "a2"), user("b", "b1"), user("c", "c2")];
    let mut want: BTreeMap<ExternalKey, DesiredUser> = BTreeMap::new();
    for (k, d) in v.clone() {
        want.insert(k, d);
    }
    let got = into_sorted_map(v);
    assert_eq!(got, want);
    assert_eq!(got.values().map(|d| d.user_name.as_str()).collect::<Vec<_>>(), ["a2", "b1", "c2", "d1"]);
    for n in 0..40usize {
        // A permutation with cycles of every length.
        let v: Vec<_> = (0..n).map(|i| user(&format!("{:03}", (i * 7 + 3) % n.max(1)), &i.to_string())).collect();
        let mut want: BTreeMap<ExternalKey, DesiredUser> = BTreeMap::new();
        for (k, d) in v.clone() {
            want.insert(k, d);
        }
        assert_eq!(into_sorted_map(v), want, "n = {n}");
    }
}

#[test]
fn key_order_is_the_order_of_the_keys() {
    let k = |s: &str, id: &str| ExternalKey { source: s.into(), external_id: id.into() };
    for keys in [
        vec![
            k("a", "12345678b"),
            k("a", "12345678a"),
            k("a", "1234"),
            k("a", "1234\0"),
            k("a", ""),
            k("a", "z"),
            k("a", "1234"),
        ],
        vec![k("b", "1"), k("a", "2"), k("a", "1"), k("b", "0"), k("a", "2")],
        vec![],
    ] {
        let mut want: Vec<usize> = (0..keys.len()).collect();
        want.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
        assert_eq!(key_order(keys.iter()), want, "{keys:?}");
    }
}
