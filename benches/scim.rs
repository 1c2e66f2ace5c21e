//! The SCIM benchmark of issue 11: user creates, user GETs by filter and group member PATCHes per second with
//! p50/p99, on a directory of 100,000 users in the default SQLite store (WAL, `synchronous = FULL`), with
//! LiteLLM's write path excluded and included.
//!
//!     cargo bench --bench scim
//!     SCIM_BENCH_USERS=20000 LITELLM_SYNC_BENCH_URL=http://127.0.0.1:4000 cargo bench --bench scim
//!
//! Environment:
//!   SCIM_BENCH_USERS=100000        users seeded into the directory before the measured requests
//!   SCIM_BENCH_CLIENTS=4           concurrent HTTP clients (connections) in the excluded part
//!   SCIM_BENCH_CREATES=3000        measured POST /Users
//!   SCIM_BENCH_GETS=10000          measured GET /Users?filter=userName eq "…"
//!   SCIM_BENCH_PATCHES=3000        measured PATCH /Groups/{id} (add, then remove, one member each)
//!   SCIM_BENCH_PUSHES=50           POST /Users whose arrival in LiteLLM is timed (0 skips the included part)
//!   LITELLM_SYNC_BENCH_URL, _KEY   the LiteLLM of the included part (default http://127.0.0.1:4000, sk-test-master)
//!   BENCH_PREFIX=sb<unix time>-    prefix of every userName, user_id and source name this bench creates
//!
//! What runs:
//!   1. Excluded: the crate's SCIM router (`sources::scim::service::Service`) over a file SQLite store
//!      (`SqliteStore::open`, as the daemon opens it), no reconciler, served by axum on a loopback TCP listener and
//!      driven with reqwest by SCIM_BENCH_CLIENTS concurrent clients. The directory is seeded through the store API
//!      (`Store::scim_put`, one transaction a user, as the POST handler writes it, 8 in flight), then a few groups by
//!      POST /Groups. Every answer is checked (201 with the userName, exactly the one user found, 204 for PATCH).
//!   2. Included: the release daemon binary (`litellm-sync run`) with a SCIM source and a fresh store, against the
//!      real LiteLLM: after its first run, SCIM_BENCH_PUSHES sequential POST /Users, each timed from its 201 until
//!      `/v2/user/info` shows the user (polled every 10 ms). The users are deleted with `/user/delete` afterwards.
//!
//! The bench prints a table; it never fails on timing, only on a wrong answer.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use litellm_sync::directory::{Expect, ScimKind, ScimWrite, SqliteStore, Store};
use litellm_sync::sources::scim::auth::hash_token;
use litellm_sync::sources::scim::mapping::{self, ScimAttrMap};
use litellm_sync::sources::scim::resource;
use litellm_sync::sources::scim::schema::USER_RESOURCE;
use litellm_sync::sources::scim::service::{Service, Settings};
use litellm_sync::telemetry::metrics::Metrics;
use serde_json::{json, Value};

