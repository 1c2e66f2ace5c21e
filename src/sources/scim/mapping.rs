//! From a stored SCIM resource to what the rest of the daemon reads: a User becomes an [`Identity`], a Group a
//! [`Group`]; and the values the store indexes (userName, e-mail, externalId). Pure and configurable like the LDAP
//! source's attribute map: which SCIM attribute carries the user name, the e-mail address, the display name, and
//! the per-user overrides.
//!
//! The identity's `external_id` is always the SCIM `id`: the server assigns it, it never changes, and the group
//! memberships (the directory's rows) refer to it. A client's `externalId` is indexed for filters but identifies
//! nobody, because a client may change it.

use serde_json::Value;

use super::error::ScimError;
use super::schema::{AttrRef, Container, USER_RESOURCE};
use crate::config::validate_budget_duration;
use crate::model::{Grants, Group, Identity, Role};

pub use crate::config::ldap::OVERRIDE_FIELDS;
pub use crate::config::scim::ScimAttrMap;

/// Checks every path of an attribute map against the SCIM User schema; each problem names its key under
/// `at` (`sources[2].attributes`).
pub fn check_map(at: &str, map: &ScimAttrMap) -> Vec<crate::config::Problem> {
    let mut out = Vec::new();
    let fields = [("user_name", &map.user_name), ("email", &map.email), ("display_name", &map.display_name)];
    let overrides = map.overrides.iter().map(|(k, v)| (k.as_str(), v));
    for (key, path) in fields.into_iter().chain(overrides) {
        if let Err(message) = check_path(path) {
            let key = if map.overrides.contains_key(key) { format!("overrides.{key}") } else { key.to_string() };
            out.push(crate::config::Problem { path: format!("{at}.{key}"), message });
        }
    }
    out
}

/// Checks one attribute path of the map: it must name a User attribute with a simple (string, number, boolean)
/// value, or a multi-valued complex one whose `value` is used (`emails`). The message says why not.
pub fn check_path(path: &str) -> Result<(), String> {
    let Some(r) = USER_RESOURCE.resolve(path) else {
        return Err(format!("{path:?} is not a SCIM User attribute (e.g. userName, emails, name.formatted, title)"));
    };
    let leaf = r.leaf();
    if leaf.is_complex() && leaf.sub("value").is_none() {
        return Err(format!("{path:?} is a complex attribute: name one of its sub-attributes, e.g. {path}.formatted"));
    }
    if leaf.name == "password" {
        return Err(format!("{path:?} cannot be mapped"));
    }
    Ok(())
}

/// The text of the attribute at `path` in `resource`: for a multi-valued attribute, the primary element's (else
/// the first `work` one's, else the first's). `None` when absent or empty.
pub fn text_at(resource: &Value, path: &str) -> Option<String> {
    let r = USER_RESOURCE.resolve(path)?;
    let holder = match r.container {
        Container::TopLevel => resource,
        Container::Extension(ext) => resource.get(ext.id)?,
    };
    let v = holder.get(r.attr.name)?;
    let v = if r.attr.multi_valued { preferred(v.as_array()?)? } else { v };
    let v = match (r.sub, v) {
        (Some(sub), Value::Object(m)) => m.get(sub.name)?,
        (None, Value::Object(m)) if r.attr.is_complex() => m.get("value")?,
        (_, v) => v,
    };
    scalar_text(v)
}

