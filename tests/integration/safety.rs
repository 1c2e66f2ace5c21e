//! The safety limit: a run that would deactivate more users than `safety.max_deletions` (or its percentage)
//! applies none of those deactivations, exits 3 and lists them as held; `--allow-deletions` approves them.

use axum::http::Method;
use serde_json::{json, Value};

use crate::support::{ops_of, FaultProxy, Fixture};

const USERS: usize = 20;

const RULES: &str = r#"
[defaults]
max_budget = 10.0

[safety]
max_deletions = 10
max_deletions_percent = 10
"#;

fn users(fx: &Fixture, keep: usize) -> Value {
    let users: Vec<Value> = (0..keep)
        .map(|i| json!({"id": format!("id-{i:02}"), "user_name": format!("u{i:02}"), "email": fx.email(&format!("u{i:02}"))}))
        .collect();
    json!({ "users": users })
}

async fn deactivated(fx: &Fixture) -> Vec<String> {
    fx.admin
        .users(&fx.prefix())
        .await
        .iter()
        .filter(|u| u["metadata"]["scim_active"] == false)
        .filter_map(|u| u["user_id"].as_str().map(str::to_string))
        .collect()
}

fn held_ids(doc: &Value) -> Vec<String> {
    let mut ids: Vec<String> = ops_of(doc, "held", "deactivate_user")
        .iter()
        .filter_map(|o| o["user_id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_deactivation_is_held_until_approved() {
    let mut fx = Fixture::new("safety").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    fx.write_config(&proxy.url(), "", RULES);
    fx.write_users(&users(&fx, USERS));
    fx.run(&["sync"]).await.expect(0);
    assert_eq!(fx.admin.users(&fx.prefix()).await.len(), USERS);

    // 3 of 20 is within max_deletions but above 10 %: held.
    fx.write_users(&users(&fx, USERS - 3));
    proxy.reset_log();
    let run = fx.run(&["sync", "--output", "json"]).await;
    run.expect(3);
    let doc = run.json();
    assert_eq!(held_ids(&doc).len(), 3, "{}", run.stdout);
    assert!(doc["hold_reason"].as_str().is_some_and(|r| r.contains("max_deletions_percent")), "{}", run.stdout);
    assert!(deactivated(&fx).await.is_empty(), "nothing was deactivated");
    assert_eq!(proxy.count(Method::POST, "/user/update"), 0, "{:?}", proxy.writes());

    // 15 of 20 is above max_deletions: held, listed, and nothing destructive reaches LiteLLM.
    fx.write_users(&users(&fx, USERS - 15));
    let want: Vec<String> = (USERS - 15..USERS).map(|i| fx.uid(&format!("u{i:02}"))).collect();
    proxy.reset_log();
    let run = fx.run(&["sync", "--output", "json"]).await;
    run.expect(3);
    let doc = run.json();
    assert_eq!(held_ids(&doc), want, "the JSON output lists every held deactivation\n{}", run.stdout);
    assert!(ops_of(&doc, "operations", "deactivate_user").is_empty(), "{}", run.stdout);
    assert!(doc["hold_reason"].as_str().is_some_and(|r| r.contains("max_deletions = 10")), "{}", run.stdout);
    assert_eq!(doc["in_sync"], false);
    assert!(deactivated(&fx).await.is_empty(), "nothing was deactivated");
    for w in proxy.writes() {
        assert!(
            !w.contains("/user/update") && !w.contains("/key/block") && !w.contains("delete"),
            "destructive write {w}"
        );
    }
    fx.run(&["plan"]).await.expect(2).assert_mentions("Held by the safety limit");

    // Approved: applied.
    let run = fx.run(&["sync", "--allow-deletions", "--output", "json"]).await;
    run.expect(0);
    assert_eq!(ops_of(&run.json(), "operations", "deactivate_user").len(), 15, "{}", run.stdout);
    let mut got = deactivated(&fx).await;
    got.sort();
    assert_eq!(got, want, "exactly the removed users are deactivated");
    assert_eq!(fx.admin.users(&fx.prefix()).await.len(), USERS, "deactivated, not deleted");
    fx.quiet().await;
    fx.run(&["plan"]).await.expect(0);
}
