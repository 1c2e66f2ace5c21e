use serde_json::json;

use super::*;
use crate::config::ldap::MemberKind;

fn minimal() -> serde_json::Value {
    json!({
        "litellm": {"url": "http://127.0.0.1:4000", "api_key": "sk-x"},
        "sources": [{"name": "corp", "type": "file", "path": "users.yaml"}],
    })
}

fn problems(raw: serde_json::Value) -> Vec<String> {
    match validate(&raw) {
        Ok(_) => panic!("expected problems"),
        Err(p) => p.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let c = validate(&minimal()).unwrap();
    assert_eq!(c.litellm.timeout, Duration::from_secs(30));
    assert_eq!(c.litellm.concurrency, 4);
    assert_eq!(c.sources[0].user_id_template, "{user_name}");
    assert_eq!(c.safety.deprovision, Deprovision::Deactivate);
    assert!(!c.safety.adopt_existing);
    assert_eq!(c.scope.unmatched_users, Unmatched::Provision);
    assert_eq!(c.precedence.limits, LimitPrecedence::Highest);
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let raw = json!({
        "litellm": {"url": "ftp://x", "timeout": "soon", "concurrency": 0},
        "sources": [
            {"name": "Bad Name", "type": "file", "path": "a.yaml", "user_id_template": "{nope}"},
            {"name": "x", "type": "carrier-pigeon"},
        ],
        "rules": [
            {"name": "r1", "match": {"groups": ["g"]}, "budget_duration": "2mo", "colour": "blue"},
            {"name": "r1", "match": {}, "role": "god", "max_budget": -5},
        ],
        "safety": {"max_deletions_percent": 150},
        "bogus": {},
    });
    let all = problems(raw).join("\n");
    for want in [
        "litellm.url: \"ftp://x\" is not an http(s) URL",
        "litellm.api_key: required",
        "litellm.timeout: invalid duration",
        "litellm.concurrency: 0 is out of range",
        "sources[0].name: \"Bad Name\"",
        "sources[0].user_id_template: \"{nope}\": unknown placeholder {nope}",
        "sources[1].type: unknown source type \"carrier-pigeon\"",
        "rules[0].budget_duration: invalid budget_duration \"2mo\": LiteLLM only supports 1-month intervals",
        "rules[0].colour: unknown key",
        "rules[1].role: unknown variant `god`",
        "rules[1].match: needs `groups` or `group_glob`",
        "safety.max_deletions_percent: 150 is out of range",
        "bogus: unknown section",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
}

#[test]
fn one_bad_rule_does_not_hide_the_next() {
    let mut raw = minimal();
    raw["rules"] = json!([
        {"name": "a", "match": {"groups": ["g"]}, "max_budget": "lots"},
        {"name": "b", "match": {"groups": ["g"]}, "tpm_limit": -1},
        {"name": "c", "match": {"groups": ["g"]}, "metadata": {"litellm_sync": 1}},
        {"name": "d", "match": {"groups": ["g"]}, "soft_budget": 5},
        {"name": "e", "match": {"groups": ["g"], "source": "elsewhere"}},
        {"name": "f", "match": {"group_glob": "[unclosed"}},
        {"name": "g", "match": {"groups": ["g"]}, "models": []},
    ]);
    let all = problems(raw).join("\n");
    for want in [
        "rules[0].max_budget: invalid type",
        "rules[1].tpm_limit: invalid value",
        "rules[2].metadata: keys \"litellm_sync\" and \"scim_active\" are reserved",
        "rules[3].soft_budget: LiteLLM users have no soft budget",
        "rules[4].match.source: no source named \"elsewhere\"",
        "rules[5].match.group_glob: invalid glob",
        "rules[6].models: an empty list cannot be sent",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
}

#[test]
fn budget_durations_follow_litellm() {
    for ok in ["30s", "15m", "24h", "1d", "7d", "2w", "30d", "1mo", "daily", "Monthly", "HOURLY", "weekly"] {
        assert!(validate_budget_duration(ok).is_ok(), "{ok} should be accepted");
    }
    for bad in
        ["2mo", "0d", "30D", "24H", "30", "1y", "1.5d", " 30d", "30days", "", "d", "-1d", "99999999999999999999999d"]
    {
        assert!(validate_budget_duration(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn secrets_are_never_printed() {
    let mut raw = minimal();
    raw["litellm"]["api_key"] = json!("sk-supersecret-123456");
    let c = validate(&raw).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("supersecret"), "{dbg}");
    // A secret of the wrong type is reported without its value.
    raw["litellm"]["api_key"] = json!({"nested": "sk-supersecret-123456"});
    let all = problems(raw).join("\n");
    assert!(all.contains("litellm.api_key: must be a non-empty string"));
    assert!(!all.contains("supersecret"));
}

#[test]
fn api_key_file_is_read_and_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("key");
    std::fs::write(&f, "sk-from-file\n").unwrap();
    let mut raw = minimal();
    raw["litellm"] = json!({"url": "http://x:4000", "api_key_file": f});
    let c = validate(&raw).unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(c.litellm.api_key.resolve("litellm.api_key").unwrap().expose_secret(), "sk-from-file");
    raw["litellm"]["api_key_file"] = json!(dir.path().join("missing"));
    let c = validate(&raw).unwrap();
    let err = c.litellm.api_key.resolve("litellm.api_key").unwrap_err().to_string();
    assert!(err.contains("litellm.api_key_file: cannot read secret file"), "{err}");
    raw["litellm"]["api_key"] = json!("also");
    assert!(problems(raw).join("\n").contains("set either api_key or api_key_file"));
}

#[test]
fn file_and_environment_layers_merge() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[litellm]\nurl = \"http://from-file:4000\"\napi_key = \"k\"\n[[sources]]\nname = \"corp\"\ntype = \"file\"\npath = \"u.yaml\"\n",
    )
    .unwrap();
    // The environment is process-global: use a key no other test reads.
    std::env::set_var("LITELLM_SYNC__SAFETY__MAX_DELETIONS", "42");
    let c = load(&path).unwrap();
    std::env::remove_var("LITELLM_SYNC__SAFETY__MAX_DELETIONS");
    assert_eq!(c.safety.max_deletions, 42);
    assert_eq!(c.litellm.url.as_str(), "http://from-file:4000/");
}

#[test]
fn broken_toml_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[litellm\nurl=").unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("c.toml"), "{err}");
    let err = load(&dir.path().join("absent.toml")).unwrap_err().to_string();
    assert!(err.contains("absent.toml"), "{err}");
}

#[test]
fn example_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // The load path up to its secret files, which exist only where the examples are deployed; an example
            // may leave the key to the environment, so a missing key is the one problem allowed.
            match load::load_unresolved(&path, &[]) {
                Ok(_) => {}
                Err(ConfigError::Invalid(p))
                    if p.iter().all(|p| p.path == "litellm.api_key" && p.message.starts_with("required")) => {}
                Err(e) => panic!("{}: {e}", path.display()),
            }
            n += 1;
        }
    }
    assert!(n >= 1, "no example configs found in {}", dir.display());
}

