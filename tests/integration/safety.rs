//! Never harm what litellm-sync does not own, against the real LiteLLM: the safety limit (deactivations, deletions
//! and team member removals, which delete the member's team keys), `user_id` collisions, operations whose
//! prerequisite failed, teams someone else made, re-entrant deactivation, approvals, non-ASCII groups, a refused
//! member among many, a team two sources feed, minted keys, and the smaller checks. One test per class of harm,
//! named after it; each failed on the build before the fix (`LITELLM_SYNC_TEST_BIN` runs them against another).
//! Over 600 lines: one test per class of harm, kept together so the list above is the whole safety contract.

use std::time::Duration;

use axum::http::Method;
use serde_json::{json, Value};

use crate::support::admin::marker_source;
use crate::support::daemon::{daemon_config_with, Daemon};
use crate::support::{eventually, free_port, ops_of, Fault, FaultProxy, Fixture, Hook};

const RULES: &str = r#"
[defaults]
max_budget = 10.0

[safety]
max_deletions = 10
max_deletions_percent = 10
"#;

fn numbered(fx: &Fixture, keep: usize) -> Value {
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
    let mut fx = Fixture::new("safety-mass").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    fx.write_config(&proxy.url(), "", RULES);
    fx.write_users(&numbered(&fx, 20));
    fx.run(&["sync"]).await.expect(0);
    assert_eq!(fx.admin.users(&fx.prefix()).await.len(), 20);

    // 3 of 20 is within max_deletions but above 10 %: held.
    fx.write_users(&numbered(&fx, 17));
    proxy.reset_log();
    let run = fx.run(&["sync", "--output", "json"]).await;
    run.expect(3);
    let doc = run.json();
    assert_eq!(held_ids(&doc).len(), 3, "{}", run.stdout);
    assert!(doc["hold_reason"].as_str().is_some_and(|r| r.contains("max_deletions_percent")), "{}", run.stdout);
    assert!(deactivated(&fx).await.is_empty(), "nothing was deactivated");
    assert_eq!(proxy.count(Method::POST, "/user/update"), 0, "{:?}", proxy.writes());

    // 15 of 20 is above max_deletions: held, listed, and nothing destructive reaches LiteLLM.
    fx.write_users(&numbered(&fx, 5));
    let want: Vec<String> = (5..20).map(|i| fx.uid(&format!("u{i:02}"))).collect();
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
    assert_eq!(fx.admin.users(&fx.prefix()).await.len(), 20, "deactivated, not deleted");
    fx.quiet().await;
    fx.run(&["plan"]).await.expect(0);
}

/// A team whose members each hold a key of the team: removals delete those keys.
fn team_users(fx: &Fixture, all: usize, in_group: usize) -> Value {
    let users: Vec<Value> = (0..all)
        .map(|i| json!({"id": format!("id-{i:02}"), "user_name": format!("m{i:02}"), "email": fx.email(&format!("m{i:02}"))}))
        .collect();
    let members: Vec<String> = (0..in_group).map(|i| format!("id-{i:02}")).collect();
    json!({"users": users, "groups": [{"id": "g-eng", "name": "eng", "members": members}]})
}

