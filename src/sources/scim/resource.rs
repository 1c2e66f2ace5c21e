//! User and Group bodies on their way in (POST, PUT: [`normalize`]) and out ([`stamp`], [`project`]), the weak
//! ETag of a stored resource ([`etag`], [`etag_matches`]), list responses and pagination.
//!
//! Input is lenient where RFC 7644 §3.3 lets the server "alter and/or ignore POSTed content": attributes and
//! sub-attributes we do not define are ignored (Entra sends `roles: []`, Okta custom attributes), unknown schema
//! URIs are ignored (Entra's group `…/ADSCIM/2.0/Group`), readOnly attributes (`id`, `meta`, `groups`) are
//! ignored as RFC 7643 §2.2 says, `password` is accepted and dropped. What is required is strict: `schemas` must
//! name the resource's core schema (RFC 7643 §3), `userName` / `displayName` must be there, values must have the
//! attribute's type (after coercing the dialects in [`super::value`]).
//!
//! A normalized resource uses canonical attribute names and drops unassigned values, so that the ETag, filters
//! and PATCH see one spelling.

use serde_json::{json, Map, Value};

use super::error::ScimError;
use super::schema::{Attribute, Container, Mutability, ResourceSchema, Returned, COMMON_ATTRIBUTES};
use super::value::{coerce, is_unassigned, with_container};

pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// How many ignored attribute names [`Normalized::ignored`] keeps, to keep a hostile body from growing it.
const MAX_IGNORED: usize = 32;

/// A validated body: the stored form without `id` and `meta` (the caller adds them with [`stamp`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub resource: Value,
    /// Attribute names we ignored because we do not define them (for a debug log), at most 32.
    pub ignored: Vec<String>,
}

/// Validates and normalizes a POST or PUT body for `schema`.
///
/// For PUT (RFC 7644 §3.5.1) the caller keeps `id`, `meta.created` and, for Users, the `groups` it derives
/// from Group membership; everything else is replaced by this result.
pub fn normalize(body: &Value, schema: &ResourceSchema) -> Result<Normalized, ScimError> {
    let Some(map) = body.as_object() else {
        return Err(ScimError::invalid_syntax(format!("the body must be a JSON object (a SCIM {})", schema.name)));
    };
    check_schemas(map, schema)?;
    let mut out = Map::new();
    let mut ignored = Vec::new();
    let mut ignore = |name: &str| {
        if ignored.len() < MAX_IGNORED {
            ignored.push(name.to_string());
        }
    };
    for (key, value) in map {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(ext) = schema.extension(key) {
            match value {
                Value::Null => {}
                Value::Object(inner) => {
                    for (k, v) in inner {
                        match ext.attribute(k) {
                            Some(attr) => {
                                set(&mut out, Container::Extension(ext), attr, v, &format!("{}:{k}", ext.id))?
                            }
                            None => ignore(&format!("{}:{k}", ext.id)),
                        }
                    }
                }
                _ => return Err(ScimError::invalid_syntax(format!("{key} must be an object of extension attributes"))),
            }
            continue;
        }
        match schema.resolve(key) {
            Some(r) if r.sub.is_none() => set(&mut out, r.container, r.attr, value, key)?,
            // `name.givenName` as a key: not RFC for POST, but meaning is plain; merge it into `name`.
            Some(r) => {
                let Some(sub) = r.sub else { continue };
                if let Some(v) = coerce(sub, value, key)? {
                    with_container(&mut out, r.container, |m| {
                        let parent = m.entry(r.attr.name.to_string()).or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(p) = parent {
                            p.insert(sub.name.to_string(), v);
                        }
                    });
                }
            }
            None => ignore(key),
        }
    }
    for attr in schema.core.attributes.iter().filter(|a| a.required) {
        match out.get(attr.name) {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            _ => return Err(ScimError::invalid_value(format!("{} is required and must not be empty", attr.name))),
        }
    }
    let mut resource = Map::new();
    resource.insert("schemas".to_string(), Value::Array(schemas_for(&out, schema)));
    resource.extend(out);
    Ok(Normalized { resource: Value::Object(resource), ignored })
}

/// RFC 7643 §3: `schemas` is REQUIRED and must name the core schema of the endpoint's resource type.
fn check_schemas(map: &Map<String, Value>, schema: &ResourceSchema) -> Result<(), ScimError> {
    let listed = map.iter().find(|(k, _)| k.eq_ignore_ascii_case("schemas")).map(|(_, v)| v);
    let Some(Value::Array(uris)) = listed else {
        return Err(ScimError::invalid_syntax(format!(
            "\"schemas\" must be an array that contains {}",
            schema.core.id
        )));
    };
    if !uris.iter().any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(schema.core.id))) {
        return Err(ScimError::invalid_syntax(format!(
            "\"schemas\" must contain {} on the {} endpoint",
            schema.core.id, schema.endpoint
        )));
    }
    Ok(())
}

