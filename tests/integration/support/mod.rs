//! Test support: where the real LiteLLM is, an admin client for it ([`Admin`]), a fault-injecting proxy in front
//! of it ([`FaultProxy`]), and a [`Fixture`] that writes a config and a users file into a temporary directory and
//! runs the real `litellm-sync` binary.
//!
//! Every test talks to the same LiteLLM, in parallel with the others, so each one works under its own source name
//! and `user_id`/`team_id` prefix (`t-<name>-`), and removes what an earlier run of itself left behind.
//! Nothing here fakes LiteLLM: the proxy forwards every request except the faults a test injects.

pub mod admin;
pub mod daemon;
pub mod ldap;
pub mod oidc;
pub mod postgres;
pub mod proxy;
pub mod scim;

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use admin::Admin;
pub use proxy::{Fault, FaultProxy, Hook};

/// The binary under test: this build's, or the one `LITELLM_SYNC_TEST_BIN` names (to show that a test fails on an
/// older build).
pub fn binary() -> std::path::PathBuf {
    std::env::var_os("LITELLM_SYNC_TEST_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_litellm-sync")))
}

/// A free loopback TCP port (the kernel's choice), never handed out before in this process.
pub fn free_port() -> u16 {
    pick_port(false)
}

/// A free loopback port whose successor is free too (slapd's LDAPS port beside its LDAP one).
pub fn free_port_pair() -> u16 {
    pick_port(true)
}

/// Ports handed out in this process, so that two tests never get the same one.
static TAKEN: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<u16>>> =
    std::sync::LazyLock::new(Default::default);

/// A port on 127.0.0.1 that nothing listens on now (and, with `pair`, the next one too), never handed out before
/// in this process.
fn pick_port(pair: bool) -> u16 {
    for _ in 0..200 {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port();
        if pair && (port == u16::MAX || std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_err()) {
            continue;
        }
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        if taken.contains(&port) || (pair && taken.contains(&(port + 1))) {
            continue;
        }
        taken.insert(port);
        if pair {
            taken.insert(port + 1);
        }
        return port;
    }
    panic!("no free port pair on 127.0.0.1");
}

/// Base URL of the real LiteLLM that `scripts/test.sh` started.
pub const ENV_URL: &str = "LITELLM_SYNC_TEST_LITELLM_URL";
/// Its master key.
pub const ENV_KEY: &str = "LITELLM_SYNC_TEST_LITELLM_KEY";

/// One run of the binary may take this long before the test fails (260 users through a slow proxy included).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the real LiteLLM is. Panics (never skips) when the suite was not started by `scripts/test.sh`.
pub fn litellm_env() -> (String, String) {
    let get = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| panic!("{name} is not set: run scripts/test.sh (it starts the real LiteLLM)"))
    };
    (get(ENV_URL).trim_end_matches('/').to_string(), get(ENV_KEY))
}

/// Tests that count requests or expect "no changes" need LiteLLM to hold still: another test creating users
/// meanwhile moves `/user/list` page boundaries and the totals the client checks. They take the write side for
/// those phases; everything else holds the read side for as long as it writes to LiteLLM.
static WORLD: LazyLock<RwLock<()>> = LazyLock::new(|| RwLock::new(()));

/// Held, never read: dropping it releases the lock.
#[allow(dead_code)]
enum Guard {
    Shared(RwLockReadGuard<'static, ()>),
    Quiet(RwLockWriteGuard<'static, ()>),
}

/// Polls `probe` until it returns `Some`, for at most `limit`; panics naming `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics, with the whole output, unless the exit code is `code`.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            code,
            "`litellm-sync {}` exited {} (wanted {code})\n{}",
            self.args.join(" "),
            self.code,
            self.dump()
        );
        self
    }

    /// stdout parsed as JSON (`--output json`).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.dump()))
    }

    /// stdout and stderr together, for `contains` checks that do not care where a message went.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn assert_mentions(&self, needle: &str) -> &Run {
        assert!(
            self.all().contains(needle),
            "output of `litellm-sync {}` does not mention {needle:?}\n{}",
            self.args.join(" "),
            self.dump()
        );
        self
    }

    pub fn dump(&self) -> String {
        format!("--- stdout ---\n{}\n--- stderr ---\n{}", self.stdout, self.stderr)
    }
}

/// One test's world: its names, its temporary directory, and the files the binary reads.
pub struct Fixture {
    /// The source name, `t-<name>`.
    pub source: String,
    prefix: String,
    pub admin: Admin,
    /// Base URL of the real LiteLLM.
    pub url: String,
    key: String,
    dir: tempfile::TempDir,
    guard: Option<Guard>,
}

impl Fixture {
    /// Sets up the test `name` (lower-case letters, digits, '-') and deletes what an earlier run of it left in
    /// LiteLLM. Holds the shared side of the world lock until [`Fixture::quiet`] is asked for.
    pub async fn new(name: &str) -> Fixture {
        Fixture::with_prefix(name, &format!("t-{name}-")).await
    }