#[path = "common/mod.rs"]
mod common;
use common::{env_usize, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_litellm-sync");
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const TOKEN: &str = "lsync_scim-bench-token-not-a-secret";
const PATH: &str = "/scim/v2";
/// Groups the member PATCHes go to (round robin).
const GROUPS: usize = 8;
const SEED_IN_FLIGHT: usize = 8;

struct BenchSettings {
    users: usize,
    clients: usize,
    creates: usize,
    gets: usize,
    patches: usize,
    pushes: usize,
    url: String,
    key: String,
    prefix: String,
}

impl BenchSettings {
    fn from_env() -> BenchSettings {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let s = BenchSettings {
            users: env_usize("SCIM_BENCH_USERS", 100_000),
            clients: env_usize("SCIM_BENCH_CLIENTS", 4).max(1),
            creates: env_usize("SCIM_BENCH_CREATES", 3000),
            gets: env_usize("SCIM_BENCH_GETS", 10_000),
            patches: env_usize("SCIM_BENCH_PATCHES", 3000),
            pushes: env_usize("SCIM_BENCH_PUSHES", 50),
            url: std::env::var("LITELLM_SYNC_BENCH_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:4000".into())
                .trim_end_matches('/')
                .to_string(),
            key: std::env::var("LITELLM_SYNC_BENCH_KEY").unwrap_or_else(|_| "sk-test-master".into()),
            prefix: std::env::var("BENCH_PREFIX").unwrap_or_else(|_| format!("sb{secs}-")).to_lowercase(),
        };
        assert!(s.users >= 1, "SCIM_BENCH_USERS must be at least 1");
        assert!(
            s.prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "BENCH_PREFIX may hold only letters, digits and -"
        );
        s
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Measurements

struct Line {
    what: String,
    n: usize,
    wall: Duration,
    lat: Vec<Duration>,
    /// (requests/s goal, p99 goal) — or, for the push delay, the p50 goal.
    goal: Goal,
}

enum Goal {
    Throughput { per_s: f64, p99: Duration },
    P50(Duration),
    Unset,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

impl Line {
    fn row(&self) -> String {
        let mut lat = self.lat.clone();
        lat.sort();
        let (p50, p99) = (pct(&lat, 50.0), pct(&lat, 99.0));
        let rate = self.n as f64 / self.wall.as_secs_f64().max(1e-9);
        let (goal, verdict) = match &self.goal {
            Goal::Throughput { per_s, p99: g } => {
                let ok = rate >= *per_s && p99 < *g;
                (format!("≥ {per_s:.0}/s, p99 < {}", ms(*g)), if ok { "meets" } else { "**misses**" })
            }
            Goal::P50(g) => (format!("p50 < {:.0} s", g.as_secs_f64()), if p50 < *g { "meets" } else { "**misses**" }),
            Goal::Unset => ("—".into(), "—"),
        };
        format!("| {} | {} | {:.0}/s | {} | {} | {goal} | {verdict} |", self.what, self.n, rate, ms(p50), ms(p99))
    }
}

/// Runs `n` items with `clients` in flight; `one(i)` returns the latencies of item `i`'s requests (and checks
/// their answers).
async fn drive<F, Fut>(n: usize, clients: usize, one: F) -> (Duration, Vec<Duration>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Vec<Duration>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let one = Arc::new(one);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, one) = (next.clone(), one.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                lat.extend(one(i).await);
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.expect("a bench client panicked (a wrong answer; see above)"));
    }
    (started.elapsed(), all)
}

// ---------------------------------------------------------------------------------------------------------------
// Requests

fn user_body(name: &str, i: usize) -> Value {
    json!({
        "schemas": [USER],
        "userName": name,
        "externalId": format!("ext-{name}"),
        "name": {"givenName": format!("Given{i}"), "familyName": "Bench"},
        "emails": [{"value": format!("{name}@bench.example.org"), "type": "work", "primary": true}],
        "displayName": format!("Given{i} Bench"),
        "active": true
    })
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(base: String) -> Client {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()
            .expect("HTTP client");
        Client { http, base }
    }

    /// One request; (status, body, latency).
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value, Duration) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.header("Content-Type", "application/scim+json").body(b.to_string());
        }
        let t = Instant::now();
        let resp = req.send().await.unwrap_or_else(|e| panic!("SCIM {path}: {e}"));
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("SCIM body");
        let lat = t.elapsed();
        let v = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        (status, v, lat)
    }
}

fn filter_query(f: &str) -> String {
    url::form_urlencoded::byte_serialize(f.as_bytes()).collect()
}

