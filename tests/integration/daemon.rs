//! `litellm-sync run` against the real LiteLLM, through the fault proxy where an outage is needed: scheduled
//! resyncs, metrics (checked with promtool), readiness, the outbox across `kill -9`, SIGTERM during a large run,
//! a corrupt store, and a hanging source next to a healthy one.
//!
//! An outage is the fault proxy answering 503 to everything: LiteLLM itself keeps running for the other tests.

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::support::proxy::{Fault, FaultProxy};
use crate::support::{eventually, litellm_env, Fixture};

/// The first run on a new store lists all of LiteLLM (shared with every other test, so large and busy).
const FIRST_RUN: Duration = Duration::from_secs(150);

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A running daemon; killed when dropped.
struct Daemon {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- daemon log (last 40 lines) ----");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

impl Daemon {
    async fn start(config: &Path, port: u16, log: &Path) -> Daemon {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("daemon log");
        let err = out.try_clone().expect("daemon log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_litellm-sync"));
        cmd.arg("--config").arg(config).arg("run");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("LITELLM_SYNC") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn litellm-sync run");
        let d = Daemon { child, port, log: log.to_path_buf() };
        eventually("the daemon serves /healthz", Duration::from_secs(20), || async {
            d.get("/healthz").await.filter(|(s, _)| *s == 200).map(|_| ())
        })
        .await;
        d
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }

    async fn metrics(&self) -> String {
        self.get("/metrics").await.map(|(_, b)| b).unwrap_or_default()
    }

    /// The value of one sample, e.g. `litellm_sync_outbox_depth{status="pending"}`.
    async fn sample(&self, series: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn kill9(mut self) {
        self.child.kill().await.expect("kill -9");
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("pid")
    }

    /// SIGTERM, then the exit status (bounded).
    async fn terminate(mut self, within: Duration) -> (std::process::ExitStatus, Duration) {
        let pid = self.pid();
        let started = std::time::Instant::now();
        let st = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().expect("kill -TERM");
        assert!(st.success());
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the daemon did not exit within {within:?} of SIGTERM:\n{}", self.log()))
            .expect("wait");
        (status, started.elapsed())
    }
}

fn users(fx: &Fixture, names: &[&str]) -> Value {
    json!({
        "users": names.iter().map(|n| json!({"id": format!("id-{n}"), "user_name": n, "email": fx.email(n)})).collect::<Vec<_>>(),
        "groups": [{"id": "g-eng", "name": "eng", "members": names.iter().take(2).map(|n| format!("id-{n}")).collect::<Vec<_>>()}],
    })
}

/// A daemon configuration: the test's file source on `schedule`, LiteLLM at `url`, a store in the test's dir.
fn daemon_config(fx: &Fixture, url: &str, port: u16, schedule: &str, extra: &str) -> std::path::PathBuf {
    let source = format!(
        r#"[[sources]]
name = "{source}"
type = "file"
path = "{users}"
user_id_template = "{prefix}{{user_name}}"
schedule = "{schedule}"
"#,
        source = fx.source,
        users = fx.path("users.yaml").display(),
        prefix = fx.prefix(),
    );
    daemon_config_with(fx, url, port, &source, extra)
}

/// [`daemon_config`] with any `[[sources]]` table.
fn daemon_config_with(fx: &Fixture, url: &str, port: u16, source: &str, extra: &str) -> std::path::PathBuf {
    let (_, key) = litellm_env();
    let text = format!(
        r#"[litellm]
url = "{url}"
api_key = "{key}"
timeout = "20s"
max_retries = 1
initial_backoff = "50ms"
max_backoff = "200ms"

{source}

[[rules]]
name = "eng"
match = {{ groups = ["eng"] }}
max_budget = 25.0
team = {{ id = "{prefix}{{group_name}}" }}

[defaults]
role = "internal_user"
max_budget = 5.0

[safety]
max_deletions_percent = 100.0

[store]
path = "{store}"

[server]
listen = "127.0.0.1:{port}"
shutdown_grace = "5s"
unready_after = "2s"
probe_interval = "1s"

[drift]
enabled = false

[log]
format = "json"
audit_path = "{audit}"
{extra}
"#,
        prefix = fx.prefix(),
        store = fx.path("state/state.db").display(),
        audit = fx.path("audit.jsonl").display(),
    );
    let path = fx.path("daemon.toml");
    std::fs::write(&path, text).expect("write daemon.toml");
    path
}

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
    use crate::ldap_support::{openldap_source, Slapd};
    let fx = Fixture::new("daemon-ldap").await;
    let slapd = Slapd::start(10, 2, &format!("{}.example.com", fx.source), false).await;
    let source = openldap_source(
        &fx,
        &[slapd.url()],
        "schedule = \"*/2 * * * * *\"\ndisabled_filter = \"(description=disabled)\"\npage_size = 7",
    );
    let port = free_port();
    let cfg = daemon_config_with(&fx, &fx.url, port, &source, "");
    let d = Daemon::start(&cfg, port, &fx.path("daemon.log")).await;
    // alice, bob, carol, erin, frank and 10 generated users; dave is disabled and never created.
    eventually("the scheduled run provisions the directory", FIRST_RUN, || async {
        (fx.admin.user_ids(&fx.prefix()).await.len() == 15).then_some(())
    })
    .await;
    assert_eq!(fx.admin.user(&fx.uid("dave")).await, None);
    // The directory changes; the next scheduled run applies it.
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
    let text = d.metrics().await;
    promtool_check(&text);
    for series in [
        format!("litellm_sync_source_users{{source=\"{}\"}} 16", fx.source),
        format!("litellm_sync_managed_users{{source=\"{}\"}} 15", fx.source),
        "litellm_sync_operations_total{op=\"create_user\",result=\"applied\"} 15".to_string(),
        "litellm_sync_operations_total{op=\"deactivate_user\",result=\"applied\"} 1".to_string(),
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
