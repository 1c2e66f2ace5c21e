//! Pure validation: raw JSON tree → [`Config`], or every problem found, each with its key path.
//!
//! This file orchestrates: it checks the root table (unknown sections), hands each section to its module, and
//! makes the checks that span sections (a rule's source must exist; a key rule needs `[keys]`). A section's own
//! rules live in its module (`litellm`, `sources` with `file` and `ldap`, `rules`, `safety`, `daemon`), shared
//! value checks in `checks`, the problem list and unknown-key reporting in `ctx`. Nothing under `validate/`
//! reads a file, the environment or the clock.
//!
//! Every section and every array element is deserialized on its own so that one bad rule does not hide the
//! problems of the next; unknown keys are collected (not fatal to the rest) with `serde_ignored`, each with the
//! closest known key as a suggestion.

mod checks;
mod ctx;
mod daemon;
mod file;
mod ldap;
mod litellm;
mod rules;
mod safety;
mod scim;
mod sources;
mod suggest;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::config::{Config, Problem};
use ctx::Ctx;

pub(crate) use checks::check_grants;
pub use checks::validate_budget_duration;
pub(crate) use ctx::deserialize_reporting;

const SECTIONS: &[&str] = &[
    "litellm",
    "sources",
    "rules",
    "defaults",
    "precedence",
    "scope",
    "safety",
    "store",
    "server",
    "log",
    "drift",
    "keys",
];

/// Validates a raw configuration tree. Pure: no IO, no clock.
pub fn validate(raw: &Value) -> Result<Config, Vec<Problem>> {
    let mut cx = Ctx::default();
    let root = match raw {
        Value::Object(m) => m,
        _ => return Err(vec![Problem { path: "(root)".into(), message: "configuration must be a table".into() }]),
    };
    for key in root.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            let message = match suggest::did_you_mean(key, SECTIONS.iter().copied()) {
                Some(s) => format!("unknown section; did you mean `{s}`?"),
                None => format!("unknown section; expected one of {}", SECTIONS.join(", ")),
            };
            cx.problem(key.clone(), message);
        }
    }
    let section = |name: &str| root.get(name).cloned().unwrap_or(Value::Object(Map::new()));

    let litellm = litellm::section(&mut cx, section("litellm"));
    let sources = sources::section(&mut cx, root.get("sources"));
    let source_names: BTreeSet<String> = sources.iter().map(|s| s.name.clone()).collect();
    let rules = rules::section(&mut cx, root.get("rules"), &source_names);
    let defaults = rules::defaults(&mut cx, section("defaults"));
    let precedence = rules::precedence(&mut cx, section("precedence"));
    let scope = rules::scope(&mut cx, section("scope"));
    let safety = safety::section(&mut cx, section("safety"));
    let store = daemon::store(&mut cx, section("store"));
    let server = daemon::server(&mut cx, section("server"));
    let log = daemon::log(&mut cx, section("log"));
    let drift = daemon::drift(&mut cx, section("drift"));
    let keys = daemon::keys(&mut cx, root.get("keys").cloned());
    if keys.is_none() {
        for (i, r) in rules.iter().enumerate() {
            if r.key.is_some() {
                cx.problem(
                    format!("rules[{i}].key"),
                    "a key rule mints a key for each new user, and its plaintext exists only in LiteLLM's answer: \
                     configure [keys] path = \"/var/lib/litellm-sync/keys.jsonl\" (a JSON-lines file created with \
                     mode 0600) to deliver it, or remove the key rule",
                );
            }
        }
    }

    match (cx.problems.is_empty(), litellm) {
        (true, Some(litellm)) => {
            Ok(Config { litellm, sources, rules, defaults, precedence, scope, safety, store, server, log, drift, keys })
        }
        _ => Err(cx.problems),
    }
}
