//! A fault-injecting HTTP proxy in front of the real LiteLLM (axum on 127.0.0.1:0).
//!
//! It forwards every request (method, path and query, headers including `Authorization`, body) and every answer
//! unchanged, logs each exchange so tests can count requests ("zero writes" = zero POSTs), and applies the faults a
//! test queued: an error status without forwarding, a 429 with `Retry-After`, a forwarded request whose answer is
//! replaced by an error or held back past the client's timeout (the write lands, the client does not know), a 200
//! that is not JSON, or a side effect on LiteLLM around the forwarded request (a user appearing or disappearing
//! between `/user/list` pages). It is not a fake LiteLLM: without faults it is transparent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::Value;

use super::{Admin, Run};

/// Something done to LiteLLM by the proxy itself (not counted in the log).
#[derive(Debug, Clone)]
pub enum Hook {
    /// `POST /user/new` with this body.
    CreateUser(Value),
    /// `POST /user/delete` of this id.
    DeleteUser(String),
    /// `POST /team/new` with this body.
    CreateTeam(Value),
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and a LiteLLM-style error body; LiteLLM never sees the request.
    Status(u16),
    /// Answer 429 with `Retry-After: <secs>`; LiteLLM never sees the request.
    RateLimit { retry_after_secs: u64 },
    /// Forward (the write lands), then answer this status instead of LiteLLM's answer.
    ForwardThenStatus(u16),
    /// Forward at once, then hold LiteLLM's answer back this long (past the client's timeout).
    DelayAnswer(Duration),
    /// Answer 200 with a body that is not JSON; LiteLLM never sees the request.
    Garbage,
    /// Run the hook, then forward.
    Before(Hook),
    /// Forward, run the hook, then return LiteLLM's answer.
    After(Hook),
    /// Forward, and take the team with this id out of a team listing's answer (`teams`).
    HideTeam(String),
}

/// One exchange the proxy saw, in arrival order.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// The status the client got (0 while the answer is pending or when the client went away).
    pub status: u16,
    /// The injected fault, if any.
    pub fault: Option<String>,
    pub at: Instant,
    /// The answer's body, kept for POSTs only (to find the plaintext keys LiteLLM hands out on create).
    pub body: Option<String>,
    /// The daemon's permission probe (a `/user/new` body LiteLLM refuses with 422, so nothing is written); known
    /// by its request body, so that a probe still waiting for its answer is not taken for a write.
    pub probe: bool,
}

struct Rule {
    method: Option<Method>,
    path_prefix: String,
    remaining: usize,
    fault: Fault,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    admin: Admin,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<Exchange>>,
    /// Bumped (under the log's lock) by every reset: a request in flight across a reset is not written back
    /// into the new log.
    resets: std::sync::atomic::AtomicU64,
    /// Hooks that failed.
    problems: Mutex<Vec<String>>,
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (the real LiteLLM); `admin` runs the hooks.
    pub async fn start(upstream: &str, admin: &Admin) -> FaultProxy {
        // No idle connections kept: LiteLLM (uvicorn) closes an idle one after 5 s, and a request sent on it as it
        // closes fails with "error sending request" (seen on a loaded machine) although LiteLLM never saw it.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("proxy HTTP client");
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http,
            admin: admin.clone(),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            resets: std::sync::atomic::AtomicU64::new(0),
            problems: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues a fault for the next `times` requests matching `method` (any when `None`) and a path starting with
    /// `path_prefix` ("" for every path). Rules are tried in the order they were queued.
    pub fn inject(&self, method: Option<Method>, path_prefix: &str, times: usize, fault: Fault) {
        self.shared.rules.lock().unwrap().push(Rule {
            method,
            path_prefix: path_prefix.to_string(),
            remaining: times,
            fault,
        });
    }

    /// Panics unless every queued fault was used up and every hook worked: a test whose faults never fired
    /// proves nothing. `run` is the run that should have met them (shown on failure).
    #[track_caller]
    pub fn assert_faults_used(&self, run: &Run) {
        let unused: Vec<String> = self
            .shared
            .rules
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.remaining > 0)
            .map(|r| {
                let m = r.method.as_ref().map(Method::as_str).unwrap_or("*");
                format!("{m} {}* ×{} left: {:?}", r.path_prefix, r.remaining, r.fault)
            })
            .collect();
        assert!(unused.is_empty(), "injected faults never fired:\n{}\n{}", unused.join("\n"), run.dump());
        let problems = self.shared.problems.lock().unwrap().clone();
        assert!(problems.is_empty(), "fault proxy hooks failed:\n{}\n{}", problems.join("\n"), run.dump());
    }