#[test]
fn secrets_from_the_environment_keep_their_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[litellm]\nurl = \"http://x:4000\"\n[[sources]]\nname = \"corp\"\ntype = \"ldap\"\nurls = []\n",
    )
    .unwrap();
    let vars = [
        ("LITELLM_SYNC__LITELLM__API_KEY", "007"),
        ("LITELLM_SYNC__SAFETY__MAX_DELETIONS", "42"),
        ("LITELLM_SYNC__SOURCES__CORP__BIND_PASSWORD", "[1]"),
        ("LITELLM_SYNC__SOURCES__CORP__URLS", "[\"ldap://a:389\"]"),
    ];
    let raw = load::load_raw_from(&path, vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
    assert_eq!(raw["litellm"]["api_key"], json!("007"), "a secret is not parsed as a number");
    assert_eq!(raw["sources"][0]["bind_password"], json!("[1]"), "a secret is not parsed as a list");
    assert_eq!(raw["safety"]["max_deletions"], json!(42), "other values still are");
    assert_eq!(raw["sources"][0]["urls"], json!(["ldap://a:389"]));
}

#[test]
fn secret_files_are_read_once_at_load_and_every_unreadable_one_is_named() {
    use secrecy::ExposeSecret;
    let dir = tempfile::tempdir().unwrap();
    let (key, pw) = (dir.path().join("key"), dir.path().join("pw"));
    std::fs::write(&key, "sk-from-file\n").unwrap();
    std::fs::write(&pw, "bind-pw").unwrap();
    let path = dir.path().join("c.toml");
    let text = |key: &std::path::Path, pw: &std::path::Path| {
        format!(
            "[litellm]\nurl = \"http://x:4000\"\napi_key_file = {key:?}\n[[sources]]\nname = \"corp\"\ntype = \"ldap\"\n\
             urls = [\"ldap://127.0.0.1:389\"]\nbind_dn = \"cn=sync\"\nbind_password_file = {pw:?}\n\
             user_base = \"ou=people\"\ngroup_base = \"ou=groups\"\n"
        )
    };
    std::fs::write(&path, text(&key, &pw)).unwrap();
    let c = load(&path).unwrap();
    // The files are gone: whatever reads the secrets later must not need them.
    std::fs::remove_file(&key).unwrap();
    std::fs::remove_file(&pw).unwrap();
    assert_eq!(c.litellm.api_key.resolve("litellm.api_key").unwrap().expose_secret(), "sk-from-file");
    let SourceKind::Ldap(l) = &c.sources[0].kind else { panic!("not LDAP") };
    assert_eq!(l.bind_password.resolve("bind_password").unwrap().expose_secret(), "bind-pw");
    assert!(!format!("{c:?}").contains("sk-from-file"));

    std::fs::write(&pw, "\n").unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("litellm.api_key_file: cannot read secret file"), "{err}");
    assert!(err.contains("sources[0].bind_password_file: secret file"), "{err}");
    assert!(err.contains("is empty"), "{err}");
}

