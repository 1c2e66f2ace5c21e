//! `[[sources]]`: the list, and the keys every source has (`name`, `type`, `user_id_template`, `schedule`).
//!
//! The keys of one source type are checked in that type's module (`file.rs`, `ldap.rs`); this file only hands
//! them on. Rules that refer to a source are checked in `rules.rs`.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

use super::checks::{check_cron, check_template};
use super::ctx::{split, Ctx, Known};
use super::{file, ldap, scim};
use crate::config::{SourceConfig, SourceKind};

/// The keys of every source, whatever its type.
pub(super) const SOURCE_COMMON: &[&str] = &["name", "type", "user_id_template", "schedule"];

#[derive(Deserialize)]
struct RawSourceCommon {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    user_id_template: Option<String>,
    schedule: Option<String>,
}

pub(super) fn section(cx: &mut Ctx, v: Option<&Value>) -> Vec<SourceConfig> {
    match v {
        None => {
            cx.problem("sources", "at least one [[sources]] entry is required");
            Vec::new()
        }
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            let mut names = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let path = format!("sources[{i}]");
                if let Some(s) = entry(cx, &path, item) {
                    if !names.insert(s.name.clone()) {
                        cx.problem(format!("{path}.name"), format!("duplicate source name {:?}", s.name));
                    }
                    out.push(s);
                }
            }
            check_scim_paths(cx, &out);
            if items.is_empty() {
                cx.problem("sources", "at least one [[sources]] entry is required");
            }
            out
        }
        Some(_) => {
            cx.problem("sources", "must be an array of tables ([[sources]])");
            Vec::new()
        }
    }
}

fn entry(cx: &mut Ctx, path: &str, item: &Value) -> Option<SourceConfig> {
    let Value::Object(map) = item else {
        cx.problem(path, "must be a table");
        return None;
    };
    let (common, rest) = split(map, SOURCE_COMMON);
    let c: RawSourceCommon = cx.de(path, Value::Object(common), &Known::of::<RawSourceCommon>())?;
    let name = match c.name {
        Some(n) if valid_name(&n) => Some(n),
        Some(n) => {
            cx.problem(format!("{path}.name"), format!("{n:?}: use 1-64 characters of a-z, 0-9, '-', '_'"));
            None
        }
        None => {
            cx.problem(format!("{path}.name"), "required");
            None
        }
    };
    let user_id_template = c.user_id_template.unwrap_or_else(|| "{user_name}".to_string());
    if let Err(e) = check_template(&user_id_template, &["user_name", "email", "id", "source"]) {
        cx.problem(format!("{path}.user_id_template"), e);
    }
    if let Some(s) = &c.schedule {
        if let Err(e) = check_cron(s) {
            cx.problem(format!("{path}.schedule"), e);
        }
    }
    let kind = match c.kind.as_deref() {
        Some("file") => file::source(cx, path, rest).map(SourceKind::File),
        Some("ldap") => ldap::source(cx, path, rest).map(|l| SourceKind::Ldap(Box::new(l))),
        Some("scim") => {
            if c.schedule.is_some() {
                cx.problem(
                    format!("{path}.schedule"),
                    "a SCIM source is pushed to by the IdP and has no schedule; remove it",
                );
            }
            scim::source(cx, path, rest).map(|s| SourceKind::Scim(Box::new(s)))
        }
        Some(other) => {
            cx.problem(
                format!("{path}.type"),
                format!("unknown source type {other:?}; expected \"file\", \"ldap\" or \"scim\""),
            );
            None
        }
        None => {
            cx.problem(format!("{path}.type"), "required (\"file\", \"ldap\" or \"scim\")");
            None
        }
    };
    Some(SourceConfig { name: name?, user_id_template, schedule: c.schedule, kind: kind? })
}

/// One SCIM source per path: no two at the same path, none below another's.
fn check_scim_paths(cx: &mut Ctx, sources: &[SourceConfig]) {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let SourceKind::Scim(c) = &s.kind else { continue };
        if let Some((_, other)) = seen.iter().find(|(p, _)| *p == c.path) {
            cx.problem(
                format!("sources[{i}].path"),
                format!("{:?} is already the path of SCIM source {other:?}", c.path),
            );
        } else if let Some((p, other)) = seen.iter().find(|(p, _)| scim::overlaps(p, &c.path)) {
            cx.problem(
                format!("sources[{i}].path"),
                format!("{:?} lies inside {p:?}, the path of SCIM source {other:?}: give each its own path", c.path),
            );
        }
        seen.push((&c.path, &s.name));
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}