    pub fn clear_faults(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    pub fn log(&self) -> Vec<Exchange> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn reset_log(&self) {
        let mut log = self.shared.log.lock().unwrap();
        log.clear();
        self.shared.resets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Requests seen with this method and exactly this path, the daemon's permission probe left out.
    pub fn count(&self, method: Method, path: &str) -> usize {
        self.shared.log.lock().unwrap().iter().filter(|e| e.method == method && e.path == path && !e.probe).count()
    }

    /// Every write request seen (LiteLLM's admin API writes with POST only), as "POST /path" lines. The daemon's
    /// permission probe, and a request LiteLLM answered 422 (its body failed validation, so nothing was written),
    /// are not writes.
    pub fn writes(&self) -> Vec<String> {
        self.shared
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.method != Method::GET && e.method != Method::HEAD && e.status != 422 && !e.probe)
            .map(|e| format!("{} {}", e.method, e.path))
            .collect()
    }

    /// The plaintext key LiteLLM returned when it minted one for `user_id` (`/key/generate`, or `/user/new` and the
    /// bulk endpoint of older builds).
    pub fn created_key(&self, user_id: &str) -> Option<String> {
        let log = self.shared.log.lock().unwrap();
        for e in log.iter().filter(|e| e.status == 200) {
            let Some(body) = e.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else { continue };
            let rows: Vec<&Value> = match e.path.as_str() {
                "/user/new" | "/key/generate" => vec![&body],
                "/management/v1/users/bulk" => body["data"].as_array().map(|a| a.iter().collect()).unwrap_or_default(),
                _ => continue,
            };
            for row in rows {
                if row["user_id"] == user_id {
                    if let Some(k) = row["key"].as_str().filter(|k| k.starts_with("sk-")) {
                        return Some(k.to_string());
                    }
                }
            }
        }
        None
    }
}

impl Shared {
    fn take_fault(&self, method: &Method, path: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        let rule = rules.iter_mut().find(|r| {
            r.remaining > 0 && r.method.as_ref().is_none_or(|m| m == method) && path.starts_with(&r.path_prefix)
        })?;
        rule.remaining -= 1;
        Some(rule.fault.clone())
    }

    /// Runs a hook; a failure is recorded (a panic here would only break the client's connection).
    async fn run_hook(&self, hook: &Hook) {
        let (what, (status, body)) = match hook {
            Hook::CreateUser(body) => ("create user", self.admin.post("/user/new", body).await),
            Hook::DeleteUser(id) => {
                ("delete user", self.admin.post("/user/delete", &serde_json::json!({"user_ids": [id]})).await)
            }
            Hook::CreateTeam(body) => ("create team", self.admin.post("/team/new", body).await),
        };
        if status != 200 {
            self.problems.lock().unwrap().push(format!("hook {what} ({hook:?}) got {status}: {body}"));
        }
    }
}

/// LiteLLM's answer: status, headers, body.
type Answer = (StatusCode, HeaderMap, Bytes);

/// Forwards in a task of its own, so the request reaches LiteLLM even when the client has given up on it.
async fn forward(
    shared: &Arc<Shared>,
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let shared = shared.clone();
    let task = tokio::spawn(async move {
        let mut req = shared.http.request(method, format!("{}{path_and_query}", shared.upstream)).body(body);
        for (name, value) in &headers {
            // The connection-level headers are the proxy's own; asking for identity keeps bodies readable.
            if !matches!(
                name.as_str(),
                "host" | "content-length" | "connection" | "transfer-encoding" | "accept-encoding"
            ) {
                req = req.header(name, value);
            }
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                match resp.bytes().await {
                    Ok(b) => (status, headers, b),
                    Err(e) => bad_gateway(&e),
                }
            }
            Err(e) => bad_gateway(&e),
        }
    });
    task.await
        .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, HeaderMap::new(), Bytes::from(format!("proxy task failed: {e}"))))
}

