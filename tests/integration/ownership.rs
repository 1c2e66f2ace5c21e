//! Only what litellm-sync manages is touched: a hand-made user with a desired `user_id` is left alone (and the plan
//! says so), and metadata keys or fields someone else set on a managed user survive a sync that changes it.

use serde_json::{json, Value};

use crate::support::admin::marker_source;
use crate::support::{FaultProxy, Fixture};

const RULES: &str = r#"
[defaults]
max_budget = 10.0
budget_duration = "30d"
metadata = { tier = "standard" }
"#;

fn users(fx: &Fixture, alice_budget: Option<f64>) -> Value {
    let mut alice = json!({"id": "1", "user_name": "alice", "email": fx.email("alice")});
    if let Some(b) = alice_budget {
        alice["overrides"] = json!({"max_budget": b});
    }
    json!({"users": [alice, {"id": "3", "user_name": "carol", "email": fx.email("carol")}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanaged_users_and_foreign_metadata_are_left_alone() {
    let mut fx = Fixture::new("own").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let (alice, carol) = (fx.uid("alice"), fx.uid("carol"));
    fx.admin
        .create_user(
            json!({"user_id": carol, "max_budget": 1.0, "metadata": {"owner": "hand"}, "auto_create_key": false}),
        )
        .await;
    let carol_before = fx.admin.must_user(&carol).await;
    fx.write_config(&proxy.url(), "", RULES);
    fx.write_users(&users(&fx, None));

    // The plan creates alice and notes carol instead of touching her.
    let plan = fx.run(&["plan", "--output", "json"]).await;
    plan.expect(2);
    let doc = plan.json();
    let ops = doc["operations"].as_array().unwrap();
    assert!(ops.iter().all(|o| o["user_id"] != carol.as_str()), "no operation on the unmanaged user:\n{}", plan.stdout);
    assert!(ops.iter().any(|o| o["op"] == "create_user" && o["user_id"] == alice.as_str()), "{}", plan.stdout);
    let notes = doc["notes"].to_string();
    assert!(notes.contains(&carol) && notes.contains("not managed"), "the plan notes the unmanaged user: {notes}");
    fx.run(&["plan"]).await.expect(2).assert_mentions(&carol);

    fx.run(&["sync"]).await.expect(0);
    let carol_after = fx.admin.must_user(&carol).await;
    assert_eq!(carol_after, carol_before, "the unmanaged user is not modified");
    assert!(marker_source(&carol_after).is_none());
    let a = fx.admin.must_user(&alice).await;
    assert_eq!(marker_source(&a), Some(fx.source.as_str()), "{a}");
    assert_eq!(a["metadata"]["tier"], "standard", "{a}");

    // Someone adds a metadata key and a limit litellm-sync does not own; then the source changes alice's budget.
    let mut metadata = a["metadata"].clone();
    metadata["cost_center"] = json!("cc-42");
    fx.admin.update_user(json!({"user_id": alice, "metadata": metadata, "tpm_limit": 777})).await;
    fx.write_users(&users(&fx, Some(20.0)));
    fx.quiet().await;
    proxy.reset_log();
    fx.run(&["sync"]).await.expect(0);
    assert_eq!(proxy.writes(), vec!["POST /user/update"], "one update, of alice");
    let a = fx.admin.must_user(&alice).await;
    assert_eq!(a["max_budget"], 20.0, "{a}");
    assert_eq!(a["metadata"]["cost_center"], "cc-42", "a foreign metadata key survives: {a}");
    assert_eq!(a["metadata"]["tier"], "standard", "{a}");
    assert_eq!(a["tpm_limit"], 777, "a field litellm-sync does not own survives: {a}");
    assert_eq!(marker_source(&a), Some(fx.source.as_str()), "{a}");

    // And the foreign key does not make the user look out of date forever.
    fx.run(&["plan"]).await.expect(0);
    assert_eq!(fx.admin.must_user(&carol).await, carol_before, "still untouched");
}
