//! Evaluation of a resolved filter against one resource, with the RFC 7643 case rules: strings compare
//! case-insensitively unless the attribute is caseExact, multi-valued attributes match when any value does,
//! dateTimes compare chronologically. `ne` is the negation of `eq` over all values of the attribute.

use std::cmp::Ordering;

use serde_json::Value;

use super::{CompValue, CompareOp, Filter, Path};
use crate::sources::scim::schema::{AttrType, Attribute, Container};
use crate::sources::scim::value::{get_ci, parse_datetime};

/// `element` is the element of a multi-valued attribute while evaluating a value filter.
pub(super) fn matches(f: &Filter, resource: &Value, element: Option<&Value>) -> bool {
    match f {
        Filter::And(items) => items.iter().all(|i| matches(i, resource, element)),
        Filter::Or(items) => items.iter().any(|i| matches(i, resource, element)),
        Filter::Not(inner) => !matches(inner, resource, element),
        Filter::Present(path) => values(path, resource, element).iter().any(|v| is_present(v)),
        Filter::Compare { path, op, value } => compare(path, *op, value, resource, element),
        Filter::ValuePath { attr, filter } => {
            if attr.resolved.is_none() {
                return false;
            }
            values(attr, resource, None).iter().any(|el| matches(filter, resource, Some(el)))
        }
    }
}

/// The values `path` names, flattened: every element of a multi-valued attribute, every sub-attribute value of
/// every element. Nulls are left out.
fn values<'v>(path: &Path, resource: &'v Value, element: Option<&'v Value>) -> Vec<&'v Value> {
    let Some(r) = path.resolved else { return Vec::new() };
    let mut out = Vec::new();
    if path.relative {
        if let (Some(el), Some(sub)) = (element, r.sub) {
            push_flat(get_ci(el, sub.name), &mut out);
        }
        return out;
    }
    let container = match r.container {
        Container::TopLevel => Some(resource),
        Container::Extension(ext) => get_ci(resource, ext.id),
    };
    let Some(top) = container.and_then(|c| get_ci(c, r.attr.name)) else { return out };
    match r.sub {
        None => push_flat(Some(top), &mut out),
        Some(sub) => {
            let mut parents = Vec::new();
            push_flat(Some(top), &mut parents);
            for p in parents {
                push_flat(get_ci(p, sub.name), &mut out);
            }
        }
    }
    out
}

fn push_flat<'v>(v: Option<&'v Value>, out: &mut Vec<&'v Value>) {
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => out.extend(items.iter().filter(|i| !i.is_null())),
        Some(other) => out.push(other),
    }
}

/// RFC 7644 Table 3, `pr`: "a non-empty or non-null value, or ... a non-empty node for complex attributes".
fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(is_present),
        Value::Object(m) => m.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn compare(path: &Path, op: CompareOp, want: &CompValue, resource: &Value, element: Option<&Value>) -> bool {
    let Some(r) = path.resolved else {
        // RFC 7644 §3.4.2.1: an attribute the resource type does not have has no value.
        return op == CompareOp::Ne;
    };
    let vals = values(path, resource, element);
    if *want == CompValue::Null {
        let present = vals.iter().any(|v| is_present(v));
        return if op == CompareOp::Eq { !present } else { present };
    }
    let leaf = r.leaf();
    if op == CompareOp::Ne {
        return !vals.iter().any(|v| one(leaf, CompareOp::Eq, want, v));
    }
    vals.iter().any(|v| one(leaf, op, want, v))
}

fn one(leaf: &Attribute, op: CompareOp, want: &CompValue, have: &Value) -> bool {
    match (leaf.ty, want, have) {
        (AttrType::Boolean, CompValue::Bool(w), Value::Bool(h)) => op == CompareOp::Eq && w == h,
        (AttrType::Integer | AttrType::Decimal, CompValue::Number(w), Value::Number(h)) => {
            match (w.as_f64(), h.as_f64()) {
                (Some(w), Some(h)) => ordered(op, h.partial_cmp(&w)),
                _ => false,
            }
        }
        (AttrType::DateTime, CompValue::Str(w), Value::String(h)) => match (parse_datetime(w), parse_datetime(h)) {
            (Some(w), Some(h)) => ordered(op, Some(h.cmp(&w))),
            _ => false,
        },
        (AttrType::String | AttrType::Reference, CompValue::Str(w), Value::String(h)) => {
            if leaf.case_exact {
                strings(op, h, w)
            } else {
                strings(op, &h.to_lowercase(), &w.to_lowercase())
            }
        }
        _ => false,
    }
}

fn strings(op: CompareOp, have: &str, want: &str) -> bool {
    match op {
        CompareOp::Co => have.contains(want),
        CompareOp::Sw => have.starts_with(want),
        CompareOp::Ew => have.ends_with(want),
        _ => ordered(op, Some(have.cmp(want))),
    }
}

/// `have op want` given `have.cmp(want)`.
fn ordered(op: CompareOp, ord: Option<Ordering>) -> bool {
    let Some(ord) = ord else { return false };
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}
