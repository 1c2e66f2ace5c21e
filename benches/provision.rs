//! The performance table of issue 9, measured in one run: each line of litellm-sync's work next to the floor
//! LiteLLM (or slapd) sets for it, measured in the same sitting against the same proxy, with the ratio.
//!
//!     scripts/bench.sh                         # starts its own LiteLLM (own port and database), runs this
//!     LITELLM_SYNC_BENCH_URL=http://127.0.0.1:4000 LITELLM_SYNC_BENCH_KEY=sk-... cargo bench --bench provision
//!
//! Environment:
//!   LITELLM_SYNC_BENCH_URL, _KEY   the LiteLLM to use (required here; scripts/bench.sh starts one when unset)
//!   BENCH_USERS=2000               N: users of the file source (the issue's size: 10000)
//!   BENCH_CHANGED=100              M: users whose budget changes
//!   BENCH_LDAP_USERS=20000         K: LDAP users in a loopback slapd (the issue's size: 100000; 0 skips the line)
//!   BENCH_PREFIX=b<unix time>-     prefix of every user_id this bench creates (the proxy may hold other users)
//!   BENCH_CLEANUP=1                delete the users it created at the end (bulk delete); 0 keeps them
//!   BENCH_STEP_TIMEOUT=1800        seconds any one step (a process, a wait) may take before the bench gives up
//!   BENCH_ONLY=provision           only line 1 (the first provisioning between its two floors); default all
//!   BENCH_ONLY=ldap                only the LDAP lines (step 8), without the bulk floor of line 1
//!
//! What runs (the binary is the release `litellm-sync` cargo builds for this bench, run as a user runs it):
//!   1. floor: N users through `/management/v1/users/bulk`, 500 a request, sequential (prefix `<p>fa-`)
//!   2. `litellm-sync sync` of a file source of N users and one rule, with a store (first provisioning)
//!   3. floor again (prefix `<p>fb-`): the two floors bracket line 2
//!   4. `sync` again: no-op, planned against the store's ledger
//!   5. the `/user/list` floor (100 a page, sorted by user_id, 8 pages in flight), `sync --refresh`, the floor again
//!   6. M users get a budget override: `sync`; floor: M raw `/user/update` at the client's concurrency
//!   7. `litellm-sync run` on a new store: its first run (lists LiteLLM to build its ledger), then one no-op
//!      scheduled run; the listing floor before and after
//!   8. slapd with K users: `ldapsearch` paged read (users + groups) before; the daemon with an LDAP source: first
//!      run (provisions K), then a no-op scheduled run with its peak RSS (VmHWM reset after the first run),
//!      `ldapsearch` right after it; a fresh daemon process's no-op run, `ldapsearch` after. The floor is the mean
//!      of the two reads that bracket the no-op runs
//!
//! Times of daemon runs are `litellm_sync_run_duration_seconds` (read + plan + apply of one run) from its /metrics;
//! request counts come from `litellm_sync_litellm_request_duration_seconds_count` (daemon) and from the `sync`
//! summary log line (CLI). The bench prints; it never fails on timing. It does fail when a run's result is wrong
//! (a failed operation, a wrong count): a fast wrong answer is worth nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

#[path = "common/mod.rs"]
mod common;
use common::{env_usize, free_port, Slapd};

const BULK: usize = 500;
const PAGE: usize = 100;
const IN_FLIGHT: usize = 8;
/// litellm.concurrency in the bench configs (the default): the update floor uses the same.
const CONCURRENCY: usize = 4;
const BIN: &str = env!("CARGO_BIN_EXE_litellm-sync");

// ---------------------------------------------------------------------------------------------------------------
// Settings

struct Settings {
    url: String,
    key: String,
    n: usize,
    m: usize,
    k: usize,
    prefix: String,
    cleanup: bool,
    step_timeout: Duration,
    /// BENCH_ONLY=provision: only the first line (floor, first provisioning, floor), for large N.
    provision_only: bool,
    /// BENCH_ONLY=ldap: only step 8 (the LDAP lines), for iterating on the LDAP run at large K.
    ldap_only: bool,
    /// Source names carry the prefix too: a user is matched by (source, external id), so users a run with the
    /// same source name left in the proxy would otherwise be taken for this run's.
    file_source: String,
    ldap_source: String,
}

