//! Request and response bodies of the LiteLLM admin API, as LiteLLM 1.106 really sends and accepts them.
//!
//! Responses are read leniently (`null` where a list is documented, whole numbers as floats); requests are
//! typed so that fields LiteLLM rejects (`blocked`, `teams` on update, `soft_budget` on users, …) cannot be sent.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `Option<Option<T>>` that keeps "present as null" (`Some(None)`) apart from "absent" (`None`, via `default`).
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Some(Option::<T>::deserialize(d)?))
}

/// A count or limit that may arrive as `5`, `5.0`, or `null`.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(Some(u))
            } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19) {
                Ok(Some(f as u64))
            } else {
                Err(serde::de::Error::custom(format!("expected a non-negative whole number, got {n}")))
            }
        }
        Some(other) => Err(serde::de::Error::custom(format!("expected a number, got {other}"))),
    }
}

/// One row of `/user/list` (and, with fewer fields, `/v2/user/info`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct UserRow {
    pub user_id: String,
    #[serde(default)]
    pub user_email: Option<String>,
    #[serde(default)]
    pub user_alias: Option<String>,
    #[serde(default)]
    pub user_role: Option<String>,
    #[serde(default)]
    pub max_budget: Option<f64>,
    #[serde(default)]
    pub budget_duration: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub models: Vec<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub tpm_limit: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub rpm_limit: Option<u64>,
    /// Absent from `/v2/user/info`: `None` there means "unknown", not "unset".
    #[serde(default, deserialize_with = "lenient_u64")]
    pub max_parallel_requests: Option<u64>,
    #[serde(default, deserialize_with = "null_default")]
    pub model_max_budget: Map<String, Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: Map<String, Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub teams: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserListPage {
    pub users: Vec<UserRow>,
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub total_pages: u64,
}

/// `/user/info` (the fallback when `/v2/user/info` is absent) wraps the row.
#[derive(Debug, Clone, Deserialize)]
pub struct UserInfoV1 {
    pub user_info: Option<UserRow>,
}

/// `POST /user/new` and one row of `/management/v1/users/bulk`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewUserRequest {
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_alias: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel_requests: Option<u64>,
    /// Accepted by the bulk endpoint and by `/user/update`; `/user/new` answers 500 without an Enterprise
    /// licence, so the applier sends it in a follow-up update for one-by-one creates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_max_budget: Option<BTreeMap<String, f64>>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Always sent, always false (LiteLLM's default is true): keys are minted with `/key/generate`.
    #[serde(default)]
    pub auto_create_key: bool,
    /// Not accepted by the bulk endpoint (422): such users are created one by one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub send_invite_email: bool,
}

/// `POST /user/update`. The double options distinguish "not sent" (`None`) from "sent as null, which clears"
/// (`Some(None)`); LiteLLM clears only these four fields with null (litellm-api.md §2.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateUserRequest {
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_alias: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_role: Option<String>,
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    pub budget_duration: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<Option<u64>>,
    /// Never empty: `[]` is ignored by LiteLLM; "all-proxy-models" lifts a restriction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel_requests: Option<u64>,
    /// `{}` clears.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_max_budget: Option<BTreeMap<String, f64>>,
    /// Replaces the stored object wholesale: always the full merged metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

impl UpdateUserRequest {
    /// True when nothing but the id would be sent.
    pub fn is_empty(&self) -> bool {
        *self == UpdateUserRequest { user_id: self.user_id.clone(), ..Default::default() }
    }
}