fn preferred(items: &[Value]) -> Option<&Value> {
    items
        .iter()
        .find(|i| i.get("primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| items.iter().find(|i| i.get("type").and_then(Value::as_str).is_some_and(|t| t == "work")))
        .or_else(|| items.first())
}

fn scalar_text(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// The e-mail address the store indexes for `emails[type eq "work"].value eq "…"` lookups (Entra's uniqueness
/// check): the first `work` address, else the primary one, else the first.
pub fn index_email(resource: &Value) -> Option<String> {
    let items = resource.get("emails")?.as_array()?;
    let work = items.iter().find(|i| i.get("type").and_then(Value::as_str).is_some_and(|t| t == "work"));
    let pick = work.or_else(|| preferred(items))?;
    pick.get("value").and_then(scalar_text)
}

/// Every address of a User, the one [`index_email`] picks first, each once (compared case-insensitively).
pub fn emails(resource: &Value) -> Vec<String> {
    let mut out: Vec<String> = index_email(resource).into_iter().collect();
    let items = resource.get("emails").and_then(Value::as_array).into_iter().flatten();
    for v in items.filter_map(|i| i.get("value").and_then(scalar_text)) {
        if !out.iter().any(|o| o.to_lowercase() == v.to_lowercase()) {
            out.push(v);
        }
    }
    out
}

/// A string attribute of a resource (`userName`, `displayName`, `externalId`).
pub fn string_attr(resource: &Value, name: &str) -> Option<String> {
    resource.get(name).and_then(Value::as_str).map(str::to_string)
}

/// A stored User as the daemon's identity. `warnings` collects overrides that were ignored (a value that is not
/// a role, a negative budget): the write is still accepted, as the LDAP source does for a bad attribute value.
pub fn identity(
    id: &str,
    resource: &Value,
    map: &ScimAttrMap,
    warnings: &mut Vec<String>,
) -> Result<Identity, ScimError> {
    let user_name = text_at(resource, &map.user_name)
        .or_else(|| string_attr(resource, "userName"))
        .ok_or_else(|| ScimError::invalid_value(format!("{} is required for this service provider", map.user_name)))?;
    let display_name = text_at(resource, &map.display_name).or_else(|| {
        let given = text_at(resource, "name.givenName");
        let family = text_at(resource, "name.familyName");
        match (given, family) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            (g, f) => g.or(f),
        }
    });
    Ok(Identity {
        external_id: id.to_string(),
        user_name,
        email: text_at(resource, &map.email),
        display_name,
        // RFC 7643 §4.1.1: active is optional; a user the IdP pushes without it is active.
        active: resource.get("active").and_then(Value::as_bool).unwrap_or(true),
        groups: Vec::new(),
        overrides: overrides(resource, map, warnings),
    })
}

fn overrides(resource: &Value, map: &ScimAttrMap, warnings: &mut Vec<String>) -> Grants {
    let mut g = Grants::default();
    for (field, path) in &map.overrides {
        let Some(text) = text_at(resource, path) else { continue };
        let mut bad = |why: &str| warnings.push(format!("override {field} from {path} = {text:?} ignored: {why}"));
        match field.as_str() {
            "role" => match Role::parse(&text) {
                Some(r) => g.role = Some(r),
                None => bad("not a LiteLLM role"),
            },
            "max_budget" => match text.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => g.max_budget = Some(v),
                _ => bad("not a non-negative number"),
            },
            "budget_duration" => match validate_budget_duration(&text) {
                Ok(()) => g.budget_duration = Some(text.clone()),
                Err(m) => bad(&m),
            },
            "models" => {
                g.models = Some(text.split(',').map(|m| m.trim().to_string()).filter(|m| !m.is_empty()).collect())
            }
            "tpm_limit" | "rpm_limit" | "max_parallel_requests" => match text.parse::<u64>() {
                Ok(v) if field == "tpm_limit" => g.tpm_limit = Some(v),
                Ok(v) if field == "rpm_limit" => g.rpm_limit = Some(v),
                Ok(v) => g.max_parallel_requests = Some(v),
                Err(_) => bad("not a non-negative integer"),
            },
            _ => {}
        }
    }
    g
}

/// A stored Group as the daemon's group; its members live in the directory's rows, not here.
pub fn group(id: &str, resource: &Value) -> Result<Group, ScimError> {
    let name = string_attr(resource, "displayName")
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ScimError::invalid_value("displayName is required and must not be empty"))?;
    Ok(Group { external_id: id.to_string(), name, dn: None, members: Vec::new(), member_groups: Vec::new() })
}

/// The `value`s of a Group resource's `members`, in order, without duplicates.
pub fn member_values(resource: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in resource.get("members").and_then(Value::as_array).into_iter().flatten() {
        if let Some(v) = m.get("value").and_then(Value::as_str) {
            if !out.iter().any(|o| o == v) {
                out.push(v.to_string());
            }
        }
    }
    out
}

/// A filter path the store has an index for, and which one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Id,
    Name,
    ExternalId,
    Email,
}

/// The index for a [`super::filter::SimpleEq`] path on a resource type (`User` or `Group`).
pub fn lookup_for(resource_type: &str, path: &str) -> Option<Lookup> {
    match (resource_type, path) {
        (_, "id") => Some(Lookup::Id),
        ("User", "userName") | ("Group", "displayName") => Some(Lookup::Name),
        (_, "externalId") => Some(Lookup::ExternalId),
        ("User", "emails.value") => Some(Lookup::Email),
        _ => None,
    }
}

