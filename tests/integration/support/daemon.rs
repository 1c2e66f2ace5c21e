//! A running `litellm-sync run` for the tests: started with a clean environment, its log kept, its endpoints
//! read, killed (`kill -9`) or stopped (SIGTERM), and a daemon configuration writer.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::{Child, Command};

use super::{eventually, litellm_env, Fixture};

/// The first run on a new store lists all of LiteLLM (shared with every other test, so large and busy).
pub const FIRST_RUN: Duration = Duration::from_secs(150);

/// A running daemon; killed when dropped.
pub struct Daemon {
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
    pub async fn start(config: &Path, port: u16, log: &Path) -> Daemon {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("daemon log");
        let err = out.try_clone().expect("daemon log");
        let mut cmd = Command::new(super::binary());
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

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.map(|(_, b)| b).unwrap_or_default()
    }

    /// The value of one sample, e.g. `litellm_sync_outbox_depth{status="pending"}`.
    pub async fn sample(&self, series: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn kill9(mut self) {
        self.child.kill().await.expect("kill -9");
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("pid")
    }

    /// SIGTERM, then the exit status (bounded).
    pub async fn terminate(mut self, within: Duration) -> (std::process::ExitStatus, Duration) {
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

pub fn users(fx: &Fixture, names: &[&str]) -> Value {
    json!({
        "users": names.iter().map(|n| json!({"id": format!("id-{n}"), "user_name": n, "email": fx.email(n)})).collect::<Vec<_>>(),
        "groups": [{"id": "g-eng", "name": "eng", "members": names.iter().take(2).map(|n| format!("id-{n}")).collect::<Vec<_>>()}],
    })
}

/// A daemon configuration: the test's file source on `schedule`, LiteLLM at `url`, a store in the test's dir.
pub fn daemon_config(fx: &Fixture, url: &str, port: u16, schedule: &str, extra: &str) -> std::path::PathBuf {
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
pub fn daemon_config_with(fx: &Fixture, url: &str, port: u16, source: &str, extra: &str) -> std::path::PathBuf {
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

{safety}
{store}

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
        safety = if extra.contains("[safety]") { "" } else { "[safety]\nmax_deletions_percent = 100.0\n" },
        store = if extra.contains("[store]") {
            String::new()
        } else {
            format!("[store]\npath = \"{}\"\n", fx.path("state/state.db").display())
        },
        audit = fx.path("audit.jsonl").display(),
    );
    let path = fx.path("daemon.toml");
    std::fs::write(&path, text).expect("write daemon.toml");
    path
}

/// [`daemon_config_with`] written under another file name (two daemons of one test: `name` = "a.toml").
pub fn daemon_config_named(
    fx: &Fixture,
    name: &str,
    url: &str,
    port: u16,
    source: &str,
    extra: &str,
) -> std::path::PathBuf {
    let written = daemon_config_with(fx, url, port, source, extra);
    let path = fx.path(name);
    std::fs::rename(&written, &path).expect("rename the daemon config");
    path
}
