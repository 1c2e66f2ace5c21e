//! Typed configuration: one TOML file layered with `LITELLM_SYNC__SECTION__KEY` environment variables.
//!
//! Loading has three steps, kept apart on purpose, and run together only by [`load_with`] (the one load path):
//! 1. [`load_raw`] (IO, `load.rs`): the `config` crate merges the file and the environment into one JSON tree;
//! 2. [`validate`] (pure, `validate/`): the tree becomes a [`Config`], or the list of *every* problem with its
//!    key path;
//! 3. [`Config::resolve_secrets`] (IO, `load.rs`): each `*_file` secret is read, once.
//!
//! This file holds the types the rest of the crate reads; no loading or checking happens here.
//! Secrets are `SecretString`s from the moment they are parsed and never appear in `Debug` or errors.

pub mod ldap;
mod load;
pub mod scim;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::model::{Grants, TeamRole};

pub use load::{apply_sources_env, load, load_raw, load_with};
pub(crate) use validate::deserialize_reporting;
pub use validate::{validate, validate_budget_duration};

/// Environment variable that names the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "LITELLM_SYNC_CONFIG";
/// Prefix of the per-key environment overrides: `LITELLM_SYNC__LITELLM__URL` sets `litellm.url`.
pub const ENV_PREFIX: &str = "LITELLM_SYNC";

/// One configuration problem, named by its key path (`rules[2].budget_duration`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no configuration file: pass --config PATH or set {CONFIG_ENV}")]
    NoFile,
    #[error("cannot read configuration {path}: {source}")]
    Load {
        path: PathBuf,
        #[source]
        source: config::ConfigError,
    },
    #[error("invalid configuration ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" },
        .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// A secret given either inline (usually through the environment) or as a file to read at start-up.
#[derive(Clone)]
pub enum Secret {
    Value(SecretString),
    File(PathBuf),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret(<redacted>)"),
            Secret::File(p) => write!(f, "Secret(file {})", p.display()),
        }
    }
}

impl Secret {
    /// The secret's value; a file secret is read now (trailing newline trimmed). `key` names the config key in
    /// the error. After [`load_with`] every secret is a value already, so this does no IO.
    pub fn resolve(&self, key: &str) -> Result<SecretString, ConfigError> {
        self.read(key).map_err(|p| ConfigError::Invalid(vec![p]))
    }

