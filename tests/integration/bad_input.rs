//! Bad input gets a clear error and changes nothing: a malformed configuration names every problem with its key
//! path before any request is made; a broken source file fails the run without a single write (and without
//! deprovisioning anybody); a LiteLLM that answers something other than JSON stops the run before it writes.

use axum::http::Method;
use serde_json::{json, Value};

use crate::support::{Fault, FaultProxy, Fixture, Run};

/// Panics unless one line of the output names `path` and contains every one of `words`.
#[track_caller]
fn assert_problem(run: &Run, path: &str, words: &[&str]) {
    let all = run.all();
    let found = all.lines().any(|l| l.contains(path) && words.iter().all(|w| l.contains(w)));
    assert!(found, "no line names {path:?} with {words:?}\n{}", run.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_config_lists_every_problem() {
    let fx = Fixture::new("bad-config").await;
    fx.write_raw_config(
        r#"
[litellm]
url = "ftp://litellm.example"
api_key = "sk-whatever"
timeout = "soon"
concurrency = 0

[[sources]]
name = "Bad Name"
type = "file"
path = "/nonexistent/users.yaml"

[[sources]]
name = "second"
path = "users.yaml"

[[rules]]
name = "r1"
match = { groups = ["g"] }
budget_duration = "2mo"

[safety]
max_deletions_percent = 150

[colour]
x = 1
"#,
    );
    for cmd in ["check-config", "plan", "sync"] {
        let run = fx.run(&[cmd]).await;
        run.expect(1);
        assert_problem(&run, "litellm.url", &["ftp://litellm.example"]);
        assert_problem(&run, "litellm.timeout", &["soon"]);
        assert_problem(&run, "litellm.concurrency", &["0"]);
        assert_problem(&run, "sources[0].name", &["Bad Name"]);
        assert_problem(&run, "sources[1].type", &["required"]);
        assert_problem(&run, "rules[0].budget_duration", &["2mo"]);
        assert_problem(&run, "safety.max_deletions_percent", &["150"]);
        assert_problem(&run, "colour", &["unknown section"]);
        assert!(!run.all().contains("sk-whatever"), "the API key is never echoed\n{}", run.dump());
    }
}

/// A config that is wrong in one place, with LiteLLM behind the proxy: exit 1, the problem named, and not one
/// request made.
async fn assert_rejected_before_any_request(name: &str, rest: &str, path: &str, words: &[&str]) {
    let fx = Fixture::new(name).await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    fx.write_config(&proxy.url(), "", rest);
    fx.write_users(
        &json!({"users": [{"id": "1", "user_name": "alice", "groups": ["staff"]}], "groups": [{"id": "staff"}]}),
    );
    for cmd in ["check-config", "plan", "sync"] {
        let run = fx.run(&[cmd]).await;
        run.expect(1);
        assert_problem(&run, path, words);
    }
    assert_eq!(proxy.log().len(), 0, "no request reaches LiteLLM with a bad configuration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_rule_key_is_named() {
    let rest = r#"
[[rules]]
name = "staff"
match = { groups = ["staff"] }
max_budjet = 5.0
"#;
    assert_rejected_before_any_request("bad-rulekey", rest, "rules[0]", &["max_budjet"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_budget_duration_is_named() {
    let rest = r#"
[[rules]]
name = "staff"
match = { groups = ["staff"] }
max_budget = 5.0
budget_duration = "2mo"
"#;
    assert_rejected_before_any_request("bad-duration", rest, "rules[0].budget_duration", &["2mo", "1mo"]).await;
    let rest = "[defaults]\nbudget_duration = \"2mo\"\n";
    assert_rejected_before_any_request("bad-duration-defaults", rest, "defaults.budget_duration", &["2mo"]).await;
}

fn two_users(fx: &Fixture) -> Value {
    json!({"users": [
        {"id": "1", "user_name": "alice", "email": fx.email("alice")},
        {"id": "2", "user_name": "bob", "email": fx.email("bob")},
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_source_file_fails_without_writes() {
    let fx = Fixture::new("bad-source").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    fx.write_config(&proxy.url(), "", "[defaults]\nmax_budget = 3.0\n");

    // Duplicate ids (and a bad override) in a fresh source: nothing is created.
    let broken = json!({"users": [
        {"id": "1", "user_name": "alice"},
        {"id": "1", "user_name": "bob"},
        {"id": "3", "user_name": "carol", "overrides": {"budget_duration": "2mo"}},
    ]});
    fx.write_users(&broken);
    for cmd in ["plan", "sync", "check-config"] {
        let run = fx.run(&[cmd]).await;
        run.expect(1);
        assert_problem(&run, "users[1].id", &["duplicate user id", "\"1\""]);
        assert_problem(&run, "users[2].overrides.budget_duration", &["2mo"]);
        assert_problem(&run, &fx.source, &["users.yaml"]);
    }
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());
    assert!(fx.admin.user_ids(&fx.prefix()).await.is_empty());

    // Users that exist already are not deprovisioned because the file broke.
    fx.write_users(&two_users(&fx));
    fx.run(&["sync"]).await.expect(0);
    assert_eq!(fx.admin.user_ids(&fx.prefix()).await.len(), 2);
    fx.write_users(&broken);
    proxy.reset_log();
    fx.run(&["sync"]).await.expect(1);
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());
    for id in fx.admin.user_ids(&fx.prefix()).await {
        assert_ne!(fx.admin.must_user(&id).await["metadata"]["scim_active"], false, "{id} must stay active");
    }
    // A missing file is a failed read too.
    std::fs::remove_file(fx.path("users.yaml")).unwrap();
    fx.run(&["sync"]).await.expect(1).assert_mentions("users.yaml");
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_answering_garbage_stops_the_run() {
    let fx = Fixture::new("bad-litellm").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    fx.write_config(&proxy.url(), "initial_backoff = \"50ms\"", "[defaults]\nmax_budget = 3.0\n");
    fx.write_users(&two_users(&fx));
    proxy.inject(Some(Method::GET), "/user/list", 1000, Fault::Garbage);

    for cmd in ["sync", "plan"] {
        let run = fx.run(&[cmd]).await;
        run.expect(1).assert_mentions("user/list").assert_mentions("<html>");
    }
    let run = fx.run(&["check-config"]).await;
    run.expect(1).assert_mentions("✗ LiteLLM");
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());
    assert!(fx.admin.user_ids(&fx.prefix()).await.is_empty());

    // The same for the team listing.
    proxy.clear_faults();
    proxy.inject(Some(Method::GET), "/v2/team/list", 1000, Fault::Garbage);
    fx.run(&["sync"]).await.expect(1).assert_mentions("team/list");
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());
}
