//! 409 on create. A create that landed although the client saw an error (retried → 409) must end in exactly one
//! user with one key; a user someone else creates with the same id in the middle of a run is reported, not taken
//! over, unless adoption is switched on.

use axum::http::Method;
use serde_json::{json, Value};

use crate::support::admin::marker_source;
use crate::support::{Fault, FaultProxy, Fixture, Hook};

const RULES: &str = r#"
[[rules]]
name = "staff"
match = { groups = ["staff"] }
max_budget = 10.0
key = { alias = "{user_id}-key" }
"#;

/// With a per-model budget, which `/user/new` refuses without an Enterprise licence: set by a follow-up update,
/// also when the create is resolved through a 409.
const RULES_MMB: &str = r#"
[[rules]]
name = "staff"
match = { groups = ["staff"] }
max_budget = 10.0
model_max_budget = { "gpt-4o" = 5.0 }
key = { alias = "{user_id}-key" }
"#;

fn users(fx: &Fixture, names: &[&str]) -> Value {
    let users: Vec<Value> =
        names.iter().map(|n| json!({"id": format!("id-{n}"), "user_name": n, "email": fx.email(n)})).collect();
    let ids: Vec<String> = names.iter().map(|n| format!("id-{n}")).collect();
    json!({"users": users, "groups": [{"id": "staff", "members": ids}]})
}

/// Exactly `names` exist, each once, managed by this test's source, with exactly one key.
async fn assert_created_once(fx: &Fixture, names: &[&str], model_max_budget: Value) {
    let mut want: Vec<String> = names.iter().map(|n| fx.uid(n)).collect();
    want.sort();
    let rows = fx.admin.users(&fx.prefix()).await;
    let ids: Vec<&str> = rows.iter().filter_map(|u| u["user_id"].as_str()).collect();
    assert_eq!(ids, want, "each user exists exactly once");
    for row in &rows {
        assert_eq!(marker_source(row), Some(fx.source.as_str()), "{row}");
        assert_eq!(row["max_budget"], 10.0, "{row}");
        assert_eq!(row["model_max_budget"], model_max_budget, "{row}");
        let id = row["user_id"].as_str().unwrap();
        let keys = fx.admin.keys(id).await;
        assert_eq!(keys.len(), 1, "a retried create must not mint a second key for {id}: {keys:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_single_create_that_had_landed() {
    let fx = Fixture::new("conflict-single").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    fx.write_config(&proxy.url(), r#"initial_backoff = "50ms""#, RULES_MMB);
    fx.write_users(&users(&fx, &["alice"]));
    // LiteLLM creates alice, the client sees a 500 and retries: LiteLLM then says 409.
    proxy.inject(Some(Method::POST), "/user/new", 1, Fault::ForwardThenStatus(500));

    let run = fx.run(&["sync"]).await;
    proxy.assert_faults_used(&run);
    run.expect(0);
    assert_eq!(proxy.count(Method::POST, "/user/new"), 2, "the create was retried once: {:?}", proxy.writes());
    assert_created_once(&fx, &["alice"], json!({"gpt-4o": 5.0})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_bulk_create_that_had_landed() {
    let mut fx = Fixture::new("conflict-bulk").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    fx.write_config(&proxy.url(), r#"initial_backoff = "50ms""#, RULES);
    let names = ["alice", "bob", "carol"];
    fx.write_users(&users(&fx, &names));
    proxy.inject(Some(Method::POST), "/management/v1/users/bulk", 1, Fault::ForwardThenStatus(500));

    let run = fx.run(&["sync"]).await;
    proxy.assert_faults_used(&run);
    run.expect(0);
    assert!(proxy.count(Method::POST, "/management/v1/users/bulk") >= 2, "{:?}", proxy.writes());
    assert_created_once(&fx, &names, json!({})).await;
    fx.quiet().await;
    fx.run(&["plan"]).await.expect(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_created_by_hand_during_the_run_is_not_taken_over() {
    let mut fx = Fixture::new("conflict-race").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let dave = fx.uid("dave");
    fx.write_config(&proxy.url(), r#"initial_backoff = "50ms""#, RULES);
    fx.write_users(&users(&fx, &["dave"]));
    // Between the listing and the create, someone makes dave by hand.
    let by_hand = json!({"user_id": dave, "max_budget": 1.0, "metadata": {"owner": "hand"}, "auto_create_key": false});
    proxy.inject(Some(Method::POST), "/user/new", 1, Fault::Before(Hook::CreateUser(by_hand)));

    let run = fx.run(&["sync"]).await;
    proxy.assert_faults_used(&run);
    run.expect(1).assert_mentions(&dave).assert_mentions("not managed by litellm-sync");
    let d = fx.admin.must_user(&dave).await;
    assert_eq!(d["max_budget"], 1.0, "the hand-made user is not modified: {d}");
    assert_eq!(d["metadata"], json!({"owner": "hand"}), "{d}");
    assert!(fx.admin.keys(&dave).await.is_empty());

    // From now on the plan knows: a note, no operation, and a sync that leaves dave alone.
    fx.quiet().await;
    fx.run(&["plan"]).await.expect(0).assert_mentions(&dave).assert_mentions("not managed by litellm-sync");
    proxy.reset_log();
    fx.run(&["sync"]).await.expect(0);
    assert!(proxy.writes().iter().all(|w| w != "POST /user/update"), "{:?}", proxy.writes());
    assert_eq!(fx.admin.must_user(&dave).await["metadata"], json!({"owner": "hand"}));

    // With adoption switched on, dave is taken over: marker added, budget set, the foreign key kept.
    fx.write_config(
        &proxy.url(),
        r#"initial_backoff = "50ms""#,
        &format!("{RULES}\n[safety]\nadopt_existing = true\n"),
    );
    fx.run(&["sync"]).await.expect(0).assert_mentions("adopt user");
    let d = fx.admin.must_user(&dave).await;
    assert_eq!(marker_source(&d), Some(fx.source.as_str()), "{d}");
    assert_eq!(d["max_budget"], 10.0, "{d}");
    assert_eq!(d["metadata"]["owner"], "hand", "{d}");
    fx.run(&["plan"]).await.expect(0);
}
