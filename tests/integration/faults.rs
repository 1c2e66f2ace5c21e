//! LiteLLM misbehaving: 5xx bursts longer than one retry, 429 with `Retry-After`, answers that arrive after the
//! client's timeout (while the write did land). The sync must still finish with exit 0, no duplicate users or
//! keys, and every change present; a LiteLLM that stays down must fail the run cleanly without writing.

use std::time::Duration;

use axum::http::Method;
use serde_json::{json, Value};

use crate::support::admin::marker_source;
use crate::support::{staff_rules, Fault, FaultProxy, Fixture};

// The timeout is short, but leaves a loaded LiteLLM time to list a page of users (the test runs alone: quiet).
const LITELLM: &str = r#"
timeout = "3s"
initial_backoff = "50ms"
max_backoff = "500ms"
max_retries = 8
"#;

/// Longer than the client's timeout: the write lands, the client never hears of it.
const DELAY: Duration = Duration::from_secs(5);

const NAMES: [&str; 5] = ["u0", "u1", "u2", "u3", "u4"];

fn users(fx: &Fixture, u0_active: bool, u1_budget: f64) -> Value {
    let users: Vec<Value> = NAMES
        .iter()
        .map(|n| {
            let mut u = json!({"id": format!("id-{n}"), "user_name": n, "email": fx.email(n)});
            if *n == "u0" {
                u["active"] = json!(u0_active);
            }
            if *n == "u1" {
                u["overrides"] = json!({ "max_budget": u1_budget });
            }
            u
        })
        .collect();
    let ids: Vec<String> = NAMES.iter().map(|n| format!("id-{n}")).collect();
    json!({"users": users, "groups": [{"id": "staff", "members": ids}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_survives_errors_rate_limits_and_timeouts() {
    let mut fx = Fixture::new("faults").await;
    fx.quiet().await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let team = fx.uid("staff");
    fx.write_config(&proxy.url(), LITELLM, &staff_rules(&fx));
    fx.write_users(&users(&fx, true, 10.0));

    proxy.inject(None, "", 4, Fault::Status(500));
    proxy.inject(Some(Method::GET), "/user/list", 1, Fault::RateLimit { retry_after_secs: 1 });
    proxy.inject(Some(Method::POST), "/team/new", 1, Fault::ForwardThenStatus(503));
    proxy.inject(Some(Method::POST), "/management/v1/users/bulk", 1, Fault::DelayAnswer(DELAY));
    // The first member_add lands but the client sees a 500: the retry is told "already in team".
    proxy.inject(Some(Method::POST), "/team/member_add", 1, Fault::ForwardThenStatus(500));
    proxy.inject(Some(Method::POST), "/team/member_add", 1, Fault::Status(503));
    let run = fx.run(&["sync"]).await;
    proxy.assert_faults_used(&run);
    run.expect(0);

    // Retry-After was honoured: the same page was asked for again at least a second after the 429.
    let log = proxy.log();
    let i = log
        .iter()
        .position(|e| e.fault.as_deref().is_some_and(|f| f.starts_with("RateLimit")))
        .expect("the 429 was answered");
    assert_eq!(log[i].status, 429);
    let next = log[i + 1..]
        .iter()
        .find(|e| e.method == Method::GET && e.path == "/user/list" && e.query == log[i].query)
        .expect("a retry of the rate-limited page");
    assert!(
        next.at.duration_since(log[i].at) >= Duration::from_millis(950),
        "retried {:?} after a 429 with Retry-After: 1",
        next.at.duration_since(log[i].at)
    );

    let rows = fx.admin.users(&fx.prefix()).await;
    let ids: Vec<&str> = rows.iter().filter_map(|u| u["user_id"].as_str()).collect();
    let want: Vec<String> = NAMES.iter().map(|n| fx.uid(n)).collect();
    assert_eq!(ids, want, "every user, exactly once");
    for row in &rows {
        assert_eq!(marker_source(row), Some(fx.source.as_str()), "{row}");
        assert_eq!(row["max_budget"], 10.0, "{row}");
        let keys = fx.admin.keys(row["user_id"].as_str().unwrap()).await;
        assert_eq!(keys.len(), 1, "no duplicate keys from the timed-out bulk create: {keys:?}");
    }
    let t = fx.admin.team(&team).await.expect("the team exists");
    assert_eq!(marker_source(&t), Some(fx.source.as_str()), "{t}");
    let members = fx.admin.members(&team).await;
    for n in NAMES {
        assert!(members.iter().any(|(id, _)| *id == fx.uid(n)), "{n} is in the team: {members:?}");
    }

    // Updates and deactivations under faults: blocking keys fails twice, listing keys once, and the update's
    // answer arrives after the timeout.
    fx.write_users(&users(&fx, false, 30.0));
    proxy.reset_log();
    proxy.inject(Some(Method::GET), "/key/list", 1, Fault::Status(502));
    proxy.inject(Some(Method::POST), "/key/block", 2, Fault::Status(500));
    proxy.inject(Some(Method::POST), "/user/update", 1, Fault::DelayAnswer(DELAY));
    let run = fx.run(&["sync"]).await;
    proxy.assert_faults_used(&run);
    run.expect(0);
    let u0 = fx.admin.must_user(&fx.uid("u0")).await;
    assert_eq!(u0["metadata"]["scim_active"], false, "{u0}");
    for k in fx.admin.keys(&fx.uid("u0")).await {
        assert_eq!(k["blocked"], true, "{k}");
    }
    assert_eq!(fx.admin.must_user(&fx.uid("u1")).await["max_budget"], 30.0);
    assert_eq!(fx.admin.users(&fx.prefix()).await.len(), NAMES.len());

    // Deletions whose answers are lost: the bulk delete lands but answers 500, and the retry finds the users gone.
    fx.write_config(&proxy.url(), LITELLM, &format!("{}\n[safety]\ndeprovision = \"delete\"\n", staff_rules(&fx)));
    let mut remaining = users(&fx, false, 30.0);
    remaining["users"].as_array_mut().unwrap().retain(|u| u["user_name"] != "u3" && u["user_name"] != "u4");
    remaining["groups"][0]["members"].as_array_mut().unwrap().retain(|m| m != "id-u3" && m != "id-u4");
    fx.write_users(&remaining);
    proxy.reset_log();
    proxy.inject(Some(Method::POST), "/management/v1/users/bulk_delete", 1, Fault::ForwardThenStatus(500));
    let run = fx.run(&["sync", "--allow-deletions"]).await;
    proxy.assert_faults_used(&run);
    run.expect(0);
    let mut left = fx.admin.user_ids(&fx.prefix()).await;
    left.sort();
    assert_eq!(left, vec![fx.uid("u1"), fx.uid("u2")], "u0 (disabled), u3 and u4 (gone) are deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_that_stays_down_fails_the_run_without_writes() {
    let fx = Fixture::new("down").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    fx.write_config(&proxy.url(), "max_retries = 2\ninitial_backoff = \"50ms\"", "[defaults]\nmax_budget = 1.0\n");
    fx.write_users(&json!({"users": [{"id": "1", "user_name": "alice"}]}));
    proxy.inject(None, "", 1000, Fault::Status(503));

    let run = fx.run(&["sync"]).await;
    run.expect(1).assert_mentions("503");
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());
    // Retried, and only as often as configured: 1 + max_retries attempts at most per request.
    let log = proxy.log();
    let most = ["/user/list", "/v2/team/list"].iter().map(|p| log.iter().filter(|e| e.path == *p).count()).max();
    assert_eq!(most, Some(3), "{log:?}");
    assert!(fx.admin.user(&fx.uid("alice")).await.is_none());
}