fn team_rules(fx: &Fixture) -> String {
    format!(
        r#"
[[rules]]
name = "eng"
match = {{ groups = ["eng"] }}
team = {{ id = "{prefix}{{group_name}}" }}

[defaults]
max_budget = 10.0

[safety]
max_deletions = 10
max_deletions_percent = 10
"#,
        prefix = fx.prefix()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_member_removals_are_held_and_an_empty_group_is_doubt() {
    let fx = Fixture::new("safety-members").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let team = fx.uid("eng");
    fx.write_config(&proxy.url(), "", &team_rules(&fx));
    fx.write_users(&team_users(&fx, 20, 20));
    fx.run(&["sync"]).await.expect(0);
    for i in 0..20 {
        let id = fx.uid(&format!("m{i:02}"));
        fx.admin.generate_team_key(&id, &team, &format!("{id}-team")).await;
    }
    let keys = |fx: &Fixture| {
        let (fx, team) = (fx.admin.clone(), team.clone());
        let ids: Vec<String> = (0..20).map(|i| format!("t-safety-members-m{i:02}")).collect();
        async move {
            let mut n = 0;
            for id in &ids {
                n += fx.team_keys(id, &team).await.len();
            }
            n
        }
    };
    assert_eq!(keys(&fx).await, 20);

    // The group suddenly reads with no members: doubt. Nobody is removed, no key is lost, and the run fails.
    fx.write_users(&team_users(&fx, 20, 0));
    proxy.reset_log();
    let run = fx.run(&["sync"]).await;
    run.expect(1).assert_mentions("read with no members");
    assert_eq!(proxy.count(Method::POST, "/team/member_delete"), 0, "{:?}", proxy.writes());
    assert_eq!(keys(&fx).await, 20, "every team key survives");

    // 5 of 20 leave: over 10 % of the team's managed members, held (exit 3); the plan says what each removal
    // costs.
    fx.write_users(&team_users(&fx, 20, 15));
    let plan = fx.run(&["plan", "--output", "json"]).await;
    plan.expect(2);
    let doc = plan.json();
    let held = ops_of(&doc, "held", "remove_member");
    assert_eq!(held.len(), 5, "{}", plan.stdout);
    assert!(held.iter().all(|o| o["team_keys"] == 1), "each removal deletes its member's one team key: {held:?}");
    fx.run(&["plan"]).await.expect(2).assert_mentions("deletes the 1 key(s) the member holds for the team");
    proxy.reset_log();
    fx.run(&["sync"]).await.expect(3).assert_mentions("5 member removals");
    assert_eq!(proxy.count(Method::POST, "/team/member_delete"), 0, "{:?}", proxy.writes());
    assert_eq!(keys(&fx).await, 20);

    // Approved: exactly those 5 go, with their team keys.
    fx.run(&["sync", "--allow-deletions"]).await.expect(0);
    assert_eq!(proxy.count(Method::POST, "/team/member_delete"), 5, "{:?}", proxy.writes());
    assert_eq!(keys(&fx).await, 15);
    assert_eq!(fx.admin.members(&team).await.iter().filter(|(id, _)| id.starts_with(&fx.prefix())).count(), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_user_id_collision_keeps_the_owner() {
    let fx = Fixture::new("safety-collide").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let alice = fx.uid("alice");
    fx.write_config(&proxy.url(), "", RULES);
    let owner = json!({"id": "id-owner", "user_name": "alice", "email": fx.email("alice")});
    fx.write_users(&json!({"users": [owner.clone()]}));
    fx.run(&["sync"]).await.expect(0);

    // A second record renders the same user_id (a recycled name), and sorts first in the file and by id.
    let newcomer = json!({"id": "id-a-newcomer", "user_name": "alice", "email": fx.email("alice2")});
    fx.write_users(&json!({"users": [newcomer, owner]}));
    proxy.reset_log();
    let run = fx.run(&["sync", "--output", "json"]).await;
    run.expect(1);
    let doc = run.json();
    assert_eq!(doc["collisions"].as_array().map(Vec::len), Some(1), "{}", run.stdout);
    assert_eq!(doc["collisions"][0]["claimant"]["external_id"], "id-a-newcomer");
    assert_eq!(doc["collisions"][0]["owner"]["external_id"], "id-owner");
    let a = fx.admin.must_user(&alice).await;
    assert_ne!(a["metadata"]["scim_active"], false, "the owner is not deactivated: {a}");
    assert_eq!(a["metadata"]["litellm_sync"]["external_id"], "id-owner", "{a}");
    assert_eq!(a["user_email"], fx.email("alice"), "the owner is not rewritten: {a}");
    assert!(proxy.writes().is_empty(), "nothing is written for either: {:?}", proxy.writes());
    fx.run(&["explain", "id-a-newcomer"]).await.expect(1).assert_mentions("already belongs to");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_a_refused_create_sends_no_membership() {
    let fx = Fixture::new("safety-prereq").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let (alice, bob) = (fx.uid("alice"), fx.uid("bob"));
    // Someone else's user already has bob's e-mail address: LiteLLM refuses to create bob.
    let squatter = fx.uid("squatter");
    fx.admin.create_user(json!({"user_id": squatter, "user_email": fx.email("bob"), "auto_create_key": false})).await;
    fx.write_config(&proxy.url(), "", &team_rules(&fx));
    fx.write_users(&json!({
        "users": [
            {"id": "1", "user_name": "alice", "email": fx.email("alice")},
            {"id": "2", "user_name": "bob", "email": fx.email("bob")},
        ],
        "groups": [{"id": "g-eng", "name": "eng", "members": ["1", "2"]}],
    }));
    let run = fx.run(&["sync", "--output", "json"]).await;
    run.expect(1);
    let results = run.json()["results"].clone();
    let bob_add = results
        .as_array()
        .and_then(|r| {
            r.iter().find(|x| x["op"] == "add_member" && x["target"].as_str().is_some_and(|t| t.ends_with(&bob)))
        })
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(bob_add["result"], "not_sent", "{}", run.stdout);
    assert!(fx.admin.user(&bob).await.is_none(), "no bare user was created as a side effect");
    let members: Vec<String> = fx.admin.members(&fx.uid("eng")).await.into_iter().map(|(id, _)| id).collect();
    assert!(members.contains(&alice) && !members.contains(&bob), "{members:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_a_team_someone_else_made_is_not_taken_over() {
    let fx = Fixture::new("safety-team-race").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let team = fx.uid("eng");
    fx.write_config(&proxy.url(), "", &team_rules(&fx));
    fx.write_users(&team_users(&fx, 2, 2));
    // Between the listing and the create, someone makes the team by hand.
    let by_hand = json!({"team_id": team, "team_alias": "hand-made", "max_budget": 1.0, "metadata": {"owner": "hand"}});
    proxy.inject(Some(Method::POST), "/team/new", 1, Fault::Before(Hook::CreateTeam(by_hand)));
    let run = fx.run(&["sync"]).await;
    proxy.assert_faults_used(&run);
    run.expect(1).assert_mentions("not managed by litellm-sync");
    let t = fx.admin.team(&team).await.expect("the hand-made team");
    assert_eq!(t["team_alias"], "hand-made", "{t}");
    assert_eq!(t["metadata"], json!({"owner": "hand"}), "{t}");
    assert_eq!(proxy.count(Method::POST, "/team/update"), 0, "{:?}", proxy.writes());
    assert_eq!(proxy.count(Method::POST, "/team/member_add"), 0, "nobody is added to a team that is not ours");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_deactivation_is_reentrant() {
    let fx = Fixture::new("safety-deact").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let alice = fx.uid("alice");
    fx.write_config(&proxy.url(), "max_retries = 0", RULES);
    let user = json!({"id": "1", "user_name": "alice", "email": fx.email("alice")});
    fx.write_users(&json!({"users": [user.clone(), {"id": "2", "user_name": "bob", "email": fx.email("bob")}]}));
    fx.run(&["sync"]).await.expect(0);
    let keys = [
        fx.admin.generate_key(&alice, &format!("{alice}-1")).await,
        fx.admin.generate_key(&alice, &format!("{alice}-2")).await,
    ];
    let works = |k: String| {
        let admin = fx.admin.clone();
        async move { admin.status_with_key(&k, "/v1/models").await == 200 }
    };
    assert!(works(keys[0].clone()).await);

    // alice leaves; the deactivation's metadata write fails once (after or before blocking, depending on the
    // order the build uses): the run fails.
    fx.write_users(&json!({"users": [{"id": "2", "user_name": "bob", "email": fx.email("bob")}], "groups": []}));
    proxy.inject(Some(Method::POST), "/user/update", 1, Fault::Status(500));
    let run = fx.run(&["sync", "--allow-deletions"]).await;
    proxy.assert_faults_used(&run);
    run.expect(1);
    // The next run completes the same deactivation.
    fx.run(&["sync", "--allow-deletions"]).await.expect(0);
    let a = fx.admin.must_user(&alice).await;
    assert_eq!(a["metadata"]["scim_active"], false, "{a}");
    let blocked: Vec<bool> = fx.admin.keys(&alice).await.iter().map(|k| k["blocked"] == true).collect();
    assert_eq!(blocked, vec![true, true], "every key blocked");
    let recorded = a["metadata"]["litellm_sync"]["blocked_keys"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(recorded, 2, "both keys recorded, so that reactivation unblocks them: {a}");

    // alice returns: both keys work again.
    fx.write_users(&json!({"users": [user, {"id": "2", "user_name": "bob", "email": fx.email("bob")}]}));
    fx.run(&["sync"]).await.expect(0);
    for k in keys {
        assert!(works(k).await, "a key blocked at deactivation works again after reactivation");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_non_ascii_groups_get_distinct_teams() {
    let fx = Fixture::new("safety-unicode").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    fx.write_config(
        &proxy.url(),
        "",
        &format!(
            r#"
[[rules]]
name = "teams"
match = {{ group_glob = "*" }}
team = {{ id = "{prefix}{{group_name}}" }}
"#,
            prefix = fx.prefix()
        ),
    );
    fx.write_users(&json!({
        "users": [
            {"id": "1", "user_name": "li", "email": fx.email("li")},
            {"id": "2", "user_name": "olga", "email": fx.email("olga")},
        ],
        "groups": [
            {"id": "g-rd", "name": "研发", "members": ["1"]},
            {"id": "g-sales", "name": "Продажи", "members": ["2"]},
        ],
    }));
    fx.run(&["sync"]).await.expect(0);
    let mut teams = fx.admin.team_ids(&fx.prefix()).await;
    teams.sort();
    assert_eq!(teams, vec![fx.uid("prodazhi"), fx.uid("yan-fa")], "two groups, two teams");
    let rd: Vec<String> = fx.admin.members(&fx.uid("yan-fa")).await.into_iter().map(|(id, _)| id).collect();
    assert!(rd.contains(&fx.uid("li")) && !rd.contains(&fx.uid("olga")), "members are not shared: {rd:?}");
    assert_eq!(fx.admin.team(&fx.uid("yan-fa")).await.expect("team")["team_alias"], "研发");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_one_refused_member_does_not_block_the_others() {
    let fx = Fixture::new("safety-admin").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let team = fx.uid("eng");
    // 19 engineers as team users, and a lead as the team's admin (refused: no Enterprise licence).
    fx.write_config(
        &proxy.url(),
        "",
        &format!(
            r#"
[[rules]]
name = "eng"
match = {{ groups = ["eng"] }}
team = {{ id = "{team}" }}

[[rules]]
name = "leads"
match = {{ groups = ["leads"] }}
team = {{ id = "{team}", member_role = "admin" }}
"#
        ),
    );
    let users: Vec<Value> = (0..20)
        .map(|i| json!({"id": format!("id-{i:02}"), "user_name": format!("e{i:02}"), "email": fx.email(&format!("e{i:02}"))}))
        .collect();
    let eng: Vec<String> = (1..20).map(|i| format!("id-{i:02}")).collect();
    fx.write_users(&json!({"users": users, "groups": [
        {"id": "g-eng", "name": "eng", "members": eng},
        {"id": "g-leads", "name": "leads", "members": ["id-00"]},
    ]}));
    let run = fx.run(&["sync"]).await;
    run.expect(1).assert_mentions("premium");
    let members: Vec<String> =
        fx.admin.members(&team).await.into_iter().map(|(id, _)| id).filter(|id| id.starts_with(&fx.prefix())).collect();
    assert_eq!(members.len(), 19, "the 19 user members are in, the refused admin is not: {members:?}");
    assert!(!members.contains(&fx.uid("e00")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_minted_keys_reach_the_key_file_exactly_once() {
    let fx = Fixture::new("safety-keys").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let keys_file = fx.path("keys/keys.jsonl");
    let rules = format!(
        r#"
[[rules]]
name = "staff"
match = {{ groups = ["staff"] }}
key = {{ alias = "{{user_id}}-key" }}

[keys]
path = "{}"
"#,
        keys_file.display()
    );
    fx.write_config(&proxy.url(), r#"initial_backoff = "50ms""#, &rules);
    let names = ["alice", "bob"];
    fx.write_users(&json!({
        "users": names.iter().map(|n| json!({"id": format!("id-{n}"), "user_name": n, "email": fx.email(n)})).collect::<Vec<_>>(),
        "groups": [{"id": "staff", "members": ["id-alice", "id-bob"]}],
    }));
    // alice's key is minted, but its answer is lost (LiteLLM made it; the client sees a 500).
    proxy.inject(Some(Method::POST), "/key/generate", 1, Fault::ForwardThenStatus(500));
    let run = fx.run(&["sync"]).await;
    proxy.assert_faults_used(&run);
    run.expect(0);
    let text = std::fs::read_to_string(&keys_file).expect("the key file");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&keys_file).expect("key file").mode() & 0o777, 0o600);
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 2, "one line per user: {text}");
    for n in names {
        let id = fx.uid(n);
        let line = lines.iter().find(|l| l["user_id"] == id.as_str()).unwrap_or_else(|| panic!("no line for {id}"));
        let key = line["key"].as_str().expect("a key");
        assert_eq!(fx.admin.status_with_key(key, "/v1/models").await, 200, "the delivered key of {id} works");
        assert_eq!(fx.admin.keys(&id).await.len(), 1, "exactly one key for {id}");
    }
    assert!(!run.all().contains("sk-"), "no key in the output or the logs");
    // A second run mints nothing.
    fx.run(&["sync"]).await.expect(0);
    assert_eq!(std::fs::read_to_string(&keys_file).expect("key file").lines().count(), 2);

    // Without a key file, a key rule is refused up front, with the reason.
    let (_, key) = crate::support::litellm_env();
    fx.write_raw_config(&format!(
        "[litellm]\nurl = \"{}\"\napi_key = \"{key}\"\n\n[[sources]]\nname = \"s\"\ntype = \"file\"\npath = \"{}\"\n\n\
         [[rules]]\nname = \"s\"\nmatch = {{ groups = [\"staff\"] }}\nkey = {{}}\n",
        proxy.url(),
        fx.path("users.yaml").display()
    ));
    fx.run(&["check-config"]).await.expect(1).assert_mentions("[keys] path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_smaller_checks() {
    let fx = Fixture::new("safety-small").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;

    // A cron expression with a bad field fails check-config, not `run` later.
    fx.write_config(&proxy.url(), "", "[drift]\nschedule = \"0 */15 * * * foo\"\n");
    fx.run(&["check-config"]).await.expect(1).assert_mentions("drift.schedule");

    // A proxy_admin_viewer's key reads everything and cannot write: check-config says so.
    let viewer = fx.uid("viewer");
    fx.admin.create_user(json!({"user_id": viewer, "user_role": "proxy_admin_viewer", "auto_create_key": false})).await;
    let viewer_key = fx.admin.generate_key(&viewer, &format!("{viewer}-key")).await;
    fx.write_users(&json!({"users": [{"id": "1", "user_name": "alice", "email": fx.email("alice")}]}));
    fx.write_config_with_key(&proxy.url(), &viewer_key, "", "");
    fx.run(&["check-config"]).await.expect(1).assert_mentions("proxy_admin");

    // Team fields a rule stops setting are reset.
    let team = fx.uid("eng");
    let rule = |extra: &str| {
        format!("[[rules]]\nname = \"eng\"\nmatch = {{ groups = [\"eng\"] }}\nteam = {{ id = \"{team}\"{extra} }}\n")
    };
    fx.write_users(&json!({"users": [{"id": "1", "user_name": "alice", "email": fx.email("alice")}],
        "groups": [{"id": "g", "name": "eng", "members": ["1"]}]}));
    fx.write_config(&proxy.url(), "", &rule(", tpm_limit = 500, max_budget = 30.0"));
    fx.run(&["sync"]).await.expect(0);
    assert_eq!(fx.admin.team(&team).await.expect("team")["tpm_limit"], 500);
    fx.write_config(&proxy.url(), "", &rule(""));
    fx.run(&["sync"]).await.expect(0);
    let t = fx.admin.team(&team).await.expect("team");
    assert_eq!((t["tpm_limit"].clone(), t["max_budget"].clone()), (Value::Null, Value::Null), "{t}");

    // When every source read fails, LiteLLM is not listed and the error names the source.
    std::fs::remove_file(fx.path("users.yaml")).expect("remove the users file");
    proxy.reset_log();
    fx.run(&["sync"]).await.expect(1).assert_mentions("users.yaml");
    assert_eq!(
        proxy.count(Method::GET, "/user/list"),
        0,
        "{:?}",
        proxy.log().iter().map(|e| &e.path).collect::<Vec<_>>()
    );
}

/// Two file sources feeding one team (groups of the same name), run by the daemon: it settles at zero writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_a_team_two_sources_feed_settles() {
    let fx = Fixture::new("safety-two").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let port = free_port();
    let file = |name: &str, who: &str| {
        let path = fx.path(&format!("{name}.yaml"));
        let body = json!({"users": [{"id": format!("id-{who}"), "user_name": who, "email": fx.email(who)}],
            "groups": [{"id": format!("g-{name}"), "name": "eng", "members": [format!("id-{who}")]}]});
        std::fs::write(&path, body.to_string()).expect("write source file");
        path
    };
    let (a, b) = (file("a", "alice"), file("b", "bob"));
    let sources = format!(
        r#"[[sources]]
name = "{s}-a"
type = "file"
path = "{a}"
user_id_template = "{p}{{user_name}}"
schedule = "*/2 * * * * *"

[[sources]]
name = "{s}-b"
type = "file"
path = "{b}"
user_id_template = "{p}{{user_name}}"
schedule = "*/2 * * * * *"
"#,
        s = fx.source,
        a = a.display(),
        b = b.display(),
        p = fx.prefix()
    );
    let config = daemon_config_with(&fx, &proxy.url(), port, &sources, "");
    let daemon = Daemon::start(&config, port, &fx.path("daemon.log")).await;
    let team = fx.uid("eng");
    let (alice, bob) = (fx.uid("alice"), fx.uid("bob"));
    eventually("both sources' members are in the team", Duration::from_secs(120), || async {
        let m: Vec<String> = fx.admin.team(&team).await?["members_with_roles"]
            .as_array()?
            .iter()
            .filter_map(|m| m["user_id"].as_str().map(str::to_string))
            .collect();
        (m.contains(&alice) && m.contains(&bob)).then_some(())
    })
    .await;
    // Several ticks of both sources later: not a single write.
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.reset_log();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(proxy.writes().is_empty(), "the daemon keeps writing: {:?}\n{}", proxy.writes(), daemon.log());
    let t = fx.admin.team(&team).await.expect("team");
    // One owner: whichever source created it keeps it (no flip-flop between the two).
    assert!(marker_source(&t).is_some_and(|s| s.ends_with("-a") || s.ends_with("-b")), "{t}");
}

/// The daemon's scheduled runs plan against its ledger: a managed user deleted by hand must come back through the
/// create path (marker and all), never be "updated" into existence without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_an_update_never_creates_a_user() {
    let fx = Fixture::new("safety-ghost").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let port = free_port();
    let alice = fx.uid("alice");
    let write = |budget: f64| {
        let body = json!({"users": [{"id": "id-alice", "user_name": "alice", "email": fx.email("alice"),
            "overrides": {"max_budget": budget}}]});
        std::fs::write(fx.path("users.yaml"), body.to_string()).expect("write users");
    };
    write(10.0);
    let config = crate::support::daemon::daemon_config(&fx, &proxy.url(), port, "*/2 * * * * *", "");
    let daemon = Daemon::start(&config, port, &fx.path("daemon.log")).await;
    eventually("alice is provisioned", Duration::from_secs(150), || async {
        fx.admin.user(&alice).await.filter(|u| u["max_budget"] == 10.0).map(|_| ())
    })
    .await;
    // Someone deletes alice by hand; then her budget changes in the source.
    fx.admin.delete_users(std::slice::from_ref(&alice)).await;
    write(20.0);
    let back = eventually("alice is back with the new budget", Duration::from_secs(60), || async {
        fx.admin.user(&alice).await.filter(|u| u["max_budget"] == 20.0)
    })
    .await;
    assert_eq!(marker_source(&back), Some(fx.source.as_str()), "re-created with the marker: {back}\n{}", daemon.log());
    let drift = daemon.sample(&format!("litellm_sync_drift_repaired_total{{source=\"{}\"}}", fx.source)).await;
    assert!(drift.unwrap_or(0.0) >= 1.0, "counted as drift: {drift:?}");
}

/// Held deletions reach the daemon's approval path: `litellm-sync approve` writes the approval into the store,
/// the next run applies exactly those and audits it; and a CLI sync on the same store leaves a ledger the daemon
/// does not re-plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_held_deletions_are_approved_to_the_daemon() {
    let fx = Fixture::new("safety-approve").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let port = free_port();
    std::fs::write(fx.path("users.yaml"), numbered(&fx, 12).to_string()).expect("write users");
    let config = crate::support::daemon::daemon_config(
        &fx,
        &proxy.url(),
        port,
        "*/2 * * * * *",
        "\n[safety]\nmax_deletions = 3\nmax_deletions_percent = 100.0\n",
    );
    let run_cli = |args: &'static [&'static str]| {
        let config = config.clone();
        async move {
            let out = tokio::process::Command::new(crate::support::binary())
                .arg("--config")
                .arg(&config)
                .args(args)
                .env("USER", "ops-person")
                .output()
                .await
                .expect("run the CLI");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
            )
        }
    };
    let daemon = Daemon::start(&config, port, &fx.path("daemon.log")).await;
    eventually("12 users provisioned", Duration::from_secs(150), || async {
        (fx.admin.users(&fx.prefix()).await.len() == 12).then_some(())
    })
    .await;
    // 8 leave: more than max_deletions, held; the metric says so.
    std::fs::write(fx.path("users.yaml"), numbered(&fx, 4).to_string()).expect("write users");
    let series = format!("litellm_sync_deletions_held{{source=\"{}\"}}", fx.source);
    eventually("8 deletions held", Duration::from_secs(30), || async {
        (daemon.sample(&series).await == Some(8.0)).then_some(())
    })
    .await;
    assert!(deactivated(&fx).await.is_empty());
    // A person approves what is held; the next run applies it.
    let (code, out) = run_cli(&["approve"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Approved 8 operation(s)"), "{out}");
    eventually("the 8 are deactivated", Duration::from_secs(30), || async {
        (deactivated(&fx).await.len() == 8).then_some(())
    })
    .await;
    let audit = std::fs::read_to_string(fx.path("audit.jsonl")).unwrap_or_default();
    assert!(audit.lines().any(|l| l.contains("\"op\":\"approval\"") && l.contains("ops-person")), "{audit}");
    eventually("nothing is held any more", Duration::from_secs(20), || async {
        (daemon.sample(&series).await == Some(0.0)).then_some(())
    })
    .await;
    let (status, _) = daemon.terminate(Duration::from_secs(10)).await;
    assert!(status.success());

    // With the daemon stopped, a CLI sync on the same store changes budgets and records them in the ledger...
    let mut users = numbered(&fx, 4);
    for u in users["users"].as_array_mut().into_iter().flatten() {
        u["overrides"] = json!({"max_budget": 33.0});
    }
    std::fs::write(fx.path("users.yaml"), users.to_string()).expect("write users");
    let (code, out) = run_cli(&["sync"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Planned against the store's ledger"), "the CLI used the ledger: {out}");
    // ...so the daemon, started again, has nothing to do.
    proxy.reset_log();
    let daemon = Daemon::start(&config, port, &fx.path("daemon2.log")).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        proxy.writes().is_empty(),
        "the daemon re-planned what the CLI did: {:?}\n{}",
        proxy.writes(),
        daemon.log()
    );
    assert_eq!(proxy.count(Method::GET, "/user/list"), 0, "no listing either: {}", daemon.log());
}