/// The store write the POST /Users handler makes for `body` (normalize, map, one transaction).
fn seed_write(id: &str, body: &Value) -> ScimWrite {
    let mut res = resource::normalize(body, &USER_RESOURCE).expect("seed user normalizes").resource;
    if let Value::Object(m) = &mut res {
        m.insert("id".into(), Value::String(id.to_string()));
    }
    let mut warnings = Vec::new();
    let identity =
        mapping::identity(id, &res, &ScimAttrMap::default(), &mut warnings).expect("seed user maps to an identity");
    ScimWrite {
        kind: ScimKind::User,
        id: id.to_string(),
        name: mapping::string_attr(&res, "userName").expect("userName"),
        emails: mapping::emails(&res),
        external_ref: mapping::string_attr(&res, "externalId"),
        identity: Some(identity),
        group: None,
        members: None,
        resource: res,
        expect: Expect::Absent,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// 1. LiteLLM's write path excluded: the SCIM service alone.

async fn excluded(s: &BenchSettings, dir: &Path, lines: &mut Vec<Line>, notes: &mut Vec<String>) {
    let db = dir.join("scim.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).await.expect("open the SQLite store"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let port = listener.local_addr().expect("local addr").port();
    let auth = litellm_sync::config::scim::ScimAuthConfig { tokens: vec![hash_token(TOKEN)], oidc: None }
        .validate("auth")
        .expect("auth settings");
    let settings = Settings {
        name: "bench".into(),
        path: PATH.into(),
        base_url: format!("http://127.0.0.1:{port}{PATH}"),
        attributes: ScimAttrMap::default(),
        max_body_bytes: 1024 * 1024,
        max_results: 100,
    };
    let metrics = Metrics::new().expect("metrics");
    let svc = Arc::new(Service::new(settings, &auth, store.clone(), metrics).expect("SCIM service"));
    let app = svc.router();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

    // Seed.
    log(format!(
        "seeding {} users through Store::scim_put ({SEED_IN_FLIGHT} in flight) into {}",
        s.users,
        db.display()
    ));
    let t = Instant::now();
    let p = s.prefix.clone();
    let done = Arc::new(AtomicUsize::new(0));
    stream::iter(0..s.users)
        .for_each_concurrent(SEED_IN_FLIGHT, |i| {
            let (store, p, done) = (store.clone(), p.clone(), done.clone());
            async move {
                let name = format!("{p}s{i:06}");
                let w = seed_write(&format!("seed-{i:06}"), &user_body(&name, i));
                store.scim_put("bench", w).await.expect("seed scim_put");
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d % 20_000 == 0 {
                    log(format!("  {d} seeded ({:.0}/s)", d as f64 / t.elapsed().as_secs_f64()));
                }
            }
        })
        .await;
    let seed_wall = t.elapsed();
    let count = store.scim_count("bench", ScimKind::User).await.expect("count");
    assert_eq!(count, s.users as u64, "users in the store after seeding");
    let seed_rate = s.users as f64 / seed_wall.as_secs_f64();
    log(format!("  seeded {} users in {:.1} s ({seed_rate:.0}/s)", s.users, seed_wall.as_secs_f64()));
    notes.push(format!(
        "Seeded {} users through the store API (`Store::scim_put`, the POST handler's write, one transaction each, \
         {SEED_IN_FLIGHT} in flight) in {:.1} s ({seed_rate:.0} durable writes/s, no HTTP).",
        s.users,
        seed_wall.as_secs_f64()
    ));

    let c = Client::new(format!("http://127.0.0.1:{port}{PATH}"));
    let mut groups = Vec::new();
    for g in 0..GROUPS {
        let (st, body, _) = c
            .call(
                reqwest::Method::POST,
                "/Groups",
                Some(&json!({"schemas": [GROUP], "displayName": format!("{p}g{g}"), "members": []})),
            )
            .await;
        assert_eq!(st, 201, "create group: {body}");
        groups.push(body["id"].as_str().expect("group id").to_string());
    }

    // Creates.
    log(format!("POST /Users x{} with {} clients", s.creates, s.clients));
    let (cc, pp) = (c.clone(), p.clone());
    let (wall, lat) = drive(s.creates, s.clients, move |i| {
        let (c, p) = (cc.clone(), pp.clone());
        async move {
            let name = format!("{p}c{i:06}");
            let (st, body, lat) = c.call(reqwest::Method::POST, "/Users", Some(&user_body(&name, i))).await;
            assert_eq!(st, 201, "POST /Users {name}: {body}");
            assert_eq!(body["userName"], name.as_str(), "POST /Users answer");
            vec![lat]
        }
    })
    .await;
    lines.push(Line {
        what: "POST /Users (create)".into(),
        n: s.creates,
        wall,
        lat,
        goal: Goal::Throughput { per_s: 1000.0, p99: Duration::from_millis(50) },
    });
    log(lines[lines.len() - 1].row());

    // Filtered GETs, spread over the seeded users.
    log(format!("GET /Users?filter=userName eq x{} with {} clients", s.gets, s.clients));
    let (cc, pp, users) = (c.clone(), p.clone(), s.users);
    let (wall, lat) = drive(s.gets, s.clients, move |i| {
        let (c, p) = (cc.clone(), pp.clone());
        async move {
            let k = (i.wrapping_mul(7919) + 13) % users;
            let name = format!("{p}s{k:06}");
            let path = format!("/Users?filter={}", filter_query(&format!("userName eq \"{name}\"")));
            let (st, body, lat) = c.call(reqwest::Method::GET, &path, None).await;
            assert_eq!(st, 200, "GET {path}: {body}");
            assert_eq!(body["totalResults"], 1, "GET {path}: {body}");
            assert_eq!(body["Resources"][0]["userName"], name.as_str(), "GET {path}");
            vec![lat]
        }
    })
    .await;
    lines.push(Line {
        what: "GET /Users?filter=userName eq (by filter)".into(),
        n: s.gets,
        wall,
        lat,
        goal: Goal::Throughput { per_s: 2000.0, p99: Duration::from_millis(50) },
    });
    log(lines[lines.len() - 1].row());

    // Member PATCHes: pair k adds a seeded user to group k % GROUPS, then removes it again (one client, in order).
    log(format!("PATCH /Groups/{{id}} members add/remove x{} with {} clients", s.patches, s.clients));
    let pairs = s.patches.div_ceil(2);
    let (cc, gs) = (c.clone(), Arc::new(groups.clone()));
    let (wall, lat) = drive(pairs, s.clients, move |k| {
        let (c, gs) = (cc.clone(), gs.clone());
        async move {
            let member = format!("seed-{:06}", (k.wrapping_mul(104_729) + 7) % users);
            let g = &gs[k % gs.len()];
            let add = json!([{"op": "add", "path": "members", "value": [{"value": member}]}]);
            let remove = json!([{"op": "remove", "path": format!("members[value eq \"{member}\"]")}]);
            let mut out = Vec::new();
            for ops in [add, remove] {
                let body = json!({"schemas": [PATCH_OP], "Operations": ops});
                let (st, answer, lat) = c.call(reqwest::Method::PATCH, &format!("/Groups/{g}"), Some(&body)).await;
                assert_eq!(st, 204, "PATCH /Groups/{g} (pair {k}): {answer}");
                out.push(lat);
            }
            out
        }
    })
    .await;
    lines.push(Line {
        what: "PATCH /Groups/{id} (add or remove a member)".into(),
        n: lat.len(),
        wall,
        lat,
        goal: Goal::Throughput { per_s: 1000.0, p99: Duration::from_millis(50) },
    });
    log(lines[lines.len() - 1].row());
    // Every pair removed what it added: the groups are empty again.
    for g in &groups {
        let (st, body, _) = c.call(reqwest::Method::GET, &format!("/Groups/{g}"), None).await;
        assert_eq!(st, 200, "GET /Groups/{g}: {body}");
        let members = body["members"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(members, 0, "group {g} after the add/remove pairs: {body}");
    }
    let total = store.scim_count("bench", ScimKind::User).await.expect("count");
    assert_eq!(total, (s.users + s.creates) as u64, "users in the store after the creates");
    store.close().await;
}

// ---------------------------------------------------------------------------------------------------------------
// 2. LiteLLM's write path included: the daemon binary with a SCIM source, against the real LiteLLM.

struct Daemon {
    child: Child,
}

impl Daemon {
    fn stop(mut self) {
        common::stop_child(&mut self.child, Duration::from_secs(30));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        common::kill_child(&mut self.child);
    }
}

fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

async fn included(s: &BenchSettings, dir: &Path, lines: &mut Vec<Line>, notes: &mut Vec<String>) {
    let source = format!("{}scim", s.prefix);
    let port = free_port();
    let cfg = dir.join("daemon.toml");
    let text = format!(
        r#"[litellm]
url = "{url}"
timeout = "30s"

[[sources]]
name = "{source}"
type = "scim"
user_id_template = "{prefix}{{user_name}}"

[sources.auth]
tokens = ["{hash}"]

[[rules]]
name = "bench"
match = {{ groups = ["{prefix}bench"] }}
max_budget = 10.0

[defaults]
role = "internal_user"
max_budget = 5.0

[safety]
max_deletions_percent = 100.0

[store]
path = "{store}"

[server]
listen = "127.0.0.1:{port}"

[drift]
enabled = false

[log]
format = "json"
"#,
        url = s.url,
        prefix = s.prefix,
        hash = hash_token(TOKEN),
        store = dir.join("daemon.db").display(),
    );
    std::fs::write(&cfg, text).expect("write daemon.toml");
    let log_path = dir.join("daemon.log");
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .env("LITELLM_SYNC__LITELLM__API_KEY", &s.key)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("create the daemon log"))
        .spawn()
        .expect("start litellm-sync run");
    let mut daemon = Daemon { child };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("HTTP client");
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let runs = |text: &str| metric(text, "litellm_sync_run_duration_seconds_count", &format!("source=\"{source}\""));

    // The first run lists the whole (shared) LiteLLM to build the ledger; pushes are timed after it.
    log(format!("daemon: {BIN} run, SCIM on 127.0.0.1:{port}, waiting for its first run"));
    let t = Instant::now();
    loop {
        if let Ok(Some(st)) = daemon.child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("the daemon exited ({st}):\n{log}");
        }
        if let Ok(r) = http.get(&metrics_url).send().await {
            if let Ok(text) = r.text().await {
                // A SCIM source with no users yet is a doubtful empty read (no run is counted): its first run is
                // over when the ledger is built and the outbox drained.
                let drained = std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("Outbox drained"));
                if runs(&text) >= 1.0 || drained {
                    break;
                }
            }
        }
        assert!(t.elapsed() < Duration::from_secs(600), "the daemon's first run did not finish in 600 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = t.elapsed();
    log(format!("  first run done after {:.1} s", first.as_secs_f64()));

    let c = Client::new(format!("http://127.0.0.1:{port}{PATH}"));
    let mut created = Vec::new();
    let mut delays = Vec::new();
    let mut posts = Vec::new();
    let mut timeouts = 0usize;
    let started = Instant::now();
    for i in 0..s.pushes {
        let name = format!("{}p{i:04}", s.prefix);
        let (st, body, lat) = c.call(reqwest::Method::POST, "/Users", Some(&user_body(&name, i))).await;
        let acked = Instant::now();
        assert_eq!(st, 201, "POST /Users {name} (daemon): {body}");
        posts.push(lat);
        let user_id = format!("{}{name}", s.prefix);
        created.push(user_id.clone());
        let seen = loop {
            let r = http
                .get(format!("{}/v2/user/info", s.url))
                .bearer_auth(&s.key)
                .query(&[("user_id", &user_id)])
                .send()
                .await;
            if let Ok(r) = r {
                let status = r.status().as_u16();
                if status == 200 {
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    let id = v["user_id"].as_str().or_else(|| v["user_info"]["user_id"].as_str());
                    assert_eq!(id, Some(user_id.as_str()), "LiteLLM /v2/user/info?user_id={user_id}: {v}");
                    break Some(acked.elapsed());
                }
                assert!(status == 404, "LiteLLM /v2/user/info?user_id={user_id} answered {status}");
            }
            if acked.elapsed() > Duration::from_secs(60) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        match seen {
            Some(d) => delays.push(d),
            None => timeouts += 1,
        }
    }
    let wall = started.elapsed();
    let text = http.get(&metrics_url).send().await.expect("metrics").text().await.expect("metrics body");
    let failed = metric(&text, "litellm_sync_runs_total", "result=\"failed\"");
    daemon.stop();

    if s.pushes > 0 {
        lines.push(Line {
            what: "POST /Users via the daemon (sequential, 1 client)".into(),
            n: s.pushes,
            wall,
            lat: posts,
            goal: Goal::Unset,
        });
        let n = delays.len();
        lines.push(Line {
            what: "push-to-LiteLLM delay (201 → visible in /v2/user/info)".into(),
            n,
            wall,
            lat: delays,
            goal: Goal::P50(Duration::from_secs(1)),
        });
        log(lines[lines.len() - 1].row());
    }
    notes.push(format!(
        "Included: daemon first run (lists LiteLLM, which held other users) {:.1} s; {} pushes, {timeouts} not \
         visible within 60 s; failed runs: {failed}. The push line's rate is pushes per second of the sequential \
         loop (each waits for the previous user to appear).",
        first.as_secs_f64(),
        s.pushes
    ));

    // Clean up: the daemon is stopped, so nothing re-creates them.
    if !created.is_empty() {
        let r = http
            .post(format!("{}/user/delete", s.url))
            .bearer_auth(&s.key)
            .json(&json!({"user_ids": created}))
            .send()
            .await
            .expect("LiteLLM /user/delete");
        let st = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        assert!(st == 200, "LiteLLM /user/delete answered {st}: {body}");
        log(format!("deleted the {} users this bench created in LiteLLM", created.len()));
    }
}

// ---------------------------------------------------------------------------------------------------------------

fn log(msg: impl AsRef<str>) {
    eprintln!("[{}] {}", chrono::Local::now().format("%H:%M:%S"), msg.as_ref());
}

fn uptime() -> String {
    Command::new("uptime")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/loadavg")
                .map(|s| format!("load average: {}", s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")))
                .unwrap_or_else(|_| "n/a".into())
        })
}

fn cpus() -> String {
    std::thread::available_parallelism().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

fn main() {
    if !common::requested("scim", "`cargo bench --bench scim`") {
        return;
    }
    let s = BenchSettings::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let tmp = tempfile::Builder::new().prefix("scim-bench-").tempdir().expect("temp dir");
    let load_start = uptime();
    log(format!(
        "scim bench: {} users, {} clients, {} creates, {} GETs, {} PATCHes, {} pushes; prefix {:?}; {} CPUs; {load_start}",
        s.users, s.clients, s.creates, s.gets, s.patches, s.pushes, s.prefix, cpus()
    ));
    let mut lines = Vec::new();
    let mut notes = Vec::new();
    rt.block_on(excluded(&s, tmp.path(), &mut lines, &mut notes));
    let split = lines.len();
    if s.pushes > 0 {
        rt.block_on(included(&s, tmp.path(), &mut lines, &mut notes));
    }
    let load_end = uptime();

    let mut out = String::new();
    let _ = writeln!(out, "\nSCIM bench, {} UTC", chrono::Utc::now().format("%Y-%m-%d %H:%M"));
    let _ = writeln!(out, "machine: {} CPUs; at start: {load_start}; at end: {load_end}", cpus());
    let _ = writeln!(
        out,
        "directory: {} users (+ the creates) in SQLite (WAL, synchronous=FULL); {} concurrent clients over loopback TCP\n",
        s.users, s.clients
    );
    let header = "| request | n | requests/s | p50 | p99 | goal | |\n|---|---:|---:|---:|---:|---|---|";
    let _ = writeln!(out, "LiteLLM's write path excluded (the SCIM service in-process, no reconciler):\n\n{header}");
    for l in &lines[..split] {
        let _ = writeln!(out, "{}", l.row());
    }
    if lines.len() > split {
        let _ = writeln!(
            out,
            "\nLiteLLM's write path included (`litellm-sync run`, real LiteLLM at {}):\n\n{header}",
            s.url
        );
        for l in &lines[split..] {
            let _ = writeln!(out, "{}", l.row());
        }
    }
    let _ = writeln!(out);
    for n in &notes {
        let _ = writeln!(out, "- {n}");
    }
    println!("{out}");
    let _ = std::io::Write::flush(&mut std::io::stdout());
}
