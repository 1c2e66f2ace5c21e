//! A user's whole life against the real LiteLLM: created (with a key), updated (exactly the changed user),
//! deactivated (`scim_active=false`, every key blocked and refused), reactivated, and deleted.

use std::time::Duration;

use axum::http::Method;
use serde_json::{json, Value};

use crate::support::admin::marker_source;
use crate::support::{eventually, ops_of, FaultProxy, Fixture};

const RULES: &str = r#"
[[rules]]
name = "engineering"
match = { groups = ["engineering"] }
max_budget = 100.0
budget_duration = "30d"
models = ["gpt-4o", "claude-sonnet"]
key = { alias = "{user_id}-key" }

[[rules]]
name = "ops"
match = { groups = ["ops"] }
max_budget = 50.0
budget_duration = "7d"
key = { alias = "{user_id}-key" }

[defaults]
role = "internal_user"
max_budget = 5.0
"#;

fn users(fx: &Fixture, alice_active: bool, bob_group: &str, with_alice: bool) -> Value {
    let mut users = vec![json!({"id": "2", "user_name": "bob", "email": fx.email("bob")})];
    let mut eng = vec!["2"];
    if with_alice {
        users.insert(0, json!({"id": "1", "user_name": "alice", "email": fx.email("alice"), "active": alice_active}));
        eng.insert(0, "1");
    }
    let ops: Vec<&str> = if bob_group == "ops" {
        eng.retain(|m| *m != "2");
        vec!["2"]
    } else {
        vec![]
    };
    json!({
        "users": users,
        "groups": [
            {"id": "eng", "name": "engineering", "members": eng},
            {"id": "ops", "name": "ops", "members": ops},
        ],
    })
}

