//! Applying a parsed PATCH to a copy of the stored resource, operation by operation; the first error discards
//! the copy, so the caller's resource is never half-patched (RFC 7644 §3.5.2: "SHALL be treated as atomic").

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{OpKind, PatchRequest};
use crate::sources::scim::error::ScimError;
use crate::sources::scim::filter::{self, CompValue, CompareOp, Filter, RawPatchPath};
use crate::sources::scim::resource::schemas_for;
use crate::sources::scim::schema::{AttrRef, Attribute, Container, Mutability, ResourceSchema, Schema};
use crate::sources::scim::value::{coerce, coerce_single, get_ci, key_ci, with_container};

/// The result of a successful PATCH.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOutcome {
    /// The new resource (without a new `meta`: the caller stamps it when `changed`).
    pub resource: Value,
    /// False when the operations left the resource as it was (RFC 7644 §3.5.2.1: then the modify timestamp
    /// must not change, and nothing needs to be planned).
    pub changed: bool,
    /// `members.value`s that are new, in their order in the result (Groups only; empty otherwise).
    pub members_added: Vec<String>,
    /// `members.value`s that are gone.
    pub members_removed: Vec<String>,
}

/// Applies `patch` to `resource` (a stored resource of type `schema`), all or nothing.
pub fn apply(resource: &Value, patch: &PatchRequest, schema: &ResourceSchema) -> Result<PatchOutcome, ScimError> {
    let Value::Object(orig) = resource else {
        return Err(ScimError::internal("the stored resource is not a JSON object"));
    };
    let mut res = orig.clone();
    let id = orig.get("id").cloned();
    for (i, op) in patch.operations.iter().enumerate() {
        apply_op(&mut res, op, schema, id.as_ref()).map_err(|e| {
            ScimError::new(e.status, e.scim_type, format!("Operations[{i}] ({}): {}", op.op.as_str(), e.detail))
        })?;
    }
    let schemas = schemas_for(&res, schema);
    res.insert("schemas".to_string(), Value::Array(schemas));
    for attr in schema.core.attributes.iter().filter(|a| a.required) {
        match res.get(attr.name) {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            _ => return Err(ScimError::mutability(format!("{} is required and cannot be removed", attr.name))),
        }
    }
    let (members_added, members_removed) = member_changes(orig, &res);
    let resource_out = Value::Object(res);
    Ok(PatchOutcome { changed: &resource_out != resource, resource: resource_out, members_added, members_removed })
}

