//! Unknown keys: every one reported by its path, with the closest known key where one is close.

use serde_json::json;

use super::ctx::fields;
use super::suggest::did_you_mean;
use super::validate;
use crate::config::{FileSourceConfig, Match};

fn minimal() -> serde_json::Value {
    json!({
        "litellm": {"url": "http://127.0.0.1:4000", "api_key": "sk-x"},
        "sources": [{"name": "corp", "type": "file", "path": "users.yaml"}],
    })
}

fn ldap_source() -> serde_json::Value {
    json!({
        "name": "dir", "type": "ldap", "urls": ["ldap://127.0.0.1:389"], "bind_dn": "cn=sync",
        "bind_password": "pw", "user_base": "ou=people", "group_base": "ou=groups",
    })
}

fn problems(raw: serde_json::Value) -> Vec<String> {
    match validate(&raw) {
        Ok(_) => panic!("expected problems"),
        Err(p) => p.iter().map(|p| p.to_string()).collect(),
    }
}

/// The one problem line for `path`.
fn line_for(all: &[String], path: &str) -> String {
    let hits: Vec<&String> = all.iter().filter(|l| l.starts_with(&format!("{path}: "))).collect();
    assert_eq!(hits.len(), 1, "want one problem for {path:?} in:\n{}", all.join("\n"));
    hits[0].clone()
}

#[test]
fn a_misspelt_section_key_suggests_the_known_one() {
    let mut raw = minimal();
    raw["litellm"]["concurency"] = json!(8);
    let all = problems(raw);
    assert_eq!(line_for(&all, "litellm.concurency"), "litellm.concurency: unknown key; did you mean `concurrency`?");
}

#[test]
fn a_misspelt_rule_key_suggests_the_grant() {
    let mut raw = minimal();
    raw["rules"] = json!([{"name": "staff", "match": {"groups": ["staff"]}, "max_budgets": 5.0}]);
    let all = problems(raw);
    assert_eq!(line_for(&all, "rules[0].max_budgets"), "rules[0].max_budgets: unknown key; did you mean `max_budget`?");
}

#[test]
fn an_unknown_section_suggests_the_closest_section() {
    let mut raw = minimal();
    raw["safty"] = json!({"max_deletions": 3});
    let all = problems(raw);
    assert_eq!(line_for(&all, "safty"), "safty: unknown section; did you mean `safety`?");
}

#[test]
fn a_key_with_no_close_match_gets_no_suggestion() {
    let mut raw = minimal();
    raw["rules"] = json!([{"name": "staff", "match": {"groups": ["staff"]}, "colour": "blue"}]);
    raw["bogus"] = json!({});
    raw["log"] = json!({"verbosity": 3});
    let all = problems(raw);
    assert_eq!(line_for(&all, "rules[0].colour"), "rules[0].colour: unknown key");
    assert_eq!(line_for(&all, "log.verbosity"), "log.verbosity: unknown key");
    let bogus = line_for(&all, "bogus");
    assert!(bogus.starts_with("bogus: unknown section; expected one of litellm, sources"), "{bogus}");
    assert!(!all.join("\n").contains("did you mean"), "{all:?}");
}

#[test]
fn unknown_keys_in_nested_tables_are_named_by_their_path() {
    let mut raw = minimal();
    let mut ldap = ldap_source();
    ldap["bind_passwrd_file"] = json!("/run/secrets/pw");
    ldap["schedul"] = json!("0 0 * * * *");
    ldap["attributes"] = json!({"emial": "mail", "overrides": {"max_budgt": "x-budget"}});
    raw["sources"] = json!([{"name": "corp", "type": "file", "pth": "users.yaml"}, ldap]);
    raw["rules"] = json!([{
        "name": "staff",
        "mach": {"groups": ["staff"]},
        "match": {"gruops": ["staff"], "groups": ["staff"]},
        "team": {"max_budgets": 5.0},
        "key": {"duraton": "30d"},
    }]);
    raw["keys"] = json!({"paht": "/k.jsonl"});
    let all = problems(raw);
    for (path, want) in [
        ("sources[0].pth", "`path`"),
        ("sources[1].bind_passwrd_file", "`bind_password_file`"),
        ("sources[1].schedul", "`schedule`"),
        ("sources[1].attributes.emial", "`email`"),
        ("rules[0].mach", "`match`"),
        ("rules[0].match.gruops", "`groups`"),
        ("rules[0].team.max_budgets", "`max_budget`"),
        ("rules[0].key.duraton", "`duration`"),
        ("keys.paht", "`path`"),
    ] {
        let line = line_for(&all, path);
        assert!(line.contains(&format!("unknown key; did you mean {want}?")), "{line}");
    }
    let line = line_for(&all, "sources[1].attributes.overrides.max_budgt");
    assert!(line.contains("not an override field; did you mean `max_budget`? Use one of"), "{line}");
}