fn bad_gateway(e: &reqwest::Error) -> Answer {
    (StatusCode::BAD_GATEWAY, HeaderMap::new(), Bytes::from(format!("fault proxy: LiteLLM unreachable: {e}")))
}

fn error_answer(status: u16, headers: HeaderMap) -> Answer {
    let body = format!(
        r#"{{"error":{{"message":"injected by the fault proxy","type":"fault_proxy","param":null,"code":"{status}"}}}}"#
    );
    let status = StatusCode::from_u16(status).expect("a valid status");
    let mut headers = headers;
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (status, headers, Bytes::from(body))
}

/// What the permission probe's body carries (`Client::check_write_access`).
const PROBE: &[u8] = b"litellm-sync-permission-probe";

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 256 << 20).await.unwrap_or_default();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let pq = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| path.clone());
    let fault = shared.take_fault(&method, &path);
    let index = {
        let mut log = shared.log.lock().unwrap();
        log.push(Exchange {
            method: method.clone(),
            path: path.clone(),
            query,
            status: 0,
            fault: fault.as_ref().map(|f| format!("{f:?}")),
            at: Instant::now(),
            body: None,
            probe: body.windows(PROBE.len()).any(|w| w == PROBE),
        });
        (log.len() - 1, shared.resets.load(std::sync::atomic::Ordering::SeqCst))
    };
    let (status, mut headers, bytes) = match fault {
        None => forward(&shared, method.clone(), pq, parts.headers, body).await,
        Some(Fault::Status(s)) => error_answer(s, HeaderMap::new()),
        Some(Fault::RateLimit { retry_after_secs }) => {
            let mut h = HeaderMap::new();
            h.insert("retry-after", HeaderValue::from_str(&retry_after_secs.to_string()).expect("header"));
            error_answer(429, h)
        }
        Some(Fault::ForwardThenStatus(s)) => {
            forward(&shared, method.clone(), pq, parts.headers, body).await;
            error_answer(s, HeaderMap::new())
        }
        Some(Fault::DelayAnswer(d)) => {
            let answer = forward(&shared, method.clone(), pq, parts.headers, body).await;
            tokio::time::sleep(d).await;
            answer
        }
        Some(Fault::Garbage) => {
            let mut h = HeaderMap::new();
            h.insert("content-type", HeaderValue::from_static("text/html"));
            (StatusCode::OK, h, Bytes::from_static(b"<html><body>Welcome to nginx!</body></html>"))
        }
        Some(Fault::Before(hook)) => {
            shared.run_hook(&hook).await;
            forward(&shared, method.clone(), pq, parts.headers, body).await
        }
        Some(Fault::After(hook)) => {
            let answer = forward(&shared, method.clone(), pq, parts.headers, body).await;
            shared.run_hook(&hook).await;
            answer
        }
        Some(Fault::HideTeam(team_id)) => {
            let (status, headers, bytes) = forward(&shared, method.clone(), pq, parts.headers, body).await;
            let bytes = match serde_json::from_slice::<Value>(&bytes) {
                Ok(mut v) => {
                    if let Some(teams) = v.get_mut("teams").and_then(Value::as_array_mut) {
                        teams.retain(|t| t["team_id"] != team_id.as_str());
                    }
                    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
                }
                Err(_) => bytes,
            };
            (status, headers, bytes)
        }
    };
    {
        let mut log = shared.log.lock().unwrap();
        let (index, generation) = index;
        if shared.resets.load(std::sync::atomic::Ordering::SeqCst) == generation {
            let e = &mut log[index];
            e.status = status.as_u16();
            if method == Method::POST {
                e.body = Some(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    for h in ["content-length", "transfer-encoding", "connection"] {
        headers.remove(h);
    }
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}
