//! OpenLDAP: the real binary against a real slapd (one per test, its own port, data from gen_ldif.py) and the real
//! LiteLLM. Provisioning, directory changes, paging past the server's size limit, failed reads that must never
//! deprovision anybody, StartTLS/LDAPS certificate checks, and `check-config`.
//!
//! The fixed directory (gen_ldif.py): alice (llm-admins, departmentNumber 750), bob (engineering, which nests
//! llm-admins), carol, dave (description=disabled) and frank (all-staff, which nests engineering; frank has no mail),
//! erin (no group), then `userNNNNN` spread round-robin over `team-NNNN`. Tests bind as the size-limited service
//! account, never as the admin.
//!
//! Over 600 lines: each test is one scenario against a real slapd with its own directory edits; they share the
//! fixed directory described here, which is why they stay in one file.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::admin::marker_source;
use crate::support::ldap::{
    assert_no_writes, closed_port, directory_rules, openldap_source, other_ca, q, run_status, run_steady,
    with_wrong_password, write_config, Cut, Relay, Slapd, GROUPS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD,
};
use crate::support::{ops_of, FaultProxy, Fixture};

const FIXED_ACTIVE: [&str; 5] = ["alice", "bob", "carol", "erin", "frank"];

fn rules(fx: &Fixture) -> String {
    directory_rules(fx, "cn=llm-admins,ou=groups,dc=example,dc=org", "engineering")
}

/// The source keys every OpenLDAP test shares: the disabled filter and alice's budget override.
const SOURCE_KEYS: &str = "disabled_filter = \"(description=disabled)\"\n\
                           attributes = { overrides = { max_budget = \"departmentNumber\" } }";

fn mail_domain(fx: &Fixture) -> String {
    format!("{}.example.com", fx.source)
}

fn user_dn(uid: &str) -> String {
    format!("uid={uid},{PEOPLE}")
}

/// `userNNNNN` names of the generated users.
fn generated(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("user{i:05}")).collect()
}

/// The LiteLLM ids a fresh sync of the directory (`n` generated users) must create: everybody but dave.
fn expected_ids(fx: &Fixture, n: usize) -> Vec<String> {
    let mut ids: Vec<String> =
        FIXED_ACTIVE.iter().map(|u| fx.uid(u)).chain(generated(n).iter().map(|u| fx.uid(u))).collect();
    ids.sort();
    ids
}

/// Every operation of a JSON plan as one comparable line ("deactivate_user t-x-carol", "add_member t-x-team a").
fn op_lines(doc: &Value, list: &str) -> Vec<String> {
    let mut out: Vec<String> = doc[list]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            let kind = o["op"].as_str().unwrap_or("?");
            let s = |k: &str| o[k].as_str().unwrap_or("").to_string();
            match kind {
                "add_member" | "remove_member" | "update_member" => format!("{kind} {} {}", s("team_id"), s("user_id")),
                "create_team" | "update_team" => format!("{kind} {}", s("team_id")),
                _ => format!("{kind} {}", s("user_id")),
            }
        })
        .collect();
    out.sort();
    out
}

