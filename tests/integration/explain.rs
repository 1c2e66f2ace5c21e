//! `litellm-sync explain USER`: where each desired field comes from, and how LiteLLM differs now.

use serde_json::json;

use crate::support::Fixture;

#[tokio::test]
async fn explain_names_the_source_record_groups_rules_and_the_diff() {
    let fx = Fixture::new("explain").await;
    fx.write_users(&json!({
        "users": [
            {"id": "1", "user_name": "eve", "email": fx.email("eve"), "overrides": {"max_budget": 42.0}},
            {"id": "2", "user_name": "fay", "email": fx.email("fay")},
        ],
        "groups": [
            {"id": "g-admins", "name": "admins", "members": ["1"]},
            {"id": "g-eng", "name": "eng", "members": ["2"], "groups": ["g-admins"]},
        ],
    }));
    fx.write_config(
        &fx.url,
        "",
        r#"
[[rules]]
name = "admin-rule"
match = { groups = ["admins"] }
role = "proxy_admin"

[[rules]]
name = "eng-rule"
match = { groups = ["eng"] }
max_budget = 10.0
models = ["gpt-4o"]

[defaults]
budget_duration = "30d"
"#,
    );

    // Before the first sync: the desired fields with their origins, and the pending creation.
    let before = fx.run(&["explain", "eve"]).await;
    before.expect(0);
    let out = &before.stdout;
    for want in [
        "User eve (source \"t-explain\", id \"1\")",
        "groups (nesting resolved): admins, eng",
        "rules matched: admin-rule, eng-rule",
        "\"proxy_admin\"",
        "rule \"admin-rule\" (group \"admins\")",
        "per-user override",
        "defaults",
        "+ create user",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }

    fx.run(&["sync"]).await.expect(0);
    let after = fx.run(&["explain", &fx.uid("eve")]).await;
    after.expect(0);
    assert!(after.stdout.contains("LiteLLM now: in sync."), "{}", after.stdout);

    // A hand edit shows up as the diff to repair.
    fx.admin.update_user(json!({"user_id": fx.uid("eve"), "max_budget": 1.0})).await;
    let drift = fx.run(&["explain", &fx.email("eve")]).await;
    drift.expect(0);
    assert!(drift.stdout.contains("max_budget") && drift.stdout.contains("1.0 → 42.0"), "{}", drift.stdout);

    let unknown = fx.run(&["explain", "nobody-here"]).await;
    unknown.expect(1);
    assert!(unknown.stdout.contains("No source record matches"), "{}", unknown.stdout);
}
