//! SCIM PATCH (RFC 7644 §3.5.2): the PatchOp message ([`PatchRequest::from_json`]) and its all-or-nothing
//! application to a stored resource ([`apply`]). Pure: the caller reads the resource, applies, and stores the
//! result in one transaction.
//!
//! RFC edge decisions (the RFC text wins unless a real client needs otherwise; each dialect has a test citing
//! its vendor source in `tests.rs`):
//! - `op` is matched case-insensitively (Entra sends `Add`, `Replace`, `Remove`); so are attribute names.
//! - `remove` without `path` is `noTarget` (§3.5.2.2 says exactly that).
//! - `remove` whose value filter matches nothing succeeds without change: §3.5.2.2 ("If the user was not a member
//!   of this group, no changes should be made to the resource, and a success response should be returned"), and
//!   an IdP that retries a removal after a lost response must not get an error.
//! - `replace` whose value filter matches nothing is `noTarget` (§3.5.2.3), with one deliberate deviation for
//!   Entra: `replace`/`add` of `attr[sub eq "x" (and ...)].subAttr` with no match appends an element built from
//!   the filter's equalities and the value (`emails[type eq "work"].value` adds a work email), because that is
//!   how Entra sets a user's first work email and expects it to succeed.
//! - `remove` of a multi-valued attribute *with* a `value` removes only the listed elements (Entra's
//!   `{"op":"Remove","path":"members","value":[{"value":"id"}]}`), never the whole attribute.
//! - readOnly attributes (`id`, `meta`, `groups`) are `mutability` errors, except in a path-less value where
//!   `id` equals the resource's id (Okta's group rename sends it) and `meta`/`schemas` (echoed back by clients;
//!   `schemas` is recomputed from the extensions present, as §3.5.2 describes).
//! - `password` is accepted and dropped: it is writeOnly and never stored.
//! - Unknown attributes and unknown extension URNs are `invalidPath`; values of the wrong type `invalidValue`.
//! - Limits: at most [`MAX_OPERATIONS`] operations and [`MAX_VALUES`] values in one operation's value. The RFC
//!   has no error code for this (`tooMany` is for queries); we answer `invalidValue` with the limit in the detail.

mod apply;
#[cfg(test)]
mod tests;

use serde_json::Value;

use super::error::ScimError;
use super::filter::{parse_patch_path, RawPatchPath};
use super::value::get_ci;

pub use apply::{apply, PatchOutcome};

pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Most operations in one PATCH request.
pub const MAX_OPERATIONS: usize = 1_000;
/// Most elements in one operation's value (array elements, or attributes of a path-less value). An Okta
/// whole-list `replace` of `members` is one operation, so this is sized for large groups.
pub const MAX_VALUES: usize = 50_000;

/// RFC 7644 §3.5.2 operation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Add => "add",
            OpKind::Remove => "remove",
            OpKind::Replace => "replace",
        }
    }
}

/// One operation, with its path parsed (not yet resolved: that needs the schema, in [`apply`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub op: OpKind,
    path: Option<(String, RawPatchPath)>,
    pub value: Option<Value>,
}

impl Operation {
    /// The path as the client wrote it.
    pub fn path(&self) -> Option<&str> {
        self.path.as_ref().map(|(s, _)| s.as_str())
    }
}

/// A parsed PatchOp message.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    pub operations: Vec<Operation>,
}

impl PatchRequest {
    /// Parses and checks a PatchOp body: `schemas` names the PatchOp URN, `Operations` is a non-empty array,
    /// each with an `op`, a well-formed `path` (required for `remove`) and a `value` (required for `add` and
    /// `replace`).
    pub fn from_json(body: &Value) -> Result<PatchRequest, ScimError> {
        if !body.is_object() {
            return Err(ScimError::invalid_syntax("the body must be a PatchOp JSON object"));
        }
        let has_schema = get_ci(body, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|s| s.iter().any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP_SCHEMA))));
        if !has_schema {
            return Err(ScimError::invalid_syntax(format!("\"schemas\" must contain {PATCH_OP_SCHEMA}")));
        }
        let ops = match get_ci(body, "Operations") {
            Some(Value::Array(ops)) if !ops.is_empty() => ops,
            _ => return Err(ScimError::invalid_syntax("\"Operations\" must be a non-empty array")),
        };
        if ops.len() > MAX_OPERATIONS {
            return Err(ScimError::invalid_value(format!(
                "{} operations in one PATCH; at most {MAX_OPERATIONS} are accepted: split the request",
                ops.len()
            )));
        }
        let operations = ops.iter().enumerate().map(|(i, op)| parse_operation(i, op)).collect::<Result<_, _>>()?;
        Ok(PatchRequest { operations })
    }
}

fn parse_operation(i: usize, op: &Value) -> Result<Operation, ScimError> {
    if !op.is_object() {
        return Err(ScimError::invalid_syntax(format!("Operations[{i}] must be an object")));
    }
    let kind = match get_ci(op, "op").and_then(Value::as_str) {
        Some(s) if s.eq_ignore_ascii_case("add") => OpKind::Add,
        Some(s) if s.eq_ignore_ascii_case("remove") => OpKind::Remove,
        Some(s) if s.eq_ignore_ascii_case("replace") => OpKind::Replace,
        Some(s) => {
            return Err(ScimError::invalid_syntax(format!(
                "Operations[{i}].op is {s:?}; it must be add, remove or replace"
            )))
        }
        None => return Err(ScimError::invalid_syntax(format!("Operations[{i}] has no \"op\""))),
    };
    let path = match get_ci(op, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some((s.clone(), parse_patch_path(s)?)),
        Some(_) => return Err(ScimError::invalid_path(format!("Operations[{i}].path must be a string"))),
    };
    let value = get_ci(op, "value").cloned();
    if kind == OpKind::Remove && path.is_none() {
        return Err(ScimError::no_target(format!("Operations[{i}]: remove needs a \"path\"")));
    }
    if kind != OpKind::Remove && value.is_none() {
        return Err(ScimError::invalid_value(format!("Operations[{i}]: {} needs a \"value\"", kind.as_str())));
    }
    let n = match &value {
        Some(Value::Array(a)) => a.len(),
        Some(Value::Object(m)) => m.len(),
        _ => 1,
    };
    if n > MAX_VALUES {
        return Err(ScimError::invalid_value(format!(
            "Operations[{i}] carries {n} values; at most {MAX_VALUES} are accepted in one operation"
        )));
    }
    Ok(Operation { op: kind, path, value })
}