/// Per-row result of `/management/v1/users/bulk` and `/bulk_delete`.
#[derive(Debug, Clone, Deserialize)]
pub struct BulkRowResult {
    #[serde(default)]
    pub user_id: Option<String>,
    pub success: bool,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BulkResponse {
    pub data: Vec<BulkRowResult>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TeamMemberRow {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub user_email: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
}

/// One team of `/v2/team/list` (or of `/team/list` on older proxies).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TeamRow {
    pub team_id: String,
    #[serde(default)]
    pub team_alias: Option<String>,
    #[serde(default)]
    pub max_budget: Option<f64>,
    #[serde(default)]
    pub soft_budget: Option<f64>,
    #[serde(default)]
    pub budget_duration: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub models: Vec<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub tpm_limit: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub rpm_limit: Option<u64>,
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: Map<String, Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub members_with_roles: Vec<TeamMemberRow>,
}

/// `GET /team/info`: the team row is under `team_info`.
#[derive(Debug, Clone, Deserialize)]
pub struct TeamInfo {
    pub team_info: TeamRow,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TeamListPage {
    pub teams: Vec<TeamRow>,
    #[serde(default)]
    pub total_pages: u64,
}

/// `POST /team/new` and `/team/update` (the latter with only the changed fields). `/team/update` stores what is
/// sent, an explicit null included (`exclude_unset`), so the double options clear a field: `Some(None)` is null.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TeamRequest {
    pub team_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_alias: Option<String>,
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    pub soft_budget: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    pub budget_duration: Option<Option<String>>,
    /// `[]`: every model of the proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

impl TeamRow {
    /// The row a `/team/new` with this body creates (before anyone joins).
    pub fn created(req: &TeamRequest) -> TeamRow {
        TeamRow {
            team_id: req.team_id.clone(),
            team_alias: None,
            max_budget: None,
            soft_budget: None,
            budget_duration: None,
            models: Vec::new(),
            tpm_limit: None,
            rpm_limit: None,
            metadata: Map::new(),
            members_with_roles: Vec::new(),
        }
        .updated(req)
    }

    /// This row after a `/team/update` with `req`.
    pub fn updated(&self, req: &TeamRequest) -> TeamRow {
        let mut row = self.clone();
        if let Some(v) = &req.team_alias {
            row.team_alias = Some(v.clone());
        }
        if let Some(v) = req.max_budget {
            row.max_budget = v;
        }
        if let Some(v) = req.soft_budget {
            row.soft_budget = v;
        }
        if let Some(v) = &req.budget_duration {
            row.budget_duration = v.clone();
        }
        if let Some(v) = &req.models {
            row.models = v.clone();
        }
        if let Some(v) = req.tpm_limit {
            row.tpm_limit = v;
        }
        if let Some(v) = req.rpm_limit {
            row.rpm_limit = v;
        }
        if let Some(m) = &req.metadata {
            row.metadata = m.clone();
        }
        row
    }
}

impl UserRow {
    /// The row a `/user/new` (or bulk row) with this body creates.
    pub fn created(req: &NewUserRequest) -> UserRow {
        UserRow {
            user_id: req.user_id.clone(),
            user_email: req.user_email.clone(),
            user_alias: req.user_alias.clone(),
            user_role: req.user_role.clone(),
            max_budget: req.max_budget,
            budget_duration: req.budget_duration.clone(),
            models: req.models.clone().unwrap_or_default(),
            tpm_limit: req.tpm_limit,
            rpm_limit: req.rpm_limit,
            max_parallel_requests: req.max_parallel_requests,
            model_max_budget: req
                .model_max_budget
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                .collect(),
            metadata: req.metadata.clone(),
            teams: Vec::new(),
        }
    }

