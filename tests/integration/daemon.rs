//! `litellm-sync run` against the real LiteLLM, through the fault proxy where an outage is needed: scheduled
//! resyncs, metrics (checked with promtool), readiness, the outbox across `kill -9`, SIGTERM during a large run,
//! a corrupt store, and a hanging source next to a healthy one.
//!
//! An outage is the fault proxy answering 503 to everything: LiteLLM itself keeps running for the other tests.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::process::Command;

use crate::support::daemon::{daemon_config, daemon_config_with, users, Daemon, FIRST_RUN};
use crate::support::proxy::{Fault, FaultProxy};
use crate::support::{eventually, free_port, litellm_env, Fixture};

fn promtool_check(text: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is required: scripts/test.sh installs it");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write metrics");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_provision_apply_changes_and_report() {
    let fx = Fixture::new("daemon-sched").await;
    fx.write_users(&users(&fx, &["ann", "ben", "cid"]));
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let port = free_port();
    let cfg = daemon_config(&fx, &proxy.url(), port, "*/2 * * * * *", "");
    let d = Daemon::start(&cfg, port, &fx.path("daemon.log")).await;

    eventually("the first run provisions everyone", FIRST_RUN, || async {
        (fx.admin.user_ids(&fx.prefix()).await.len() == 3).then_some(())
    })
    .await;
    eventually("the team roster is filled", Duration::from_secs(30), || async {
        (fx.admin.members(&fx.uid("eng")).await.iter().filter(|(id, _)| id.starts_with(&fx.prefix())).count() == 2)
            .then_some(())
    })
    .await;
    // A directory change is applied by the next scheduled run.
    fx.write_users(&users(&fx, &["ann", "ben", "cid", "dee"]));
    eventually("the next scheduled run creates dee", Duration::from_secs(30), || async {
        fx.admin.user(&fx.uid("dee")).await.map(|_| ())
    })
    .await;
    eventually("the run is counted", Duration::from_secs(10), || async {
        d.sample(&format!("litellm_sync_runs_total{{result=\"success\",source=\"{}\"}}", fx.source))
            .await
            .filter(|v| *v >= 2.0)
    })
    .await;

    let text = d.metrics().await;
    promtool_check(&text);
    for series in [
        "litellm_sync_operations_total{op=\"create_user\",result=\"applied\"} 4",
        "litellm_sync_operations_total{op=\"create_team\",result=\"applied\"} 1",
        "litellm_sync_outbox_depth{status=\"pending\"} 0",
        "litellm_sync_outbox_depth{status=\"failed\"} 0",
        // A daemon on its own store leads for as long as it runs.
        "litellm_sync_leader 1",
    ] {
        assert!(text.contains(series), "missing {series:?} in:\n{text}");
    }
    assert!(text.contains(&format!("litellm_sync_managed_users{{source=\"{}\"}} 4", fx.source)), "{text}");
    assert!(text.contains(&format!("litellm_sync_source_users{{source=\"{}\"}} 4", fx.source)), "{text}");
    assert!(text.contains("litellm_sync_litellm_request_duration_seconds_bucket{endpoint=\"user/list\""), "{text}");
    assert_eq!(d.get("/readyz").await.map(|(s, _)| s), Some(200));
    let audit = std::fs::read_to_string(fx.path("audit.jsonl")).expect("audit log");
    assert_eq!(audit.lines().filter(|l| l.contains("\"op\":\"create_user\"")).count(), 4, "{audit}");
    assert!(!audit.contains(&litellm_env().1), "the API key must not reach the audit log");

    // LiteLLM "down" (every request answered 503 by the proxy): unready, with the reason; then ready again.
    proxy.inject(None, "/", 1_000_000, Fault::Status(503));
    let body = eventually("/readyz turns unready", Duration::from_secs(15), || async {
        d.get("/readyz").await.filter(|(s, _)| *s == 503).map(|(_, b)| b)
    })
    .await;
    assert!(body.contains("litellm:"), "{body}");
    proxy.clear_faults();
    eventually("/readyz is ready again", Duration::from_secs(15), || async {
        d.get("/readyz").await.filter(|(s, _)| *s == 200).map(|_| ())
    })
    .await;
    let (status, took) = d.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_then_kill9_then_recovery_lands_every_change_once() {
    let fx = Fixture::new("daemon-outage").await;
    fx.write_users(&users(&fx, &["amy", "bo"]));
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    let port = free_port();
    let cfg = daemon_config(&fx, &proxy.url(), port, "*/2 * * * * *", "");
    let d = Daemon::start(&cfg, port, &fx.path("daemon.log")).await;
    eventually("initial provisioning", FIRST_RUN, || async {
        (fx.admin.user_ids(&fx.prefix()).await.len() == 2).then_some(())
    })
    .await;

    // LiteLLM goes away; the directory changes (a new user, a leaver); a run happens and must keep the changes.
    proxy.inject(None, "/", 1_000_000, Fault::Status(503));
    let mut changed = users(&fx, &["amy", "cy"]);
    changed["users"][0]["display_name"] = json!("Amy Renamed");
    fx.write_users(&changed);
    eventually("the changes wait in the outbox", Duration::from_secs(30), || async {
        d.sample("litellm_sync_outbox_depth{status=\"pending\"}").await.filter(|v| *v >= 3.0)
    })
    .await;
    d.kill9().await;

    // Restart while LiteLLM is still away: it resumes the outbox, cannot apply, stays unready.
    let d = Daemon::start(&cfg, port, &fx.path("daemon.log")).await;
    let body = eventually("unready while LiteLLM is down", Duration::from_secs(15), || async {
        d.get("/readyz").await.filter(|(s, _)| *s == 503).map(|(_, b)| b)
    })
    .await;
    assert!(body.contains("litellm:"), "{body}");
    assert!(d.log().contains("Resuming operations left in the outbox"), "{}", d.log());
    let before = proxy.log().len();
    assert_eq!(fx.admin.user(&fx.uid("cy")).await, None, "nothing landed during the outage");

    // LiteLLM returns: every change lands, once.
    proxy.clear_faults();
    eventually("cy is created and bo deactivated", Duration::from_secs(40), || async {
        let cy = fx.admin.user(&fx.uid("cy")).await?;
        let bo = fx.admin.user(&fx.uid("bo")).await?;
        (bo["metadata"]["scim_active"] == json!(false)).then_some(cy)
    })
    .await;
    eventually("the outbox empties", Duration::from_secs(20), || async {
        d.sample("litellm_sync_outbox_depth{status=\"pending\"}").await.filter(|v| *v == 0.0)
    })
    .await;
    let amy = fx.admin.must_user(&fx.uid("amy")).await;
    assert_eq!(amy["user_alias"], json!("Amy Renamed"));
    assert_eq!(fx.admin.user_ids(&fx.prefix()).await.len(), 3, "no duplicates");
    // Creates that reached LiteLLM and succeeded (attempts the outage answered with 503 do not count).
    let landed: Vec<String> = proxy
        .log()
        .into_iter()
        .skip(before)
        .filter(|e| e.fault.is_none() && (200..300).contains(&e.status))
        .filter(|e| e.path.ends_with("/user/new") || e.path.ends_with("/users/bulk"))
        .map(|e| e.path)
        .collect();
    assert_eq!(landed.len(), 1, "cy is created exactly once after recovery: {landed:?}");
    d.terminate(Duration::from_secs(15)).await;
    // And the CLI agrees that LiteLLM is in sync with the source.
    std::fs::write(fx.path("config.toml"), std::fs::read_to_string(&cfg).expect("cfg").replace(&proxy.url(), &fx.url))
        .expect("config");
    fx.run(&["plan"]).await.expect(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_large_run_exits_in_grace_and_the_next_start_finishes() {
    let fx = Fixture::new("daemon-sigterm").await;
    let names: Vec<String> = (0..300).map(|i| format!("u{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    fx.write_users(&users(&fx, &refs));
    let port = free_port();
    // One request per user (no bulk) and one at a time: a run long enough to interrupt.
    let cfg = daemon_config(&fx, &fx.url, port, "0 0 0 1 1 *", "");
    let text = std::fs::read_to_string(&cfg)
        .expect("cfg")
        .replace("max_retries = 1", "max_retries = 1\nbulk = false\nconcurrency = 1");
    std::fs::write(&cfg, text).expect("cfg");
    let d = Daemon::start(&cfg, port, &fx.path("daemon.log")).await;
    eventually("the run is under way", FIRST_RUN, || async {
        (fx.admin.user_ids(&fx.prefix()).await.len() >= 20).then_some(())
    })
    .await;
    let (status, took) = d.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(took <= Duration::from_secs(7), "exited {took:?} after SIGTERM (grace 5 s)");
    let done = fx.admin.user_ids(&fx.prefix()).await.len();
    assert!(done < 300, "the run should have been interrupted, yet {done} users exist");

    let d = Daemon::start(&cfg, port, &fx.path("daemon.log")).await;
    eventually("the next start finishes the work", FIRST_RUN, || async {
        (fx.admin.user_ids(&fx.prefix()).await.len() == 300).then_some(())
    })
    .await;
    eventually("and empties the outbox", Duration::from_secs(20), || async {
        d.sample("litellm_sync_outbox_depth{status=\"pending\"}").await.filter(|v| *v == 0.0)
    })
    .await;
    d.terminate(Duration::from_secs(15)).await;
}

#[tokio::test]
async fn a_corrupt_store_is_a_clear_error() {
    let fx = Fixture::new("daemon-corrupt").await;
    fx.write_users(&users(&fx, &["x"]));
    let port = free_port();
    let cfg = daemon_config(&fx, &fx.url, port, "*/2 * * * * *", "");
    std::fs::create_dir_all(fx.path("state")).expect("dir");
    std::fs::write(fx.path("state/state.db"), b"not a database ".repeat(300)).expect("junk");
    let out = Command::new(env!("CARGO_BIN_EXE_litellm-sync"))
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out).await.expect("exits").expect("spawn");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot open the store") && err.contains("state.db"), "{err}");
    assert_eq!(fx.admin.user(&fx.uid("x")).await, None, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_source_does_not_stop_the_others() {
    let fx = Fixture::new("daemon-hang").await;
    fx.write_users(&users(&fx, &["hal"]));
    // An "LDAP server" that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let _hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            conns.push(s);
        }
    });
    let port = free_port();
    let extra = format!(
        r#"
[[sources]]
name = "{source}-ldap"
type = "ldap"
urls = ["ldap://127.0.0.1:{silent_port}"]
bind_dn = "cn=x"
bind_password = "y"
user_base = "dc=x"
group_base = "dc=x"
connect_timeout = "1s"
operation_timeout = "1s"
read_timeout = "2s"
user_id_template = "{prefix}ldap-{{user_name}}"
schedule = "*/2 * * * * *"
"#,
        source = fx.source,
        prefix = fx.prefix()
    );
    let cfg = daemon_config(&fx, &fx.url, port, "*/2 * * * * *", &extra);
    let d = Daemon::start(&cfg, port, &fx.path("daemon.log")).await;
    eventually("the file source is provisioned", FIRST_RUN, || async {
        fx.admin.user(&fx.uid("hal")).await.map(|_| ())
    })
    .await;
    eventually("the hanging source's runs fail and are counted", Duration::from_secs(20), || async {
        d.sample(&format!("litellm_sync_runs_total{{result=\"failed\",source=\"{}-ldap\"}}", fx.source))
            .await
            .filter(|v| *v >= 1.0)
    })
    .await;
    let body = eventually("/readyz names the failing source", Duration::from_secs(20), || async {
        d.get("/readyz").await.filter(|(s, _)| *s == 503).map(|(_, b)| b)
    })
    .await;
    assert!(body.contains(&format!("source {}-ldap", fx.source)), "{body}");
    d.terminate(Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_ldap_runs_follow_the_directory() {
    use crate::support::ldap::{openldap_source, Slapd};
    let fx = Fixture::new("daemon-ldap").await;
    let slapd = Slapd::start(10, 2, &format!("{}.example.com", fx.source), false).await;
    let source = openldap_source(
        &fx,
        &[slapd.url()],
        "schedule = \"*/2 * * * * *\"\ndisabled_filter = \"(description=disabled)\"\npage_size = 7",
    );
    let port = free_port();
    // A deactivated user is deleted 8 s later (a grace period far shorter than anyone would configure).
    let safety = "[safety]\nmax_deletions_percent = 100.0\ndelete_after = \"8s\"\n";
    let cfg = daemon_config_with(&fx, &fx.url, port, &source, safety);
    let d = Daemon::start(&cfg, port, &fx.path("daemon.log")).await;
    // alice, bob, carol, erin, frank and 10 generated users; dave is disabled and never created.
    eventually("the scheduled run provisions the directory", FIRST_RUN, || async {
        (fx.admin.user_ids(&fx.prefix()).await.len() == 15).then_some(())
    })
    .await;
    assert_eq!(fx.admin.user(&fx.uid("dave")).await, None);
    // The directory does not change: the scheduled runs after the provisioning find it unchanged and plan nothing.
    let unchanged = format!("litellm_sync_runs_unchanged_total{{source=\"{}\"}}", fx.source);
    let quiet = eventually("scheduled runs find the directory unchanged", Duration::from_secs(30), || async {
        d.sample(&unchanged).await.filter(|n| *n >= 2.0)
    })
    .await;
    // The directory changes; the next scheduled run applies it, however many runs were not planned before.
    slapd
        .modify(
            "dn: uid=bob,ou=people,dc=example,dc=org\nchangetype: modify\nadd: description\ndescription: disabled\n",
        )
        .await;
    eventually("bob is deactivated by the next run", Duration::from_secs(60), || async {
        let bob = fx.admin.user(&fx.uid("bob")).await?;
        (bob["metadata"]["scim_active"] == json!(false)).then_some(())
    })
    .await;
    // Nothing changes in the directory any more, but time does: bob's grace period ends and he is deleted.
    eventually("bob is deleted when his grace period ends", Duration::from_secs(60), || async {
        fx.admin.user(&fx.uid("bob")).await.is_none().then_some(())
    })
    .await;
    eventually("the runs after that are unchanged again", Duration::from_secs(30), || async {
        d.sample(&unchanged).await.filter(|n| *n >= quiet + 2.0)
    })
    .await;
    let text = d.metrics().await;
    promtool_check(&text);
    for series in [
        format!("litellm_sync_source_users{{source=\"{}\"}} 16", fx.source),
        format!("litellm_sync_managed_users{{source=\"{}\"}} 14", fx.source),
        "litellm_sync_operations_total{op=\"create_user\",result=\"applied\"} 15".to_string(),
        "litellm_sync_operations_total{op=\"deactivate_user\",result=\"applied\"} 1".to_string(),
        "litellm_sync_operations_total{op=\"delete_user\",result=\"applied\"} 1".to_string(),
    ] {
        assert!(text.contains(&series), "missing {series:?} in:\n{text}");
    }
    assert_eq!(d.get("/readyz").await.map(|(s, _)| s), Some(200));
    d.terminate(Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drift_check_repairs_fields_changed_by_hand() {
    let fx = Fixture::new("daemon-drift").await;
    fx.write_users(&users(&fx, &["dan", "dot"]));
    let port = free_port();
    // Source runs only at start-up (a schedule that never comes); the drift check every 3 seconds.
    let cfg = daemon_config(&fx, &fx.url, port, "0 0 0 1 1 *", "");
    let text = std::fs::read_to_string(&cfg)
        .expect("cfg")
        .replace("[drift]\nenabled = false", "[drift]\nschedule = \"*/3 * * * * *\"");
    std::fs::write(&cfg, text).expect("cfg");
    let d = Daemon::start(&cfg, port, &fx.path("daemon.log")).await;
    eventually("initial provisioning", FIRST_RUN, || async {
        let dot = fx.admin.user(&fx.uid("dot")).await?;
        (dot["max_budget"].as_f64() == Some(25.0)).then_some(())
    })
    .await;
    // Someone raises a managed budget by hand; the next drift check sets it back and counts it.
    fx.admin.update_user(json!({"user_id": fx.uid("dot"), "max_budget": 9999.0})).await;
    eventually("the drift check repairs the budget", Duration::from_secs(90), || async {
        let dot = fx.admin.user(&fx.uid("dot")).await?;
        (dot["max_budget"].as_f64() == Some(25.0)).then_some(())
    })
    .await;
    let repaired = d.sample(&format!("litellm_sync_drift_repaired_total{{source=\"{}\"}}", fx.source)).await;
    assert!(repaired.is_some_and(|v| v >= 1.0), "drift not counted: {repaired:?}\n{}", d.metrics().await);
    d.terminate(Duration::from_secs(15)).await;
}

/// DESIGN §2.5 for a push source: a SCIM write answered 2xx while LiteLLM is down is in the store before the
/// answer; the daemon is then killed (`kill -9`), and the next start, with LiteLLM back, applies it once. The CLI
/// sharing the daemon's store then plans the pushed view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scim_write_accepted_while_litellm_is_down_lands_after_a_kill9() {
    use crate::support::scim::{scim_source, token_from_cli, ScimClient, USER};

    let fx = Fixture::new("daemon-scim-down").await;
    let proxy = FaultProxy::start(&fx.url, &fx.admin).await;
    proxy.inject(None, "/", 1_000_000, Fault::Status(503));
    let (token, hash) = token_from_cli(&fx).await;
    let port = free_port();
    let source = scim_source(&fx, &format!("tokens = [\"{hash}\"]"), "");
    let cfg = daemon_config_with(&fx, &proxy.url(), port, &source, "");
    let d = Daemon::start(&cfg, port, &fx.path("daemon.log")).await;
    let scim = ScimClient::new(&format!("http://127.0.0.1:{port}/scim/v2"), &token);
    let user = json!({
        "schemas": [USER], "userName": "dee", "externalId": "ext-dee", "active": true,
        "emails": [{"primary": true, "value": fx.email("dee"), "type": "work"}],
    });
    let dee = ScimClient::expect(scim.send("POST", "/Users", Some(&user)).await, 201, "accepted while LiteLLM is down");
    let id = dee["id"].as_str().expect("id").to_string();
    // Give the reconciler a moment to try (and fail) before the process dies.
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.kill9().await;
    assert_eq!(fx.admin.user(&fx.uid("dee")).await, None, "nothing reached LiteLLM during the outage");

    proxy.clear_faults();
    let d = Daemon::start(&cfg, port, &fx.path("daemon.log")).await;
    ScimClient::expect(scim.get(&format!("/Users/{id}")).await, 200, "the accepted user survived the kill");
    eventually("dee lands once LiteLLM is back", Duration::from_secs(120), || async {
        fx.admin.user(&fx.uid("dee")).await.filter(|u| u["user_email"] == json!(fx.email("dee")))
    })
    .await;
    let creates = proxy
        .log()
        .into_iter()
        .filter(|e| e.fault.is_none() && (200..300).contains(&e.status))
        .filter(|e| e.path.ends_with("/user/new") || e.path.ends_with("/users/bulk"))
        .count();
    assert_eq!(creates, 1, "created exactly once");
    d.terminate(Duration::from_secs(15)).await;

    // The CLI on the daemon's store plans the pushed view (it has nothing to read itself): in sync, exit 0.
    std::fs::copy(&cfg, fx.path("config.toml")).expect("the daemon's config for the CLI");
    let run = fx.run(&["plan"]).await;
    run.expect(0);
    // Without the store it cannot see the view, and says so (exit 1), instead of planning the users away.
    let text = std::fs::read_to_string(&cfg).expect("config");
    let store_line = text.lines().find(|l| l.starts_with("path = ") && l.contains("state.db")).expect("store path");
    std::fs::write(fx.path("config.toml"), text.replace(store_line, "")).expect("config without a store");
    let run = fx.run(&["plan"]).await;
    run.expect(1).assert_mentions("is a SCIM source");
}
