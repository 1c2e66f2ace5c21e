//! JSON helpers shared by the resource, filter and PATCH code: case-insensitive member lookup (attribute names
//! are case-insensitive, RFC 7643 §2.1) and the coercion of a client's value to an attribute's type.
//!
//! Coercion is where client dialects are absorbed: Entra's `"True"`/`"False"` strings for booleans, a
//! one-element array or a bare id for the single-valued `manager`, a single object where an array is expected.

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

use super::error::ScimError;
use super::schema::{AttrType, Attribute, Container, Mutability};

/// `v[key]`, matching the key exactly first and then case-insensitively.
pub(crate) fn get_ci<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    let m = v.as_object()?;
    m.get(key).or_else(|| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// The key of `map` that spells `key` case-insensitively, if any.
pub(crate) fn key_ci(map: &Map<String, Value>, key: &str) -> Option<String> {
    if map.contains_key(key) {
        return Some(key.to_string());
    }
    map.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned()
}

/// Runs `f` on the object that holds attributes of container `c`: the resource itself, or its extension object
/// (created if missing, dropped again if `f` leaves it empty).
pub(crate) fn with_container<R>(
    resource: &mut Map<String, Value>,
    c: Container,
    f: impl FnOnce(&mut Map<String, Value>) -> R,
) -> R {
    match c {
        Container::TopLevel => f(resource),
        Container::Extension(ext) => {
            let key = key_ci(resource, ext.id);
            let mut inner = match key.and_then(|k| resource.remove(&k)) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            let r = f(&mut inner);
            if !inner.is_empty() {
                resource.insert(ext.id.to_string(), Value::Object(inner));
            }
            r
        }
    }
}

/// True for the values RFC 7643 §2.5 counts as unassigned: null, an empty array, an empty object.
pub(crate) fn is_unassigned(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// A client's value for `attr` in the stored form, or `None` when it means "unassigned". `path` names the
/// attribute in errors. ReadOnly sub-attributes in the value are dropped (RFC 7644 §3.3: "SHALL be ignored").
pub(crate) fn coerce(attr: &Attribute, v: &Value, path: &str) -> Result<Option<Value>, ScimError> {
    if !attr.multi_valued {
        return coerce_single(attr, v, path);
    }
    let items: Vec<&Value> = match v {
        Value::Null => return Ok(None),
        Value::Array(items) => items.iter().collect(),
        // A single value where the RFC wants an array: the client's intent is plain.
        other => vec![other],
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if let Some(c) = coerce_single(attr, item, path)? {
            out.push(c);
        }
    }
    check_one_primary(&out, path)?;
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

/// RFC 7643 §2.4: "The primary attribute value 'true' MUST appear no more than once."
pub(crate) fn check_one_primary(items: &[Value], path: &str) -> Result<(), ScimError> {
    let primaries = items.iter().filter(|i| get_ci(i, "primary") == Some(&Value::Bool(true))).count();
    if primaries > 1 {
        return Err(ScimError::invalid_value(format!("{path}: at most one value may have \"primary\": true")));
    }
    Ok(())
}

/// One value (an element, for a multi-valued attribute).
pub(crate) fn coerce_single(attr: &Attribute, v: &Value, path: &str) -> Result<Option<Value>, ScimError> {
    if v.is_null() {
        return Ok(None);
    }
    let wrong = |what: &str| Err(ScimError::invalid_value(format!("{path}: expected {what}, got {}", kind(v))));
    match attr.ty {
        AttrType::Complex => match v {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, sv) in m {
                    // Unknown sub-attributes (Entra's `"$ref": null` on emails, vendor extras) are ignored.
                    let Some(sub) = attr.sub(k) else { continue };
                    if sub.mutability == Mutability::ReadOnly {
                        continue;
                    }
                    if let Some(c) = coerce_single(sub, sv, &format!("{path}.{}", sub.name))? {
                        out.insert(sub.name.to_string(), c);
                    }
                }
                Ok((!out.is_empty()).then_some(Value::Object(out)))
            }
            // Entra sends the single-valued manager as `[{"value": ...}]` (Microsoft SCIM tutorial, Example 5).
            Value::Array(items) if !attr.multi_valued && items.len() == 1 => coerce_single(attr, &items[0], path),
            Value::Array(items) if !attr.multi_valued && items.is_empty() => Ok(None),
            // ... and as a bare id in its schema example (`"manager": "123456"`).
            Value::String(s) if attr.sub("value").is_some() => {
                let mut out = Map::new();
                out.insert("value".to_string(), Value::String(s.clone()));
                Ok(Some(Value::Object(out)))
            }
            _ => wrong("an object with sub-attributes"),
        },
        AttrType::Boolean => match v {
            Value::Bool(_) => Ok(Some(v.clone())),
            // Entra sends "True"/"False" (Microsoft, "Known issues ... SCIM 2.0 protocol compliance").
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(Value::Bool(true))),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(Value::Bool(false))),
            _ => wrong("a boolean"),
        },
        AttrType::Integer => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(v.clone())),
            _ => wrong("an integer"),
        },
        AttrType::Decimal => match v {
            Value::Number(_) => Ok(Some(v.clone())),
            _ => wrong("a number"),
        },
        AttrType::DateTime => match v {
            Value::String(s) if parse_datetime(s).is_some() => Ok(Some(v.clone())),
            _ => wrong("an xsd:dateTime string such as \"2011-05-13T04:42:34Z\""),
        },
        AttrType::String | AttrType::Reference => match v {
            Value::String(_) => Ok(Some(v.clone())),
            // An employee number sent as a JSON number is still the same employee number.
            Value::Number(n) => Ok(Some(Value::String(n.to_string()))),
            _ => wrong("a string"),
        },
    }
}

