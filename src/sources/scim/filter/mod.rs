//! SCIM filters (RFC 7644 §3.4.2.2): parsing into an AST bound to a resource schema, evaluation against a
//! stored resource, and the "simple shape" a store can answer from an index.
//!
//! Parsing is two steps kept in one call: [`parse`] reads the grammar ([`parse`](self::parse) module), then every
//! attribute path is resolved against the schema and every comparison is checked against the attribute's type,
//! so a filter that compares a boolean with `gt` or applies `co` to an integer fails with `invalidFilter` before
//! any resource is looked at. Evaluation ([`Filter::matches`]) then cannot fail.
//!
//! Accepted beyond the RFC grammar, on purpose, each pinned by a test:
//! - Entra's `emails[type eq "work"].value eq "x"`: a value path followed by `.subAttr` and a comparison, read as
//!   "some element of emails has type eq work and value eq x" (Microsoft, "Tutorial: Develop and plan
//!   provisioning for a SCIM endpoint": user uniqueness on `emails[type eq "work"]`);
//! - an unquoted word as a comparison value (`externalId eq jyoung`, from the same tutorial), read as a string;
//! - any amount of whitespace where the RFC says one SP, and `True`/`FALSE`/`Null` in any case.
//!
//! Attributes the schema does not define are not an error: RFC 7644 §3.4.2.1 says to treat them "as if there is
//! no attribute value" (so `pr` and `eq` are false, `ne` is true).
//!
//! Hostile input: a filter longer than [`MAX_FILTER_LEN`] or nested deeper than [`MAX_DEPTH`] is rejected, the
//! parser's recursion is bounded by that depth, and `and`/`or` chains are flat vectors, so neither parsing,
//! evaluation nor dropping the AST can overflow the stack.
//!
//! We do not use the `scim_v2` crate's parser: its grammar cannot express the Entra dialect above (a value path
//! is never followed by a comparison), it knows no schema (no case rules, no type checks, no canonical paths for
//! an index), and it would bring a regex-based LALRPOP lexer for a grammar of a dozen tokens.

mod eval;
mod parse;
#[cfg(test)]
mod tests;

use serde_json::Value;

use super::error::ScimError;
use super::schema::{AttrRef, AttrType, ResourceSchema};

pub(crate) use parse::{parse_patch_path, RawPatchPath};

/// Longest filter we parse, in bytes.
pub const MAX_FILTER_LEN: usize = 8 * 1024;
/// Deepest nesting of `(`, `not (` and `[` we parse.
pub const MAX_DEPTH: usize = 64;

/// A comparison operator (RFC 7644 §3.4.2.2, Table 3). `pr` is [`Filter::Present`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<CompareOp> {
        const OPS: [(&str, CompareOp); 9] = [
            ("eq", CompareOp::Eq),
            ("ne", CompareOp::Ne),
            ("co", CompareOp::Co),
            ("sw", CompareOp::Sw),
            ("ew", CompareOp::Ew),
            ("gt", CompareOp::Gt),
            ("ge", CompareOp::Ge),
            ("lt", CompareOp::Lt),
            ("le", CompareOp::Le),
        ];
        OPS.iter().find(|(w, _)| w.eq_ignore_ascii_case(word)).map(|(_, op)| *op)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }
}

/// A comparison value: a JSON literal.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Str(String),
}

/// An attribute path in a filter, as written and as resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// The path as the client wrote it.
    pub text: String,
    /// What it names; `None` for an attribute the schema does not define (it then has no value).
    pub resolved: Option<AttrRef>,
    /// True inside a value filter (`emails[type eq "work"]`): the path names a sub-attribute of each element.
    pub relative: bool,
}

impl Path {
    /// The canonical path (`name.givenName`, `emails.value`), if the path resolved.
    pub fn canonical(&self) -> Option<String> {
        self.resolved.map(|r| r.canonical())
    }
}

/// A parsed filter, bound to the resource schema it was parsed for.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// `attr pr`
    Present(Path),
    /// `attr op value`. A comparison on a complex attribute without a sub-attribute (`emails co "@x"`) is
    /// resolved to its `value` sub-attribute.
    Compare {
        path: Path,
        op: CompareOp,
        value: CompValue,
    },
    /// `attr[filter]`: some element of `attr` matches `filter`, whose paths are [`Path::relative`].
    ValuePath {
        attr: Path,
        filter: Box<Filter>,
    },
}