    fn read(&self, key: &str) -> Result<SecretString, Problem> {
        match self {
            Secret::Value(v) => Ok(v.clone()),
            Secret::File(path) => match std::fs::read_to_string(path) {
                Ok(s) => {
                    let s = s.trim_end_matches(['\n', '\r']).to_string();
                    if s.is_empty() {
                        return Err(Problem {
                            path: format!("{key}_file"),
                            message: format!("secret file {} is empty", path.display()),
                        });
                    }
                    Ok(SecretString::from(s))
                }
                Err(e) => Err(Problem {
                    path: format!("{key}_file"),
                    message: format!("cannot read secret file {}: {e}", path.display()),
                }),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub litellm: LiteLlmConfig,
    pub sources: Vec<SourceConfig>,
    pub rules: Vec<Rule>,
    pub defaults: Grants,
    pub precedence: Precedence,
    pub scope: Scope,
    pub safety: Safety,
    pub store: StoreConfig,
    pub server: ServerConfig,
    pub log: LogConfig,
    pub drift: DriftConfig,
    /// Where minted keys are delivered; required by any rule with `key`.
    pub keys: Option<KeysConfig>,
}

/// `[keys]`: the plaintext of every key litellm-sync mints goes to this JSON-lines file (mode 0600), and nowhere
/// else.
#[derive(Debug, Clone)]
pub struct KeysConfig {
    pub path: PathBuf,
}

/// The daemon's periodic drift check: list all of LiteLLM, replace the ledger, and repair managed fields that
/// were changed by hand.
#[derive(Debug, Clone)]
pub struct DriftConfig {
    /// Cron expression, seconds first; none disables the check.
    pub schedule: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LiteLlmConfig {
    pub url: url::Url,
    pub api_key: Secret,
    pub timeout: Duration,
    pub concurrency: usize,
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Use `/management/v1/users/bulk[_delete]` when the proxy has them.
    pub bulk: bool,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    /// Template for the LiteLLM `user_id` of a new user: `{user_name}`, `{email}`, `{id}`, `{source}`.
    pub user_id_template: String,
    /// Cron expression (seconds field first, as tokio-cron-scheduler reads it) for scheduled full resyncs.
    pub schedule: Option<String>,
    pub kind: SourceKind,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    File(FileSourceConfig),
    Ldap(Box<LdapSourceConfig>),
    Scim(Box<ScimSourceConfig>),
}

impl SourceKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceKind::File(_) => "file",
            SourceKind::Ldap(_) => "ldap",
            SourceKind::Scim(_) => "scim",
        }
    }

    /// A push source: its view is what the IdP wrote, change by change (SCIM), not a read of the IdP.
    pub fn is_push(&self) -> bool {
        matches!(self, SourceKind::Scim(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LdapFlavor {
    /// entryUUID, uid, groupOfNames/groupOfUniqueNames/posixGroup members, a configurable disabled filter.
    #[default]
    Openldap,
    /// objectGUID, sAMAccountName, memberOf, userAccountControl.
    ActiveDirectory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LdapScope {
    Base,
    One,
    Sub,
}

/// `type = "ldap"`.
#[derive(Debug, Clone)]
pub struct LdapSourceConfig {
    pub flavor: LdapFlavor,
    /// Tried in order until one connects (failover).
    pub urls: Vec<url::Url>,
    pub starttls: bool,
    /// PEM file of the CA(s) that sign the server certificate; default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Do not verify the server certificate. For tests only.
    pub insecure_skip_verify: bool,
    pub bind_dn: String,
    pub bind_password: Secret,
    pub connect_timeout: Duration,
    /// Limit for each LDAP operation (bind, each page of a search).
    pub operation_timeout: Duration,
    /// Limit for a whole snapshot read.
    pub read_timeout: Duration,
    pub page_size: u32,
    pub user_base: String,
    pub user_filter: String,
    pub user_scope: LdapScope,
    pub group_base: String,
    pub group_filter: String,
    pub group_scope: LdapScope,
    /// OpenLDAP: users matching `(&user_filter disabled_filter)` are disabled (AD uses userAccountControl).
    pub disabled_filter: Option<String>,
    /// AD: resolve nested groups on the server with LDAP_MATCHING_RULE_IN_CHAIN (one search per group).
    pub in_chain: bool,
    /// Search continuation references (referrals) fail the read unless this is true.
    pub ignore_referrals: bool,
    pub attributes: ldap::AttrMap,
}

/// `type = "scim"`: a SCIM 2.0 service provider that IdPs push users and groups to.
#[derive(Debug, Clone)]
pub struct ScimSourceConfig {
    /// Where the SCIM endpoints are mounted on the daemon's HTTP server: `/scim/v2` unless told otherwise.
    pub path: String,
    /// The SCIM base URL as clients reach it (for `meta.location`), without a trailing slash; default
    /// `http://<server.listen><path>`.
    pub public_url: Option<String>,
    pub auth: scim::AuthSettings,
    pub attributes: scim::ScimAttrMap,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// The most resources one list answers (`filter.maxResults`).
    pub max_results: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FileSourceConfig {
    /// YAML (`.yaml`/`.yml`) or TOML (`.toml`) file of users and groups.
    pub path: PathBuf,
}

/// Which groups a rule applies to. A group matches when *any* given matcher matches it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Match {
    /// Exact group ids, names or DNs (DNs compared case-insensitively, ignoring spaces after commas).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Glob over group names and DNs (`llm-*`, `cn=llm-*,ou=groups,*`), case-insensitive.
    pub group_glob: Option<String>,
    /// Restrict the rule to one source.
    pub source: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub matcher: Match,
    pub grants: Grants,
    pub team: Option<TeamSpec>,
    /// Creation-only: mint one virtual key for the user when it is created.
    pub key: Option<KeySpec>,
    /// Creation-only: ask LiteLLM to send its invitation e-mail.
    pub send_invite_email: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TeamSpec {
    /// Template for the team id; `{group_name}`, `{group_id}`, `{source}`. Default `{group_name}`, slugified.
    pub id: Option<String>,
    /// Template for the team alias; default the group's name.
    pub alias: Option<String>,
    #[serde(default)]
    pub member_role: TeamRole,
    pub max_budget: Option<f64>,
    pub soft_budget: Option<f64>,
    pub budget_duration: Option<String>,
    pub models: Option<Vec<String>>,
    pub tpm_limit: Option<u64>,
    pub rpm_limit: Option<u64>,
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeySpec {
    /// Template for the key alias: `{user_name}`, `{user_id}`, `{email}`.
    pub alias: Option<String>,
    /// Key lifetime in LiteLLM's duration format (`30d`, `12h`); none means no expiry.
    pub duration: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitPrecedence {
    /// The largest budget or limit among matching rules wins.
    #[default]
    Highest,
    Lowest,
    /// The first matching rule, in file order, that sets the field wins.
    First,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Precedence {
    #[serde(default)]
    pub limits: LimitPrecedence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// Users that match no rule are provisioned with `[defaults]`.
    #[default]
    Provision,
    /// Users that match no rule are out of scope: never created, and deprovisioned if managed.
    Exclude,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default)]
    pub unmatched_users: Unmatched,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deprovision {
    /// Block the user's keys and set `metadata.scim_active=false`, as LiteLLM's own SCIM does.
    #[default]
    Deactivate,
    /// Delete the user (and every key it owns) at once.
    Delete,
}

#[derive(Debug, Clone)]
pub struct Safety {
    /// Hold every destructive operation of a run that would deactivate or delete more users than this.
    pub max_deletions: u32,
    /// … or more than this percentage of the users the source manages.
    pub max_deletions_percent: f64,
    pub deprovision: Deprovision,
    /// Delete a deactivated user once it has been deactivated this long.
    pub delete_after: Option<Duration>,
    /// Take over pre-existing LiteLLM users whose `user_id` equals a desired one (adds the ownership marker).
    pub adopt_existing: bool,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The SQLite file (the default store).
    pub path: PathBuf,
    /// `[store]` is in the configuration: the CLI plans against the store's ledger too.
    pub configured: bool,
    /// `store.url`: a PostgreSQL store instead, shared by several replicas.
    pub postgres: Option<PostgresConfig>,
}

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://user@host:5432/db` (no password in it).
    pub url: String,
    pub password: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// On SIGTERM/SIGINT, how long in-flight work may take before the process exits anyway.
    pub shutdown_grace: Duration,
    /// `/readyz` turns unready when a source's runs have been failing for longer than this.
    pub unready_after: Duration,
    /// How often LiteLLM is probed for `/readyz`.
    pub probe_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
    /// Audit trail of applied changes (JSON lines); `-` means stdout, none disables it.
    pub audit_path: Option<PathBuf>,
}

impl Config {
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// SHA-256 (hex) of everything a plan depends on besides the sources' views and the ledger: the LiteLLM URL,
    /// the sources, rules, defaults, precedence, scope, safety and `[keys]` settings, and this version of
    /// litellm-sync. Secrets are left out (their Debug text is redacted). Server, log, store and drift settings
    /// change no plan.
    pub fn plan_fingerprint(&self) -> String {
        let text = format!(
            "{}\n{}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            env!("CARGO_PKG_VERSION"),
            self.litellm.url,
            self.sources,
            self.rules,
            self.defaults,
            self.precedence,
            self.scope,
            self.safety,
            self.keys,
        );
        crate::model::hex(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
    }
}

#[cfg(test)]
mod tests;

/// Checks user settings given outside the config file (a file source's per-user overrides) with the same rules
/// as `[defaults]` and `[[rules]]`.
pub fn validate_grants_into(problems: &mut Vec<Problem>, path: &str, g: &Grants) {
    validate::check_grants(problems, path, g);
}
