//! What users and teams get: `[[rules]]` (match, grants, team, key), `[defaults]`, `[precedence]`, `[scope]`.
//!
//! The checks of a set of grants shared with the file source are `checks.rs`'s; how rules combine into a
//! desired state is the mapper's business, not validation's. No IO.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

use super::checks::{check_grants, check_models, check_template_any, validate_budget_duration};
use super::ctx::{split, Ctx, Known};
use crate::config::{KeySpec, Match, Precedence, Rule, Scope, TeamSpec};
use crate::model::Grants;

/// The keys of a rule that are not grants.
const RULE_KEYS: &[&str] = &["name", "match", "team", "key", "send_invite_email"];

#[derive(Deserialize)]
struct RawRuleCommon {
    name: Option<String>,
    #[serde(rename = "match")]
    matcher: Option<Match>,
    team: Option<TeamSpec>,
    key: Option<KeySpec>,
    send_invite_email: Option<bool>,
}

/// `[[rules]]`; `sources` are the configured source names a rule may be restricted to.
pub(super) fn section(cx: &mut Ctx, v: Option<&Value>, sources: &BTreeSet<String>) -> Vec<Rule> {
    match v {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out: Vec<Rule> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let path = format!("rules[{i}]");
                if let Some(r) = entry(cx, &path, item, sources) {
                    if out.iter().any(|o| o.name == r.name) {
                        cx.problem(format!("{path}.name"), format!("duplicate rule name {:?}", r.name));
                    }
                    out.push(r);
                }
            }
            out
        }
        Some(_) => {
            cx.problem("rules", "must be an array of tables ([[rules]])");
            Vec::new()
        }
    }
}

fn entry(cx: &mut Ctx, path: &str, item: &Value, sources: &BTreeSet<String>) -> Option<Rule> {
    let Value::Object(map) = item else {
        cx.problem(path, "must be a table");
        return None;
    };
    let (common, rest) = split(map, RULE_KEYS);
    let known =
        Known::of::<RawRuleCommon>().nested::<Match>("match").nested::<TeamSpec>("team").nested::<KeySpec>("key");
    let c: Option<RawRuleCommon> = cx.de(path, Value::Object(common), &known);
    let grants: Option<Grants> = cx.de(path, Value::Object(rest), &Known::of::<Grants>().table("", RULE_KEYS));
    if let Some(g) = &grants {
        check_grants(cx, path, g);
    }
    let c = c?;
    let name = c.name.unwrap_or_else(|| path.to_string());
    let matcher = match c.matcher {
        Some(m) => m,
        None => {
            cx.problem(format!("{path}.match"), "required: match = { groups = [...] } or { group_glob = \"...\" }");
            Match::default()
        }
    };
    if matcher.groups.is_empty() && matcher.group_glob.is_none() {
        cx.problem(format!("{path}.match"), "needs `groups` or `group_glob`");
    }
    if matcher.groups.iter().any(|g| g.trim().is_empty()) {
        cx.problem(format!("{path}.match.groups"), "group names must not be empty");
    }
    if let Some(g) = &matcher.group_glob {
        if let Err(e) = globset::Glob::new(g) {
            cx.problem(format!("{path}.match.group_glob"), format!("invalid glob {g:?}: {e}"));
        }
    }
    if let Some(s) = &matcher.source {
        if !sources.contains(s) {
            cx.problem(format!("{path}.match.source"), format!("no source named {s:?}"));
        }
    }
    if let Some(t) = &c.team {
        team(cx, &format!("{path}.team"), t);
    }
    if let Some(k) = &c.key {
        if let Some(a) = &k.alias {
            if let Err(e) = check_template_any(a, &["user_name", "user_id", "email"]) {
                cx.problem(format!("{path}.key.alias"), e);
            }
        }
        if let Some(d) = &k.duration {
            if let Err(e) = validate_budget_duration(d) {
                cx.problem(format!("{path}.key.duration"), e.replace("budget_duration", "duration"));
            }
        }
    }
    Some(Rule {
        name,
        matcher,
        grants: grants?,
        team: c.team,
        key: c.key,
        send_invite_email: c.send_invite_email.unwrap_or(false),
    })
}

/// A rule's `[rules.team]`, at `tp`.
fn team(cx: &mut Ctx, tp: &str, t: &TeamSpec) {
    if let Some(id) = &t.id {
        if let Err(e) = check_template_any(id, &["group_name", "group_id", "source"]) {
            cx.problem(format!("{tp}.id"), e);
        }
    }
    if let Some(alias) = &t.alias {
        if let Err(e) = check_template_any(alias, &["group_name", "group_id", "source"]) {
            cx.problem(format!("{tp}.alias"), e);
        }
    }
    if let Some(d) = &t.budget_duration {
        if let Err(e) = validate_budget_duration(d) {
            cx.problem(format!("{tp}.budget_duration"), e);
        }
    }
    if t.max_budget.is_some_and(|b| !(b.is_finite() && b >= 0.0)) {
        cx.problem(format!("{tp}.max_budget"), "must be a non-negative number");
    }
    check_models(cx, &format!("{tp}.models"), t.models.as_deref());
}

/// `[defaults]`: what a user that matches no rule (or no rule that sets a field) gets.
pub(super) fn defaults(cx: &mut Ctx, v: Value) -> Grants {
    let defaults: Grants = cx.de("defaults", v, &Known::of::<Grants>()).unwrap_or_default();
    check_grants(cx, "defaults", &defaults);
    defaults
}

pub(super) fn precedence(cx: &mut Ctx, v: Value) -> Precedence {
    cx.de("precedence", v, &Known::of::<Precedence>()).unwrap_or_default()
}

pub(super) fn scope(cx: &mut Ctx, v: Value) -> Scope {
    cx.de("scope", v, &Known::of::<Scope>()).unwrap_or_default()
}
