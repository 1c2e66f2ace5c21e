//! LiteLLM admin API client: typed calls, error parsing, retries with jittered exponential backoff (honouring
//! `Retry-After`), bounded concurrency and a request timeout.
//!
//! Every mutating call goes through [`Client::write`], the single write point where dry-run stops.
//! This module knows the API's traps (litellm-api.md) but nothing about rules or plans.

pub mod error;
mod keys;
pub mod types;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;

pub use error::{ApiError, ErrorClass};
use types::*;

use crate::config::LiteLlmConfig;

pub const USER_AGENT: &str = concat!("litellm-sync/", env!("CARGO_PKG_VERSION"));
/// LiteLLM's largest page for `/user/list`, `/v2/team/list` and `/key/list`.
const PAGE_SIZE: u32 = 100;
/// Rows per bulk request (LiteLLM's limit).
pub const BULK_MAX: usize = 500;
/// Members per `/team/member_add` request.
pub const MEMBER_CHUNK: usize = 20;
/// `/user/list` pages in flight during a full listing.
const LIST_IN_FLIGHT: usize = 8;
/// How long an idle connection to LiteLLM is kept for reuse: below uvicorn's 5 s keep-alive.
const IDLE_CONNECTION: Duration = Duration::from_secs(3);
/// Ids per exact lookup (`/user/list?user_ids=`): one page of rows.
pub const ID_CHUNK: usize = PAGE_SIZE as usize;

/// Which failures a request may be sent again after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Every retryable failure: repeating the request changes nothing (reads, and writes LiteLLM dedupes).
    Idempotent,
    /// Only failures that prove LiteLLM did not act on it (no connection, 429). After a timeout or a 5xx the
    /// caller must look before trying again: LiteLLM finishes abandoned requests, so a blind retry of a key
    /// mint makes a second key.
    Unsafe,
}

const CAP_UNKNOWN: u8 = 0;
const CAP_YES: u8 = 1;
const CAP_NO: u8 = 2;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
}

impl RetryPolicy {
    /// Full-jitter exponential backoff: a random delay in [0, min(max, initial·2^attempt)], never below 10 ms.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.initial_backoff.saturating_mul(1u32 << attempt.min(16));
        let cap = exp.min(self.max_backoff);
        let ms = rand::rng().random_range(0..=cap.as_millis().max(10) as u64);
        Duration::from_millis(ms.max(10))
    }
}

/// Counts of requests made, for `sync`'s summary and for tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub retries: AtomicU64,
}

/// Observes every HTTP exchange (metrics hook); the default does nothing.
pub trait Observer: Send + Sync {
    fn request(&self, _endpoint: &str, _status: Option<u16>, _elapsed: Duration) {}
}

struct NoObserver;
impl Observer for NoObserver {}

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: url::Url,
    permits: Semaphore,
    retry: RetryPolicy,
    dry_run: bool,
    bulk_enabled: bool,
    bulk_create: AtomicU8,
    bulk_delete: AtomicU8,
    v2_user_info: AtomicU8,
    v2_team_list: AtomicU8,
    counters: Counters,
    observer: Box<dyn Observer>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct BuildError(String);

impl Client {
    pub fn new(cfg: &LiteLlmConfig, api_key: SecretString, dry_run: bool) -> Result<Client, BuildError> {
        Self::with_observer(cfg, api_key, dry_run, Box::new(NoObserver))
    }