    /// This row after a `/user/update` with `req`.
    pub fn updated(&self, req: &UpdateUserRequest) -> UserRow {
        let mut row = self.clone();
        if let Some(v) = &req.user_email {
            row.user_email = Some(v.clone());
        }
        if let Some(v) = &req.user_alias {
            row.user_alias = Some(v.clone());
        }
        if let Some(v) = &req.user_role {
            row.user_role = Some(v.clone());
        }
        if let Some(v) = req.max_budget {
            row.max_budget = v;
        }
        if let Some(v) = &req.budget_duration {
            row.budget_duration = v.clone();
        }
        if let Some(v) = req.tpm_limit {
            row.tpm_limit = v;
        }
        if let Some(v) = req.rpm_limit {
            row.rpm_limit = v;
        }
        if let Some(v) = &req.models {
            row.models = v.clone();
        }
        if let Some(v) = req.max_parallel_requests {
            row.max_parallel_requests = Some(v);
        }
        if let Some(v) = &req.model_max_budget {
            row.model_max_budget = v.iter().map(|(k, b)| (k.clone(), serde_json::json!(b))).collect();
        }
        if let Some(m) = &req.metadata {
            row.metadata = m.clone();
        }
        row
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberSpec {
    pub user_id: String,
    pub role: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KeyRow {
    /// The hashed token, usable with `/key/block` and `/key/unblock`.
    pub token: String,
    #[serde(default)]
    pub blocked: Option<bool>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub key_alias: Option<String>,
}

/// `/key/generate`'s answer: the plaintext key, held as a secret from the moment it is read.
#[derive(Deserialize)]
pub struct MintedKey {
    pub key: secrecy::SecretString,
}

/// `/key/list` read only for its count.
#[derive(Debug, Clone, Deserialize)]
pub struct KeyCountPage {
    #[serde(default)]
    pub total_count: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KeyListPage {
    pub keys: Vec<KeyRow>,
    #[serde(default)]
    pub total_pages: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_row_reads_real_list_row() {
        let row: UserRow = serde_json::from_str(
            r#"{"user_id":"research-u5","user_alias":"Research Five","team_id":null,"sso_user_id":null,
            "teams":[],"user_role":"internal_user","max_budget":10.0,"spend":0.0,"user_email":"r@example.com",
            "models":["gpt-4o"],"metadata":{"x":{"nested":true}},"max_parallel_requests":4,"tpm_limit":1000,
            "rpm_limit":60,"budget_duration":"30d","budget_reset_at":"2026-12-01T00:00:00Z","model_max_budget":{},
            "key_count":0}"#,
        )
        .unwrap();
        assert_eq!(row.max_budget, Some(10.0));
        assert_eq!(row.tpm_limit, Some(1000));
        assert_eq!(row.max_parallel_requests, Some(4));
        assert_eq!(row.metadata["x"]["nested"], Value::Bool(true));
    }

    #[test]
    fn user_row_tolerates_nulls_and_floats() {
        let row: UserRow = serde_json::from_str(
            r#"{"user_id":"u","models":null,"metadata":null,"teams":null,"tpm_limit":5.0,"model_max_budget":null}"#,
        )
        .unwrap();
        assert!(row.models.is_empty() && row.metadata.is_empty() && row.teams.is_empty());
        assert_eq!(row.tpm_limit, Some(5));
    }

    #[test]
    fn user_row_rejects_hostile_values() {
        assert!(serde_json::from_str::<UserRow>(r#"{"user_id":"u","tpm_limit":-1}"#).is_err());
        assert!(serde_json::from_str::<UserRow>(r#"{"user_id":"u","tpm_limit":1.5}"#).is_err());
        assert!(serde_json::from_str::<UserRow>(r#"{"user_id":"u","tpm_limit":"many"}"#).is_err());
        assert!(serde_json::from_str::<UserRow>(r#"{"user_id":null}"#).is_err());
        assert!(serde_json::from_str::<UserRow>(r#"{"user_id":"u","metadata":[1]}"#).is_err());
    }

    #[test]
    fn update_request_sends_null_only_to_clear() {
        let req = UpdateUserRequest {
            user_id: "u".into(),
            max_budget: Some(None),
            tpm_limit: Some(Some(5)),
            ..Default::default()
        };
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v, serde_json::json!({"user_id": "u", "max_budget": null, "tpm_limit": 5}));
        assert!(UpdateUserRequest { user_id: "u".into(), ..Default::default() }.is_empty());
        assert!(!req.is_empty());
        // Round trip (the outbox stores requests): null stays "clear", absent stays "not sent".
        let back: UpdateUserRequest = serde_json::from_value(v).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn new_user_request_never_sends_forbidden_fields() {
        let v = serde_json::to_value(NewUserRequest { user_id: "u".into(), ..Default::default() }).unwrap();
        let obj = v.as_object().unwrap();
        for forbidden in ["blocked", "teams", "soft_budget", "password", "send_invite_email"] {
            assert!(!obj.contains_key(forbidden), "{forbidden} sent");
        }
        assert_eq!(obj["auto_create_key"], Value::Bool(false));
    }
}