    /// [`Fixture::new`] with another id prefix (where the test needs its users at a given place in LiteLLM's
    /// `user_id` order).
    pub async fn with_prefix(name: &str, prefix: &str) -> Fixture {
        let (url, key) = litellm_env();
        let admin = Admin::new(&url, &key);
        let guard = Some(Guard::Shared(WORLD.read().await));
        let fx = Fixture {
            source: format!("t-{name}"),
            prefix: prefix.to_string(),
            admin,
            url,
            key,
            dir: tempfile::tempdir().expect("temporary directory"),
            guard,
        };
        fx.admin.cleanup(&fx.prefix()).await;
        fx.admin.ensure_anchor().await;
        fx
    }

    /// `t-<name>-` unless told otherwise: every user and team id of this test starts with it.
    pub fn prefix(&self) -> String {
        self.prefix.clone()
    }

    /// The LiteLLM `user_id` that the source's template gives `user_name`.
    pub fn uid(&self, user_name: &str) -> String {
        format!("{}{user_name}", self.prefix())
    }

    /// A unique e-mail address for `user_name` (LiteLLM refuses an address another user has).
    pub fn email(&self, user_name: &str) -> String {
        format!("{user_name}@{}.example.com", self.source)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Takes the exclusive side of the world lock: no other test writes to LiteLLM until [`Fixture::shared`].
    /// A test must not hold a second `Fixture` meanwhile (it would wait for itself).
    pub async fn quiet(&mut self) {
        self.guard = None;
        self.guard = Some(Guard::Quiet(WORLD.write().await));
    }

    /// Back to the shared side of the world lock.
    pub async fn shared(&mut self) {
        self.guard = None;
        self.guard = Some(Guard::Shared(WORLD.read().await));
    }

    /// Writes the users file (JSON is YAML, so the file source reads it as YAML).
    pub fn write_users(&self, users: &Value) {
        std::fs::write(self.path("users.yaml"), serde_json::to_string_pretty(users).expect("users JSON"))
            .expect("write users.yaml");
    }

    /// Writes `config.toml`: LiteLLM at `url` with the master key, plus `litellm_extra` lines in `[litellm]`, one
    /// file source for this test, and `rest` (rules, defaults, safety…) verbatim; and, when the rules mint keys and
    /// `rest` names no key file, a `[keys]` file in the test's directory (`keys.jsonl`).
    pub fn write_config(&self, url: &str, litellm_extra: &str, rest: &str) {
        self.write_config_with_key(url, &self.key, litellm_extra, rest);
    }

    /// [`Fixture::write_config`] with another API key.
    pub fn write_config_with_key(&self, url: &str, key: &str, litellm_extra: &str, rest: &str) {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let text = format!(
            "[litellm]\nurl = {url}\napi_key = {key}\n{litellm_extra}\n\n\
             [[sources]]\nname = {source}\ntype = \"file\"\npath = {path}\nuser_id_template = {template}\n\n{rest}\n",
            url = q(url),
            key = q(key),
            source = q(&self.source),
            path = q(&self.path("users.yaml").display().to_string()),
            template = q(&format!("{}{{user_name}}", self.prefix())),
        );
        // Only where the rules mint keys, so that a configuration stays readable by builds without `[keys]`.
        let mints = rest.lines().any(|l| l.trim_start().starts_with("key ="));
        let text = if rest.contains("[keys]") || !mints {
            text
        } else {
            format!("{text}\n[keys]\npath = {}\n", q(&self.path("keys.jsonl").display().to_string()))
        };
        std::fs::write(self.path("config.toml"), text).expect("write config.toml");
    }

    /// Writes `config.toml` exactly as given (for malformed configurations).
    pub fn write_raw_config(&self, text: &str) {
        std::fs::write(self.path("config.toml"), text).expect("write config.toml");
    }

    /// Runs `litellm-sync --config <dir>/config.toml <args>` and waits for it (bounded).
    pub async fn run(&self, args: &[&str]) -> Run {
        let mut cmd = tokio::process::Command::new(binary());
        cmd.arg("--config").arg(self.path("config.toml")).args(args);
        // The binary reads LITELLM_SYNC_* and LITELLM_SYNC__* from the environment: only the file may speak.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("LITELLM_SYNC") {
                cmd.env_remove(k);
            }
        }
        cmd.env("NO_COLOR", "1").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let out = tokio::time::timeout(RUN_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("`litellm-sync {}` did not finish within {RUN_TIMEOUT:?}", args.join(" ")))
            .expect("spawn litellm-sync");
        Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// One rule for the group "staff": a budget, a key at creation, and a team per group with this test's prefix.
pub fn staff_rules(fx: &Fixture) -> String {
    format!(
        r#"
[[rules]]
name = "staff"
match = {{ groups = ["staff"] }}
max_budget = 10.0
key = {{ alias = "{{user_id}}-key" }}
team = {{ id = "{prefix}{{group_name}}" }}
"#,
        prefix = fx.prefix()
    )
}

/// Operations of one kind in a `--output json` document (`operations` or `held`).
pub fn ops_of<'a>(doc: &'a Value, list: &str, kind: &str) -> Vec<&'a Value> {
    doc[list].as_array().map(|a| a.iter().filter(|o| o["op"] == kind).collect()).unwrap_or_default()
}
