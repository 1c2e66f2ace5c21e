//! What a run must not pay for, counted at the fault proxy in front of the real LiteLLM: a first provisioning on
//! a LiteLLM litellm-sync never wrote to lists no users (the anchor team says so) and still converges when the
//! optimistic creates hit existing users; a no-op `sync` with a store lists nothing; a change to a few users
//! costs those writes plus the reads that confirm them. (The timings themselves are in `cargo bench --bench
//! provision`; tests never fail on time.)

use axum::http::Method;
use serde_json::{json, Value};

use crate::support::{Fault, FaultProxy, Fixture};

fn users(fx: &Fixture, n: usize, budget: f64) -> Value {
    let users: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("id-{i:03}"), "user_name": format!("p{i:03}"), "email": fx.email(&format!("p{i:03}")),
                   "overrides": {"max_budget": budget}})
        })
        .collect();
    json!({ "users": users })
}

fn store(fx: &Fixture) -> String {
    format!("[store]\npath = \"{}\"\n", fx.path("state.db").display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_first_provisioning_of_a_fresh_litellm_lists_no_users() {
    let fx = Fixture::new("perf-fresh").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    // This LiteLLM looks like one litellm-sync never wrote to: the anchor team is hidden from team listings.
    proxy.inject(Some(Method::GET), "/v2/team/list", 1000, Fault::HideTeam("litellm-sync".into()));
    fx.write_config(&proxy.url(), "", &store(&fx));
    fx.write_users(&users(&fx, 30, 7.0));
    // Someone made one of the desired users by hand: the optimistic bulk create finds it and leaves it alone.
    let taken = fx.uid("p007");
    fx.admin.create_user(json!({"user_id": taken, "max_budget": 1.0, "auto_create_key": false})).await;

    let run = fx.run(&["sync"]).await;
    run.expect(1).assert_mentions("Planned without listing").assert_mentions("not managed by litellm-sync");
    assert_eq!(proxy.count(Method::GET, "/user/list"), 0, "no user listing, no re-check: {:?}", proxy.writes());
    assert!(proxy.count(Method::POST, "/management/v1/users/bulk") >= 1, "{:?}", proxy.writes());
    let rows = fx.admin.users(&fx.prefix()).await;
    assert_eq!(rows.len(), 30, "29 created once, the hand-made one not duplicated");
    let hand = rows.iter().find(|u| u["user_id"] == taken.as_str()).expect("the hand-made user");
    assert_eq!((hand["max_budget"].clone(), hand["metadata"].get("litellm_sync")), (json!(1.0), None), "{hand}");

    // The next run plans against the ledger, which learnt the id is taken: a note, nothing to write.
    proxy.reset_log();
    fx.run(&["sync"]).await.expect(0).assert_mentions("not managed by litellm-sync");
    assert!(proxy.writes().is_empty(), "converged: {:?}", proxy.writes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_a_sync_with_a_store_lists_nothing_and_writes_only_the_change() {
    let fx = Fixture::new("perf-store").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    fx.write_config(&proxy.url(), "", &store(&fx));
    fx.write_users(&users(&fx, 150, 7.0));
    fx.run(&["sync"]).await.expect(0);

    // No change: no listing (the ledger knows what was applied), no write.
    proxy.reset_log();
    fx.run(&["sync"]).await.expect(0).assert_mentions("Planned against the store's ledger");
    assert_eq!(proxy.count(Method::GET, "/user/list"), 0, "a no-op sync with a store lists nothing");
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());
    let plan = fx.run(&["plan", "--output", "json"]).await;
    plan.expect(0);
    assert_eq!(plan.json()["basis"], "ledger");

    // 5 budgets change: 5 updates, confirmed by one exact read of those 5 (not a listing).
    let mut changed = users(&fx, 150, 7.0);
    for u in changed["users"].as_array_mut().into_iter().flatten().take(5) {
        u["overrides"] = json!({"max_budget": 9.0});
    }
    fx.write_users(&changed);
    proxy.reset_log();
    fx.run(&["sync"]).await.expect(0);
    assert_eq!(proxy.count(Method::POST, "/user/update"), 5, "{:?}", proxy.writes());
    assert_eq!(proxy.writes().len(), 5, "{:?}", proxy.writes());
    let reads: Vec<String> = proxy.log().iter().filter(|e| e.method == Method::GET).map(|e| e.path.clone()).collect();
    assert!(reads.len() <= 3, "confirmation reads only: {reads:?}");
    assert_eq!(fx.admin.must_user(&fx.uid("p000")).await["max_budget"], 9.0);

    // --refresh lists LiteLLM and replaces the ledger.
    proxy.reset_log();
    fx.run(&["plan", "--refresh"]).await.expect(0).assert_mentions("fresh listing");
    assert!(proxy.count(Method::GET, "/user/list") >= 1);
}

/// The ledger stands for one LiteLLM: a store whose ledger was built through one URL, then pointed at another, is
/// listed again instead of trusted (otherwise a user missing there would never be created).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_a_store_pointed_at_another_litellm_lists_it_again() {
    let fx = Fixture::new("perf-moved").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    fx.write_config(&proxy.url(), "", &store(&fx));
    fx.write_users(&users(&fx, 3, 7.0));
    fx.run(&["sync"]).await.expect(0);
    assert_eq!(fx.admin.user_ids(&fx.prefix()).await.len(), 3);

    // The "other" LiteLLM lacks one of the users (here: the same proxy reached by another URL, the user removed).
    fx.admin.delete_users(&[fx.uid("p001")]).await;
    fx.write_config(&fx.url, "", &store(&fx));
    let run = fx.run(&["sync"]).await;
    run.expect(0).assert_mentions("fresh listing");
    assert_eq!(fx.admin.user_ids(&fx.prefix()).await.len(), 3, "the missing user is created again");
    // From then on the ledger is this URL's: a no-op again.
    fx.run(&["sync"]).await.expect(0).assert_mentions("Planned against the store's ledger");
}