#[test]
fn source_keys_come_from_the_environment_by_name_or_index() {
    let mut raw = minimal();
    raw["sources"] =
        json!([{"name": "corp-ldap", "type": "file", "path": "a"}, {"name": "hr", "type": "file", "path": "b"}]);
    apply_sources_env(
        &mut raw,
        &[
            ("LITELLM_SYNC__SOURCES__CORP_LDAP__BIND_PASSWORD".into(), "s3cret".into()),
            ("LITELLM_SYNC__SOURCES__1__ATTRIBUTES__EMAIL".into(), "mailPrimary".into()),
            ("LITELLM_SYNC__SOURCES__1__URLS".into(), r#"["ldap://a:389", "ldaps://b:636"]"#.into()),
        ],
    )
    .unwrap();
    assert_eq!(raw["sources"][1]["urls"], json!(["ldap://a:389", "ldaps://b:636"]));
    assert_eq!(raw["sources"][0]["bind_password"], json!("s3cret"));
    assert_eq!(raw["sources"][1]["attributes"]["email"], json!("mailPrimary"));
    let err = apply_sources_env(&mut raw, &[("LITELLM_SYNC__SOURCES__NOPE__X".into(), "1".into())]).unwrap_err();
    assert!(err[0].message.contains("\"NOPE\""), "{err:?}");
    assert!(apply_sources_env(&mut raw, &[("LITELLM_SYNC__SOURCES__7__X".into(), "1".into())]).is_err());
    assert!(apply_sources_env(&mut raw, &[("LITELLM_SYNC__SOURCES__HR".into(), "1".into())]).is_err());
}

fn ldap(attributes: serde_json::Value, flavor: &str) -> serde_json::Value {
    let mut raw = minimal();
    raw["sources"] = json!([{
        "name": "corp", "type": "ldap", "flavor": flavor, "urls": ["ldap://127.0.0.1:389"], "bind_dn": "cn=sync",
        "bind_password": "pw", "user_base": "ou=people", "group_base": "ou=groups", "attributes": attributes,
    }]);
    raw
}

fn ldap_config(raw: &serde_json::Value) -> LdapSourceConfig {
    let c = validate(raw).unwrap_or_else(|p| panic!("{p:?}"));
    match &c.sources[0].kind {
        SourceKind::Ldap(l) => (**l).clone(),
        other => panic!("not an LDAP source: {other:?}"),
    }
}

fn member_kinds(l: &LdapSourceConfig) -> Vec<(String, MemberKind)> {
    l.attributes.members.iter().map(|m| (m.name.clone(), m.kind)).collect()
}

#[test]
fn ldap_member_attributes_default_per_flavour_and_read_each_by_its_kind() {
    let l = ldap_config(&ldap(json!({}), "openldap"));
    assert_eq!(
        member_kinds(&l),
        vec![
            ("member".to_string(), MemberKind::Dn),
            ("uniqueMember".to_string(), MemberKind::DnOptionalUid),
            ("memberUid".to_string(), MemberKind::Name),
        ]
    );
    assert_eq!(l.group_filter, "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))");
    let l = ldap_config(&ldap(json!({}), "active_directory"));
    assert_eq!(member_kinds(&l), vec![("member".to_string(), MemberKind::Dn)]);
    assert_eq!(l.group_filter, "(objectClass=group)");

    // The older one-attribute key is a one-element list, with the kind its name has.
    let l = ldap_config(&ldap(json!({"member": "memberUid"}), "openldap"));
    assert_eq!(member_kinds(&l), vec![("memberUid".to_string(), MemberKind::Name)]);
    let l = ldap_config(&ldap(json!({"member": "uniqueMember"}), "openldap"));
    assert_eq!(member_kinds(&l), vec![("uniqueMember".to_string(), MemberKind::DnOptionalUid)]);

    // A custom name-valued attribute.
    let l = ldap_config(&ldap(
        json!({"members": ["member", "memberUid", "x-uids"], "name_valued_members": ["memberUid", "X-UIDS"]}),
        "openldap",
    ));
    assert_eq!(
        member_kinds(&l),
        vec![
            ("member".to_string(), MemberKind::Dn),
            ("memberUid".to_string(), MemberKind::Name),
            ("x-uids".to_string(), MemberKind::Name)
        ]
    );
}

#[test]
fn ldap_member_attribute_mistakes_are_named() {
    let all = problems(ldap(json!({"member": "member", "members": ["member"]}), "openldap")).join("\n");
    assert!(all.contains("sources[0].attributes.member: set either members (a list) or the older member"), "{all}");
    let all = problems(ldap(json!({"members": []}), "openldap")).join("\n");
    assert!(all.contains("sources[0].attributes.members: needs at least one group attribute"), "{all}");
    let all = problems(ldap(json!({"members": ["member", " ", "Member"]}), "openldap")).join("\n");
    assert!(all.contains("sources[0].attributes.members[1]: must not be empty"), "{all}");
    assert!(all.contains("sources[0].attributes.members[2]: \"Member\" is listed twice"), "{all}");
    let all = problems(ldap(json!({"name_valued_members": ["memberUdi"]}), "openldap")).join("\n");
    assert!(
        all.contains("sources[0].attributes.name_valued_members[0]: \"memberUdi\" is not one of attributes.members"),
        "{all}"
    );
    let all = problems(ldap(json!({"members": "member"}), "openldap")).join("\n");
    assert!(all.contains("sources[0].attributes.members"), "a string is not a list: {all}");
}

#[test]
fn the_plan_fingerprint_follows_what_plans_depend_on() {
    let base = validate(&minimal()).unwrap().plan_fingerprint();
    assert_eq!(validate(&minimal()).unwrap().plan_fingerprint(), base, "deterministic");
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut raw = minimal();
        f(&mut raw);
        validate(&raw).unwrap().plan_fingerprint()
    };
    // What a plan depends on changes it.
    type Edit = fn(&mut serde_json::Value);
    let changes: [(&str, Edit); 5] = [
        ("a rule", |r| r["rules"] = json!([{"name": "all", "match": {"groups": ["eng"]}}])),
        ("a default", |r| r["defaults"] = json!({"max_budget": 5.0})),
        ("the safety limit", |r| r["safety"] = json!({"max_deletions": 3})),
        ("the LiteLLM", |r| r["litellm"]["url"] = json!("http://127.0.0.1:4001")),
        ("an id template", |r| r["sources"][0]["user_id_template"] = json!("{email}")),
    ];
    for (what, f) in changes {
        assert_ne!(with(&f), base, "{what} must change the fingerprint");
    }
    // What changes no plan leaves it: a secret, the log level, the server.
    assert_eq!(with(&|r| r["litellm"]["api_key"] = json!("sk-other")), base);
    assert_eq!(with(&|r| r["log"] = json!({"level": "debug"})), base);
    assert_eq!(with(&|r| r["server"] = json!({"listen": "127.0.0.1:9999"})), base);
}