/// What a path points at, resolved against the schema.
enum Target {
    /// The whole extension object (`path: "urn:…:enterprise:2.0:User"`).
    Extension(&'static Schema),
    /// `attr`, or `attr.sub` of a single-valued complex attribute.
    Attr(AttrRef),
    /// `attr[filter]` or `attr[filter].sub`.
    Filtered { r: AttrRef, filter: Filter, sub: Option<&'static Attribute> },
}

fn apply_op(
    res: &mut Map<String, Value>,
    op: &super::Operation,
    schema: &ResourceSchema,
    id: Option<&Value>,
) -> Result<(), ScimError> {
    match &op.path {
        None => {
            let Some(Value::Object(values)) = &op.value else {
                return Err(ScimError::invalid_value("without a path, the value must be an object of attributes"));
            };
            for (key, v) in values {
                apply_key(res, op.op, key, v, schema, id)?;
            }
            Ok(())
        }
        Some((text, raw)) => {
            let target = resolve_target(text, raw, schema)?;
            apply_target(res, op.op, &target, op.value.as_ref(), false, id)
        }
    }
}

/// One attribute of a path-less value. Keys may be plain names, Entra's dotted `name.givenName`,
/// URN-qualified names, or an extension URN whose value is an object of its attributes.
fn apply_key(
    res: &mut Map<String, Value>,
    kind: OpKind,
    key: &str,
    v: &Value,
    schema: &ResourceSchema,
    id: Option<&Value>,
) -> Result<(), ScimError> {
    if key.eq_ignore_ascii_case("schemas") || key.eq_ignore_ascii_case("meta") {
        return Ok(());
    }
    let raw = filter::parse_patch_path(key)?;
    let target = resolve_target(key, &raw, schema)?;
    apply_target(res, kind, &target, Some(v), true, id)
}

fn resolve_target(text: &str, raw: &RawPatchPath, schema: &ResourceSchema) -> Result<Target, ScimError> {
    if raw.filter.is_none() {
        if let Some(ext) = schema.extension(&raw.attr) {
            return Ok(Target::Extension(ext));
        }
    }
    let r = schema
        .resolve(&raw.attr)
        .ok_or_else(|| ScimError::invalid_path(format!("{text:?} names no attribute of a {}", schema.name)))?;
    let Some(f) = &raw.filter else {
        if r.sub.is_some() && r.attr.multi_valued {
            return Err(ScimError::invalid_path(format!(
                "{text:?}: select the values of {} with a filter, e.g. {}[type eq \"work\"].value",
                r.attr.name, r.attr.name
            )));
        }
        return Ok(Target::Attr(r));
    };
    if r.sub.is_some() || !r.attr.is_complex() || !r.attr.multi_valued {
        return Err(ScimError::invalid_path(format!(
            "{text:?}: a value filter applies to a multi-valued complex attribute only"
        )));
    }
    let filter = filter::resolve(f.clone(), schema, Some(r))?;
    let sub =
        match &raw.sub {
            None => None,
            Some(s) => Some(r.attr.sub(s).ok_or_else(|| {
                ScimError::invalid_path(format!("{text:?}: {} has no sub-attribute {s:?}", r.attr.name))
            })?),
        };
    Ok(Target::Filtered { r, filter, sub })
}

fn apply_target(
    res: &mut Map<String, Value>,
    kind: OpKind,
    target: &Target,
    value: Option<&Value>,
    pathless: bool,
    id: Option<&Value>,
) -> Result<(), ScimError> {
    match target {
        Target::Extension(ext) => match (kind, value) {
            (OpKind::Remove, _) | (OpKind::Replace, Some(Value::Null)) => {
                if let Some(k) = key_ci(res, ext.id) {
                    res.remove(&k);
                }
                Ok(())
            }
            (_, Some(Value::Object(inner))) => {
                // Clients echo the extension object as they read it, `schemas` included (scim2-tester does).
                for (k, v) in inner.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("schemas")) {
                    let attr = ext.attribute(k).ok_or_else(|| {
                        ScimError::invalid_path(format!("{}:{k} is not an attribute of {}", ext.id, ext.name))
                    })?;
                    let t = Target::Attr(AttrRef { container: Container::Extension(ext), attr, sub: None });
                    apply_target(res, kind, &t, Some(v), pathless, id)?;
                }
                Ok(())
            }
            (_, Some(Value::Null)) => Ok(()),
            _ => Err(ScimError::invalid_value(format!("the value for {} must be an object", ext.id))),
        },
        Target::Attr(r) => with_container(res, r.container, |m| attr_op(m, kind, *r, value, pathless, id)),
        Target::Filtered { r, filter, sub } => {
            with_container(res, r.container, |m| filtered_op(m, kind, *r, filter, *sub, value))
        }
    }
}

/// Renames a differently-cased key to the canonical `name`, so every later step can use `name`.
fn canon_key(m: &mut Map<String, Value>, name: &str) {
    if let Some(k) = key_ci(m, name) {
        if k != name {
            if let Some(v) = m.remove(&k) {
                m.insert(name.to_string(), v);
            }
        }
    }
}

fn attr_op(
    m: &mut Map<String, Value>,
    kind: OpKind,
    r: AttrRef,
    value: Option<&Value>,
    pathless: bool,
    id: Option<&Value>,
) -> Result<(), ScimError> {
    let name = r.attr.name;
    let path = r.canonical();
    canon_key(m, name);
    let leaf = r.leaf();
    if r.attr.mutability == Mutability::ReadOnly || leaf.mutability == Mutability::ReadOnly {
        // Okta renames a group with {"op":"replace","value":{"id":"<its id>","displayName":"new"}}.
        if pathless && r.sub.is_none() && name == "id" && value == id {
            return Ok(());
        }
        return Err(ScimError::mutability(format!("{path} is readOnly")));
    }
    if leaf.mutability == Mutability::WriteOnly {
        // `password`: accepted, never stored.
        return Ok(());
    }
    match (kind, r.sub) {
        (OpKind::Remove, None) => {
            if r.attr.required {
                return Err(ScimError::mutability(format!("{path} is required and cannot be removed")));
            }
            match value {
                Some(v) if r.attr.multi_valued && r.attr.is_complex() && !v.is_null() => remove_listed(m, r.attr, v),
                _ => {
                    m.remove(name);
                }
            }
        }
        (OpKind::Remove, Some(sub)) => {
            if sub.mutability == Mutability::Immutable {
                return Err(ScimError::mutability(format!("{path} is immutable")));
            }
            if let Some(Value::Object(parent)) = m.get_mut(name) {
                if let Some(k) = key_ci(parent, sub.name) {
                    parent.remove(&k);
                }
                if parent.is_empty() {
                    m.remove(name);
                }
            }
        }
        (OpKind::Add | OpKind::Replace, None) => {
            let v = value.unwrap_or(&Value::Null);
            match coerce(r.attr, v, &path)? {
                None => {
                    if r.attr.required {
                        return Err(ScimError::mutability(format!("{path} is required and cannot be unassigned")));
                    }
                    m.remove(name);
                }
                Some(Value::Array(items)) if kind == OpKind::Add => append(m, r.attr, items),
                Some(c) if r.attr.multi_valued => {
                    m.insert(name.to_string(), c);
                }
                Some(Value::Object(subs)) if r.attr.is_complex() => {
                    // RFC 7644 §3.5.2.1 and §3.5.2.3: sub-attributes not in the value are left unchanged.
                    let slot = m.entry(name.to_string()).or_insert_with(|| Value::Object(Map::new()));
                    if !slot.is_object() {
                        *slot = Value::Object(Map::new());
                    }
                    if let Value::Object(parent) = slot {
                        parent.extend(subs);
                    }
                }
                Some(c) => {
                    if r.attr.required && c.as_str().is_some_and(|s| s.trim().is_empty()) {
                        return Err(ScimError::invalid_value(format!("{path} is required and must not be empty")));
                    }
                    m.insert(name.to_string(), c);
                }
            }
        }
        (OpKind::Add | OpKind::Replace, Some(sub)) => {
            let parent_has = m.get(name).and_then(|p| get_ci(p, sub.name)).is_some_and(|v| !v.is_null());
            if sub.mutability == Mutability::Immutable && parent_has {
                return Err(ScimError::mutability(format!("{path} is immutable")));
            }
            let c = coerce(sub, value.unwrap_or(&Value::Null), &path)?;
            let slot = m.entry(name.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(parent) = slot {
                if let Some(k) = key_ci(parent, sub.name) {
                    parent.remove(&k);
                }
                if let Some(c) = c {
                    parent.insert(sub.name.to_string(), c);
                }
                if parent.is_empty() {
                    m.remove(name);
                }
            }
        }
    }
    Ok(())
}

/// Runs `f` on the array stored under `name` (a lone value becomes a one-element array); an empty result
/// unassigns the attribute.
fn with_array<R>(m: &mut Map<String, Value>, name: &str, f: impl FnOnce(&mut Vec<Value>) -> R) -> R {
    let slot = m.entry(name.to_string()).or_insert(Value::Null);
    let mut arr = match slot.take() {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    };
    let r = f(&mut arr);
    if arr.is_empty() {
        m.remove(name);
    } else {
        *slot = Value::Array(arr);
    }
    r
}

fn is_primary(v: &Value) -> bool {
    get_ci(v, "primary") == Some(&Value::Bool(true))
}

/// RFC 7644 §3.5.2: setting `primary: true` on one value sets it false on every other.
fn fix_primary(arr: &mut [Value], keep: usize) {
    for (i, el) in arr.iter_mut().enumerate() {
        if i != keep && is_primary(el) {
            if let Value::Object(o) = el {
                o.insert("primary".to_string(), Value::Bool(false));
            }
        }
    }
}

/// `add` to a multi-valued attribute: append what is not there yet. Members are the same member when their
/// `value` is; other values when they are identical.
fn append(m: &mut Map<String, Value>, attr: &Attribute, items: Vec<Value>) {
    let by_value = attr.name == "members";
    with_array(m, attr.name, |arr| {
        let mut seen: HashSet<String> = if by_value {
            arr.iter().filter_map(|e| get_ci(e, "value").and_then(Value::as_str)).map(str::to_string).collect()
        } else {
            HashSet::new()
        };
        let mut primary = None;
        for item in items {
            if by_value {
                if let Some(v) = get_ci(&item, "value").and_then(Value::as_str) {
                    if !seen.insert(v.to_string()) {
                        continue;
                    }
                }
            } else if arr.contains(&item) {
                continue;
            }
            if is_primary(&item) {
                primary = Some(arr.len());
            }
            arr.push(item);
        }
        if let Some(p) = primary {
            fix_primary(arr, p);
        }
    });
}

/// Entra's `remove` with a value: take out the listed elements (by `value` when given, else by the listed
/// sub-attributes), not the whole attribute.
fn remove_listed(m: &mut Map<String, Value>, attr: &Attribute, v: &Value) {
    let listed: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let case_exact = attr.sub("value").is_none_or(|s| s.case_exact);
    let fold = |s: &str| if case_exact { s.to_string() } else { s.to_lowercase() };
    let values: HashSet<String> =
        listed.iter().filter_map(|i| get_ci(i, "value").and_then(Value::as_str)).map(fold).collect();
    let others: Vec<&Map<String, Value>> =
        listed.iter().filter(|i| get_ci(i, "value").is_none()).filter_map(|i| i.as_object()).collect();
    with_array(m, attr.name, |arr| {
        arr.retain(|el| {
            let by_value = get_ci(el, "value").and_then(Value::as_str).is_some_and(|s| values.contains(&fold(s)));
            let by_subs = others.iter().any(|o| !o.is_empty() && o.iter().all(|(k, v)| get_ci(el, k) == Some(v)));
            !(by_value || by_subs)
        });
    });
}

fn filtered_op(
    m: &mut Map<String, Value>,
    kind: OpKind,
    r: AttrRef,
    filter: &Filter,
    sub: Option<&'static Attribute>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let name = r.attr.name;
    let path = match sub {
        Some(s) => format!("{}[...].{}", r.canonical(), s.name),
        None => format!("{}[...]", r.canonical()),
    };
    canon_key(m, name);
    if r.attr.mutability == Mutability::ReadOnly || sub.is_some_and(|s| s.mutability == Mutability::ReadOnly) {
        return Err(ScimError::mutability(format!("{path} is readOnly")));
    }
    let v = value.unwrap_or(&Value::Null);
    with_array(m, name, |arr| {
        let mask: Vec<bool> = arr.iter().map(|el| filter.matches_element(el)).collect();
        let matched: Vec<usize> = (0..arr.len()).filter(|&i| mask[i]).collect();
        let drop_matched = |arr: &mut Vec<Value>| {
            let mut i = 0;
            arr.retain(|_| {
                i += 1;
                !mask[i - 1]
            });
        };
        match (kind, sub) {
            (OpKind::Remove, None) => drop_matched(arr),
            (OpKind::Remove, Some(s)) => {
                if s.mutability == Mutability::Immutable && !matched.is_empty() {
                    return Err(ScimError::mutability(format!("{path} is immutable")));
                }
                for &i in &matched {
                    if let Value::Object(el) = &mut arr[i] {
                        if let Some(k) = key_ci(el, s.name) {
                            el.remove(&k);
                        }
                    }
                }
                arr.retain(|el| el.as_object().is_none_or(|o| !o.is_empty()));
            }
            (OpKind::Add | OpKind::Replace, Some(s)) => {
                let c = coerce(s, v, &path)?;
                if matched.is_empty() {
                    // Deliberate deviation from RFC 7644 §3.5.2.3 (noTarget): Entra sets a user's first work
                    // email with `replace emails[type eq "work"].value` and expects the email to be added.
                    let (Some(mut element), Some(c)) = (eq_template(filter), c) else {
                        return Err(ScimError::no_target(format!("no value of {} matches the filter", r.attr.name)));
                    };
                    element.insert(s.name.to_string(), c);
                    let primary = is_primary(&Value::Object(element.clone()));
                    arr.push(Value::Object(element));
                    if primary {
                        let last = arr.len() - 1;
                        fix_primary(arr, last);
                    }
                    return Ok(());
                }
                if s.mutability == Mutability::Immutable {
                    return Err(ScimError::mutability(format!("{path} is immutable")));
                }
                for &i in &matched {
                    if let Value::Object(el) = &mut arr[i] {
                        if let Some(k) = key_ci(el, s.name) {
                            el.remove(&k);
                        }
                        if let Some(c) = &c {
                            el.insert(s.name.to_string(), c.clone());
                        }
                    }
                }
                if let Some(&last) = matched.last() {
                    if is_primary(&arr[last]) {
                        fix_primary(arr, last);
                    }
                }
            }
            (OpKind::Add | OpKind::Replace, None) => {
                if matched.is_empty() {
                    return Err(ScimError::no_target(format!("no value of {} matches the filter", r.attr.name)));
                }
                let c = coerce_single(r.attr, v, &path)?;
                for &i in &matched {
                    match (&c, kind) {
                        // "all matching record values SHALL be replaced" (§3.5.2.3).
                        (Some(c), OpKind::Replace) => arr[i] = c.clone(),
                        (Some(Value::Object(subs)), _) => {
                            if let Value::Object(el) = &mut arr[i] {
                                el.extend(subs.clone());
                            }
                        }
                        _ => {}
                    }
                }
                if c.is_none() && kind == OpKind::Replace {
                    drop_matched(arr);
                } else if let Some(&last) = matched.last() {
                    if arr.get(last).is_some_and(is_primary) {
                        fix_primary(arr, last);
                    }
                }
            }
        }
        Ok(())
    })
}

/// The element a value filter of equalities describes: `type eq "work" and primary eq true` gives
/// `{"type": "work", "primary": true}`. `None` for any other filter.
fn eq_template(f: &Filter) -> Option<Map<String, Value>> {
    match f {
        Filter::Compare { path, op: CompareOp::Eq, value } if path.relative => {
            let sub = path.resolved?.sub?;
            let v = match value {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Number(n) => Value::Number(n.clone()),
                CompValue::Null => return None,
            };
            let mut m = Map::new();
            m.insert(sub.name.to_string(), v);
            Some(m)
        }
        Filter::And(items) => {
            let mut m = Map::new();
            for i in items {
                m.extend(eq_template(i)?);
            }
            Some(m)
        }
        _ => None,
    }
}

fn member_values(res: &Map<String, Value>) -> Vec<&str> {
    match res.get("members") {
        Some(Value::Array(items)) => items.iter().filter_map(|i| get_ci(i, "value").and_then(Value::as_str)).collect(),
        _ => Vec::new(),
    }
}

fn member_changes(before: &Map<String, Value>, after: &Map<String, Value>) -> (Vec<String>, Vec<String>) {
    let b = member_values(before);
    let a = member_values(after);
    let bs: HashSet<&str> = b.iter().copied().collect();
    let as_: HashSet<&str> = a.iter().copied().collect();
    let added = a.iter().filter(|v| !bs.contains(**v)).map(|v| v.to_string()).collect();
    let removed = b.iter().filter(|v| !as_.contains(**v)).map(|v| v.to_string()).collect();
    (added, removed)
}
