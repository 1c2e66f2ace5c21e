//! The command line's contract: `sync --dry-run` runs everything but the writes, `plan` exits 2 when changes are
//! pending and 0 when LiteLLM is in sync, and `check-config` reaches the real LiteLLM (exit 0) or names why not.

use axum::http::Method;
use serde_json::{json, Value};

use crate::support::{staff_rules, FaultProxy, Fixture};

fn users(fx: &Fixture, alice_active: bool, bob_budget: f64) -> Value {
    json!({
        "users": [
            {"id": "1", "user_name": "alice", "email": fx.email("alice"), "active": alice_active},
            {"id": "2", "user_name": "bob", "email": fx.email("bob"), "overrides": {"max_budget": bob_budget}},
            {"id": "3", "user_name": "carol", "email": fx.email("Carol")},
        ],
        "groups": [{"id": "staff", "members": ["1", "2", "3"]}],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing_and_plan_exit_codes() {
    let mut fx = Fixture::new("dryrun").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    fx.write_config(&proxy.url(), "", &staff_rules(&fx));
    fx.write_users(&users(&fx, true, 10.0));

    // Creates pending: plan says so (exit 2), the dry run goes through everything and writes nothing.
    let plan = fx.run(&["plan", "--output", "json"]).await;
    plan.expect(2);
    assert_eq!(plan.json()["in_sync"], false);
    assert!(proxy.writes().is_empty(), "plan never writes: {:?}", proxy.writes());
    let run = fx.run(&["sync", "--dry-run"]).await;
    run.expect(0).assert_mentions("create user").assert_mentions("skipped (dry run)");
    assert!(proxy.writes().is_empty(), "a dry run makes zero POSTs: {:?}", proxy.writes());
    assert!(proxy.count(Method::GET, "/user/list") > 0, "but it does read LiteLLM");
    assert!(fx.admin.user_ids(&fx.prefix()).await.is_empty());
    assert!(fx.admin.team(&fx.uid("staff")).await.is_none());

    fx.run(&["sync"]).await.expect(0);
    assert_eq!(fx.admin.user_ids(&fx.prefix()).await.len(), 3);
    let carol = fx.admin.must_user(&fx.uid("carol")).await;
    assert_eq!(carol["user_email"], fx.email("carol"), "e-mail addresses are sent lower-cased: {carol}");
    fx.quiet().await;
    let plan = fx.run(&["plan", "--output", "json"]).await;
    plan.expect(0);
    assert_eq!(plan.json()["in_sync"], true, "{}", plan.stdout);
    fx.run(&["plan"]).await.expect(0).assert_mentions("No changes");

    // An update and a deactivation pending: exit 2; the dry run still writes nothing.
    fx.write_users(&users(&fx, false, 20.0));
    fx.run(&["plan"]).await.expect(2).assert_mentions("deactivate user");
    let before: Vec<Value> = {
        let mut v = Vec::new();
        for n in ["alice", "bob", "carol"] {
            v.push(fx.admin.must_user(&fx.uid(n)).await);
        }
        v
    };
    proxy.reset_log();
    let run = fx.run(&["sync", "--dry-run", "--output", "json"]).await;
    run.expect(0);
    assert!(proxy.writes().is_empty(), "a dry run makes zero POSTs: {:?}", proxy.writes());
    let doc = run.json();
    let results = doc["results"].as_array().expect("results");
    assert!(!results.is_empty() && results.iter().all(|r| r["result"] == "skipped"), "{}", run.stdout);
    for (n, b) in ["alice", "bob", "carol"].iter().zip(&before) {
        assert_eq!(&fx.admin.must_user(&fx.uid(n)).await, b, "{n} is unchanged by a dry run");
    }
    for k in fx.admin.keys(&fx.uid("alice")).await {
        assert_ne!(k["blocked"], true, "{k}");
    }
    fx.run(&["plan"]).await.expect(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_reaches_litellm_or_says_why_not() {
    let fx = Fixture::new("check").await;
    fx.write_users(&json!({"users": [{"id": "1", "user_name": "alice"}]}));

    fx.write_config(&fx.url, "", "");
    let run = fx.run(&["check-config"]).await;
    run.expect(0).assert_mentions("configuration is valid").assert_mentions("key accepted");
    assert_eq!(fx.admin.user(&fx.uid("alice")).await, None, "check-config writes nothing");

    // A wrong key: exit 1, naming LiteLLM's refusal and what the key must be.
    fx.write_config_with_key(&fx.url, "sk-wrong-key", "max_retries = 0", "");
    let run = fx.run(&["check-config"]).await;
    run.expect(1).assert_mentions("✗ LiteLLM").assert_mentions("401").assert_mentions("master key");
    assert!(!run.all().contains("sk-wrong-key"), "the key is never echoed\n{}", run.dump());
    fx.run(&["sync"]).await.expect(1).assert_mentions("401");

    // Nothing listening: exit 1, naming the connection failure.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    fx.write_config(&format!("http://{closed}"), "max_retries = 1\ninitial_backoff = \"50ms\"", "");
    let run = fx.run(&["check-config"]).await;
    run.expect(1).assert_mentions("✗ LiteLLM").assert_mentions("is the URL right");

    // A source that cannot be read: exit 1, naming the source.
    fx.write_config(&fx.url, "", "");
    std::fs::remove_file(fx.path("users.yaml")).unwrap();
    let run = fx.run(&["check-config"]).await;
    run.expect(1).assert_mentions(&format!("✗ source \"{}\"", fx.source));
}