#[test]
fn every_section_suggests_its_own_keys() {
    let mut raw = minimal();
    for (section, key) in [
        ("defaults", "rol"),
        ("precedence", "limit"),
        ("scope", "unmatched_user"),
        ("safety", "max_deletion"),
        ("store", "pth"),
        ("server", "listn"),
        ("log", "levle"),
        ("drift", "enable"),
    ] {
        raw[section] = json!({ key: "x" });
    }
    let all = problems(raw);
    for (path, want) in [
        ("defaults.rol", "role"),
        ("precedence.limit", "limits"),
        ("scope.unmatched_user", "unmatched_users"),
        ("safety.max_deletion", "max_deletions"),
        ("store.pth", "path"),
        ("server.listn", "listen"),
        ("log.levle", "level"),
        ("drift.enable", "enabled"),
    ] {
        assert_eq!(line_for(&all, path), format!("{path}: unknown key; did you mean `{want}`?"));
    }
}

#[test]
fn the_soft_budget_hint_stays_ahead_of_a_suggestion() {
    let mut raw = minimal();
    raw["rules"] = json!([{"name": "staff", "match": {"groups": ["staff"]}, "soft_budget": 5.0}]);
    let all = problems(raw);
    assert!(line_for(&all, "rules[0].soft_budget").contains("set soft_budget on the rule's team"), "{all:?}");
}

#[test]
fn suggestions_follow_case_dashes_and_small_edits_only() {
    let keys = ["max_budget", "model_max_budget", "models", "role"];
    assert_eq!(did_you_mean("Max-Budget", keys), Some("max_budget"));
    assert_eq!(did_you_mean("max_budjet", keys), Some("max_budget"));
    assert_eq!(did_you_mean("mdoels", keys), Some("models"), "a transposition is one edit");
    assert_eq!(did_you_mean("rol", keys), Some("role"));
    assert_eq!(did_you_mean("colour", keys), None);
    assert_eq!(did_you_mean("xy", keys), None);
    assert_eq!(did_you_mean("role", keys), None, "a known key is not a suggestion of itself");
    assert_eq!(did_you_mean("anything", std::iter::empty()), None);
}

#[test]
fn known_keys_are_read_from_the_types() {
    assert_eq!(fields::<Match>(), ["groups", "group_glob", "source"]);
    assert_eq!(fields::<FileSourceConfig>(), ["path"]);
    assert!(fields::<String>().is_empty());
}

/// The CLI plans against the store's ledger only when the configuration names a store: a configuration without
/// `[store]` (or with an empty one) must not share the default path's ledger with whatever else ran on the host.
#[test]
fn only_a_path_or_url_configures_the_store() {
    let configured = |store: Option<serde_json::Value>| {
        let mut raw = minimal();
        if let Some(s) = store {
            raw["store"] = s;
        }
        match validate(&raw) {
            Ok(cfg) => (cfg.store.configured, cfg.store.path.display().to_string(), cfg.store.postgres.is_some()),
            Err(p) => panic!("{p:?}"),
        }
    };
    assert_eq!(configured(None), (false, "/var/lib/litellm-sync/state.db".to_string(), false));
    assert_eq!(configured(Some(json!({}))), (false, "/var/lib/litellm-sync/state.db".to_string(), false));
    assert_eq!(configured(Some(json!({"path": "/data/s.db"}))), (true, "/data/s.db".to_string(), false));
    assert!(configured(Some(json!({"url": "postgres://sync@db:5432/sync"}))).0);
    assert!(configured(Some(json!({"url": "postgres://sync@db:5432/sync"}))).2);
}

/// A store written by SQLite is never silently reused, or dropped, by a PostgreSQL one: naming both is an error
/// that says the PostgreSQL store starts empty; a password inside the URL (which is logged) is refused too.
#[test]
fn a_sqlite_store_and_a_postgres_url_together_are_refused() {
    let problems = |store: serde_json::Value| {
        let mut raw = minimal();
        raw["store"] = store;
        match validate(&raw) {
            Ok(_) => Vec::new(),
            Err(p) => p.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        }
    };
    let both = problems(json!({"path": "/data/s.db", "url": "postgres://sync@db:5432/sync"}));
    assert!(both.iter().any(|p| p.contains("not both") && p.contains("start empty")), "{both:?}");
    let secret = problems(json!({"url": "postgres://sync:hunter2@db:5432/sync"}));
    assert!(secret.iter().any(|p| p.starts_with("store.url") && p.contains("holds a password")), "{secret:?}");
    assert!(secret.iter().all(|p| !p.contains("hunter2")), "the password is never echoed: {secret:?}");
    let not_pg = problems(json!({"url": "mysql://db/sync"}));
    assert!(not_pg.iter().any(|p| p.contains("is not a postgres:// URL")), "{not_pg:?}");
}