/// An xsd:dateTime (RFC 7643 §2.3.5). A value without a zone is read as UTC, as Entra sends
/// `"2025-03-25T16:17:00"`.
pub(crate) fn parse_datetime(s: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t);
    }
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Some(naive.and_utc().fixed_offset())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sources::scim::schema::USER_RESOURCE;

    fn attr(path: &str) -> &'static Attribute {
        USER_RESOURCE.resolve(path).map(|r| r.leaf()).expect(path)
    }

    #[test]
    fn string_booleans_are_coerced_case_insensitively() {
        let active = attr("active");
        assert_eq!(coerce(active, &json!("True"), "active").ok(), Some(Some(json!(true))));
        assert_eq!(coerce(active, &json!("FALSE"), "active").ok(), Some(Some(json!(false))));
        assert_eq!(
            coerce(active, &json!("yes"), "active").map_err(|e| e.scim_type).err(),
            Some(Some(super::super::error::ScimType::InvalidValue))
        );
    }

    #[test]
    fn manager_dialects() {
        let m = attr("manager");
        let want = Some(Some(json!({"value": "00aa"})));
        assert_eq!(
            coerce(m, &json!([{"$ref": "http://x/Users/00aa", "value": "00aa"}]), "manager")
                .ok()
                .map(|v| v.map(|v| v["value"].clone())),
            Some(Some(json!("00aa")))
        );
        assert_eq!(coerce(m, &json!("00aa"), "manager").ok(), want);
        assert_eq!(coerce(m, &json!({"value": "00aa", "displayName": "Boss"}), "manager").ok(), want);
    }

    #[test]
    fn multi_valued_accepts_a_single_value_and_checks_primary() {
        let emails = attr("emails");
        assert_eq!(coerce(emails, &json!({"value": "a@x"}), "emails").ok(), Some(Some(json!([{"value": "a@x"}]))));
        assert!(coerce(emails, &json!([{"value": "a", "primary": true}, {"value": "b", "primary": "True"}]), "emails")
            .is_err());
        assert_eq!(coerce(emails, &json!([]), "emails").ok(), Some(None));
        assert!(coerce(emails, &json!(["a@x"]), "emails").is_ok());
        assert!(coerce(emails, &json!([7]), "emails").is_err());
    }

    #[test]
    fn case_insensitive_lookup() {
        let v = json!({"UserName": "bjensen"});
        assert_eq!(get_ci(&v, "userName"), Some(&json!("bjensen")));
        let m = v.as_object().cloned().unwrap_or_default();
        assert_eq!(key_ci(&m, "USERNAME").as_deref(), Some("UserName"));
    }
}