fn set(out: &mut Map<String, Value>, c: Container, attr: &Attribute, v: &Value, path: &str) -> Result<(), ScimError> {
    // RFC 7643 §2.2: readOnly values in a request "SHALL be ignored"; writeOnly `password` is never stored.
    if matches!(attr.mutability, Mutability::ReadOnly | Mutability::WriteOnly) {
        return Ok(());
    }
    if let Some(v) = coerce(attr, v, path)? {
        with_container(out, c, |m| m.insert(attr.name.to_string(), v));
    }
    Ok(())
}

/// `schemas` for a normalized resource: the core schema, then each extension that holds a value.
pub(crate) fn schemas_for(resource: &Map<String, Value>, schema: &ResourceSchema) -> Vec<Value> {
    let mut s = vec![Value::String(schema.core.id.to_string())];
    for ext in schema.extensions {
        if resource.get(ext.id).is_some_and(|v| !is_unassigned(v)) {
            s.push(Value::String(ext.id.to_string()));
        }
    }
    s
}

/// The server-assigned parts of a stored resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta<'a> {
    /// xsd:dateTime of creation, e.g. `2026-11-02T10:00:00Z`.
    pub created: &'a str,
    pub last_modified: &'a str,
    /// The resource's URI: `{base}/Users/{id}`.
    pub location: &'a str,
}

/// Adds `id` and `meta` (with `meta.version` = [`etag`] of the content) to a normalized resource.
pub fn stamp(resource: &mut Value, id: &str, schema: &ResourceSchema, meta: Meta<'_>) {
    let Value::Object(map) = resource else { return };
    map.insert("id".to_string(), Value::String(id.to_string()));
    map.remove("meta");
    let version = etag(&Value::Object(map.clone()));
    map.insert(
        "meta".to_string(),
        json!({
            "resourceType": schema.name,
            "created": meta.created,
            "lastModified": meta.last_modified,
            "location": meta.location,
            "version": version,
        }),
    );
}

/// The weak ETag of a resource's content (everything but `meta`), stable across key order:
/// `W/"<32 hex digits of SHA-256>"`.
pub fn etag(resource: &Value) -> String {
    let mut canonical = String::new();
    match resource {
        Value::Object(m) => {
            let mut stripped = m.clone();
            stripped.remove("meta");
            write_canonical(&Value::Object(stripped), &mut canonical);
        }
        other => write_canonical(other, &mut canonical),
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    let hex: String = digest.as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("W/\"{hex}\"")
}

/// JSON with object keys sorted, so equal content hashes equally whatever order it was built in.
fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(inner) = m.get(*k) {
                    write_canonical(inner, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `If-Match` / `If-None-Match` against the current ETag: `*`, or any listed tag whose opaque part equals the
/// current one. Weak and strong forms compare equal, because SCIM clients send our weak tags back in `If-Match`
/// (RFC 7644 §3.14 does exactly that).
pub fn etag_matches(header: &str, current: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").trim_start_matches("w/").to_string();
    let current = opaque(current);
    header.split(',').any(|t| t.trim() == "*" || opaque(t) == current)
}

/// A `ListResponse` (RFC 7644 §3.4.2): `resources` is one page, `total` counts all matches.
pub fn list_response(resources: Vec<Value>, total: usize, start_index: usize) -> Value {
    json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": total,
        "itemsPerPage": resources.len(),
        "startIndex": start_index,
        "Resources": resources,
    })
}

/// One page of a list (RFC 7644 §3.4.2.4): `startIndex` is 1-based and below 1 means 1; `count` below 0 means
/// 0; absent or above `max_results` means `max_results`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Resources to skip.
    pub offset: usize,
    /// Resources to return at most.
    pub limit: usize,
    /// The `startIndex` to answer with.
    pub start_index: usize,
}

pub fn page(start_index: Option<i64>, count: Option<i64>, max_results: usize) -> Page {
    let start = usize::try_from(start_index.unwrap_or(1).max(1)).unwrap_or(usize::MAX);
    let limit = match count {
        None => max_results,
        Some(c) => usize::try_from(c.max(0)).unwrap_or(usize::MAX).min(max_results),
    };
    Page { offset: start - 1, limit, start_index: start }
}

