//! Active Directory: the real binary against a real Samba AD domain controller (scripts/peers/samba-ad.sh) and the
//! real LiteLLM, with `flavor = "active_directory"`: objectGUID identities, userAccountControl's disabled flag,
//! memberOf, nested groups resolved by the server (`in_chain`, LDAP_MATCHING_RULE_IN_CHAIN), paged results over more
//! users than a page, and a bind as an ordinary domain user.
//!
//! Samba's ports are fixed, so this is one test function (and `SambaAd` serializes any other).

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;

use crate::support::admin::marker_source;
use crate::support::ldap::{assert_no_writes, directory_rules, q, run_steady, write_config, SambaAd, AD_URL};
use crate::support::{ops_of, FaultProxy, Fixture};

const BASE: &str = "DC=example,DC=org";
const PEOPLE: &str = "OU=People,OU=LLM,DC=example,DC=org";
const GROUPS: &str = "OU=Groups,OU=LLM,DC=example,DC=org";
/// Outside `group_base`: its nesting is only visible through the server's in-chain matching rule.
const OTHER: &str = "OU=Other,OU=LLM,DC=example,DC=org";
const SVC: &str = "svc-litellm";
const SVC_DN: &str = "CN=svc-litellm,CN=Users,DC=example,DC=org";
const SVC_PASSWORD: &str = "Svc-Passw0rd!1";
/// Generated users: more than two pages of `PAGE`.
const N: usize = 120;
const PAGE: usize = 50;
const FIXED: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];

fn dn(cn: &str, ou: &str) -> String {
    format!("CN={cn},{ou}")
}

fn gen(i: usize) -> String {
    format!("u{i:03}")
}

/// People, groups and the nesting, as LDIF for `ldapadd` (members before the groups that list them).
fn directory(fx: &Fixture) -> String {
    let mut out = String::new();
    for ou in ["OU=LLM", "OU=People,OU=LLM", "OU=Groups,OU=LLM", "OU=Other,OU=LLM"] {
        let name = ou.split(',').next().unwrap().trim_start_matches("OU=");
        out += &format!("dn: {ou},{BASE}\nobjectClass: organizationalUnit\nou: {name}\n\n");
    }
    let names: Vec<String> = FIXED.iter().map(|s| s.to_string()).chain((1..=N).map(gen)).collect();
    for name in &names {
        // 544 = NORMAL_ACCOUNT | PASSWD_NOTREQD: enabled without a password (none of them binds).
        out += &format!(
            "dn: {}\nobjectClass: user\nsAMAccountName: {name}\ndisplayName: {} Example\nuserAccountControl: 544\n",
            dn(name, PEOPLE),
            name.to_uppercase()
        );
        if name != "frank" {
            out += &format!("mail: {}\n", fx.email(name));
        }
        if name == "alice" {
            out += "employeeNumber: 750\n";
        }
        out += "\n";
    }
    let group = |cn: &str, ou: &str, members: Vec<String>| {
        let mut g = format!("dn: {}\nobjectClass: group\nsAMAccountName: {cn}\n", dn(cn, ou));
        for m in members {
            g += &format!("member: {m}\n");
        }
        g + "\n"
    };
    out += &group("contractors", OTHER, vec![dn("carol", PEOPLE)]);
    out += &group("llm-admins", GROUPS, vec![dn("alice", PEOPLE)]);
    out += &group("engineering", GROUPS, vec![dn("bob", PEOPLE), dn("llm-admins", GROUPS), dn("contractors", OTHER)]);
    out += &group(
        "all-staff",
        GROUPS,
        vec![dn("carol", PEOPLE), dn("dave", PEOPLE), dn("frank", PEOPLE), dn("engineering", GROUPS)],
    );
    out += &group("team-a", GROUPS, (1..=N / 2).map(|i| dn(&gen(i), PEOPLE)).collect());
    out += &group("team-b", GROUPS, (N / 2 + 1..=N).map(|i| dn(&gen(i), PEOPLE)).collect());
    out
}

fn source(fx: &Fixture, in_chain: bool, password: &str) -> String {
    format!(
        "[[sources]]\nname = {name}\ntype = \"ldap\"\nflavor = \"active_directory\"\nurls = [{url}]\n\
         bind_dn = {dn}\nbind_password = {pw}\npage_size = {PAGE}\nuser_base = {people}\ngroup_base = {groups}\n\
         in_chain = {in_chain}\nuser_id_template = {template}\nconnect_timeout = \"5s\"\n\
         attributes = {{ overrides = {{ max_budget = \"employeeNumber\" }} }}\n",
        name = q(&fx.source),
        url = q(AD_URL),
        dn = q(SVC_DN),
        pw = q(password),
        people = q(PEOPLE),
        groups = q(GROUPS),
        template = q(&format!("{}{{user_name}}", fx.prefix())),
    )
}

