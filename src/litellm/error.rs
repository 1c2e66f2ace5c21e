//! LiteLLM error bodies (all four shapes, litellm-api.md §1.3) and their classification.
//!
//! Decisions are taken on the HTTP status, never on LiteLLM's `type` or `message`: both are unreliable
//! (a 404 can carry `type: internal_server_error`, a 400 `type: auth_error`).

use std::time::Duration;

use serde_json::Value;

/// What a caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Connection failure, timeout, 429 or 5xx: try again later.
    Retryable,
    /// 409: the object exists already.
    Conflict,
    /// 404.
    NotFound,
    /// 401/403: bad key, or a key without the proxy_admin role.
    Auth,
    /// 400/422: LiteLLM refused the request itself; retrying will not help.
    Invalid,
    /// Anything else, including a body that is not what LiteLLM documents.
    Other,
}

impl ErrorClass {
    /// A short, bounded label for metrics and JSON output.
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Conflict => "conflict",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Auth => "auth",
            ErrorClass::Invalid => "invalid",
            ErrorClass::Other => "other",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach LiteLLM for {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error("LiteLLM did not answer {endpoint} within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("LiteLLM answered HTTP {status} on {endpoint}: {message}")]
    Status {
        endpoint: String,
        status: u16,
        message: String,
        /// LiteLLM's `type` (shape A) or problem type (shape D), for the cases where it is the only signal.
        error_type: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error("LiteLLM answered {endpoint} with a body litellm-sync does not understand: {detail}")]
    Decode { endpoint: String, detail: String },
    #[error("dry run: {endpoint} was not called")]
    DryRun { endpoint: String },
}

impl ApiError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::Connect { .. } | ApiError::Timeout { .. } => ErrorClass::Retryable,
            ApiError::Status { status, .. } => classify_status(*status),
            ApiError::Decode { .. } | ApiError::DryRun { .. } => ErrorClass::Other,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ApiError::Status { message, .. } => message,
            _ => "",
        }
    }

    pub fn error_type(&self) -> Option<&str> {
        match self {
            ApiError::Status { error_type, .. } => error_type.as_deref(),
            _ => None,
        }
    }
}

pub fn classify_status(status: u16) -> ErrorClass {
    match status {
        429 | 500..=599 => ErrorClass::Retryable,
        409 => ErrorClass::Conflict,
        404 => ErrorClass::NotFound,
        401 | 403 => ErrorClass::Auth,
        400 | 422 => ErrorClass::Invalid,
        _ => ErrorClass::Other,
    }
}

const MAX_MESSAGE: usize = 400;

