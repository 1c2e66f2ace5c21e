//! More users than two `/user/list` pages: everything is created, a second run writes nothing, and a listing
//! whose pages shift under it (a user created or deleted between page fetches) still sees every user.

use axum::http::Method;
use serde_json::{json, Value};

use crate::support::{Fault, FaultProxy, Fixture, Hook};

const USERS: usize = 260;

const RULES: &str = r#"
[[rules]]
name = "staff"
match = { groups = ["staff"] }
max_budget = 25.0
budget_duration = "30d"
models = ["gpt-4o"]
tpm_limit = 1000
rpm_limit = 60
max_parallel_requests = 4
metadata = { department = "staff" }

[defaults]
role = "internal_user"
max_budget = 10.0
metadata = { managed = true }
"#;

fn users(fx: &Fixture) -> Value {
    let users: Vec<Value> = (0..USERS)
        .map(|i| json!({"id": format!("id-{i:03}"), "user_name": format!("u{i:03}"), "email": fx.email(&format!("u{i:03}"))}))
        .collect();
    let staff: Vec<String> = (0..USERS).step_by(2).map(|i| format!("id-{i:03}")).collect();
    json!({"users": users, "groups": [{"id": "staff", "members": staff}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_users_then_nothing_to_do() {
    // Ids that sort before every other user in LiteLLM, so that this test knows where the page boundaries fall.
    let mut fx = Fixture::with_prefix("scale", "0-t-scale-").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    fx.write_config(&proxy.url(), "", RULES);
    fx.write_users(&users(&fx));

    let run = fx.run(&["sync"]).await;
    run.expect(0).assert_mentions(&format!("Plan: {USERS} to create"));
    let rows = fx.admin.users(&fx.prefix()).await;
    assert_eq!(rows.len(), USERS, "every user exists, once");
    for row in &rows {
        let id = row["user_id"].as_str().unwrap();
        let n: usize = id.trim_start_matches(&format!("{}u", fx.prefix())).parse().unwrap();
        let want = if n.is_multiple_of(2) { 25.0 } else { 10.0 };
        assert_eq!(row["max_budget"].as_f64(), Some(want), "{row}");
        assert_eq!(row["metadata"]["litellm_sync"]["external_id"], format!("id-{n:03}"), "{row}");
    }

    fx.quiet().await;
    fx.run(&["plan"])
        .await
        .expect(0)
        .assert_mentions(&format!("No changes: LiteLLM is in sync ({USERS} managed users)"));
    proxy.reset_log();
    fx.run(&["sync"]).await.expect(0);
    assert_eq!(proxy.writes(), Vec::<String>::new(), "an idempotent second sync makes zero POSTs");
    assert!(proxy.count(Method::GET, "/user/list") >= 3, "the listing took several pages");

    // Pages that shift: right after the first page was read, a foreign user that sorts before all of ours
    // appears (page 2 then repeats our 100th user), then disappears (page 2 would skip it). A listing that
    // trusted page boundaries would create that user again.
    let foreign = format!("{}0-foreign", fx.prefix());
    let query = [("page", "1"), ("page_size", "100"), ("sort_by", "user_id"), ("sort_order", "asc")];
    let (_, first) = fx.admin.get("/user/list", &query).await;
    let first: Vec<&str> = first["users"].as_array().unwrap().iter().filter_map(|u| u["user_id"].as_str()).collect();
    assert_eq!(
        (first.first().copied(), first.last().copied()),
        (Some(fx.uid("u000").as_str()), Some(fx.uid("u099").as_str())),
        "the test's premise: LiteLLM's first page is our first 100 users"
    );
    for hook in
        [Hook::CreateUser(json!({"user_id": foreign, "auto_create_key": false})), Hook::DeleteUser(foreign.clone())]
    {
        proxy.reset_log();
        proxy.inject(Some(Method::GET), "/user/list", 1, Fault::After(hook.clone()));
        let run = fx.run(&["sync"]).await;
        proxy.assert_faults_used(&run);
        run.expect(0);
        assert_eq!(
            proxy.writes(),
            Vec::<String>::new(),
            "pages shifted by {hook:?}: still nothing to write\n{}",
            run.dump()
        );
    }
    assert!(fx.admin.user(&foreign).await.is_none());
    assert_eq!(fx.admin.users(&fx.prefix()).await.len(), USERS);
}