    pub fn with_observer(
        cfg: &LiteLlmConfig,
        api_key: SecretString,
        dry_run: bool,
        observer: Box<dyn Observer>,
    ) -> Result<Client, BuildError> {
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", api_key.expose_secret()))
            .map_err(|_| BuildError("the LiteLLM API key contains characters not allowed in a header".into()))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(cfg.concurrency)
            // LiteLLM's server (uvicorn) closes a connection idle for 5 s; one reused just then fails before
            // LiteLLM reads the request. Idle connections are dropped before that.
            .pool_idle_timeout(IDLE_CONNECTION)
            .build()
            .map_err(|e| BuildError(e.to_string()))?;
        let mut base = cfg.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                // Listings may have LIST_IN_FLIGHT pages out at once; writes are bounded by the applier itself.
                permits: Semaphore::new(cfg.concurrency.max(LIST_IN_FLIGHT)),
                retry: RetryPolicy {
                    max_retries: cfg.max_retries,
                    initial_backoff: cfg.initial_backoff,
                    max_backoff: cfg.max_backoff,
                    timeout: cfg.timeout,
                },
                dry_run,
                bulk_enabled: cfg.bulk,
                bulk_create: AtomicU8::new(CAP_UNKNOWN),
                bulk_delete: AtomicU8::new(CAP_UNKNOWN),
                v2_user_info: AtomicU8::new(CAP_UNKNOWN),
                v2_team_list: AtomicU8::new(CAP_UNKNOWN),
                counters: Counters::default(),
                observer,
            }),
        })
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// One HTTP exchange with retries. Returns the body of a 2xx answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Vec<u8>, ApiError> {
        let inner = &self.inner;
        let endpoint = path.to_string();
        let url = inner
            .base
            .join(path)
            .map_err(|e| ApiError::Decode { endpoint: endpoint.clone(), detail: e.to_string() })?;
        let mut attempt = 0;
        loop {
            let result = {
                let _permit = inner
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| ApiError::Connect { endpoint: endpoint.clone(), message: "client closed".into() })?;
                let started = std::time::Instant::now();
                let mut req = inner.http.request(method.clone(), url.clone()).query(query);
                if let Some(b) = body {
                    req = req.json(b);
                }
                let res = self.exchange(req, &endpoint).await;
                inner.observer.request(&endpoint, res.as_ref().map(|(s, _, _)| *s).ok(), started.elapsed());
                res
            };
            let err = match result {
                Ok((status, _, bytes)) if (200..300).contains(&status) => return Ok(bytes),
                Ok((status, retry_after, bytes)) => {
                    let (message, error_type) = error::parse_error_body(&bytes);
                    ApiError::Status { endpoint: endpoint.clone(), status, message, error_type, retry_after }
                }
                Err(e) => e,
            };
            if err.class() != ErrorClass::Retryable || attempt >= inner.retry.max_retries {
                return Err(err);
            }
            let unacted = matches!(err, ApiError::Connect { .. } | ApiError::Status { status: 429, .. });
            if retry == Retry::Unsafe && !unacted {
                return Err(err);
            }
            let wait = match &err {
                ApiError::Status { retry_after: Some(ra), .. } => (*ra).min(Duration::from_secs(300)),
                _ => inner.retry.backoff(attempt),
            };
            tracing::warn!(endpoint = %endpoint, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, error = %err,
                "LiteLLM request failed, retrying");
            inner.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
        endpoint: &str,
    ) -> Result<(u16, Option<Duration>, Vec<u8>), ApiError> {
        let map_err = |e: reqwest::Error| {
            if e.is_timeout() {
                ApiError::Timeout { endpoint: endpoint.to_string(), timeout: self.inner.retry.timeout }
            } else {
                ApiError::Connect { endpoint: endpoint.to_string(), message: error_chain(&e) }
            }
        };
        let resp = req.send().await.map_err(map_err)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| error::parse_retry_after(v, std::time::SystemTime::now()));
        let bytes = resp.bytes().await.map_err(map_err)?;
        Ok((status, retry_after, bytes.to_vec()))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, ApiError> {
        self.inner.counters.reads.fetch_add(1, Ordering::Relaxed);
        let bytes = self.call(Method::GET, path, query, None, Retry::Idempotent).await?;
        decode(path, &bytes)
    }

    /// The single write point: every mutating request passes here, and dry-run stops here.
    async fn write(&self, path: &str, body: &impl Serialize) -> Result<Vec<u8>, ApiError> {
        self.write_with(path, body, Retry::Idempotent).await
    }

    async fn write_with(&self, path: &str, body: &impl Serialize, retry: Retry) -> Result<Vec<u8>, ApiError> {
        if self.inner.dry_run {
            return Err(ApiError::DryRun { endpoint: path.to_string() });
        }
        let body = serde_json::to_value(body)
            .map_err(|e| ApiError::Decode { endpoint: path.into(), detail: e.to_string() })?;
        self.inner.counters.writes.fetch_add(1, Ordering::Relaxed);
        self.call(Method::POST, path, &[], Some(&body), retry).await
    }

    /// Checks that the key is accepted and may list users (proxy_admin or viewer). Returns the user count.
    pub async fn check_access(&self) -> Result<u64, ApiError> {
        let page: UserListPage = self.get("user/list", &[("page", "1".into()), ("page_size", "1".into())]).await?;
        Ok(page.total)
    }

    /// Checks, without writing, that the key may write users and teams (the master key or a proxy_admin's key;
    /// a proxy_admin_viewer's key reads everything and every write fails 403).
    ///
    /// `/user/new` with a `password` is refused by body validation (422), which runs after the route's role
    /// check (403 for a viewer, 401 for other roles): the answer tells the role and nothing is created. Not a
    /// write, so it is neither gated by dry-run nor counted.
    pub async fn check_write_access(&self) -> Result<(), ApiError> {
        let probe = serde_json::json!({ "password": "litellm-sync-permission-probe" });
        match self.call(Method::POST, "user/new", &[], Some(&probe), Retry::Idempotent).await {
            // 2xx cannot happen (the body is invalid); treat it as proof of the right as well.
            Ok(_) => Ok(()),
            Err(ApiError::Status { status: 422, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every user, enumerated by `user_id` order (the only total order, litellm-api.md §2.6) with pages fetched
    /// concurrently, and de-duplicated by id. The flag says whether the listing was consistent: when the total
    /// moved while paging (users created or deleted meanwhile), a page may have shifted and hidden a user, and
    /// the caller looks up by exact id the users it cares about (cheaper than reading everything again).
    pub async fn list_users(&self) -> Result<(Vec<UserRow>, bool), ApiError> {
        let (users, consistent) = self.list_users_once().await?;
        if !consistent {
            tracing::info!("The LiteLLM user list changed while it was read");
        }
        Ok((users, consistent))
    }

    async fn list_users_once(&self) -> Result<(Vec<UserRow>, bool), ApiError> {
        let q = |page: u64| {
            vec![
                ("page", page.to_string()),
                ("page_size", PAGE_SIZE.to_string()),
                ("sort_by", "user_id".to_string()),
                ("sort_order", "asc".to_string()),
            ]
        };
        let first: UserListPage = self.get("user/list", &q(1)).await?;
        let total = first.total;
        let pages = first.total_pages;
        let rest: Vec<UserListPage> = stream::iter(2..=pages.max(1))
            .map(|p| {
                let query = q(p);
                async move { self.get::<UserListPage>("user/list", &query).await }
            })
            // Pages in flight: LiteLLM serves them from one worker, but overlapping its database round trips still
            // buys about a third (litellm-api.md §0); a queued request's wait counts against its timeout.
            .buffered(LIST_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut by_id: BTreeMap<String, UserRow> = BTreeMap::new();
        let mut consistent = true;
        for page in std::iter::once(first).chain(rest) {
            consistent &= page.total == total;
            for u in page.users {
                by_id.insert(u.user_id.clone(), u);
            }
        }
        consistent &= by_id.len() as u64 == total;
        Ok((by_id.into_values().collect(), consistent))
    }

    /// The users among `ids` that exist, by exact id. `/user/list?user_ids=` matches exactly for two or more ids
    /// (one id would be a substring match), so a single id is sent twice.
    pub async fn users_by_ids(&self, ids: &[String]) -> Result<Vec<UserRow>, ApiError> {
        // LiteLLM splits the list on commas: an id holding one is looked up on its own.
        let (odd, plain): (Vec<&String>, Vec<&String>) = ids.iter().partition(|id| id.contains(','));
        let mut out = Vec::new();
        for chunk in plain.chunks(ID_CHUNK) {
            let mut list: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
            if list.len() == 1 {
                list.push(list[0]);
            }
            let q = [("user_ids", list.join(",")), ("page_size", PAGE_SIZE.to_string())];
            let page: UserListPage = self.get("user/list", &q).await?;
            out.extend(page.users.into_iter().filter(|u| chunk.iter().any(|id| **id == u.user_id)));
        }
        for id in odd {
            out.extend(self.get_user(id).await?);
        }
        Ok(out)
    }

    /// One user by id; `None` when LiteLLM has no such user. Uses `/v2/user/info`, falling back to `/user/info`
    /// on proxies that lack it.
    pub async fn get_user(&self, user_id: &str) -> Result<Option<UserRow>, ApiError> {
        let q = [("user_id", user_id.to_string())];
        if self.inner.v2_user_info.load(Ordering::Relaxed) != CAP_NO {
            match self.get::<UserRow>("v2/user/info", &q).await {
                Ok(u) => {
                    self.inner.v2_user_info.store(CAP_YES, Ordering::Relaxed);
                    return Ok(Some(u));
                }
                Err(e) if is_route_missing(&e) => self.inner.v2_user_info.store(CAP_NO, Ordering::Relaxed),
                Err(e) if e.class() == ErrorClass::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        match self.get::<UserInfoV1>("user/info", &q).await {
            Ok(info) => Ok(info.user_info.filter(|u| u.user_id == user_id)),
            Err(e) if e.class() == ErrorClass::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn create_user(&self, req: &NewUserRequest) -> Result<(), ApiError> {
        self.write("user/new", req).await.map(drop)
    }

    /// Creates up to [`BULK_MAX`] users in one request. `Ok(None)` when the proxy has no bulk endpoint (or bulk
    /// is disabled): create them one by one instead.
    pub async fn bulk_create(&self, rows: &[NewUserRequest]) -> Result<Option<Vec<BulkRowResult>>, ApiError> {
        self.bulk("management/v1/users/bulk", &self.inner.bulk_create, &serde_json::json!({ "users": rows })).await
    }

    pub async fn bulk_delete(&self, user_ids: &[String]) -> Result<Option<Vec<BulkRowResult>>, ApiError> {
        self.bulk(
            "management/v1/users/bulk_delete",
            &self.inner.bulk_delete,
            &serde_json::json!({ "user_ids": user_ids }),
        )
        .await
    }

    async fn bulk(&self, path: &str, cap: &AtomicU8, body: &Value) -> Result<Option<Vec<BulkRowResult>>, ApiError> {
        if !self.inner.bulk_enabled || cap.load(Ordering::Relaxed) == CAP_NO {
            return Ok(None);
        }
        match self.write(path, body).await {
            Ok(bytes) => {
                cap.store(CAP_YES, Ordering::Relaxed);
                Ok(Some(decode::<BulkResponse>(path, &bytes)?.data))
            }
            Err(e) if is_route_missing(&e) => {
                tracing::info!(endpoint = path, "LiteLLM has no bulk endpoint; using one request per user");
                cap.store(CAP_NO, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub async fn update_user(&self, req: &UpdateUserRequest) -> Result<(), ApiError> {
        self.write("user/update", req).await.map(drop)
    }

    /// Deletes one user; `Ok(false)` when it was already gone.
    pub async fn delete_user(&self, user_id: &str) -> Result<bool, ApiError> {
        match self.write("user/delete", &serde_json::json!({ "user_ids": [user_id] })).await {
            Ok(_) => Ok(true),
            Err(e) if e.class() == ErrorClass::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every team with its roster. `/v2/team/list` pages by `team_id`; `/team/list` (unpaged, heavy) is the
    /// fallback for proxies without it.
    pub async fn list_teams(&self) -> Result<Vec<TeamRow>, ApiError> {
        if self.inner.v2_team_list.load(Ordering::Relaxed) != CAP_NO {
            let q = |page: u64| {
                vec![
                    ("page", page.to_string()),
                    ("page_size", PAGE_SIZE.to_string()),
                    ("sort_by", "team_id".to_string()),
                    ("sort_order", "asc".to_string()),
                ]
            };
            match self.get::<TeamListPage>("v2/team/list", &q(1)).await {
                Ok(first) => {
                    self.inner.v2_team_list.store(CAP_YES, Ordering::Relaxed);
                    let mut by_id: BTreeMap<String, TeamRow> = BTreeMap::new();
                    let pages = first.total_pages;
                    for t in first.teams {
                        by_id.insert(t.team_id.clone(), t);
                    }
                    for p in 2..=pages {
                        for t in self.get::<TeamListPage>("v2/team/list", &q(p)).await?.teams {
                            by_id.insert(t.team_id.clone(), t);
                        }
                    }
                    return Ok(by_id.into_values().collect());
                }
                Err(e) if is_route_missing(&e) => self.inner.v2_team_list.store(CAP_NO, Ordering::Relaxed),
                Err(e) => return Err(e),
            }
        }
        self.get::<Vec<TeamRow>>("team/list", &[]).await
    }

    /// One team by id (`/team/info`); `None` when LiteLLM has no such team.
    pub async fn get_team(&self, team_id: &str) -> Result<Option<TeamRow>, ApiError> {
        match self.get::<TeamInfo>("team/info", &[("team_id", team_id.to_string())]).await {
            Ok(info) => Ok(Some(info.team_info)),
            Err(e) if e.class() == ErrorClass::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a team; `Ok(false)` when a team with that id exists already (LiteLLM answers 400, not 409).
    pub async fn create_team(&self, req: &TeamRequest) -> Result<bool, ApiError> {
        match self.write("team/new", req).await {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(400) && e.message().contains("already exists") => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn update_team(&self, req: &TeamRequest) -> Result<(), ApiError> {
        self.write("team/update", req).await.map(drop)
    }

    /// Adds members in one call; "already in team" is success.
    ///
    /// Sent in chunks of [`MEMBER_CHUNK`]: LiteLLM adds a batch in one database transaction with a 5 s limit,
    /// which a busy proxy exceeds for large batches ("Transaction already closed").
    pub async fn add_members(&self, team_id: &str, members: &[MemberSpec]) -> Result<(), ApiError> {
        for chunk in members.chunks(MEMBER_CHUNK) {
            let body = serde_json::json!({ "team_id": team_id, "member": chunk });
            match self.write("team/member_add", &body).await {
                Ok(_) => {}
                Err(e) if e.error_type() == Some("team_member_already_in_team") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes a member; "not in team" is success.
    pub async fn remove_member(&self, team_id: &str, user_id: &str) -> Result<(), ApiError> {
        let body = serde_json::json!({ "team_id": team_id, "user_id": user_id });
        match self.write("team/member_delete", &body).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(400) && e.message().contains("not found in team") => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn update_member(&self, team_id: &str, user_id: &str, role: &str) -> Result<(), ApiError> {
        let body = serde_json::json!({ "team_id": team_id, "user_id": user_id, "role": role });
        self.write("team/member_update", &body).await.map(drop)
    }
}

fn decode<T: DeserializeOwned>(endpoint: &str, bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let snippet: String = String::from_utf8_lossy(bytes).chars().take(120).collect();
        ApiError::Decode {
            endpoint: endpoint.to_string(),
            detail: format!("{e} (body starts with {:?})", error::redact_keys(&snippet)),
        }
    })
}

/// FastAPI's answer for a route the proxy does not have: 404 `{"detail":"Not Found"}`.
fn is_route_missing(e: &ApiError) -> bool {
    matches!(e, ApiError::Status { status: 404 | 405, message, error_type: None, .. } if message == "Not Found" || message == "Method Not Allowed")
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
