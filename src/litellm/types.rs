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
    #[serde(default)]
    pub auto_create_key: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_alias: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
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

/// `POST /team/new` and `/team/update` (the latter with only the changed fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TeamRequest {
    pub team_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_alias: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_budget: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
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
