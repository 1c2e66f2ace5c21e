//! The one load path: file + environment + command-line overrides → JSON tree → [`validate`] → secrets read.
//!
//! Everything here is IO or plumbing around it; no rule about what a valid value is lives here (that is
//! `validate/`). The binary and the tests all go through [`load_with`]; nothing else should assemble the
//! steps itself.

use std::path::Path;

use serde_json::Value;

use super::{validate, Config, ConfigError, Problem, Secret, SourceKind, ENV_PREFIX};

const SOURCES_ENV_PREFIX: &str = "LITELLM_SYNC__SOURCES__";

/// Keys whose environment value is a secret: taken verbatim, never parsed as a number or a list (a key `007`
/// must not become `7`).
const LITELLM_SECRET: &[&str] = &["litellm", "api_key"];
const SOURCE_SECRET: &str = "bind_password";

/// Reads the file and the `LITELLM_SYNC__*` environment into one JSON tree (no validation yet).
///
/// The `config` crate cannot address an element of `[[sources]]`, so `LITELLM_SYNC__SOURCES__<NAME>__<KEY>`
/// (the source's name upper-cased with `-` as `_`, or its index) is applied here instead.
pub fn load_raw(path: &Path) -> Result<Value, ConfigError> {
    load_raw_from(path, std::env::vars())
}

/// [`load_raw`] with the environment given, so that tests need not change the process's.
pub(super) fn load_raw_from(
    path: &Path,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Value, ConfigError> {
    type Vars = Vec<(String, String)>;
    let (sources_env, rest): (Vars, Vars) = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .partition(|(k, _)| k.starts_with(SOURCES_ENV_PREFIX));
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml).required(true))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .ignore_empty(true)
                .source(Some(rest.iter().cloned().collect())),
        )
        .build()
        .map_err(|source| ConfigError::Load { path: path.to_path_buf(), source })?;
    let mut raw =
        built.try_deserialize::<Value>().map_err(|source| ConfigError::Load { path: path.to_path_buf(), source })?;
    // `try_parsing` turned every number-like value into a number; a secret keeps the text it was given.
    for (var, value) in &rest {
        let parts: Vec<String> = var[ENV_PREFIX.len() + 2..].split("__").map(str::to_ascii_lowercase).collect();
        if !value.is_empty() && parts == LITELLM_SECRET {
            set_value(&mut raw, &parts, Value::String(value.clone()));
        }
    }
    apply_sources_env(&mut raw, &sources_env).map_err(ConfigError::Invalid)?;
    Ok(raw)
}

/// A source override's value: a TOML inline array (`["ldap://a", "ldap://b"]`) for list keys, else the string.
fn env_value(value: &str) -> Value {
    if value.trim_start().starts_with('[') {
        if let Ok(t) = toml::from_str::<toml::Table>(&format!("v = {value}")) {
            if let Some(v) = t.get("v").and_then(|v| serde_json::to_value(v).ok()) {
                return v;
            }
        }
    }
    Value::String(value.to_string())
}

/// Applies `LITELLM_SYNC__SOURCES__<NAME|INDEX>__<KEY>[__<SUBKEY>]` variables to the `[[sources]]` array.
pub fn apply_sources_env(raw: &mut Value, vars: &[(String, String)]) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    for (var, value) in vars {
        let rest = &var[SOURCES_ENV_PREFIX.len()..];
        let mut parts = rest.split("__");
        let selector = parts.next().unwrap_or_default();
        let path: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
        let sources = raw.get_mut("sources").and_then(|s| s.as_array_mut());
        let index = sources.as_ref().and_then(|list| {
            selector.parse::<usize>().ok().filter(|i| *i < list.len()).or_else(|| {
                list.iter().position(|s| {
                    s.get("name")
                        .and_then(|n| n.as_str())
                        .is_some_and(|n| n.to_ascii_uppercase().replace('-', "_") == selector)
                })
            })
        });
        let (Some(list), Some(i), false) = (sources, index, path.is_empty()) else {
            problems.push(Problem {
                path: var.clone(),
                message: format!("environment variable names no configured source (by name or index): {selector:?}"),
            });
            continue;
        };
        let value = if path == [SOURCE_SECRET] { Value::String(value.clone()) } else { env_value(value) };
        set_value(&mut list[i], &path, value);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Loads, validates and resolves the secrets of the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, &[])
}

/// [`load`] with command-line overrides (`("litellm.url", value)`), applied over the file and the environment:
/// the one load path, used by the binary and the tests alike. Each `*_file` secret is read here, once.
pub fn load_with(path: &Path, overrides: &[(&str, Value)]) -> Result<Config, ConfigError> {
    let mut cfg = load_unresolved(path, overrides)?;
    cfg.resolve_secrets()?;
    Ok(cfg)
}

/// [`load_with`] up to validation: `*_file` secrets are not read yet. For the example configurations, whose
/// secret files exist only where they are deployed.
pub(super) fn load_unresolved(path: &Path, overrides: &[(&str, Value)]) -> Result<Config, ConfigError> {
    let mut raw = load_raw(path)?;
    for (key, value) in overrides {
        let parts: Vec<String> = key.split('.').map(str::to_string).collect();
        set_value(&mut raw, &parts, value.clone());
    }
    validate(&raw).map_err(ConfigError::Invalid)
}

fn set_value(node: &mut Value, path: &[String], value: Value) {
    let Some((key, rest)) = path.split_first() else { return };
    if !node.is_object() {
        *node = serde_json::json!({});
    }
    if let Some(obj) = node.as_object_mut() {
        if rest.is_empty() {
            obj.insert(key.clone(), value);
        } else {
            set_value(obj.entry(key.clone()).or_insert_with(|| serde_json::json!({})), rest, value);
        }
    }
}

impl Config {
    /// Reads every `*_file` secret (IO) and keeps its value, so that start-up names each unreadable key at once
    /// and no caller of [`Secret::resolve`] reads a file again.
    pub fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut read = |secret: &mut Secret, key: &str| match secret.read(key) {
            Ok(value) => *secret = Secret::Value(value),
            Err(p) => problems.push(p),
        };
        read(&mut self.litellm.api_key, "litellm.api_key");
        if let Some(pw) = self.store.postgres.as_mut().and_then(|p| p.password.as_mut()) {
            read(pw, "store.password");
        }
        for (i, s) in self.sources.iter_mut().enumerate() {
            if let SourceKind::Ldap(l) = &mut s.kind {
                read(&mut l.bind_password, &format!("sources[{i}].bind_password"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}