fn rules(fx: &Fixture) -> String {
    directory_rules(fx, "llm-admins", "CN=engineering,OU=Groups,OU=LLM,DC=example,DC=org")
}

fn expected_ids(fx: &Fixture) -> Vec<String> {
    let mut ids: Vec<String> =
        FIXED.iter().filter(|n| **n != "dave").map(|n| fx.uid(n)).chain((1..=N).map(|i| fx.uid(&gen(i)))).collect();
    ids.sort();
    ids
}

/// The user ids a plan adds to `team`.
fn planned_members(doc: &Value, team: &str) -> Vec<String> {
    let mut ids: Vec<String> = ops_of(doc, "operations", "add_member")
        .iter()
        .filter(|o| o["team_id"] == team)
        .filter_map(|m| m["user_id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

fn summary(doc: &Value) -> BTreeMap<String, u64> {
    doc["summary"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
        .unwrap_or_default()
}

async fn roster(fx: &Fixture, team: &str) -> Vec<String> {
    let mut ids: Vec<String> =
        fx.admin.members(team).await.into_iter().map(|(id, _)| id).filter(|id| id.starts_with(&fx.prefix())).collect();
    ids.sort();
    ids
}

/// The textual objectGUID samba-tool prints for an account.
async fn guid(ad: &SambaAd, account: &str) -> String {
    let out = ad.tool(&["user", "show", account, "--attributes=objectGUID"]).await;
    out.lines()
        .find_map(|l| l.strip_prefix("objectGUID: "))
        .unwrap_or_else(|| panic!("no objectGUID in samba-tool's answer:\n{out}"))
        .trim()
        .to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_directory_end_to_end() {
    let mut fx = Fixture::new("ad").await;
    let t0 = Instant::now();
    let mut ad = SambaAd::start().await;
    let started = t0.elapsed();
    ad.tool(&["user", "create", SVC, SVC_PASSWORD]).await;
    ad.add(&directory(&fx)).await;
    ad.tool(&["user", "disable", "dave"]).await;
    let loaded = t0.elapsed();
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let eng = fx.uid("engineering");

    // check-config binds as the ordinary domain user and finds people.
    write_config(&fx, &proxy.url(), &source(&fx, true, SVC_PASSWORD), &rules(&fx));
    fx.run(&["check-config"])
        .await
        .expect(0)
        .assert_mentions(&format!("✓ source \"{}\" (ldap)", fx.source))
        .assert_mentions(&format!("bound to {AD_URL}"))
        .assert_mentions("finds entries");

    // Without in_chain, carol's membership through `contractors` (outside group_base) is invisible.
    write_config(&fx, &proxy.url(), &source(&fx, false, SVC_PASSWORD), &rules(&fx));
    let plan = fx.run(&["plan", "--output", "json"]).await;
    plan.expect(2);
    assert_eq!(planned_members(&plan.json(), &eng), vec![fx.uid("alice"), fx.uid("bob")], "{}", plan.stdout);

    // With in_chain the server resolves every level of nesting.
    write_config(&fx, &proxy.url(), &source(&fx, true, SVC_PASSWORD), &rules(&fx));
    let plan = fx.run(&["plan", "--output", "json"]).await;
    plan.expect(2);
    let doc = plan.json();
    assert_eq!(planned_members(&doc, &eng), vec![fx.uid("alice"), fx.uid("bob"), fx.uid("carol")], "{}", plan.stdout);
    let s = summary(&doc);
    assert_eq!(s.get("create_user"), Some(&((N + 5) as u64)), "every enabled account, over {PAGE}-entry pages: {s:?}");
    assert_eq!(s.get("create_team"), Some(&3), "{s:?}");
    let created: Vec<&str> =
        ops_of(&doc, "operations", "create_user").iter().filter_map(|o| o["user_id"].as_str()).collect();
    assert!(!created.contains(&fx.uid("dave").as_str()), "dave is disabled (userAccountControl)");
    assert!(!created.iter().any(|id| id.contains(SVC) || id.contains("Administrator")), "only OU=People: {created:?}");

    let t = Instant::now();
    fx.run(&["sync"]).await.expect(0);
    let synced = t.elapsed();
    assert_eq!(fx.admin.user_ids(&fx.prefix()).await, expected_ids(&fx));
    assert!(fx.admin.user(&fx.uid("dave")).await.is_none());
    let alice = fx.admin.must_user(&fx.uid("alice")).await;
    assert_eq!(alice["metadata"]["litellm_sync"]["external_id"], guid(&ad, "alice").await, "objectGUID: {alice}");
    assert_eq!(marker_source(&alice), Some(fx.source.as_str()), "{alice}");
    assert_eq!(alice["user_role"], "proxy_admin", "memberOf llm-admins: {alice}");
    assert_eq!(alice["max_budget"], 750.0, "employeeNumber override: {alice}");
    assert_eq!(alice["user_email"], fx.email("alice"), "{alice}");
    let carol = fx.admin.must_user(&fx.uid("carol")).await;
    assert_eq!(carol["max_budget"], 100.0, "carol is in engineering through contractors: {carol}");
    let frank = fx.admin.must_user(&fx.uid("frank")).await;
    assert!(frank["user_email"].is_null(), "{frank}");
    assert_eq!(frank["max_budget"], 5.0, "{frank}");
    assert_eq!(fx.admin.must_user(&fx.uid("u001")).await["max_budget"], 20.0);
    assert_eq!(roster(&fx, &eng).await, vec![fx.uid("alice"), fx.uid("bob"), fx.uid("carol")]);
    let mut team_a: Vec<String> = (1..=N / 2).map(|i| fx.uid(&gen(i))).collect();
    team_a.sort();
    assert_eq!(roster(&fx, &fx.uid("team-a")).await, team_a);
    assert_eq!(roster(&fx, &fx.uid("team-b")).await.len(), N / 2);

    // Nothing changed: zero writes.
    fx.quiet().await;
    assert_no_writes(&fx, &proxy, &["sync", "--output", "json"]).await.expect(0);
    run_steady(&fx, &["plan"]).await.expect(0);

    // bob is disabled (userAccountControl) and carol leaves the nested group: exactly those two changes.
    ad.tool(&["user", "disable", "bob"]).await;
    ad.modify(&format!(
        "dn: {}\nchangetype: modify\ndelete: member\nmember: {}\n",
        dn("contractors", OTHER),
        dn("carol", PEOPLE)
    ))
    .await;
    let plan = run_steady(&fx, &["plan", "--output", "json"]).await;
    plan.expect(2);
    let doc = plan.json();
    let mut ops: Vec<String> = doc["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {} {}",
                o["op"].as_str().unwrap(),
                o["team_id"].as_str().unwrap_or("-"),
                o["user_id"].as_str().unwrap_or("-")
            )
        })
        .collect();
    ops.sort();
    // carol also falls back from the eng budget to the defaults.
    let mut want = vec![
        format!("deactivate_user - {}", fx.uid("bob")),
        format!("remove_member {eng} {}", fx.uid("carol")),
        format!("update_user - {}", fx.uid("carol")),
    ];
    want.sort();
    assert_eq!(ops, want, "{}", plan.stdout);
    fx.run(&["sync"]).await.expect(0);
    let bob = fx.admin.must_user(&fx.uid("bob")).await;
    assert_eq!(bob["metadata"]["scim_active"], false, "{bob}");
    assert_eq!(fx.admin.must_user(&fx.uid("carol")).await["max_budget"], 5.0);
    assert_eq!(roster(&fx, &eng).await, vec![fx.uid("alice"), fx.uid("bob")], "deactivated bob keeps his seat");
    run_steady(&fx, &["plan"]).await.expect(0);
    fx.shared().await;

    // A wrong password: AD refuses the bind (49), and the run says so.
    write_config(&fx, &proxy.url(), &source(&fx, true, "not-the-password"), &rules(&fx));
    proxy.reset_log();
    let run = fx.run(&["sync"]).await;
    run.expect(1).assert_mentions("was refused").assert_mentions("result code 49");
    assert_eq!(proxy.writes(), Vec::<String>::new());
    assert_eq!(fx.admin.user_ids(&fx.prefix()).await, expected_ids(&fx), "nobody deprovisioned");

    let t = Instant::now();
    ad.stop();
    eprintln!(
        "samba AD: started in {started:?}, loaded {} accounts by {loaded:?}, first sync {synced:?}, stopped in {:?}",
        N + FIXED.len(),
        t.elapsed()
    );
}