/// Whether evaluating a filter needs a resource's derived attributes (a User's `groups`, a Group's `members`),
/// which the stored resource does not hold.
pub fn needs_derived(r: &AttrRef) -> bool {
    matches!(r.attr.name, "groups" | "members") && r.container == Container::TopLevel
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn okta_user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "id": "u1",
            "userName": "isabell.doe@example.com",
            "name": {"givenName": "Isabell", "familyName": "Doe"},
            "emails": [{"value": "home@example.com", "type": "home"},
                       {"value": "Isabell.Doe@example.com", "type": "work", "primary": true}],
            "active": false,
            "title": "proxy_admin",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"costCenter": "12.5", "department": "R&D"}
        })
    }

    #[test]
    fn default_map_reads_core_attributes() {
        let mut w = Vec::new();
        let i = identity("u1", &okta_user(), &ScimAttrMap::default(), &mut w).unwrap();
        assert_eq!(i.external_id, "u1");
        assert_eq!(i.user_name, "isabell.doe@example.com");
        assert_eq!(i.email.as_deref(), Some("Isabell.Doe@example.com"));
        assert_eq!(i.display_name.as_deref(), Some("Isabell Doe"), "falls back to given + family name");
        assert!(!i.active);
        assert!(w.is_empty());
    }

    #[test]
    fn active_defaults_to_true_and_overrides_come_from_any_attribute() {
        let mut u = okta_user();
        u.as_object_mut().unwrap().remove("active");
        let map = ScimAttrMap {
            overrides: BTreeMap::from([
                ("role".to_string(), "title".to_string()),
                (
                    "max_budget".to_string(),
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter".to_string(),
                ),
                (
                    "tpm_limit".to_string(),
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department".into(),
                ),
            ]),
            ..ScimAttrMap::default()
        };
        let mut w = Vec::new();
        let i = identity("u1", &u, &map, &mut w).unwrap();
        assert!(i.active);
        assert_eq!(i.overrides.role, Some(Role::ProxyAdmin));
        assert_eq!(i.overrides.max_budget, Some(12.5));
        assert_eq!(i.overrides.tpm_limit, None);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("tpm_limit"), "{w:?}");
    }

    #[test]
    fn mapped_attributes_and_index_email() {
        let map = ScimAttrMap {
            user_name: "emails".into(),
            display_name: "name.givenName".into(),
            email: "emails.value".into(),
            ..ScimAttrMap::default()
        };
        let i = identity("u1", &okta_user(), &map, &mut Vec::new()).unwrap();
        assert_eq!(i.user_name, "Isabell.Doe@example.com");
        assert_eq!(i.display_name.as_deref(), Some("Isabell"));
        let mut no_primary = okta_user();
        no_primary["emails"] = json!([{"value": "a@x", "type": "home"}, {"value": "b@x", "type": "work"}]);
        assert_eq!(text_at(&no_primary, "emails").as_deref(), Some("b@x"));
        assert_eq!(index_email(&okta_user()).as_deref(), Some("Isabell.Doe@example.com"));
        assert_eq!(index_email(&json!({"emails": [{"value": "only@x"}]})).as_deref(), Some("only@x"));
        assert_eq!(index_email(&json!({})), None);
        let two = json!({"emails": [{"value": "Home@x", "type": "home"}, {"value": "work@x", "type": "work"}, {"value": "HOME@x"}]});
        assert_eq!(emails(&two), ["work@x", "Home@x"]);
        assert!(emails(&json!({"emails": "not a list"})).is_empty());
    }

    #[test]
    fn maps_are_checked_with_key_paths() {
        let map = ScimAttrMap {
            user_name: "nosuch".into(),
            overrides: BTreeMap::from([("role".to_string(), "name".to_string())]),
            ..ScimAttrMap::default()
        };
        let p: Vec<String> = check_map("sources[0].attributes", &map).iter().map(|p| p.to_string()).collect();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("sources[0].attributes.user_name: "), "{p:?}");
        assert!(p[1].starts_with("sources[0].attributes.overrides.role: "), "{p:?}");
        assert!(check_map("a", &ScimAttrMap::default()).is_empty());
    }

    #[test]
    fn paths_are_checked() {
        for ok in [
            "userName",
            "emails",
            "name.formatted",
            "title",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in ["nosuch", "name", "password", "manager.nosuch"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn groups_and_members() {
        let g = json!({"displayName": "Eng", "members": [{"value": "a"}, {"value": "b"}, {"value": "a"}]});
        assert_eq!(group("g1", &g).unwrap().name, "Eng");
        assert_eq!(member_values(&g), vec!["a", "b"]);
        assert!(group("g1", &json!({"displayName": " "})).is_err());
        assert_eq!(lookup_for("User", "emails.value"), Some(Lookup::Email));
        assert_eq!(lookup_for("Group", "userName"), None);
        assert_eq!(lookup_for("Group", "members.value"), None);
    }
}