/// Parses `input` as a filter on resources of `schema`. Every failure is `400 invalidFilter`.
pub fn parse(input: &str, schema: &ResourceSchema) -> Result<Filter, ScimError> {
    let raw = parse::parse_filter(input)?;
    resolve(raw, schema, None)
}

/// True if `resource` matches `filter` (see [`Filter::matches`]).
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    filter.matches(resource)
}

/// A filter of the shape `path eq "value"`, which a store can answer from an index on `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleEq<'a> {
    /// Canonical attribute path: `userName`, `externalId`, `id`, `displayName`, `emails.value`, `members.value`.
    pub path: String,
    pub value: &'a str,
    /// False when the index must compare case-insensitively.
    pub case_exact: bool,
}

impl Filter {
    /// True if `resource` (a stored resource with canonical attribute names) matches.
    pub fn matches(&self, resource: &Value) -> bool {
        eval::matches(self, resource, None)
    }

    /// True if one element of a multi-valued attribute matches a value filter (a PATCH path's `[...]`).
    pub(crate) fn matches_element(&self, element: &Value) -> bool {
        eval::matches(self, &Value::Null, Some(element))
    }

    /// The index lookup that finds a superset of the matches, for the filters IdPs send to find one object:
    /// `userName eq "x"`, `externalId eq "x"`, `id eq "x"`, `displayName eq "x"`,
    /// `emails[type eq "work"].value eq "x"` (gives `emails.value`), `members[value eq "x"]`, and any `and` with
    /// one of those in it. The store must still run [`Filter::matches`] on the candidates: the lookup ignores the
    /// rest of the filter (`type eq "work"`, the other side of an `and`).
    pub fn as_simple_eq(&self) -> Option<SimpleEq<'_>> {
        match self {
            Filter::Compare { path, op: CompareOp::Eq, value: CompValue::Str(v) } if !path.relative => {
                let r = path.resolved?;
                matches!(r.leaf().ty, AttrType::String | AttrType::Reference).then(|| SimpleEq {
                    path: r.canonical(),
                    value: v,
                    case_exact: r.leaf().case_exact,
                })
            }
            Filter::ValuePath { attr, filter } => {
                let parent = attr.resolved?;
                let inner = relative_eq(filter, "value")?;
                Some(SimpleEq {
                    path: format!("{}.{}", parent.canonical(), "value"),
                    value: inner.0,
                    case_exact: inner.1,
                })
            }
            Filter::And(items) => {
                let mut best: Option<SimpleEq<'_>> = None;
                for s in items.iter().filter_map(Filter::as_simple_eq) {
                    if best.as_ref().is_none_or(|b| selectivity(&s.path) < selectivity(&b.path)) {
                        best = Some(s);
                    }
                }
                best
            }
            _ => None,
        }
    }
}

/// Lower is more selective: ids first, then the unique names, then the rest.
fn selectivity(path: &str) -> u8 {
    match path {
        "id" => 0,
        "externalId" => 1,
        "userName" => 2,
        "displayName" => 3,
        "emails.value" | "members.value" => 4,
        _ => 5,
    }
}

/// `sub eq "x"` inside a value filter, alone or in an `and`.
fn relative_eq<'a>(f: &'a Filter, sub: &str) -> Option<(&'a str, bool)> {
    match f {
        Filter::Compare { path, op: CompareOp::Eq, value: CompValue::Str(v) } if path.relative => {
            let leaf = path.resolved?.leaf();
            leaf.name.eq_ignore_ascii_case(sub).then_some((v.as_str(), leaf.case_exact))
        }
        Filter::And(items) => items.iter().find_map(|i| relative_eq(i, sub)),
        _ => None,
    }
}