async fn key_status(fx: &Fixture, key: &str) -> u16 {
    fx.admin.status_with_key(key, "/v1/models").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_deactivate_reactivate_delete() {
    let mut fx = Fixture::new("lifecycle").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let (alice, bob) = (fx.uid("alice"), fx.uid("bob"));
    fx.write_config(&proxy.url(), "", RULES);

    // 1. Create: both users, with the rule's budget, the marker and one key named by the rule.
    fx.write_users(&users(&fx, true, "eng", true));
    fx.run(&["sync"]).await.expect(0);
    let a = fx.admin.must_user(&alice).await;
    assert_eq!(a["max_budget"], 100.0, "{a}");
    assert_eq!(a["budget_duration"], "30d", "{a}");
    assert_eq!(a["user_role"], "internal_user", "{a}");
    assert_eq!(a["user_email"], fx.email("alice"), "{a}");
    assert_eq!(a["models"], json!(["claude-sonnet", "gpt-4o"]), "{a}");
    assert_eq!(marker_source(&a), Some(fx.source.as_str()), "{a}");
    let keys = fx.admin.keys(&alice).await;
    assert_eq!(keys.len(), 1, "alice should have exactly the rule's key: {keys:?}");
    assert_eq!(keys[0]["key_alias"], format!("{alice}-key"));
    let alice_key = proxy.created_key(&alice).expect("LiteLLM handed out alice's key on create");
    assert_eq!(key_status(&fx, &alice_key).await, 200, "a fresh key must work");
    // A second key, minted by hand: deactivation must block every key the user owns.
    let hand_key = fx.admin.generate_key(&alice, &format!("{alice}-by-hand")).await;

    // 2. Move bob to another group: exactly one update, of bob, and alice is not written at all.
    fx.quiet().await;
    let alice_before = fx.admin.must_user(&alice).await;
    fx.write_users(&users(&fx, true, "ops", true));
    let plan = fx.run(&["plan", "--output", "json"]).await;
    plan.expect(2);
    let doc = plan.json();
    let ops = doc["operations"].as_array().expect("operations");
    assert_eq!(ops.len(), 1, "only bob changes:\n{}", plan.stdout);
    assert_eq!(ops[0]["op"], "update_user");
    assert_eq!(ops[0]["user_id"], bob.as_str());
    let fields: Vec<&str> = ops[0]["changes"].as_array().unwrap().iter().filter_map(|c| c["field"].as_str()).collect();
    for f in ["max_budget", "budget_duration", "models"] {
        assert!(fields.contains(&f), "{f} changes: {fields:?}");
    }
    proxy.reset_log();
    fx.run(&["sync"]).await.expect(0);
    assert_eq!(proxy.writes(), vec!["POST /user/update"], "one write, the update of bob");
    let b = fx.admin.must_user(&bob).await;
    assert_eq!((b["max_budget"].as_f64(), b["budget_duration"].as_str()), (Some(50.0), Some("7d")), "{b}");
    assert_eq!(b["models"], json!(["all-proxy-models"]), "a model list no rule grants any more is lifted: {b}");
    let alice_after = fx.admin.must_user(&alice).await;
    assert_eq!(alice_after["updated_at"], alice_before["updated_at"], "alice must not be written");
    assert_eq!(alice_after["max_budget"], 100.0);
    fx.shared().await;

    // 3. Disabled in the source: deactivated, not deleted; every key blocked and refused by LiteLLM.
    fx.write_users(&users(&fx, false, "ops", true));
    fx.run(&["sync"]).await.expect(0);
    let a = fx.admin.must_user(&alice).await;
    assert_eq!(a["metadata"]["scim_active"], false, "{a}");
    assert_eq!(marker_source(&a), Some(fx.source.as_str()), "the marker stays: {a}");
    let keys = fx.admin.keys(&alice).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in &keys {
        assert_eq!(k["blocked"], true, "every key of a deactivated user is blocked: {k}");
    }
    for key in [&alice_key, &hand_key] {
        eventually("LiteLLM to refuse a deactivated user's key", Duration::from_secs(20), || async {
            (key_status(&fx, key).await == 401).then_some(())
        })
        .await;
    }
    assert!(fx.admin.must_user(&bob).await["metadata"].get("scim_active").is_none(), "bob stays active");
    fx.quiet().await;
    fx.run(&["plan"]).await.expect(0);
    fx.shared().await;

    // 4. Enabled again: reactivated, keys unblocked and usable.
    fx.write_users(&users(&fx, true, "ops", true));
    let run = fx.run(&["sync"]).await;
    run.expect(0).assert_mentions("reactivate user");
    let a = fx.admin.must_user(&alice).await;
    assert_ne!(a["metadata"]["scim_active"], false, "{a}");
    for k in fx.admin.keys(&alice).await {
        assert_ne!(k["blocked"], true, "keys are unblocked on reactivation: {k}");
    }
    for key in [&alice_key, &hand_key] {
        eventually("LiteLLM to accept a reactivated user's key", Duration::from_secs(20), || async {
            (key_status(&fx, key).await == 200).then_some(())
        })
        .await;
    }

    // 5. Gone from the source with deprovision = "delete": the user and its keys are deleted.
    fx.write_config(&proxy.url(), "", &format!("{RULES}\n[safety]\ndeprovision = \"delete\"\n"));
    fx.write_users(&users(&fx, true, "ops", false));
    let plan = fx.run(&["plan", "--output", "json"]).await;
    plan.expect(2);
    let doc = plan.json();
    let deletes = ops_of(&doc, "operations", "delete_user");
    assert_eq!(deletes.len(), 1, "{}", plan.stdout);
    assert_eq!(deletes[0]["user_id"], alice.as_str());
    proxy.reset_log();
    fx.run(&["sync"]).await.expect(0);
    assert!(fx.admin.user(&alice).await.is_none(), "alice is deleted");
    assert!(fx.admin.keys(&alice).await.is_empty(), "her keys went with her");
    assert_eq!(key_status(&fx, &alice_key).await, 401, "a deleted user's key is refused");
    assert!(fx.admin.user(&bob).await.is_some(), "bob stays");
    assert_eq!(proxy.count(Method::POST, "/user/new"), 0);
}

/// A per-model budget and a key on the same rule. `/user/new` refuses `model_max_budget` without an Enterprise
/// licence (and so does the key generation behind the bulk endpoint), so the budget must follow in an update and
/// every user must still get the rule's key, whichever create path is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_model_budget_and_key_on_create() {
    let fx = Fixture::new("mmb").await;
    fx.write_config(
        &fx.url,
        "",
        r#"
[[rules]]
name = "staff"
match = { groups = ["staff"] }
max_budget = 10.0
model_max_budget = { "gpt-4o" = 5.0 }
key = { alias = "{user_id}-key" }
"#,
    );
    let names = ["alice", "bob", "carol"];
    let users: Vec<Value> =
        names.iter().map(|n| json!({"id": format!("id-{n}"), "user_name": n, "email": fx.email(n)})).collect();
    fx.write_users(
        &json!({"users": users, "groups": [{"id": "staff", "members": ["id-alice", "id-bob", "id-carol"]}]}),
    );

    fx.run(&["sync"]).await.expect(0);
    for n in names {
        let row = fx.admin.must_user(&fx.uid(n)).await;
        assert_eq!(row["model_max_budget"], json!({"gpt-4o": 5.0}), "{row}");
        let keys = fx.admin.keys(&fx.uid(n)).await;
        assert_eq!(keys.len(), 1, "{n} gets the rule's key: {keys:?}");
        assert_eq!(keys[0]["key_alias"], format!("{}-key", fx.uid(n)));
    }
}