fn summary(doc: &Value) -> BTreeMap<String, u64> {
    doc["summary"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
        .unwrap_or_default()
}

/// A team's managed members (ids with the test's prefix), sorted.
async fn roster(fx: &Fixture, team: &str) -> Vec<String> {
    let mut ids: Vec<String> =
        fx.admin.members(team).await.into_iter().map(|(id, _)| id).filter(|id| id.starts_with(&fx.prefix())).collect();
    ids.sort();
    ids
}

async fn deactivated(fx: &Fixture) -> Vec<String> {
    let mut ids: Vec<String> = fx
        .admin
        .users(&fx.prefix())
        .await
        .iter()
        .filter(|u| u["metadata"]["scim_active"] == false)
        .filter_map(|u| u["user_id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// Members of `team-000j` for `n` users over `g` groups (gen_ldif.py: round-robin).
fn team_members(fx: &Fixture, j: usize, n: usize, g: usize) -> Vec<String> {
    let mut ids: Vec<String> = (j..=n).step_by(g).map(|i| fx.uid(&format!("user{i:05}"))).collect();
    ids.sort();
    ids
}

/// Writes the standard config (LiteLLM through `litellm_url`) and syncs the fresh directory: exit 0, everybody
/// but dave created.
async fn first_sync(fx: &Fixture, slapd: &Slapd, litellm_url: &str, n: usize) {
    write_config(
        fx,
        litellm_url,
        &openldap_source(fx, &[slapd.url()], &format!("page_size = 7\n{SOURCE_KEYS}")),
        &rules(fx),
    );
    fx.run(&["sync"]).await.expect(0);
    assert_eq!(fx.admin.user_ids(&fx.prefix()).await, expected_ids(fx, n));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openldap_sync_provisions_the_directory_then_writes_nothing() {
    const N: usize = 20;
    const G: usize = 4;
    let mut fx = Fixture::new("ldap-sync").await;
    let slapd = Slapd::start(N, G, &mail_domain(&fx), false).await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    // page_size 7: the 26 people and 7 groups take several pages each.
    write_config(
        &fx,
        &proxy.url(),
        &openldap_source(&fx, &[slapd.url()], &format!("page_size = 7\n{SOURCE_KEYS}")),
        &rules(&fx),
    );

    let plan = fx.run(&["plan", "--output", "json"]).await;
    plan.expect(2);
    let doc = plan.json();
    let want_summary: BTreeMap<String, u64> = [("create_user", (N + 5) as u64), ("create_team", 1 + G as u64)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut got = summary(&doc);
    got.remove("add_member");
    assert_eq!(got, want_summary, "{}", plan.stdout);
    let filled: std::collections::BTreeSet<&str> =
        ops_of(&doc, "operations", "add_member").iter().filter_map(|o| o["team_id"].as_str()).collect();
    assert_eq!(filled.len(), 1 + G, "every team gets its members: {}", plan.stdout);
    let mut created: Vec<String> = ops_of(&doc, "operations", "create_user")
        .iter()
        .filter_map(|o| o["user_id"].as_str().map(str::to_string))
        .collect();
    created.sort();
    assert_eq!(created, expected_ids(&fx, N), "everybody but the disabled dave");
    assert!(proxy.writes().is_empty(), "plan never writes: {:?}", proxy.writes());

    fx.run(&["sync"]).await.expect(0);
    assert_eq!(fx.admin.user_ids(&fx.prefix()).await, expected_ids(&fx, N));
    assert!(fx.admin.user(&fx.uid("dave")).await.is_none(), "dave is disabled: never created");

    // alice: proxy_admin through llm-admins, budget from her own departmentNumber (beats the eng rule's 100).
    let alice = fx.admin.must_user(&fx.uid("alice")).await;
    assert_eq!(alice["user_role"], "proxy_admin", "{alice}");
    assert_eq!(alice["max_budget"], 750.0, "{alice}");
    assert_eq!(alice["user_email"], fx.email("alice"), "{alice}");
    assert_eq!(marker_source(&alice), Some(fx.source.as_str()), "{alice}");
    let entry_uuid = slapd.attr(&user_dn("alice"), "entryUUID").await.expect("alice has an entryUUID");
    assert_eq!(
        alice["metadata"]["litellm_sync"]["external_id"],
        entry_uuid.to_lowercase(),
        "identity is the entryUUID: {alice}"
    );
    let bob = fx.admin.must_user(&fx.uid("bob")).await;
    assert_eq!((bob["user_role"].as_str(), bob["max_budget"].as_f64()), (Some("internal_user"), Some(100.0)), "{bob}");
    for name in ["carol", "erin"] {
        let u = fx.admin.must_user(&fx.uid(name)).await;
        assert_eq!((u["user_role"].as_str(), u["max_budget"].as_f64()), (Some("internal_user"), Some(5.0)), "{u}");
        assert_eq!(u["user_email"], fx.email(name), "{u}");
    }
    let frank = fx.admin.must_user(&fx.uid("frank")).await;
    assert!(frank["user_email"].is_null(), "frank has no mail: {frank}");
    assert_eq!(frank["max_budget"], 5.0, "{frank}");
    let u1 = fx.admin.must_user(&fx.uid("user00001")).await;
    assert_eq!(u1["max_budget"], 20.0, "team-* rule: {u1}");

    // Teams: engineering holds bob and, through the nested llm-admins, alice; team-000j its round-robin share.
    assert_eq!(roster(&fx, &fx.uid("engineering")).await, vec![fx.uid("alice"), fx.uid("bob")]);
    for j in 1..=G {
        let team = fx.uid(&format!("team-{j:04}"));
        assert_eq!(roster(&fx, &team).await, team_members(&fx, j, N, G), "{team}");
        let t = fx.admin.team(&team).await.expect("team exists");
        assert_eq!(marker_source(&t), Some(fx.source.as_str()), "{t}");
    }
    assert!(fx.admin.team(&fx.uid("all-staff")).await.is_none(), "no rule maps all-staff");

    // A second sync: nothing to do, zero POSTs.
    fx.quiet().await;
    assert_no_writes(&fx, &proxy, &["sync", "--output", "json"]).await.expect(0);
    let plan = run_steady(&fx, &["plan", "--output", "json"]).await;
    plan.expect(0);
    let doc = plan.json();
    assert_eq!(doc["in_sync"], true, "{}", plan.stdout);
    assert!(summary(&doc).is_empty(), "{}", plan.stdout);
    assert_eq!(doc["managed_users"], (N + 5) as u64, "{}", plan.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openldap_directory_changes_are_applied_exactly() {
    const N: usize = 20;
    const G: usize = 4;
    let mut fx = Fixture::new("ldap-changes").await;
    let slapd = Slapd::start(N, G, &mail_domain(&fx), false).await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    first_sync(&fx, &slapd, &proxy.url(), N).await;
    let bob_before = fx.admin.must_user(&fx.uid("bob")).await;

    // gina joins (into team-0003); user00001 moves from team-0001 to team-0002; carol is disabled; erin leaves; bob
    // is renamed robert (modrdn, and the group follows as the refint overlay would make it).
    slapd
        .add(&format!(
            "dn: {}\nobjectClass: inetOrgPerson\nuid: gina\ncn: Gina New\nsn: gina\nmail: {}\n",
            user_dn("gina"),
            fx.email("gina")
        ))
        .await;
    let u1 = user_dn("user00001");
    slapd
        .modify(&format!(
            "dn: cn=team-0001,ou=groups,dc=example,dc=org\nchangetype: modify\ndelete: member\nmember: {u1}\n\n\
             dn: cn=team-0002,ou=groups,dc=example,dc=org\nchangetype: modify\nadd: member\nmember: {u1}\n\n\
             dn: {carol}\nchangetype: modify\nadd: description\ndescription: disabled\n\n\
             dn: {erin}\nchangetype: delete\n\n\
             dn: {bob}\nchangetype: modrdn\nnewrdn: uid=robert\ndeleteoldrdn: 1\n\n\
             dn: cn=engineering,ou=groups,dc=example,dc=org\nchangetype: modify\ndelete: member\nmember: {bob}\n-\n\
             add: member\nmember: {robert}\n\n\
             dn: cn=team-0003,ou=groups,dc=example,dc=org\nchangetype: modify\nadd: member\nmember: {gina}\n",
            carol = user_dn("carol"),
            erin = user_dn("erin"),
            bob = user_dn("bob"),
            robert = user_dn("robert"),
            gina = user_dn("gina"),
        ))
        .await;

    fx.quiet().await;
    let plan = run_steady(&fx, &["plan", "--output", "json"]).await;
    plan.expect(2);
    let doc = plan.json();
    let mut want = vec![
        format!("create_user {}", fx.uid("gina")),
        format!("add_member {} {}", fx.uid("team-0003"), fx.uid("gina")),
        format!("add_member {} {}", fx.uid("team-0002"), fx.uid("user00001")),
        format!("remove_member {} {}", fx.uid("team-0001"), fx.uid("user00001")),
        format!("deactivate_user {}", fx.uid("carol")),
        format!("deactivate_user {}", fx.uid("erin")),
    ];
    want.sort();
    assert_eq!(
        op_lines(&doc, "operations"),
        want,
        "exactly the directory's changes; the rename is no change\n{}",
        plan.stdout
    );
    assert!(op_lines(&doc, "held").is_empty(), "{}", plan.stdout);

    proxy.reset_log();
    fx.run(&["sync"]).await.expect(0);
    assert_eq!(proxy.count(axum::http::Method::POST, "/user/new"), 1, "gina, and nobody else: {:?}", proxy.writes());
    fx.shared().await;
    assert_eq!(deactivated(&fx).await, vec![fx.uid("carol"), fx.uid("erin")]);
    for name in ["carol", "erin"] {
        let u = fx.admin.must_user(&fx.uid(name)).await;
        assert_eq!(u["metadata"]["scim_active"], false, "{u}");
        assert_eq!(marker_source(&u), Some(fx.source.as_str()), "deactivated, still ours: {u}");
    }
    let mut ids = expected_ids(&fx, N);
    ids.push(fx.uid("gina"));
    ids.sort();
    assert_eq!(fx.admin.user_ids(&fx.prefix()).await, ids, "deactivated, not deleted; gina, but no robert");
    let gina = fx.admin.must_user(&fx.uid("gina")).await;
    assert_eq!(
        (gina["max_budget"].as_f64(), gina["user_email"].as_str()),
        (Some(20.0), Some(fx.email("gina").as_str()))
    );
    let bob = fx.admin.must_user(&fx.uid("bob")).await;
    assert_ne!(bob["metadata"]["scim_active"], false, "the renamed bob stays active: {bob}");
    assert_eq!(
        bob["metadata"]["litellm_sync"]["external_id"], bob_before["metadata"]["litellm_sync"]["external_id"],
        "same entryUUID, same LiteLLM user"
    );
    assert!(fx.admin.user(&fx.uid("robert")).await.is_none(), "the new uid makes no new user");
    assert_eq!(roster(&fx, &fx.uid("engineering")).await, vec![fx.uid("alice"), fx.uid("bob")]);
    let mut t1 = team_members(&fx, 1, N, G);
    t1.retain(|id| *id != fx.uid("user00001"));
    assert_eq!(roster(&fx, &fx.uid("team-0001")).await, t1);
    let mut t3 = team_members(&fx, 3, N, G);
    t3.push(fx.uid("gina"));
    t3.sort();
    assert_eq!(roster(&fx, &fx.uid("team-0003")).await, t3);
    let mut t2 = team_members(&fx, 2, N, G);
    t2.push(fx.uid("user00001"));
    t2.sort();
    assert_eq!(roster(&fx, &fx.uid("team-0002")).await, t2);
    fx.quiet().await;
    run_steady(&fx, &["plan"]).await.expect(0);
    fx.shared().await;

    // deprovision = "delete": frank leaves too; every user the source no longer grants (the disabled carol, the
    // departed erin and frank) is deleted.
    slapd.delete(&user_dn("frank")).await;
    write_config(
        &fx,
        &proxy.url(),
        &openldap_source(&fx, &[slapd.url()], &format!("page_size = 7\n{SOURCE_KEYS}")),
        &format!("{}\n[safety]\ndeprovision = \"delete\"\nmax_deletions_percent = 50\n", rules(&fx)),
    );
    let plan = fx.run(&["plan", "--output", "json"]).await;
    plan.expect(2);
    let mut want: Vec<String> =
        ["carol", "erin", "frank"].iter().map(|n| format!("delete_user {}", fx.uid(n))).collect();
    want.sort();
    assert_eq!(op_lines(&plan.json(), "operations"), want, "{}", plan.stdout);
    fx.run(&["sync"]).await.expect(0);
    for name in ["carol", "erin", "frank"] {
        assert!(fx.admin.user(&fx.uid(name)).await.is_none(), "{name} is deleted");
    }
    let mut left = ids;
    left.retain(|id| ![fx.uid("carol"), fx.uid("erin"), fx.uid("frank")].contains(id));
    assert_eq!(fx.admin.user_ids(&fx.prefix()).await, left);
    fx.quiet().await;
    run_steady(&fx, &["plan"]).await.expect(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openldap_ten_thousand_users_page_past_the_size_limit() {
    const N: usize = 10_000;
    const G: usize = 200;
    let fx = Fixture::new("ldap-10k").await;
    let started = Instant::now();
    let slapd = Slapd::start(N, G, &mail_domain(&fx), false).await;
    let loaded = started.elapsed();

    // The premise: without paging the service account stops at the server's 500-entry limit.
    let out = run_status(
        tokio::process::Command::new("ldapsearch")
            .args(["-x", "-H", &slapd.url(), "-D", SERVICE_DN, "-w", SERVICE_PASSWORD, "-b", PEOPLE])
            .args(["(objectClass=inetOrgPerson)", "1.1"]),
        "ldapsearch without paging",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.status.code(), Some(4), "sizeLimitExceeded for an unpaged search as the service account");

    write_config(
        &fx,
        &fx.url,
        &openldap_source(&fx, &[slapd.url()], &format!("page_size = 300\n{SOURCE_KEYS}")),
        &rules(&fx),
    );
    let t = Instant::now();
    let plan = fx.run(&["plan", "--output", "json"]).await;
    let planned = t.elapsed();
    plan.expect(2);
    let doc = plan.json();
    let s = summary(&doc);
    assert_eq!(s.get("create_user"), Some(&((N + 5) as u64)), "10,000 generated + 5 fixed (dave is disabled): {s:?}");
    assert_eq!(s.get("create_team"), Some(&(1 + G as u64)), "{s:?}");
    let creates = ops_of(&doc, "operations", "create_user");
    let ids: std::collections::BTreeSet<&str> = creates.iter().filter_map(|o| o["user_id"].as_str()).collect();
    assert_eq!(ids.len(), N + 5, "no user twice");
    for name in ["alice", "frank", "user00001", "user05000", "user10000"] {
        assert!(ids.contains(fx.uid(name).as_str()), "{name} is planned");
    }
    assert!(!ids.contains(fx.uid("dave").as_str()));
    assert!(
        plan.stderr.contains("users=10006") || plan.stderr.contains("\"users\":10006"),
        "the read saw 10,006 people\n{}",
        plan.stderr.lines().filter(|l| l.contains("LDAP")).collect::<Vec<_>>().join("\n")
    );
    eprintln!("ldap-10k: slapd with 10,006 users loaded in {loaded:?}; plan took {planned:?}");
    assert!(fx.admin.user_ids(&fx.prefix()).await.is_empty(), "a plan creates nobody");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openldap_failed_reads_never_deprovision() {
    const N: usize = 20;
    let fx = Fixture::new("ldap-fail").await;
    let mut slapd = Slapd::start(N, 4, &mail_domain(&fx), false).await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    first_sync(&fx, &slapd, &proxy.url(), N).await;
    // page_size 7: the 26 people take four pages, so a connection lost after the first entries dies mid-search.
    let keys = format!("page_size = 7\n{SOURCE_KEYS}");
    let with = |urls: &[String], extra: &str| {
        write_config(&fx, &proxy.url(), &openldap_source(&fx, urls, &format!("{keys}\n{extra}")), &rules(&fx))
    };
    async fn nothing_happened(fx: &Fixture, proxy: &FaultProxy, what: &str, run: &crate::support::Run) {
        assert_eq!(proxy.writes(), Vec::<String>::new(), "{what}: no write at all\n{}", run.dump());
        assert!(deactivated(fx).await.is_empty(), "{what}: nobody is deactivated");
        assert_eq!(fx.admin.user_ids(&fx.prefix()).await.len(), N + 5, "{what}: nobody is deleted");
    }

    // A wrong password: the bind is refused, named, and the run stops before planning anything.
    let source = with_wrong_password(&openldap_source(&fx, &[slapd.url()], &keys));
    write_config(&fx, &proxy.url(), &source, &rules(&fx));
    proxy.reset_log();
    let run = fx.run(&["sync"]).await;
    run.expect(1).assert_mentions("bind as").assert_mentions("was refused").assert_mentions("result code 49");
    assert!(!run.all().contains("wrong-password"), "no password in the output\n{}", run.dump());
    nothing_happened(&fx, &proxy, "wrong password", &run).await;

    // Nothing listens on the port.
    let closed = format!("ldap://127.0.0.1:{}", closed_port());
    with(std::slice::from_ref(&closed), "");
    proxy.reset_log();
    let run = fx.run(&["sync"]).await;
    run.expect(1).assert_mentions("no LDAP server could be used").assert_mentions(&closed);
    nothing_happened(&fx, &proxy, "nothing listening", &run).await;

    // The connection dies in the middle of the paged user search (1,000 bytes into the server's answers).
    let relay = Relay::start(slapd.port, 1_000, Cut::Close).await;
    with(&[relay.url()], "");
    proxy.reset_log();
    let run = fx.run(&["sync"]).await;
    assert!(relay.cuts() >= 1, "the relay cut the connection\n{}", run.dump());
    run.expect(1).assert_mentions("with (objectClass=inetOrgPerson) failed after");
    nothing_happened(&fx, &proxy, "connection cut mid-search", &run).await;
    drop(relay);

    // A filter that matches nobody, while this source manages 25 users: a failed read, not 25 departures.
    with(&[slapd.url()], "user_filter = \"(&(objectClass=inetOrgPerson)(uid=nobody-has-this-uid))\"");
    proxy.reset_log();
    let run = fx.run(&["sync"]).await;
    run.expect(1).assert_mentions("returned no users");
    nothing_happened(&fx, &proxy, "empty result", &run).await;

    // slapd is killed (SIGKILL) while the paged user search is in flight: the relay holds the answer after 1,000
    // bytes until slapd is dead, then passes on what it had; the next page cannot come.
    let relay = Relay::start(slapd.port, 1_000, Cut::Stall).await;
    with(&[relay.url()], "");
    proxy.reset_log();
    let (run, ()) = tokio::join!(fx.run(&["sync"]), async {
        relay.wait_cut(Duration::from_secs(60)).await;
        slapd.kill();
        crate::support::eventually("slapd to die", Duration::from_secs(10), || async {
            (!slapd.alive()).then_some(())
        })
        .await;
        relay.resume();
    });
    run.expect(1).assert_mentions("with (objectClass=inetOrgPerson) failed after");
    nothing_happened(&fx, &proxy, "slapd killed mid-search", &run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openldap_starttls_and_ldaps_verify_the_server() {
    const N: usize = 5;
    let fx = Fixture::new("ldap-tls").await;
    let slapd = Slapd::start(N, 2, &mail_domain(&fx), true).await;
    let ca = slapd.ca_file();
    let wrong = other_ca(&fx.path("")).await;
    let plan_with = |urls: Vec<String>, extra: String| {
        write_config(&fx, &fx.url, &openldap_source(&fx, &urls, &format!("{SOURCE_KEYS}\n{extra}")), &rules(&fx));
        fx.run(&["plan", "--output", "json"])
    };

    // StartTLS on the plain port, verified against the test's CA.
    let run =
        plan_with(vec![slapd.url()], format!("starttls = true\nca_file = {}", q(&ca.display().to_string()))).await;
    run.expect(2);
    assert_eq!(summary(&run.json()).get("create_user"), Some(&((N + 5) as u64)), "{}", run.stdout);

    // LDAPS on port + 1.
    let run = plan_with(vec![slapd.ldaps_url()], format!("ca_file = {}", q(&ca.display().to_string()))).await;
    run.expect(2);
    assert_eq!(summary(&run.json()).get("create_user"), Some(&((N + 5) as u64)), "{}", run.stdout);

    // A CA that did not sign the server's certificate: refused, and said so, for both.
    for (urls, extra) in [
        (vec![slapd.url()], format!("starttls = true\nca_file = {}", q(&wrong.display().to_string()))),
        (vec![slapd.ldaps_url()], format!("ca_file = {}", q(&wrong.display().to_string()))),
    ] {
        let run = plan_with(urls.clone(), extra).await;
        run.expect(1).assert_mentions("no LDAP server could be used").assert_mentions(&urls[0]);
        run.assert_mentions("invalid peer certificate").assert_mentions("UnknownIssuer");
    }
    assert!(fx.admin.user_ids(&fx.prefix()).await.is_empty(), "plans create nobody");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openldap_check_config_binds_or_names_the_failure() {
    let fx = Fixture::new("ldap-check").await;
    let slapd = Slapd::start(3, 1, &mail_domain(&fx), false).await;

    write_config(&fx, &fx.url, &openldap_source(&fx, &[slapd.url()], SOURCE_KEYS), &rules(&fx));
    let run = fx.run(&["check-config"]).await;
    run.expect(0)
        .assert_mentions(&format!("✓ source \"{}\" (ldap)", fx.source))
        .assert_mentions(&format!("bound to {}", slapd.url()))
        .assert_mentions(SERVICE_DN)
        .assert_mentions("finds entries")
        .assert_mentions("✓ LiteLLM");

    let source = with_wrong_password(&openldap_source(&fx, &[slapd.url()], SOURCE_KEYS));
    write_config(&fx, &fx.url, &source, &rules(&fx));
    let run = fx.run(&["check-config"]).await;
    run.expect(1)
        .assert_mentions(&format!("✗ source \"{}\" (ldap)", fx.source))
        .assert_mentions("was refused")
        .assert_mentions("result code 49");
    assert!(fx.admin.user_ids(&fx.prefix()).await.is_empty(), "check-config writes nothing");
}

/// The tracing field `key` = `value` in the binary's log, in either output format.
fn logged(stderr: &str, key: &str, value: &str) -> bool {
    stderr.contains(&format!("{key}={value}")) || stderr.contains(&format!("\"{key}\":{value}"))
}

/// A person whose RDN is not the uid (so the uid can be taken away), in the group `compilers` with user00001.
fn grace_ldif(fx: &Fixture) -> String {
    format!(
        "dn: cn=Grace Hopper,{PEOPLE}\nobjectClass: inetOrgPerson\ncn: Grace Hopper\nsn: Hopper\nuid: grace\n\
         mail: {mail}\nentryUUID: 0b6f3c62-7a1e-4c0e-9d55-00000000a001\n\n\
         dn: cn=compilers,{GROUPS}\nobjectClass: groupOfNames\ncn: compilers\n\
         entryUUID: 0b6f3c62-7a1e-4c0e-9d55-00000000a002\nmember: cn=Grace Hopper,{PEOPLE}\n\
         member: {u1}\n",
        mail = fx.email("grace"),
        u1 = user_dn("user00001"),
    )
}

/// Invariant 3, "an entry the source returned but could not convert is doubt, not a departure": a managed user
/// whose entry loses its user name (here the `uid` is deleted; inetOrgPerson does not require it) is kept as it
/// was, with its team membership, and the read reports the entry instead of skipping it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_unreadable_entry_is_doubt() {
    const N: usize = 20;
    const G: usize = 4;
    let mut fx = Fixture::new("ldap-doubt").await;
    let slapd = Slapd::start_with(N, G, &mail_domain(&fx), false, &grace_ldif(&fx)).await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let rest = format!(
        "{}\n[[rules]]\nname = \"compilers\"\nmatch = {{ groups = [\"compilers\"] }}\nteam = {{ id = \"{p}{{group_name}}\" }}\n",
        rules(&fx),
        p = fx.prefix()
    );
    write_config(
        &fx,
        &proxy.url(),
        &openldap_source(&fx, &[slapd.url()], &format!("page_size = 7\n{SOURCE_KEYS}")),
        &rest,
    );
    fx.run(&["sync"]).await.expect(0);
    let grace_id = fx.uid("grace");
    let team = fx.uid("compilers");
    let before = fx.admin.must_user(&grace_id).await;
    assert_ne!(before["metadata"]["scim_active"], false, "{before}");
    assert_eq!(roster(&fx, &team).await, vec![grace_id.clone(), fx.uid("user00001")]);

    let grace_dn = format!("cn=Grace Hopper,{PEOPLE}");
    slapd.modify(&format!("dn: {grace_dn}\nchangetype: modify\ndelete: uid\n")).await;
    assert_eq!(slapd.attr(&grace_dn, "uid").await, None, "the premise: grace's entry has no uid any more");

    fx.quiet().await;
    let plan = run_steady(&fx, &["plan", "--output", "json"]).await;
    proxy.reset_log();
    let sync = fx.run(&["sync"]).await;
    let writes = proxy.writes();
    let after = fx.admin.must_user(&grace_id).await;
    let members = roster(&fx, &team).await;

    // Every expectation is checked, and every broken one reported, so that a failure says all that went wrong.
    let mut wrong = Vec::new();
    // The plan's JSON, when it printed any (a failed read prints none).
    let planned = if plan.stdout.trim().starts_with('{') { op_lines(&plan.json(), "operations") } else { Vec::new() };
    let about_grace: Vec<&String> = planned.iter().filter(|l| l.contains(&grace_id)).collect();
    if !about_grace.is_empty() {
        wrong.push(format!("the plan changes grace: {about_grace:?}"));
    }
    if after["metadata"]["scim_active"] == false {
        wrong.push(format!("grace was deactivated: {after}"));
    }
    if members != vec![grace_id.clone(), fx.uid("user00001")] {
        wrong.push(format!("the team compilers lost grace: {members:?}"));
    }
    if !writes.is_empty() {
        wrong.push(format!("the sync wrote {writes:?}"));
    }
    if !(sync.stderr.contains("could not be read") && sync.stderr.contains(&grace_dn) && sync.stderr.contains("no uid"))
    {
        wrong.push("the log does not report grace's entry as unreadable, with its DN and why".to_string());
    }
    if !logged(&sync.stderr, "skipped", "1") {
        wrong.push("the read does not count one skipped entry".to_string());
    }
    assert!(wrong.is_empty(), "{}\n--- plan ---\n{}\n--- sync ---\n{}", wrong.join("\n"), plan.dump(), sync.dump());

    // The uid comes back: nothing to do.
    slapd.modify(&format!("dn: {grace_dn}\nchangetype: modify\nadd: uid\nuid: grace\n")).await;
    assert_no_writes(&fx, &proxy, &["sync"]).await.expect(0);
}

/// The users the mixed directory adds to the generated one: jsmith, whose DN has an escaped comma.
const MIXED_USERS: usize = 1;

/// Groups of every kind the default OpenLDAP configuration must read, beside the generated groupOfNames:
/// `platform` (groupOfNames: alice, jsmith by his escaped DN, user00001, and the nested `sre`), `sre`
/// (groupOfUniqueNames: carol with an optional UID, jsmith spelled with a hex escape, user00600, beyond the service
/// account's 500-entry limit) and `unix-devs` (posixGroup: memberUid names in other cases than the uids, and one
/// that is nobody).
fn mixed_ldif(fx: &Fixture) -> String {
    let u = user_dn;
    format!(
        "dn: cn=Smith\\, John,{PEOPLE}\nobjectClass: inetOrgPerson\ncn: Smith, John\nsn: Smith\nuid: jsmith\n\
         mail: {mail}\nentryUUID: 3c0e8f0a-2b1d-4d7e-8a01-00000000b001\n\n\
         dn: cn=platform,{GROUPS}\nobjectClass: groupOfNames\ncn: platform\n\
         entryUUID: 3c0e8f0a-2b1d-4d7e-8a01-00000000b002\nmember: {alice}\nmember: cn=Smith\\, John,{PEOPLE}\n\
         member: cn=sre,{GROUPS}\nmember: {u1}\n\n\
         dn: cn=sre,{GROUPS}\nobjectClass: groupOfUniqueNames\ncn: sre\n\
         entryUUID: 3c0e8f0a-2b1d-4d7e-8a01-00000000b003\nuniqueMember: {carol}#'0'B\n\
         uniqueMember: cn=Smith\\2C John,{PEOPLE}\nuniqueMember: {u600}\n\n\
         dn: cn=unix-devs,{GROUPS}\nobjectClass: posixGroup\ncn: unix-devs\ngidNumber: 5001\n\
         entryUUID: 3c0e8f0a-2b1d-4d7e-8a01-00000000b004\nmemberUid: FRANK\nmemberUid: User00550\n\
         memberUid: JSmith\nmemberUid: ghost\n",
        mail = fx.email("jsmith"),
        alice = u("alice"),
        carol = u("carol"),
        u1 = u("user00001"),
        u600 = u("user00600"),
    )
}

/// Acceptance: "The default LDAP configuration resolves a directory that mixes groupOfNames, groupOfUniqueNames and
/// posixGroup, nested, with an escaped-comma DN, behind a service account limited to 500 entries." No member
/// attribute, group filter or page size is configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_mixed_group_kinds_resolve() {
    const N: usize = 600;
    const G: usize = 3;
    let fx = Fixture::new("ldap-mixed").await;
    let slapd = Slapd::start_with(N, G, &mail_domain(&fx), false, &mixed_ldif(&fx)).await;
    let p = fx.prefix();
    let rules = format!(
        r#"
[[rules]]
name = "platform"
match = {{ groups = ["platform"] }}
max_budget = 30.0
team = {{ id = "{p}{{group_name}}" }}

[[rules]]
name = "sre"
match = {{ groups = ["cn=sre,ou=groups,dc=example,dc=org"] }}
max_budget = 40.0
team = {{ id = "{p}{{group_name}}" }}

[[rules]]
name = "unix"
match = {{ group_glob = "unix-*" }}
max_budget = 50.0
team = {{ id = "{p}{{group_name}}" }}

[defaults]
role = "internal_user"
max_budget = 5.0
"#
    );
    write_config(&fx, &fx.url, &openldap_source(&fx, &[slapd.url()], ""), &rules);
    let sync = fx.run(&["sync"]).await;
    sync.expect(0);

    // Everybody (dave too: no disabled filter here), read past the 500-entry limit.
    let people = N + 6 + MIXED_USERS;
    assert!(logged(&sync.stderr, "users", &people.to_string()), "the read saw {people} people\n{}", sync.dump());
    assert!(logged(&sync.stderr, "skipped", "0"), "{}", sync.dump());
    let mut names: Vec<String> = ["alice", "bob", "carol", "dave", "erin", "frank", "jsmith"]
        .iter()
        .map(|s| s.to_string())
        .chain(generated(N))
        .collect();
    names.sort();
    let ids: Vec<String> = names.iter().map(|n| fx.uid(n)).collect();
    assert_eq!(fx.admin.user_ids(&p).await, ids);

    let team = |members: &[&str]| {
        let mut v: Vec<String> = members.iter().map(|m| fx.uid(m)).collect();
        v.sort();
        v
    };
    let want: BTreeMap<&str, Vec<String>> = [
        ("platform", team(&["alice", "jsmith", "user00001", "carol", "user00600"])),
        ("sre", team(&["carol", "jsmith", "user00600"])),
        ("unix-devs", team(&["frank", "user00550", "jsmith"])),
    ]
    .into_iter()
    .collect();
    for (name, members) in &want {
        assert_eq!(&roster(&fx, &fx.uid(name)).await, members, "team {name}\n{}", sync.dump());
    }
    let mut teams = fx.admin.team_ids(&p).await;
    teams.sort();
    assert_eq!(teams, vec![fx.uid("platform"), fx.uid("sre"), fx.uid("unix-devs")], "one team per rule, no other");

    // Every user's budget: the highest of the groups they are in, directly or nested, else the default.
    let budget = |name: &str| -> f64 {
        let id = fx.uid(name);
        [("platform", 30.0), ("sre", 40.0), ("unix-devs", 50.0)]
            .iter()
            .filter(|(g, _)| want[g].contains(&id))
            .map(|(_, b)| *b)
            .fold(5.0, f64::max)
    };
    let rows = fx.admin.users(&p).await;
    let mut got: BTreeMap<String, (Option<f64>, Option<String>)> = BTreeMap::new();
    for r in &rows {
        let id = r["user_id"].as_str().unwrap_or_default().to_string();
        got.insert(id, (r["max_budget"].as_f64(), r["user_role"].as_str().map(str::to_string)));
    }
    let expected: BTreeMap<String, (Option<f64>, Option<String>)> =
        names.iter().map(|n| (fx.uid(n), (Some(budget(n)), Some("internal_user".to_string())))).collect();
    let differ: Vec<String> = expected
        .iter()
        .filter(|(id, want)| got.get(*id) != Some(want))
        .map(|(id, want)| format!("{id}: want {want:?}, got {:?}", got.get(id)))
        .collect();
    assert!(differ.is_empty(), "{} users differ:\n{}", differ.len(), differ.join("\n"));
    let jsmith = fx.admin.must_user(&fx.uid("jsmith")).await;
    assert_eq!(jsmith["user_email"], fx.email("jsmith"), "{jsmith}");
    assert_eq!(jsmith["max_budget"], 50.0, "{jsmith}");
}