/// The representation to return (RFC 7644 §3.9): `attributes` replaces the default set, `excludedAttributes`
/// removes from it; both are comma-separated lists of attribute paths. `id`, `schemas` and `meta` are always
/// returned, `password` never, and members of the stored object that are no attribute of the schema (a store's
/// own bookkeeping) are never returned either. Names we do not know are ignored, as for filters (§3.4.2.1). If a client sends
/// both (the RFC calls them mutually exclusive), `attributes` is applied and then `excludedAttributes`.
pub fn project(resource: &Value, attributes: Option<&str>, excluded: Option<&str>, schema: &ResourceSchema) -> Value {
    let Value::Object(map) = resource else { return resource.clone() };
    let wanted = attributes.map(|a| Selection::parse(a, schema)).filter(|s| !s.is_empty());
    let excluded = excluded.map(|e| Selection::parse(e, schema)).unwrap_or_default();
    let mut out = Map::new();
    for (key, value) in map {
        if key == "schemas" {
            out.insert(key.clone(), value.clone());
            continue;
        }
        if let Some(ext) = schema.extension(key) {
            let Value::Object(inner) = value else { continue };
            let mut kept = Map::new();
            for (k, v) in inner {
                if let Some(attr) = ext.attribute(k) {
                    let c = Container::Extension(ext);
                    if let Some(v) = project_attr(c, attr, v, wanted.as_ref(), &excluded) {
                        kept.insert(k.clone(), v);
                    }
                }
            }
            if !kept.is_empty() {
                out.insert(key.clone(), Value::Object(kept));
            }
            continue;
        }
        let attr = COMMON_ATTRIBUTES
            .iter()
            .find(|a| a.name == key)
            .or_else(|| schema.core.attributes.iter().find(|a| a.name == key));
        if let Some(attr) = attr {
            if let Some(v) = project_attr(Container::TopLevel, attr, value, wanted.as_ref(), &excluded) {
                out.insert(key.clone(), v);
            }
        }
    }
    Value::Object(out)
}

/// Parsed `attributes` / `excludedAttributes`: whole attributes and single sub-attributes.
#[derive(Debug, Default)]
struct Selection {
    whole: Vec<(Container, &'static str)>,
    subs: Vec<(Container, &'static str, &'static str)>,
    extensions: Vec<&'static str>,
}

impl Selection {
    fn parse(list: &str, schema: &ResourceSchema) -> Selection {
        let mut s = Selection::default();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if let Some(ext) = schema.extension(item) {
                s.extensions.push(ext.id);
                continue;
            }
            if let Some(r) = schema.resolve(item) {
                match r.sub {
                    None => s.whole.push((r.container, r.attr.name)),
                    Some(sub) => s.subs.push((r.container, r.attr.name, sub.name)),
                }
            }
        }
        s
    }

    fn is_empty(&self) -> bool {
        self.whole.is_empty() && self.subs.is_empty() && self.extensions.is_empty()
    }

    fn has_whole(&self, c: Container, attr: &str) -> bool {
        self.whole.contains(&(c, attr)) || matches!(c, Container::Extension(e) if self.extensions.contains(&e.id))
    }

    fn subs_of(&self, c: Container, attr: &str) -> Vec<&'static str> {
        self.subs.iter().filter(|(sc, a, _)| *sc == c && *a == attr).map(|(_, _, s)| *s).collect()
    }
}

fn project_attr(
    c: Container,
    attr: &Attribute,
    v: &Value,
    wanted: Option<&Selection>,
    excluded: &Selection,
) -> Option<Value> {
    match attr.returned {
        Returned::Never => return None,
        Returned::Always => return Some(v.clone()),
        Returned::Default | Returned::Request => {}
    }
    let v = match wanted {
        Some(w) if w.has_whole(c, attr.name) => v.clone(),
        Some(w) => {
            let subs = w.subs_of(c, attr.name);
            if subs.is_empty() {
                return None;
            }
            keep_subs(v, |name| subs.iter().any(|s| s.eq_ignore_ascii_case(name)))?
        }
        None if attr.returned == Returned::Request => return None,
        None => v.clone(),
    };
    if excluded.has_whole(c, attr.name) {
        return None;
    }
    let dropped = excluded.subs_of(c, attr.name);
    if dropped.is_empty() {
        return Some(v);
    }
    keep_subs(&v, |name| !dropped.iter().any(|s| s.eq_ignore_ascii_case(name)))
}

/// Keeps the sub-attributes `keep` accepts, in an object or in each element of an array; `None` if nothing is
/// left.
fn keep_subs(v: &Value, keep: impl Fn(&str) -> bool + Copy) -> Option<Value> {
    match v {
        Value::Object(m) => {
            let kept: Map<String, Value> =
                m.iter().filter(|(k, _)| keep(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items.iter().filter_map(|i| keep_subs(i, keep)).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "resource_tests.rs"]
mod tests;