/// Extracts a human message and LiteLLM's error type from any of the four error shapes, or from a body that
/// is not JSON at all (a reverse proxy's HTML page). Secrets that LiteLLM echoes back (`Received=sk-…`) are
/// redacted.
pub fn parse_error_body(body: &[u8]) -> (String, Option<String>) {
    let (msg, ty) = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            if let Some(err) = map.get("error") {
                // Shape A: {"error": {"message", "type", "param", "code"}}, or {"error": "text"}.
                match err {
                    Value::Object(e) => (
                        e.get("message").map(value_text).unwrap_or_else(|| value_text(err)),
                        e.get("type").and_then(Value::as_str).map(str::to_string),
                    ),
                    other => (value_text(other), None),
                }
            } else if let Some(detail) = map.get("detail") {
                match (map.get("title"), map.get("type")) {
                    // Shape D: RFC 9457 problem+json.
                    (Some(title), Some(ty)) => {
                        (format!("{}: {}", value_text(title), value_text(detail)), ty.as_str().map(str::to_string))
                    }
                    // Shapes B and C.
                    _ => (detail_text(detail), None),
                }
            } else {
                (compact(&Value::Object(map)), None)
            }
        }
        Ok(other) => (compact(&other), None),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if text.is_empty() {
                ("(empty body)".to_string(), None)
            } else {
                (format!("non-JSON body: {text}"), None)
            }
        }
    };
    (truncate(&redact_keys(&msg)), ty)
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => compact(other),
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn detail_text(detail: &Value) -> String {
    match detail {
        Value::String(s) => s.clone(),
        Value::Object(m) => m.get("error").map(value_text).unwrap_or_else(|| compact(detail)),
        // Shape C: [{"type", "loc", "msg"}, …]
        Value::Array(items) => items
            .iter()
            .map(|it| {
                let loc = it
                    .get("loc")
                    .and_then(Value::as_array)
                    .map(|l| l.iter().map(value_text).collect::<Vec<_>>().join("."))
                    .unwrap_or_default();
                let msg = it.get("msg").map(value_text).unwrap_or_else(|| compact(it));
                if loc.is_empty() {
                    msg
                } else {
                    format!("{loc}: {msg}")
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => compact(other),
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_MESSAGE {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX_MESSAGE).collect();
        out.push('…');
        out
    }
}

/// Replaces anything that looks like a LiteLLM key (`sk-` followed by 6+ key characters) with a marker.
pub fn redact_keys(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("sk-") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 3..];
        let len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(after.len());
        if len >= 6 {
            out.push_str("sk-<redacted>");
            rest = &after[len..];
        } else {
            out.push_str("sk-");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn parse_retry_after(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate(v)?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

fn httpdate(v: &str) -> Option<std::time::SystemTime> {
    let dt = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = u64::try_from(dt.timestamp()).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_a_openai_style() {
        let body = br#"{"error":{"message":"{'error': 'User with id alice already exists'}","type":"invalid_request_error","param":null,"code":"409"}}"#;
        let (m, t) = parse_error_body(body);
        assert_eq!(m, "{'error': 'User with id alice already exists'}");
        assert_eq!(t.as_deref(), Some("invalid_request_error"));
    }

    #[test]
    fn shape_b_fastapi_detail() {
        let (m, t) = parse_error_body(br#"{"detail":{"error":"User not found in team"}}"#);
        assert_eq!(m, "User not found in team");
        assert_eq!(t, None);
        let (m, _) = parse_error_body(br#"{"detail":"Not Found"}"#);
        assert_eq!(m, "Not Found");
    }

    #[test]
    fn shape_c_validation_list() {
        let body = br#"{"detail":[{"type":"less_than_equal","loc":["query","page_size"],"msg":"Input should be less than or equal to 100"},{"loc":["body","user_role"],"msg":"bad role"}]}"#;
        let (m, _) = parse_error_body(body);
        assert_eq!(m, "query.page_size: Input should be less than or equal to 100; body.user_role: bad role");
    }

    #[test]
    fn shape_d_problem_json() {
        let body = br#"{"type":"urn:litellm:error:invalid-request-body","title":"Invalid request body","status":422,"detail":"users.0.soft_budget: Extra inputs are not permitted"}"#;
        let (m, t) = parse_error_body(body);
        assert_eq!(m, "Invalid request body: users.0.soft_budget: Extra inputs are not permitted");
        assert_eq!(t.as_deref(), Some("urn:litellm:error:invalid-request-body"));
    }

    #[test]
    fn garbage_bodies_give_a_message_not_a_panic() {
        assert_eq!(parse_error_body(b"").0, "(empty body)");
        assert_eq!(
            parse_error_body(b"<html><body>502 Bad Gateway</body></html>").0,
            "non-JSON body: <html><body>502 Bad Gateway</body></html>"
        );
        assert!(parse_error_body(b"\xff\xfe\x00").0.starts_with("non-JSON body"));
        assert_eq!(parse_error_body(b"[1,2]").0, "[1,2]");
        assert_eq!(parse_error_body(br#"{"error": 42}"#).0, "42");
        let long = format!(r#"{{"error":{{"message":"{}"}}}}"#, "x".repeat(5000));
        assert!(parse_error_body(long.as_bytes()).0.chars().count() <= MAX_MESSAGE + 1);
    }

    #[test]
    fn echoed_keys_are_redacted() {
        let body = br#"{"error":{"message":"LiteLLM Virtual Key expected. Received=sk-abcdef123456, expected to start with 'sk-'","type":"auth_error"}}"#;
        let (m, _) = parse_error_body(body);
        assert!(!m.contains("abcdef123456"), "{m}");
        assert!(m.contains("sk-<redacted>"));
        assert!(m.contains("start with 'sk-'"));
    }

    #[test]
    fn classification_is_by_status() {
        assert_eq!(classify_status(429), ErrorClass::Retryable);
        assert_eq!(classify_status(503), ErrorClass::Retryable);
        assert_eq!(classify_status(409), ErrorClass::Conflict);
        assert_eq!(classify_status(404), ErrorClass::NotFound);
        assert_eq!(classify_status(401), ErrorClass::Auth);
        assert_eq!(classify_status(403), ErrorClass::Auth);
        assert_eq!(classify_status(422), ErrorClass::Invalid);
        assert_eq!(classify_status(418), ErrorClass::Other);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Sun, 09 Sep 2001 01:46:50 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Sat, 01 Jan 2000 00:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }
}