/// Resolves the paths of a freshly parsed filter against `schema` (or, inside a value filter, against the
/// sub-attributes of `parent`), and checks each comparison against the attribute's type.
pub(crate) fn resolve(f: Filter, schema: &ResourceSchema, parent: Option<AttrRef>) -> Result<Filter, ScimError> {
    Ok(match f {
        Filter::And(items) => {
            Filter::And(items.into_iter().map(|i| resolve(i, schema, parent)).collect::<Result<_, _>>()?)
        }
        Filter::Or(items) => {
            Filter::Or(items.into_iter().map(|i| resolve(i, schema, parent)).collect::<Result<_, _>>()?)
        }
        Filter::Not(inner) => Filter::Not(Box::new(resolve(*inner, schema, parent)?)),
        Filter::Present(path) => Filter::Present(resolve_path(path, schema, parent)),
        Filter::Compare { path, op, value } => {
            let mut path = resolve_path(path, schema, parent);
            if let Some(r) = &mut path.resolved {
                if r.sub.is_none() && r.attr.is_complex() {
                    // RFC 7644 §3.4.2.2 wants a sub-attribute; `emails co "@example.com"` means emails.value.
                    r.sub = Some(r.attr.sub("value").ok_or_else(|| {
                        ScimError::invalid_filter(format!(
                            "{:?} is a complex attribute: compare one of its sub-attributes",
                            path.text
                        ))
                    })?);
                }
            }
            let value = check_comparison(&path, op, value)?;
            Filter::Compare { path, op, value }
        }
        Filter::ValuePath { attr, filter } => {
            if parent.is_some() {
                return Err(ScimError::invalid_filter("a value filter cannot contain another value filter"));
            }
            let attr = resolve_path(attr, schema, None);
            if let Some(r) = attr.resolved {
                if r.sub.is_some() || !r.attr.is_complex() {
                    return Err(ScimError::invalid_filter(format!(
                        "{:?} has no sub-attributes to filter on with [...]",
                        attr.text
                    )));
                }
            }
            // An unknown parent leaves its inner paths unresolved too: the whole value path has no value.
            let inner = match attr.resolved {
                Some(r) => resolve(*filter, schema, Some(r))?,
                None => *filter,
            };
            Filter::ValuePath { attr, filter: Box::new(inner) }
        }
    })
}

fn resolve_path(mut path: Path, schema: &ResourceSchema, parent: Option<AttrRef>) -> Path {
    path.resolved = match parent {
        None => schema.resolve(&path.text),
        Some(p) => {
            path.relative = true;
            p.attr.sub(&path.text).map(|sub| AttrRef { sub: Some(sub), ..p })
        }
    };
    path
}

/// RFC 7644 §3.4.2.2: `gt`/`ge`/`lt`/`le` on booleans, and `co`/`sw`/`ew` on anything but strings, are
/// `invalidFilter`; so is a value of another type than the attribute's. Strings "true"/"false" compared with a
/// boolean attribute are read as booleans.
fn check_comparison(path: &Path, op: CompareOp, value: CompValue) -> Result<CompValue, ScimError> {
    let Some(r) = path.resolved else { return Ok(value) };
    let leaf = r.leaf();
    let bad = |why: &str| {
        Err(ScimError::invalid_filter(format!("{:?} {} {}: {why}", path.text, op.as_str(), describe(&value))))
    };
    if value == CompValue::Null {
        return match op {
            CompareOp::Eq | CompareOp::Ne => Ok(value),
            _ => bad("null can only be compared with eq or ne"),
        };
    }
    let ordering = matches!(op, CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le);
    let substring = matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
    match leaf.ty {
        AttrType::Boolean => {
            if ordering || substring {
                return bad("a boolean attribute only supports eq, ne and pr");
            }
            match &value {
                CompValue::Bool(_) => Ok(value),
                CompValue::Str(s) if s.eq_ignore_ascii_case("true") => Ok(CompValue::Bool(true)),
                CompValue::Str(s) if s.eq_ignore_ascii_case("false") => Ok(CompValue::Bool(false)),
                _ => bad("the attribute is a boolean"),
            }
        }
        AttrType::Integer | AttrType::Decimal => {
            if substring {
                return bad("co, sw and ew apply to strings only");
            }
            match value {
                CompValue::Number(_) => Ok(value),
                _ => bad("the attribute is a number"),
            }
        }
        AttrType::DateTime => {
            if substring {
                return bad("co, sw and ew apply to strings only");
            }
            match &value {
                CompValue::Str(s) if super::value::parse_datetime(s).is_some() => Ok(value),
                _ => bad("the attribute is a dateTime: give an xsd:dateTime string like \"2011-05-13T04:42:34Z\""),
            }
        }
        AttrType::String | AttrType::Reference => match value {
            CompValue::Str(_) => Ok(value),
            _ => bad("the attribute is a string"),
        },
        AttrType::Complex => bad("compare one of the attribute's sub-attributes"),
    }
}

fn describe(v: &CompValue) -> String {
    match v {
        CompValue::Null => "null".to_string(),
        CompValue::Bool(b) => b.to_string(),
        CompValue::Number(n) => n.to_string(),
        CompValue::Str(s) => format!("{s:?}"),
    }
}