/// `deprovision = "deactivate"` with `delete_after`: a user gone from the source is deactivated first, kept while
/// the grace period runs, and deleted by the first sync after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivated_user_is_deleted_after_the_grace_period() {
    let fx = Fixture::new("grace").await;
    fx.write_config(&fx.url, "", "[defaults]\nmax_budget = 5.0\n\n[safety]\ndelete_after = \"8s\"\n");
    let both = json!({"users": [
        {"id": "1", "user_name": "alice", "email": fx.email("alice")},
        {"id": "2", "user_name": "bob", "email": fx.email("bob")},
    ]});
    fx.write_users(&both);
    fx.run(&["sync"]).await.expect(0);
    let bob = fx.uid("bob");
    let key = fx.admin.generate_key(&bob, &format!("{bob}-key")).await;

    fx.write_users(&json!({"users": [{"id": "1", "user_name": "alice", "email": fx.email("alice")}]}));
    let run = fx.run(&["sync", "--output", "json"]).await;
    run.expect(0);
    assert_eq!(ops_of(&run.json(), "operations", "deactivate_user").len(), 1, "{}", run.stdout);
    let b = fx.admin.must_user(&bob).await;
    assert_eq!(b["metadata"]["scim_active"], false, "deactivated first: {b}");
    assert!(b["metadata"]["litellm_sync"]["deactivated_at"].is_string(), "the marker records when: {b}");
    let run = fx.run(&["plan", "--output", "json"]).await;
    assert!(ops_of(&run.json(), "operations", "delete_user").is_empty(), "not within the grace period\n{}", run.stdout);
    assert!(fx.admin.user(&bob).await.is_some());

    // Once the grace period has passed, the plan deletes bob; the sync does it.
    eventually("the plan to delete bob after the grace period", Duration::from_secs(60), || async {
        let plan = fx.run(&["plan", "--output", "json"]).await;
        let doc = plan.json();
        (!ops_of(&doc, "operations", "delete_user").is_empty()).then_some(())
    })
    .await;
    let run = fx.run(&["sync"]).await;
    run.expect(0).assert_mentions("grace period has passed");
    assert!(fx.admin.user(&bob).await.is_none(), "bob is deleted");
    assert_eq!(fx.admin.status_with_key(&key, "/v1/models").await, 401);
    assert!(fx.admin.user(&fx.uid("alice")).await.is_some());
}
