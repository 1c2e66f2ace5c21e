//! A small admin client for the real LiteLLM: what the tests read back to judge a sync, and what they do by hand
//! (unmanaged users, foreign metadata, extra keys, clean-up). Deliberately independent of the crate's own client,
//! so a bug there cannot hide itself.

use std::time::Duration;

use serde_json::{json, Value};

#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Admin {
    pub fn new(base: &str, key: &str) -> Admin {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("HTTP client");
        Admin { http, base: base.trim_end_matches('/').to_string(), key: key.to_string() }
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> (u16, Value) {
        let resp = req.send().await.unwrap_or_else(|e| panic!("LiteLLM {what}: {e}"));
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_else(|e| panic!("LiteLLM {what}: {e}"));
        let body =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, body)
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let req = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.key).query(query);
        self.send(req, &format!("GET {path}")).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let req = self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.key).json(body);
        self.send(req, &format!("POST {path}")).await
    }

    #[track_caller]
    fn ok(what: &str, (status, body): (u16, Value)) -> Value {
        assert_eq!(status, 200, "LiteLLM {what} answered {status}: {body}");
        body
    }

    /// A GET made with another key (a user's virtual key): only the status matters.
    pub async fn status_with_key(&self, key: &str, path: &str) -> u16 {
        let req = self.http.get(format!("{}{path}", self.base)).bearer_auth(key);
        self.send(req, &format!("GET {path} with a user key")).await.0
    }

    /// One user (`/v2/user/info`), `None` when LiteLLM has no such user.
    pub async fn user(&self, user_id: &str) -> Option<Value> {
        match self.get("/v2/user/info", &[("user_id", user_id)]).await {
            (200, body) => Some(body),
            (404, _) => None,
            (status, body) => panic!("LiteLLM /v2/user/info?user_id={user_id} answered {status}: {body}"),
        }
    }

    /// Like [`Admin::user`], for a user the test expects to exist.
    pub async fn must_user(&self, user_id: &str) -> Value {
        self.user(user_id).await.unwrap_or_else(|| panic!("LiteLLM has no user {user_id:?}"))
    }

    /// Every user whose id starts with `prefix` (`/user/list` rows, which include `key_count`), by id.
    pub async fn users(&self, prefix: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for page in 1.. {
            let page = page.to_string();
            let query = [
                ("user_ids", prefix),
                ("page", page.as_str()),
                ("page_size", "100"),
                ("sort_by", "user_id"),
                ("sort_order", "asc"),
            ];
            let body = Self::ok("/user/list", self.get("/user/list", &query).await);
            let rows = body["users"].as_array().cloned().unwrap_or_default();
            let last = rows.len() < 100;
            out.extend(rows.into_iter().filter(|u| u["user_id"].as_str().is_some_and(|id| id.starts_with(prefix))));
            if last {
                break;
            }
        }
        out
    }

    /// The ids of [`Admin::users`].
    pub async fn user_ids(&self, prefix: &str) -> Vec<String> {
        self.users(prefix).await.iter().filter_map(|u| u["user_id"].as_str().map(str::to_string)).collect()
    }

    /// One team (`/team/info`'s `team_info`), `None` when it does not exist.
    pub async fn team(&self, team_id: &str) -> Option<Value> {
        match self.get("/team/info", &[("team_id", team_id)]).await {
            (200, body) => Some(body["team_info"].clone()),
            (404, _) => None,
            (status, body) => panic!("LiteLLM /team/info?team_id={team_id} answered {status}: {body}"),
        }
    }

    /// A team's roster as (user_id, role), sorted.
    pub async fn members(&self, team_id: &str) -> Vec<(String, String)> {
        let team = self.team(team_id).await.unwrap_or_else(|| panic!("LiteLLM has no team {team_id:?}"));
        let mut out: Vec<(String, String)> = team["members_with_roles"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| (m["user_id"].as_str().unwrap_or("").to_string(), m["role"].as_str().unwrap_or("").to_string()))
            .collect();
        out.sort();
        out
    }

    /// Ids of every team whose id starts with `prefix`.
    pub async fn team_ids(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        for page in 1.. {
            let page = page.to_string();
            let query = [("page", page.as_str()), ("page_size", "100"), ("sort_by", "team_id"), ("sort_order", "asc")];
            let body = Self::ok("/v2/team/list", self.get("/v2/team/list", &query).await);
            let rows = body["teams"].as_array().cloned().unwrap_or_default();
            out.extend(
                rows.iter()
                    .filter_map(|t| t["team_id"].as_str())
                    .filter(|id| id.starts_with(prefix))
                    .map(str::to_string),
            );
            if rows.len() < 100 {
                break;
            }
        }
        out
    }

    /// Every key a user owns (full objects: `token`, `key_alias`, `blocked`).
    pub async fn keys(&self, user_id: &str) -> Vec<Value> {
        let query = [("user_id", user_id), ("return_full_object", "true"), ("size", "100")];
        let body = Self::ok("/key/list", self.get("/key/list", &query).await);
        body["keys"].as_array().cloned().unwrap_or_default()
    }

    /// Creates a user by hand (no ownership marker unless the body has one).
    pub async fn create_user(&self, body: Value) -> Value {
        Self::ok("/user/new", self.post("/user/new", &body).await)
    }

    pub async fn update_user(&self, body: Value) -> Value {
        Self::ok("/user/update", self.post("/user/update", &body).await)
    }

    /// Mints a key for a user by hand; returns the plaintext `sk-…`.
    pub async fn generate_key(&self, user_id: &str, alias: &str) -> String {
        let body = Self::ok(
            "/key/generate",
            self.post("/key/generate", &json!({"user_id": user_id, "key_alias": alias})).await,
        );
        body["key"].as_str().expect("a key in /key/generate's answer").to_string()
    }

    /// Mints a key of `user_id` for team `team_id` by hand; returns the plaintext `sk-…`.
    pub async fn generate_team_key(&self, user_id: &str, team_id: &str, alias: &str) -> String {
        let body = Self::ok(
            "/key/generate",
            self.post("/key/generate", &json!({"user_id": user_id, "team_id": team_id, "key_alias": alias})).await,
        );
        body["key"].as_str().expect("a key in /key/generate's answer").to_string()
    }

    /// The keys `user_id` holds for team `team_id`.
    pub async fn team_keys(&self, user_id: &str, team_id: &str) -> Vec<Value> {
        let query = [("user_id", user_id), ("team_id", team_id), ("return_full_object", "true"), ("size", "100")];
        let body = Self::ok("/key/list", self.get("/key/list", &query).await);
        body["keys"].as_array().cloned().unwrap_or_default()
    }

    pub async fn add_member(&self, team_id: &str, user_id: &str) {
        let body = json!({"team_id": team_id, "member": [{"user_id": user_id, "role": "user"}]});
        Self::ok("/team/member_add", self.post("/team/member_add", &body).await);
    }

    pub async fn delete_users(&self, ids: &[String]) {
        for chunk in ids.chunks(100) {
            let (status, body) = self.post("/user/delete", &json!({ "user_ids": chunk })).await;
            assert!(status == 200 || status == 404, "LiteLLM /user/delete answered {status}: {body}");
        }
    }

    /// The team that says litellm-sync has written markers to this LiteLLM. Every test runs against a LiteLLM that
    /// has it, as a proxy litellm-sync has run against does; without it a first run skips the user listing (the
    /// `perf` tests hide it on purpose, at their fault proxy).
    pub async fn ensure_anchor(&self) {
        static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        DONE.get_or_init(|| async {
            let body = json!({"team_id": "litellm-sync", "metadata": {"litellm_sync_anchor": {"what": "tests"}}});
            let (status, answer) = self.post("/team/new", &body).await;
            // 400: it exists; 500: another process created it in the same instant (LiteLLM's unique index).
            assert!(
                status == 200 || self.team("litellm-sync").await.is_some(),
                "LiteLLM /team/new (anchor) answered {status}: {answer}"
            );
        })
        .await;
    }

    /// Removes every user and team whose id starts with `prefix`.
    pub async fn cleanup(&self, prefix: &str) {
        let users = self.user_ids(prefix).await;
        self.delete_users(&users).await;
        let teams = self.team_ids(prefix).await;
        if !teams.is_empty() {
            let (status, body) = self.post("/team/delete", &json!({ "team_ids": teams })).await;
            assert!(status == 200 || status == 404, "LiteLLM /team/delete answered {status}: {body}");
        }
        assert!(self.user_ids(prefix).await.is_empty(), "users with prefix {prefix:?} survived the clean-up");
    }
}

/// `metadata.litellm_sync.source` of a user or team, if it carries the marker.
pub fn marker_source(row: &Value) -> Option<&str> {
    row["metadata"]["litellm_sync"]["source"].as_str()
}