impl Settings {
    fn from_env() -> Settings {
        let Ok(url) = std::env::var("LITELLM_SYNC_BENCH_URL") else {
            eprintln!(
                "provision bench: LITELLM_SYNC_BENCH_URL is not set. Run scripts/bench.sh, which starts a LiteLLM of its \
                 own (own port and database) and stops it afterwards, or point LITELLM_SYNC_BENCH_URL (and \
                 LITELLM_SYNC_BENCH_KEY) at a LiteLLM this bench may create users in."
            );
            std::process::exit(2);
        };
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let prefix = std::env::var("BENCH_PREFIX").unwrap_or_else(|_| format!("b{secs}-"));
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        assert!(
            matches!(only.as_str(), "" | "all" | "provision" | "ldap"),
            "BENCH_ONLY={only:?}: use provision, ldap or all"
        );
        let s = Settings {
            file_source: format!("{}file", prefix.to_lowercase().replace('_', "-")),
            ldap_source: format!("{}ldap", prefix.to_lowercase().replace('_', "-")),
            url: url.trim_end_matches('/').to_string(),
            key: std::env::var("LITELLM_SYNC_BENCH_KEY").unwrap_or_else(|_| "sk-test-master".into()),
            n: env_usize("BENCH_USERS", 2000),
            m: env_usize("BENCH_CHANGED", 100),
            k: env_usize("BENCH_LDAP_USERS", 20_000),
            prefix,
            cleanup: env_usize("BENCH_CLEANUP", 1) != 0,
            step_timeout: Duration::from_secs(env_usize("BENCH_STEP_TIMEOUT", 1800) as u64),
            provision_only: only == "provision",
            ldap_only: only == "ldap",
        };
        assert!(s.n >= 1, "BENCH_USERS must be at least 1");
        assert!(s.m <= s.n, "BENCH_CHANGED ({}) must not exceed BENCH_USERS ({})", s.m, s.n);
        assert!(
            s.prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "BENCH_PREFIX may hold only letters, digits, - and _"
        );
        s
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The floors: raw HTTP to LiteLLM, nothing of litellm-sync.

struct Raw {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Raw {
    fn new(s: &Settings) -> Raw {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().expect("HTTP client");
        Raw { http, base: s.url.clone(), key: s.key.clone() }
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Value {
        let r = self
            .http
            .get(format!("{}/{path}", self.base))
            .bearer_auth(&self.key)
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status();
        let body = r.text().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(status.is_success(), "GET {path}: {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        let r = self
            .http
            .post(format!("{}/{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status();
        let text = r.text().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert!(status.is_success(), "POST {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// LiteLLM's version: from /health/readiness where it says, else LITELLM_SYNC_BENCH_LITELLM_VERSION (which
    /// scripts/bench.sh reads from the venv it started), else "unknown".
    async fn version(&self) -> String {
        let said = match self.http.get(format!("{}/health/readiness", self.base)).send().await {
            Ok(r) => r.json::<Value>().await.ok().and_then(|v| v["litellm_version"].as_str().map(str::to_string)),
            Err(_) => None,
        };
        said.or_else(|| std::env::var("LITELLM_SYNC_BENCH_LITELLM_VERSION").ok()).unwrap_or_else(|| "unknown".into())
    }

    async fn total_users(&self) -> u64 {
        let v = self.get("user/list", &[("page", "1".into()), ("page_size", "1".into())]).await;
        v["total"].as_u64().expect("user/list total")
    }

    /// Creates `ids` 500 a request, one request at a time, rows shaped like litellm-sync's (role, budget, budget
    /// duration, e-mail, alias, a marker-sized metadata object under a key of its own, no key). Returns the wall time.
    async fn bulk_create(&self, ids: &[String]) -> Duration {
        let t = Instant::now();
        for chunk in ids.chunks(BULK) {
            let rows: Vec<Value> = chunk
                .iter()
                .map(|id| {
                    json!({
                        "user_id": id,
                        "user_email": format!("{id}@floor.example.org"),
                        "user_alias": format!("Floor {id}"),
                        "user_role": "internal_user",
                        "max_budget": 50.0,
                        "budget_duration": "30d",
                        "metadata": {"bench_floor": {"source": "floor", "external_id": id, "v": 1}},
                        "auto_create_key": false,
                    })
                })
                .collect();
            let v = self.post("management/v1/users/bulk", &json!({ "users": rows })).await;
            let ok = v["data"].as_array().map(|d| d.iter().filter(|r| r["success"] == json!(true)).count());
            assert_eq!(ok, Some(chunk.len()), "bulk create refused rows: {v}");
        }
        t.elapsed()
    }

    /// Every user, 100 a page sorted by user_id, `in_flight` pages at once after the first (which gives the page
    /// count). Returns the wall time and the distinct users seen.
    async fn list_parallel(&self, in_flight: usize) -> (Duration, usize) {
        let q = |p: u64| {
            vec![
                ("page", p.to_string()),
                ("page_size", PAGE.to_string()),
                ("sort_by", "user_id".to_string()),
                ("sort_order", "asc".to_string()),
            ]
        };
        let t = Instant::now();
        let first = self.get("user/list", &q(1)).await;
        let pages = first["total_pages"].as_u64().unwrap_or(1).max(1);
        let mut ids: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        let mut add = |v: &Value| {
            for u in v["users"].as_array().into_iter().flatten() {
                if let Some(id) = u["user_id"].as_str() {
                    ids.insert(id.to_string());
                }
            }
        };
        add(&first);
        let rest: Vec<Value> =
            stream::iter(2..=pages).map(|p| self.get_owned("user/list", q(p))).buffered(in_flight).collect().await;
        for v in &rest {
            add(v);
        }
        (t.elapsed(), ids.len())
    }

    async fn get_owned(&self, path: &'static str, query: Vec<(&'static str, String)>) -> Value {
        self.get(path, &query).await
    }

    /// One `/user/update` per id (a new max_budget), `concurrency` in flight.
    async fn update_budgets(&self, ids: &[String], concurrency: usize) -> Duration {
        let t = Instant::now();
        let _: Vec<Value> = stream::iter(ids)
            .map(|id| async move { self.post("user/update", &json!({"user_id": id, "max_budget": 75.0})).await })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        t.elapsed()
    }

    async fn bulk_delete(&self, ids: &[String]) -> Duration {
        let t = Instant::now();
        for chunk in ids.chunks(BULK) {
            self.post("management/v1/users/bulk_delete", &json!({ "user_ids": chunk })).await;
        }
        t.elapsed()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Processes: every child bounded in time; peak RSS from /proc.

fn proc_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with(field))?;
    l[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()
}

fn mib(kb: u64) -> String {
    format!("{:.0} MiB", kb as f64 / 1024.0)
}

struct CliRun {
    wall: Duration,
    code: i32,
    stdout: String,
    stderr: String,
    /// VmHWM sampled every 10 ms until exit (a spike in the last 10 ms can be missed).
    hwm_kb: u64,
}

impl CliRun {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("sync --output json printed no JSON ({e}); exit {}; stderr:\n{}", self.code, tail(&self.stderr))
        })
    }

    /// (reads, writes, retries) from the "Sync finished" log line.
    fn requests(&self) -> (u64, u64, u64) {
        for l in self.stderr.lines().rev() {
            if let Ok(v) = serde_json::from_str::<Value>(l) {
                let f = if v["fields"].is_object() { &v["fields"] } else { &v };
                if f["message"] == json!("Sync finished") {
                    let n = |k: &str| f[k].as_u64().unwrap_or(0);
                    return (n("reads"), n("writes"), n("retries"));
                }
            }
        }
        panic!("no \"Sync finished\" line in the log:\n{}", tail(&self.stderr))
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn wait_bounded(child: &mut Child, limit: Duration, what: &str, mut each: impl FnMut(u32)) -> i32 {
    let pid = child.id();
    let t = Instant::now();
    loop {
        each(pid);
        if let Some(s) = child.try_wait().expect("wait for a child") {
            return s.code().unwrap_or(-1);
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} took longer than {} s (BENCH_STEP_TIMEOUT): killed", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn litellm_sync(s: &Settings, config: &Path, args: &[&str], dir: &Path) -> CliRun {
    let out = dir.join("cli.out");
    let err = dir.join("cli.err");
    let t = Instant::now();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("LITELLM_SYNC__LITELLM__API_KEY", &s.key)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("create cli.out"))
        .stderr(std::fs::File::create(&err).expect("create cli.err"))
        .spawn()
        .expect("start litellm-sync");
    let mut hwm = 0;
    let code = wait_bounded(&mut child, s.step_timeout, &format!("litellm-sync {}", args.join(" ")), |pid| {
        hwm = hwm.max(proc_kb(pid, "VmHWM").unwrap_or(0));
    });
    let wall = t.elapsed();
    CliRun {
        wall,
        code,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        hwm_kb: hwm,
    }
}

/// A `sync --output json` that must have succeeded; returns it with its JSON document.
fn sync(s: &Settings, config: &Path, extra: &[&str], dir: &Path) -> (CliRun, Value) {
    let mut args = vec!["sync", "--output", "json"];
    args.extend_from_slice(extra);
    let r = litellm_sync(s, config, &args, dir);
    assert_eq!(r.code, 0, "litellm-sync {} exited {}:\n{}", args.join(" "), r.code, tail(&r.stderr));
    let doc = r.json();
    assert_eq!(doc["failed"], json!(0), "failed operations: {}", doc["results"]);
    (r, doc)
}

fn summary_count(doc: &Value, op: &str) -> u64 {
    doc["summary"][op].as_u64().unwrap_or(0)
}

/// The daemon with /metrics on a free port, stopped (SIGTERM, then SIGKILL) when dropped.
struct Daemon {
    child: Child,
    metrics: String,
}

impl Daemon {
    fn start(s: &Settings, config: &Path, port: u16, log: &Path) -> Daemon {
        let child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .arg("run")
            .env("LITELLM_SYNC__LITELLM__API_KEY", &s.key)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("create the daemon log"))
            .spawn()
            .expect("start litellm-sync run");
        Daemon { child, metrics: format!("http://127.0.0.1:{port}/metrics") }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn scrape(&mut self, rt: &tokio::runtime::Runtime, http: &reqwest::Client) -> Option<Scrape> {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("the daemon exited early ({st})");
        }
        let text = rt.block_on(async { http.get(&self.metrics).send().await.ok()?.text().await.ok() })?;
        Some(Scrape::parse(&text))
    }

    /// Waits until `source` has completed `runs` runs; returns the scrape that shows it.
    fn wait_runs(
        &mut self,
        rt: &tokio::runtime::Runtime,
        http: &reqwest::Client,
        source: &str,
        runs: u64,
        limit: Duration,
    ) -> Scrape {
        let t = Instant::now();
        loop {
            if let Some(m) = self.scrape(rt, http) {
                let failed = m.value("litellm_sync_runs_total", &[("source", source), ("result", "failed")]);
                assert_eq!(failed, 0.0, "a run of {source} failed (see the daemon log)");
                if m.value("litellm_sync_run_duration_seconds_count", &[("source", source)]) >= runs as f64 {
                    return m;
                }
            }
            assert!(t.elapsed() < limit, "run {runs} of {source} did not finish within {} s", limit.as_secs());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn stop(mut self) {
        common::stop_child(&mut self.child, Duration::from_secs(40));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        common::kill_child(&mut self.child);
    }
}

/// A parsed Prometheus text exposition: (name, labels, value).
struct Scrape(Vec<(String, BTreeMap<String, String>, f64)>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut out = Vec::new();
        for l in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let Some((head, value)) = l.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => {
                    let mut m = BTreeMap::new();
                    for kv in rest.trim_end_matches('}').split("\",") {
                        if let Some((k, v)) = kv.split_once("=\"") {
                            m.insert(k.trim_matches(',').to_string(), v.trim_end_matches('"').to_string());
                        }
                    }
                    (n.to_string(), m)
                }
                None => (head.to_string(), BTreeMap::new()),
            };
            out.push((name, labels, value));
        }
        Scrape(out)
    }

    fn value(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| n == name && want.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, v)| v)
            .sum()
    }

    /// LiteLLM requests by endpoint; answers in the 4xx class under "ENDPOINT 4xx" (the daemon's write-permission
    /// probe is a `user/new` refused with 422, not a write).
    fn requests(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        for (n, l, v) in &self.0 {
            if n == "litellm_sync_litellm_request_duration_seconds_count" {
                let mut ep = l.get("endpoint").cloned().unwrap_or_default();
                if l.get("status_class").map(String::as_str) == Some("4xx") {
                    ep.push_str(" 4xx");
                }
                *m.entry(ep).or_insert(0.0) += v;
            }
        }
        m
    }
}

/// Requests between two scrapes: (reads, writes, `/user/list` requests, the endpoints).
fn request_delta(before: &Scrape, after: &Scrape) -> (u64, u64, u64, String) {
    let (b, a) = (before.requests(), after.requests());
    let (mut reads, mut writes, mut lists) = (0u64, 0u64, 0u64);
    let mut parts = Vec::new();
    for (ep, v) in &a {
        let d = (v - b.get(ep).copied().unwrap_or(0.0)).round() as u64;
        if d == 0 {
            continue;
        }
        if ep.ends_with(" 4xx") {
            // refused: neither a read nor a write
        } else if ep.contains("list") || ep.contains("info") {
            reads += d;
        } else {
            writes += d;
        }
        if ep == "user/list" {
            lists += d;
        }
        parts.push(format!("{ep} {d}"));
    }
    (reads, writes, lists, parts.join(", "))
}

// ---------------------------------------------------------------------------------------------------------------
// Inputs: a file source of N users and one rule; an LDAP directory of K users.

fn write_users_file(path: &Path, s: &Settings, changed: usize) {
    let mut y = String::with_capacity(s.n * 100);
    y.push_str("users:\n");
    for i in 1..=s.n {
        let over = if i <= changed { ", overrides: {max_budget: 75.0}" } else { "" };
        let _ = writeln!(
            y,
            "  - {{id: \"u{i:06}\", user_name: {p}u{i:06}, email: {p}u{i:06}@bench.example.org, display_name: \"User \
             {i}\"{over}}}",
            p = s.prefix
        );
    }
    y.push_str("groups:\n  - id: g-bench\n    name: bench\n    members:\n");
    for i in 1..=s.n {
        let _ = writeln!(y, "      - \"u{i:06}\"");
    }
    std::fs::write(path, y).expect("write the users file");
}

fn common_toml(s: &Settings, store: &Path, port: u16) -> String {
    format!(
        r#"[litellm]
url = "{url}"
concurrency = {CONCURRENCY}
timeout = "120s"

[[rules]]
name = "bench"
match = {{ groups = ["bench"] }}
role = "internal_user"
max_budget = 50.0
budget_duration = "30d"

[store]
path = "{store}"

[server]
listen = "127.0.0.1:{port}"
probe_interval = "1h"

[drift]
enabled = false

[log]
format = "json"
"#,
        url = s.url,
        store = store.display(),
    )
}

fn file_config(s: &Settings, dir: &Path, name: &str, users: &Path, store: &Path, port: u16) -> PathBuf {
    let t = format!(
        "{}\n[[sources]]\nname = \"{}\"\ntype = \"file\"\npath = \"{}\"\nschedule = \"*/5 * * * * *\"\n",
        common_toml(s, store, port),
        s.file_source,
        users.display()
    );
    let p = dir.join(name);
    std::fs::write(&p, t).expect("write a config");
    p
}

const SERVICE_DN: &str = "cn=litellm-sync,ou=services,dc=example,dc=org";
const SERVICE_PW: &str = "sync-secret";
const USER_BASE: &str = "ou=people,dc=example,dc=org";
const GROUP_BASE: &str = "ou=groups,dc=example,dc=org";
const USER_FILTER: &str = "(objectClass=inetOrgPerson)";
const GROUP_FILTER: &str = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))";
const USER_ATTRS: &[&str] = &["cn", "entryUUID", "mail", "uid"];
const GROUP_ATTRS: &[&str] = &["cn", "entryUUID", "member", "memberUid", "uniqueMember"];
/// Users gen_ldif.py always adds (alice, bob, carol, dave, erin, frank).
const FIXED_USERS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];

fn ldap_config(s: &Settings, dir: &Path, ldap_url: &str, store: &Path, port: u16) -> PathBuf {
    // One rule, as for the file source: every generated user is in one team-NNNN group.
    let t = format!(
        r#"{common}
[[rules]]
name = "ldap-teams"
match = {{ group_glob = "team-*" }}
max_budget = 20.0

[[sources]]
name = "{ldap_source}"
type = "ldap"
urls = ["{ldap_url}"]
bind_dn = "{SERVICE_DN}"
bind_password = "{SERVICE_PW}"
user_base = "{USER_BASE}"
group_base = "{GROUP_BASE}"
page_size = 500
user_id_template = "{p}l-{{user_name}}"
schedule = "*/5 * * * * *"
"#,
        common = common_toml(s, store, port),
        ldap_source = s.ldap_source,
        p = s.prefix,
    );
    let p = dir.join("ldap.toml");
    std::fs::write(&p, t).expect("write the LDAP config");
    p
}

/// `ldapsearch` paged 500 as the service account, users then groups, output discarded (or counted). Returns
/// the wall time of both and the entries printed when counting.
fn ldapsearch(port: u16, count: bool) -> (Duration, usize) {
    let url = format!("ldap://127.0.0.1:{port}");
    let mut total = Duration::ZERO;
    let mut n = 0;
    for (base, filter, attrs) in [(USER_BASE, USER_FILTER, USER_ATTRS), (GROUP_BASE, GROUP_FILTER, GROUP_ATTRS)] {
        let t = Instant::now();
        let out = Command::new("ldapsearch")
            .args(["-x", "-LLL", "-H", &url, "-D", SERVICE_DN, "-w", SERVICE_PW, "-b", base, "-E", "pr=500/noprompt"])
            .arg(filter)
            .args(attrs)
            .stdin(Stdio::null())
            .stdout(if count { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::piped())
            .output()
            .expect("run ldapsearch");
        total += t.elapsed();
        assert!(out.status.success(), "ldapsearch failed: {}", String::from_utf8_lossy(&out.stderr));
        n += out.stdout.split(|&b| b == b'\n').filter(|l| l.starts_with(b"dn:")).count();
    }
    (total, n)
}

// ---------------------------------------------------------------------------------------------------------------
// The table

struct Line {
    work: String,
    ours: String,
    floor: String,
    ratio: String,
    verdict: String,
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn per_s(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn meets(ok: bool, target: &str) -> String {
    if ok {
        format!("meets {target}")
    } else {
        format!("**misses** {target}")
    }
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[{}] {}", chrono::Local::now().format("%H:%M:%S"), msg.as_ref());
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("MemTotal:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map(|kb| format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "n/a".into())
}

fn main() {
    if !common::requested("provision", "scripts/bench.sh or `cargo bench --bench provision`") {
        return;
    }
    let s = Settings::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let raw = Raw::new(&s);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::Builder::new().prefix("provision-bench-").tempdir().expect("temp dir");
    let dir = tmp.path();
    let started = Instant::now();
    let load_start = loadavg();
    let version = rt.block_on(raw.version());
    let users_at_start = rt.block_on(raw.total_users());
    log(format!(
        "provision bench: N={} M={} K={} prefix {:?}, LiteLLM {version} at {} holding {users_at_start} users; load {load_start}",
        s.n, s.m, s.k, s.prefix, s.url
    ));
    let p = &s.prefix;
    let mut created: Vec<String> = Vec::new();
    let mut lines: Vec<Line> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("HTTP client");
    // 1–7 (skipped with BENCH_ONLY=ldap). 1–3: first provisioning, bracketed by the bulk floor.
    let floor_rate: Option<f64> = if s.ldap_only {
        None
    } else {
        let floor_a: Vec<String> = (1..=s.n).map(|i| format!("{p}fa-{i:06}")).collect();
        let floor_b: Vec<String> = (1..=s.n).map(|i| format!("{p}fb-{i:06}")).collect();
        let managed: Vec<String> = (1..=s.n).map(|i| format!("{p}u{i:06}")).collect();
        log(format!("floor: bulk create of {} users, 500 a request, sequential", s.n));
        let fa = rt.block_on(raw.bulk_create(&floor_a));
        created.extend(floor_a.iter().cloned());
        log(format!("  {} ({:.0} users/s)", secs(fa), per_s(s.n, fa)));

        let users = dir.join("users.yaml");
        write_users_file(&users, &s, 0);
        let store1 = dir.join("cli.db");
        let cfg1 = file_config(&s, dir, "file.toml", &users, &store1, free_port());
        log(format!("litellm-sync sync: first provisioning of {} users", s.n));
        created.extend(managed.iter().cloned());
        let (first, doc) = sync(&s, &cfg1, &[], dir);
        assert_eq!(summary_count(&doc, "create_user"), s.n as u64, "creates planned: {}", doc["summary"]);
        let (r1, w1, x1) = first.requests();
        log(format!(
            "  {} ({:.0} users/s), basis {}, {r1} reads + {w1} writes",
            secs(first.wall),
            per_s(s.n, first.wall),
            doc["basis"]
        ));

        log("floor again: bulk create");
        let fb = rt.block_on(raw.bulk_create(&floor_b));
        created.extend(floor_b.iter().cloned());
        log(format!("  {} ({:.0} users/s)", secs(fb), per_s(s.n, fb)));
        let floor_rate = (per_s(s.n, fa) + per_s(s.n, fb)) / 2.0;
        let ours_rate = per_s(s.n, first.wall);
        let ratio = ours_rate / floor_rate;
        lines.push(Line {
            work: format!("first provisioning of {} users (file source, one rule), `sync` with a store", s.n),
            ours: format!(
                "{}, **{:.0} users/s**, {r1} reads + {w1} writes{}, basis {}, peak RSS {}",
                secs(first.wall),
                ours_rate,
                if x1 > 0 { format!(" ({x1} retries)") } else { String::new() },
                doc["basis"].as_str().unwrap_or("?"),
                mib(first.hwm_kb)
            ),
            floor: format!(
                "raw `/management/v1/users/bulk`, 500 a request, sequential: **{:.0} users/s** ({:.0} before, {:.0} after)",
                floor_rate,
                per_s(s.n, fa),
                per_s(s.n, fb)
            ),
            ratio: format!("**{ratio:.2}×**"),
            verdict: meets(ratio >= 0.9, "≥ 0.9×"),
        });

        if !s.provision_only {
            // 4. No-op sync against the ledger.
            let total = rt.block_on(raw.total_users());
            log(format!("litellm-sync sync: no-op, against the store's ledger (proxy holds {total} users)"));
            let (noop, doc) = sync(&s, &cfg1, &[], dir);
            assert!(doc["operations"].as_array().is_none_or(|o| o.is_empty()), "the no-op sync planned operations");
            let (r2, w2, _) = noop.requests();
            log(format!("  {}, basis {}, {r2} reads + {w2} writes", secs(noop.wall), doc["basis"]));
            lines.push(Line {
                work: format!("no-op `sync` (CLI, with a store) of those {}, proxy holding {total}", s.n),
                ours: format!(
                    "{}, {r2} reads + {w2} writes, basis {}, peak RSS {}",
                    secs(noop.wall),
                    doc["basis"].as_str().unwrap_or("?"),
                    mib(noop.hwm_kb)
                ),
                floor: "nothing needs reading: the store knows what it applied".into(),
                ratio: "—".into(),
                verdict: meets(w2 == 0 && doc["basis"] == json!("ledger"), "0 writes, no listing"),
            });

            // 5. The full listing: sync --refresh between two parallel-listing floors.
            log(format!("floor: /user/list, 100 a page, {IN_FLIGHT} in flight"));
            let (l1, seen1) = rt.block_on(raw.list_parallel(IN_FLIGHT));
            log(format!("  {} ({seen1} users)", secs(l1)));
            log("litellm-sync sync --refresh (full listing)");
            let (refresh, doc) = sync(&s, &cfg1, &["--refresh"], dir);
            assert!(doc["operations"].as_array().is_none_or(|o| o.is_empty()), "the refresh planned operations");
            let (r3, w3, _) = refresh.requests();
            log(format!("  {}, {r3} reads + {w3} writes", secs(refresh.wall)));
            let (l2, _) = rt.block_on(raw.list_parallel(IN_FLIGHT));
            log(format!("floor again: {}", secs(l2)));
            let lf = (l1 + l2) / 2;
            let ratio = lf.as_secs_f64() / refresh.wall.as_secs_f64();
            lines.push(Line {
                work: format!("`sync --refresh` (full listing) of a proxy holding {seen1} users"),
                ours: format!("{}, {r3} reads + {w3} writes, peak RSS {}", secs(refresh.wall), mib(refresh.hwm_kb)),
                floor: format!(
                    "`/user/list` 100 a page, {IN_FLIGHT} in flight: **{}** ({} before, {} after)",
                    secs(lf),
                    secs(l1),
                    secs(l2)
                ),
                ratio: format!("**{ratio:.2}×**"),
                verdict: meets(ratio >= 0.9, "≥ 0.9×"),
            });

            // 6. Budget change of M users.
            write_users_file(&users, &s, s.m);
            log(format!("litellm-sync sync: budget change of {} users", s.m));
            let (change, doc) = sync(&s, &cfg1, &[], dir);
            assert_eq!(summary_count(&doc, "update_user"), s.m as u64, "updates planned: {}", doc["summary"]);
            let (r4, w4, _) = change.requests();
            log(format!("  {}, {r4} reads + {w4} writes", secs(change.wall)));
            log(format!("floor: {} raw /user/update, {CONCURRENCY} in flight", s.m));
            let uf = rt.block_on(raw.update_budgets(&floor_a[..s.m], CONCURRENCY));
            log(format!("  {}", secs(uf)));
            let ratio = uf.as_secs_f64() / change.wall.as_secs_f64();
            lines.push(Line {
                work: format!("budget change of {} users (CLI `sync`, ledger)", s.m),
                ours: format!(
                    "{}, {r4} reads + **{w4} writes**, basis {}",
                    secs(change.wall),
                    doc["basis"].as_str().unwrap_or("?")
                ),
                floor: format!("{} raw `/user/update`, {CONCURRENCY} in flight: {}", s.m, secs(uf)),
                ratio: format!("{ratio:.2}×"),
                verdict: meets(w4 as usize <= s.m + s.m / 10 + 2, "≈ M writes"),
            });

            // 7. The daemon on a new store: first run (lists LiteLLM to build its ledger), then a no-op scheduled run.
            let (l3, seen3) = rt.block_on(raw.list_parallel(IN_FLIGHT));
            log(format!("floor: parallel listing {} ({seen3} users)", secs(l3)));
            let port = free_port();
            let store2 = dir.join("daemon.db");
            let cfg2 = file_config(&s, dir, "daemon.toml", &users, &store2, port);
            log("litellm-sync run: first run on a new store, then a no-op scheduled run (schedule every 5 s)");
            let t = Instant::now();
            let mut d = Daemon::start(&s, &cfg2, port, &dir.join("daemon.log"));
            let m1 = d.wait_runs(&rt, &http, &s.file_source, 1, s.step_timeout);
            let since_start = t.elapsed();
            let run1 = m1.value("litellm_sync_run_duration_seconds_sum", &[("source", s.file_source.as_str())]);
            let empty = Scrape(Vec::new());
            let (dr1, dw1, dl1, _) = request_delta(&empty, &m1);
            let m2 = d.wait_runs(&rt, &http, &s.file_source, 2, Duration::from_secs(60));
            let run2 = m2.value("litellm_sync_run_duration_seconds_sum", &[("source", s.file_source.as_str())]) - run1;
            let (dr2, dw2, dl2, eps2) = request_delta(&m1, &m2);
            let hwm = proc_kb(d.pid(), "VmHWM").unwrap_or(0);
            d.stop();
            log(format!(
                "  first run {run1:.2} s ({dr1} reads, {dw1} writes), no-op run {run2:.3} s ({dr2} reads, {dw2} writes)"
            ));
            let (l4, _) = rt.block_on(raw.list_parallel(IN_FLIGHT));
            log(format!("floor again: {}", secs(l4)));
            let lf = (l3 + l4) / 2;
            let ratio = lf.as_secs_f64() / run1;
            lines.push(Line {
                work: format!(
                    "daemon first run (lists LiteLLM to build its ledger), {} users, proxy holding {seen3}",
                    s.n
                ),
                ours: format!(
                    "{run1:.2} s ({:.2} s from process start), {dr1} reads ({dl1} `/user/list`) + {dw1} writes",
                    since_start.as_secs_f64()
                ),
                floor: format!(
                    "{IN_FLIGHT} pages in flight: **{}** ({} before, {} after)",
                    secs(lf),
                    secs(l3),
                    secs(l4)
                ),
                ratio: format!("**{ratio:.2}×**"),
                verdict: meets(ratio >= 0.9, "≥ 0.9×"),
            });
            lines.push(Line {
                work: format!("daemon no-op scheduled run, {} users", s.n),
                ours: format!(
                    "**{run2:.3} s**, {dr2} reads + {dw2} writes{}, peak RSS of the daemon {}",
                    if eps2.is_empty() { String::new() } else { format!(" ({eps2})") },
                    mib(hwm)
                ),
                floor: "—".into(),
                ratio: "—".into(),
                verdict: meets(dw2 == 0 && dl2 == 0, "0 writes, no listing"),
            });
        }
        Some(floor_rate)
    };

    // 8. LDAP at scale.
    if s.k > 0 && !s.provision_only {
        let script = root.join("scripts/peers/slapd.sh");
        let ldif = dir.join("data.ldif");
        let groups = (s.k / 50).max(1);
        log(format!("LDAP: generating {} users in {groups} groups, loading slapd", s.k));
        let st = Command::new("python3")
            .arg(root.join("scripts/peers/gen_ldif.py"))
            .args([s.k.to_string(), groups.to_string()])
            .stdout(std::fs::File::create(&ldif).expect("create the LDIF"))
            .status()
            .expect("run gen_ldif.py");
        assert!(st.success(), "gen_ldif.py failed");
        let slapd = Slapd::start(&script, &dir.join("slapd"), &ldif);
        let want = s.k + FIXED_USERS.len() + groups + 3;
        let (_, n) = ldapsearch(slapd.port, true);
        assert_eq!(n, want, "ldapsearch entries");
        let (ls1, _) = ldapsearch(slapd.port, false);
        log(format!("  ldapsearch paged read of {n} entries: {}", secs(ls1)));
        let port = free_port();
        let store3 = dir.join("ldap.db");
        let cfg3 = ldap_config(&s, dir, &format!("ldap://127.0.0.1:{}", slapd.port), &store3, port);
        created.extend((1..=s.k).map(|i| format!("{p}l-user{i:05}")));
        created.extend(FIXED_USERS.iter().map(|u| format!("{p}l-{u}")));
        log(format!("litellm-sync run with the LDAP source: first run provisions {} users", s.k + FIXED_USERS.len()));
        let mut d = Daemon::start(&s, &cfg3, port, &dir.join("ldap-daemon.log"));
        let m1 = d.wait_runs(&rt, &http, &s.ldap_source, 1, s.step_timeout);
        let run1 = m1.value("litellm_sync_run_duration_seconds_sum", &[("source", s.ldap_source.as_str())]);
        let (lr1, lw1, _, _) = request_delta(&Scrape(Vec::new()), &m1);
        let hwm_first = proc_kb(d.pid(), "VmHWM").unwrap_or(0);
        // Peak RSS of the no-op run alone: reset VmHWM to the current RSS (Linux ≥ 4.0).
        let reset = std::fs::write(format!("/proc/{}/clear_refs", d.pid()), "5").is_ok();
        let m2 = d.wait_runs(&rt, &http, &s.ldap_source, 2, Duration::from_secs(120));
        let run2 = m2.value("litellm_sync_run_duration_seconds_sum", &[("source", s.ldap_source.as_str())]) - run1;
        let read2 = m2.value("litellm_sync_source_read_duration_seconds_sum", &[("source", s.ldap_source.as_str())])
            - m1.value("litellm_sync_source_read_duration_seconds_sum", &[("source", s.ldap_source.as_str())]);
        let (lr2, lw2, ll2, eps) = request_delta(&m1, &m2);
        let hwm_noop = proc_kb(d.pid(), "VmHWM").unwrap_or(0);
        let rss_now = proc_kb(d.pid(), "VmRSS").unwrap_or(0);
        // The floor in the same minutes as the no-op run: right after the provisioning, PostgreSQL and LiteLLM are
        // still busy with 100,000 new rows (autovacuum, checkpoints), which slows every reader on the two cores.
        let (ls_noop, _) = ldapsearch(slapd.port, false);
        log(format!("  ldapsearch right after the no-op run: {}", secs(ls_noop)));
        d.stop();
        log(format!(
            "  first run {run1:.2} s ({lr1} reads, {lw1} writes), peak RSS {}; no-op run {run2:.3} s (read {read2:.3} s), \
             {lr2} reads, {lw2} writes, peak RSS {}",
            mib(hwm_first),
            mib(hwm_noop)
        ));
        // A new daemon process on the same store: its start-up run is a no-op against the ledger, so the
        // process's whole VmHWM is the peak of a no-op run (no memory kept from the provisioning run).
        log("litellm-sync run again on the same store: a fresh process whose first run is a no-op");
        let port = free_port();
        let cfg3b = ldap_config(&s, dir, &format!("ldap://127.0.0.1:{}", slapd.port), &store3, port);
        let mut d = Daemon::start(&s, &cfg3b, port, &dir.join("ldap-daemon2.log"));
        let m3 = d.wait_runs(&rt, &http, &s.ldap_source, 1, s.step_timeout);
        let run3 = m3.value("litellm_sync_run_duration_seconds_sum", &[("source", s.ldap_source.as_str())]);
        let (lr3, lw3, ll3, _) = request_delta(&Scrape(Vec::new()), &m3);
        let hwm_fresh = proc_kb(d.pid(), "VmHWM").unwrap_or(0);
        d.stop();
        log(format!(
            "  no-op run {run3:.3} s, {lr3} reads ({ll3} `/user/list`), {lw3} writes, process peak RSS {}",
            mib(hwm_fresh)
        ));
        let (ls2, _) = ldapsearch(slapd.port, false);
        log(format!("  ldapsearch again: {}", secs(ls2)));
        drop(slapd);
        // The floor brackets the no-op runs (the read before the provisioning ran on a quieter machine).
        let lsf = (ls_noop + ls2) / 2;
        let ratio = run2 / lsf.as_secs_f64();
        let users_k = s.k + FIXED_USERS.len();
        lines.push(Line {
            work: format!("LDAP daemon first run: provisions {users_k} users ({} groups)", groups + 3),
            ours: format!(
                "{run1:.2} s, {:.0} users/s, {lr1} reads + {lw1} writes, peak RSS {}",
                users_k as f64 / run1,
                mib(hwm_first)
            ),
            floor: floor_rate.map_or_else(|| "—".into(), |f| format!("(bulk floor above: {f:.0} users/s)")),
            ratio: floor_rate.map_or_else(|| "—".into(), |f| format!("{:.2}×", users_k as f64 / run1 / f)),
            verdict: "no target (same as line 1)".into(),
        });
        lines.push(Line {
            work: format!("LDAP no-op scheduled run, {users_k} users (slapd on loopback)"),
            ours: format!(
                "**{run2:.3} s** (of which the LDAP read {read2:.3} s), {lr2} reads + {lw2} writes{}",
                if eps.is_empty() { String::new() } else { format!(" ({eps})") }
            ),
            floor: format!(
                "`ldapsearch -E pr=500` users + groups: **{}** ({} right after the no-op run, {} after the \
                 fresh process's; {} before the provisioning)",
                secs(lsf),
                secs(ls_noop),
                secs(ls2),
                secs(ls1)
            ),
            ratio: format!("**{ratio:.2}×** of ldapsearch"),
            verdict: meets(ratio <= 2.0 && lw2 == 0 && ll2 == 0, "≤ 2×, 0 writes, no listing"),
        });
        lines.push(Line {
            work: format!("peak RSS of the daemon during that no-op run ({users_k} users)"),
            ours: if reset {
                format!("**{}** (VmHWM reset after the first run; RSS afterwards {})", mib(hwm_noop), mib(rss_now))
            } else {
                format!("{} (lifetime VmHWM: the reset was refused)", mib(hwm_noop))
            },
            floor: "—".into(),
            ratio: "—".into(),
            verdict: meets(hwm_noop <= 150 * 1024, "≤ 150 MB"),
        });
        lines.push(Line {
            work: format!("LDAP no-op run in a fresh daemon process on that store ({users_k} users)"),
            ours: format!(
                "{run3:.3} s, {lr3} reads ({ll3} `/user/list`) + {lw3} writes, **peak RSS of the whole process {}**",
                mib(hwm_fresh)
            ),
            floor: format!("ldapsearch {}", secs(lsf)),
            ratio: format!("{:.2}× of ldapsearch", run3 / lsf.as_secs_f64()),
            verdict: meets(hwm_fresh <= 150 * 1024 && lw3 == 0 && ll3 == 0, "≤ 150 MB, 0 writes, no listing"),
        });
        if !reset {
            notes.push(
                "VmHWM could not be reset (/proc/PID/clear_refs refused): the RSS line is the lifetime peak.".into(),
            );
        }
    }

    if s.provision_only {
        notes.push("BENCH_ONLY=provision: only the first provisioning line was measured.".into());
    }
    if s.ldap_only {
        notes.push("BENCH_ONLY=ldap: only the LDAP lines were measured.".into());
    }
    let total_end = rt.block_on(raw.total_users());
    if s.cleanup {
        log(format!("clean-up: bulk delete of the {} users this bench created", created.len()));
        let t = rt.block_on(raw.bulk_delete(&created));
        log(format!("  {} ({:.0} users/s)", secs(t), per_s(created.len(), t)));
    } else {
        notes.push(format!(
            "BENCH_CLEANUP=0: the {} users with prefix {p:?} were left in the proxy (scripts/bench.sh drops the database \
             of a LiteLLM it started).",
            created.len()
        ));
    }

    // The report.
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nprovision bench, {} — {} CPU(s), {} RAM, LiteLLM {version} at {}; load average (1/5/15 min) at start {load_start}, \
         at end {}; proxy users at start {users_at_start}, before clean-up {total_end}; N={} M={} K={}; {:.0} s in all\n",
        chrono::Local::now().format("%Y-%m-%d %H:%M"),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        mem_total(),
        s.url,
        loadavg(),
        s.n,
        s.m,
        s.k,
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(out, "| work | litellm-sync | floor measured in the same run | ratio | target |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for l in &lines {
        let _ = writeln!(out, "| {} | {} | {} | {} | {} |", l.work, l.ours, l.floor, l.ratio, l.verdict);
    }
    let _ = writeln!(
        out,
        "\nRatios: throughput of litellm-sync over the floor's (≥ 1 is at or above the floor), except LDAP: litellm-sync's \
         time over ldapsearch's (≤ 2 is the target)."
    );
    for n in &notes {
        let _ = writeln!(out, "{n}");
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
    drop(tmp);
}
