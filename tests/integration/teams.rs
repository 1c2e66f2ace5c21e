//! Group → team: the rule creates the team and its memberships; leaving the group removes the membership on the
//! next sync, while members litellm-sync does not manage (`default_user_id`, people added by hand) stay.

use axum::http::Method;
use serde_json::{json, Value};

use crate::support::admin::marker_source;
use crate::support::{ops_of, FaultProxy, Fixture};

fn rules(fx: &Fixture) -> String {
    format!(
        r#"
[[rules]]
name = "eng-team"
match = {{ groups = ["engineering"] }}
max_budget = 40.0
team = {{ id = "{prefix}{{group_name}}", member_role = "user", max_budget = 500.0 }}

[defaults]
max_budget = 5.0
"#,
        prefix = fx.prefix()
    )
}

fn users(fx: &Fixture, members: &[&str]) -> Value {
    let names = ["alice", "bob", "carol", "dave"];
    let users: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"id": (i + 1).to_string(), "user_name": n, "email": fx.email(n)}))
        .collect();
    let ids: Vec<String> =
        members.iter().map(|m| (names.iter().position(|n| n == m).expect("known name") + 1).to_string()).collect();
    json!({"users": users, "groups": [{"id": "g-eng", "name": "engineering", "members": ids}]})
}

fn roster(members: &[(String, String)]) -> Vec<String> {
    members.iter().map(|(id, role)| format!("{id}:{role}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_membership_follows_the_source() {
    let mut fx = Fixture::new("teams").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let team = fx.uid("engineering");
    fx.write_config(&proxy.url(), "", &rules(&fx));
    fx.write_users(&users(&fx, &["alice", "bob", "carol"]));

    fx.run(&["sync"]).await.expect(0);
    let t = fx.admin.team(&team).await.expect("the rule's team exists");
    assert_eq!(marker_source(&t), Some(fx.source.as_str()), "{t}");
    assert_eq!(t["max_budget"], 500.0, "{t}");
    assert_eq!(t["team_alias"], "engineering", "{t}");
    let mut want = vec![
        format!("{}:user", fx.uid("alice")),
        format!("{}:user", fx.uid("bob")),
        format!("{}:user", fx.uid("carol")),
        "default_user_id:admin".to_string(),
    ];
    want.sort();
    assert_eq!(roster(&fx.admin.members(&team).await), want);
    assert_eq!(fx.admin.must_user(&fx.uid("alice")).await["max_budget"], 40.0);

    // Someone adds an unmanaged user to the team by hand.
    let zed = fx.uid("zed");
    fx.admin.create_user(json!({"user_id": zed, "auto_create_key": false})).await;
    fx.admin.add_member(&team, &zed).await;

    // Bob leaves the group (he stays in the directory): his membership, and only his, is removed.
    fx.quiet().await;
    fx.write_users(&users(&fx, &["alice", "carol"]));
    let plan = fx.run(&["plan", "--output", "json"]).await;
    plan.expect(2);
    let doc = plan.json();
    let removes = ops_of(&doc, "operations", "remove_member");
    assert_eq!(removes.len(), 1, "{}", plan.stdout);
    assert_eq!(removes[0]["user_id"], fx.uid("bob").as_str());
    assert_eq!(removes[0]["team_id"], team.as_str());
    proxy.reset_log();
    fx.run(&["sync"]).await.expect(0);
    assert_eq!(proxy.count(Method::POST, "/team/member_delete"), 1, "{:?}", proxy.writes());
    let mut want = vec![
        format!("{}:user", fx.uid("alice")),
        format!("{}:user", fx.uid("carol")),
        format!("{zed}:user"),
        "default_user_id:admin".to_string(),
    ];
    want.sort();
    assert_eq!(roster(&fx.admin.members(&team).await), want, "zed and default_user_id stay");
    let bob = fx.admin.must_user(&fx.uid("bob")).await;
    assert_eq!(bob["max_budget"], 5.0, "bob falls back to the defaults: {bob}");
    assert_eq!(fx.admin.must_user(&zed).await["metadata"].get("litellm_sync"), None, "zed is not adopted");
    fx.run(&["plan"]).await.expect(0);
    fx.shared().await;

    // Dave joins: created and added in the same run.
    fx.write_users(&users(&fx, &["alice", "carol", "dave"]));
    fx.run(&["sync"]).await.expect(0);
    let members = roster(&fx.admin.members(&team).await);
    assert!(members.contains(&format!("{}:user", fx.uid("dave"))), "{members:?}");
    assert_eq!(members.len(), 5, "{members:?}");
}
