//! The one SCIM error table (RFC 7644 §3.12): every failure the SCIM service provider answers with is a
//! [`ScimError`], built by one of the constructors below, so that the status, the `scimType` and the body shape
//! are decided in one place. A client's mistake is a 4xx with a `scimType` where the RFC defines one; 500 is
//! only for our own faults (the store failing), never for a body we did not like.

use std::fmt;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Schema URI of a SCIM error body.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// Media type of every SCIM response body (RFC 7644 §3.1).
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

/// Longest `detail` we send; details may quote client input, and an error must stay small.
const MAX_DETAIL: usize = 512;

/// The `scimType` keywords of RFC 7644 §3.12, Table 9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
}

impl ScimType {
    /// The keyword exactly as the RFC spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }
}

impl fmt::Display for ScimType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SCIM error response: HTTP status, optional `scimType`, human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<ScimType>,
    pub detail: String,
}

impl fmt::Display for ScimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scim_type {
            Some(t) => write!(f, "SCIM {} {t}: {}", self.status, self.detail),
            None => write!(f, "SCIM {}: {}", self.status, self.detail),
        }
    }
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<ScimType>, detail: impl Into<String>) -> ScimError {
        ScimError { status, scim_type, detail: bounded(detail.into()) }
    }

    fn bad_request(t: ScimType, detail: impl Into<String>) -> ScimError {
        ScimError::new(400, Some(t), detail)
    }

    /// 400 invalidFilter: the filter does not parse, or compares an attribute in a way its type does not allow.
    pub fn invalid_filter(detail: impl Into<String>) -> ScimError {
        ScimError::bad_request(ScimType::InvalidFilter, detail)
    }
    /// 400 tooMany: the query would return more than the server is willing to compute.
    pub fn too_many(detail: impl Into<String>) -> ScimError {
        ScimError::bad_request(ScimType::TooMany, detail)
    }
    /// 409 uniqueness: a `userName` / `displayName` / `externalId` already in use (RFC 7644 §3.3).
    pub fn uniqueness(detail: impl Into<String>) -> ScimError {
        ScimError::new(409, Some(ScimType::Uniqueness), detail)
    }
    /// 400 mutability: a write to a readOnly attribute, a change of an immutable one, removal of a required one.
    pub fn mutability(detail: impl Into<String>) -> ScimError {
        ScimError::bad_request(ScimType::Mutability, detail)
    }
    /// 400 invalidSyntax: the body is not the message it should be (not JSON, missing `schemas`, ...).
    pub fn invalid_syntax(detail: impl Into<String>) -> ScimError {
        ScimError::bad_request(ScimType::InvalidSyntax, detail)
    }
    /// 400 invalidPath: a PATCH `path` that is malformed or names no attribute we know.
    pub fn invalid_path(detail: impl Into<String>) -> ScimError {
        ScimError::bad_request(ScimType::InvalidPath, detail)
    }
    /// 400 noTarget: a PATCH path whose value filter matched nothing, or a `remove` without a path.
    pub fn no_target(detail: impl Into<String>) -> ScimError {
        ScimError::bad_request(ScimType::NoTarget, detail)
    }
    /// 400 invalidValue: a required value is missing or a value has the wrong type.
    pub fn invalid_value(detail: impl Into<String>) -> ScimError {
        ScimError::bad_request(ScimType::InvalidValue, detail)
    }
    /// 400 invalidVers: a SCIM protocol version other than 2 was asked for.
    pub fn invalid_vers(detail: impl Into<String>) -> ScimError {
        ScimError::bad_request(ScimType::InvalidVers, detail)
    }
    /// 400 sensitive: personal information in a request URI.
    pub fn sensitive(detail: impl Into<String>) -> ScimError {
        ScimError::bad_request(ScimType::Sensitive, detail)
    }

    /// 401: no or a bad bearer token. The detail never says which token was tried.
    pub fn unauthorized() -> ScimError {
        ScimError::new(401, None, "Authorization failure: the bearer token is missing or not valid.")
    }
    /// 403: the token is valid but may not do this.
    pub fn forbidden(detail: impl Into<String>) -> ScimError {
        ScimError::new(403, None, detail)
    }
    /// 404: no resource of this type with this id (or an unknown endpoint).
    pub fn not_found(resource_type: &str, id: &str) -> ScimError {
        ScimError::new(404, None, format!("{resource_type} {id:?} not found"))
    }
    /// 404 for a path that is no SCIM endpoint.
    pub fn no_endpoint(path: &str) -> ScimError {
        ScimError::new(404, None, format!("no SCIM endpoint at {path:?}"))
    }
    /// 405: the endpoint exists but not with this method.
    pub fn method_not_allowed(method: &str, path: &str) -> ScimError {
        ScimError::new(405, None, format!("{method} is not supported on {path}"))
    }
    /// 412: `If-Match` names a version that is not the current one (RFC 7644 §3.14).
    pub fn precondition_failed(current_etag: &str) -> ScimError {
        ScimError::new(
            412,
            None,
            format!("the resource has changed on the server: its version is now {current_etag}; read it again"),
        )
    }
    /// 413: the body is larger than the configured limit. No `scimType` is defined for this.
    pub fn payload_too_large(max_bytes: usize) -> ScimError {
        ScimError::new(413, None, format!("the request body is larger than {max_bytes} bytes"))
    }
    /// 415: a body that is neither `application/scim+json` nor `application/json`.
    pub fn unsupported_media_type(got: &str) -> ScimError {
        ScimError::new(
            415,
            None,
            format!("content type {got:?} is not supported: send application/scim+json or application/json"),
        )
    }
    /// 501: a SCIM feature the ServiceProviderConfig says we do not support (bulk, sort, /Me, ...).
    pub fn not_implemented(feature: &str) -> ScimError {
        ScimError::new(501, None, format!("{feature} is not supported by this service provider"))
    }
    /// 500: our own fault (the store failed). `detail` must not carry secrets or internal paths.
    pub fn internal(detail: impl Into<String>) -> ScimError {
        ScimError::new(500, None, detail)
    }
    /// 503: the service cannot take the request now (the store is not reachable); the client may retry.
    pub fn unavailable(detail: impl Into<String>) -> ScimError {
        ScimError::new(503, None, detail)
    }

    /// The body in the SCIM error schema. `status` is a JSON *string*, as RFC 7644 §3.12 requires.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
        });
        if let Some(t) = self.scim_type {
            v["scimType"] = Value::String(t.as_str().to_string());
        }
        v["detail"] = Value::String(self.detail.clone());
        v
    }

    /// A short, bounded label for metrics: the `scimType` if there is one, else the status class.
    pub fn metric_label(&self) -> &'static str {
        if let Some(t) = self.scim_type {
            return t.as_str();
        }
        match self.status {
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            405 => "method_not_allowed",
            409 => "conflict",
            412 => "precondition_failed",
            413 => "payload_too_large",
            415 => "unsupported_media_type",
            501 => "not_implemented",
            503 => "unavailable",
            500..=599 => "internal",
            _ => "other",
        }
    }

    /// True for errors that are our fault rather than the client's.
    pub fn is_server_fault(&self) -> bool {
        self.status >= 500
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.to_json().to_string();
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_CONTENT_TYPE));
        if self.status == 401 {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

fn bounded(s: String) -> String {
    if s.chars().count() <= MAX_DETAIL {
        return s;
    }
    let mut out: String = s.chars().take(MAX_DETAIL).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_follows_the_error_schema_with_a_string_status() {
        let e = ScimError::invalid_filter("expected an operator after userName");
        assert_eq!(
            e.to_json(),
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": "400",
                "scimType": "invalidFilter",
                "detail": "expected an operator after userName"
            })
        );
        let nf = ScimError::not_found("User", "2819c223").to_json();
        assert_eq!(nf["status"], "404");
        assert!(nf.get("scimType").is_none());
    }

    #[test]
    fn table_of_statuses() {
        assert_eq!(ScimError::uniqueness("x").status, 409);
        assert_eq!(ScimError::mutability("x").status, 400);
        assert_eq!(ScimError::no_target("x").scim_type, Some(ScimType::NoTarget));
        assert_eq!(ScimError::unauthorized().status, 401);
        assert_eq!(ScimError::forbidden("x").status, 403);
        assert_eq!(ScimError::precondition_failed("W/\"1\"").status, 412);
        assert_eq!(ScimError::payload_too_large(1024).status, 413);
        assert_eq!(ScimError::payload_too_large(1024).scim_type, None);
        assert_eq!(ScimError::unsupported_media_type("text/plain").status, 415);
        assert_eq!(ScimError::internal("store").status, 500);
        assert!(ScimError::internal("store").is_server_fault());
        assert!(!ScimError::invalid_value("x").is_server_fault());
    }

    #[test]
    fn metric_labels_are_bounded() {
        assert_eq!(ScimError::invalid_path("x").metric_label(), "invalidPath");
        assert_eq!(ScimError::not_found("User", "1").metric_label(), "not_found");
        assert_eq!(ScimError::new(418, None, "teapot").metric_label(), "other");
        assert_eq!(ScimError::new(502, None, "x").metric_label(), "internal");
    }

    #[test]
    fn long_details_are_cut() {
        let e = ScimError::invalid_value("x".repeat(10_000));
        assert!(e.detail.chars().count() <= MAX_DETAIL + 1);
    }

    #[test]
    fn response_has_scim_content_type_and_status() {
        let resp = ScimError::unauthorized().into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], SCIM_CONTENT_TYPE);
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let resp = ScimError::new(999, None, "bogus").into_response();
        assert_eq!(resp.status().as_u16(), 999);
        let resp = ScimError::new(1000, None, "bogus").into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
