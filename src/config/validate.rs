//! Pure validation: raw JSON tree → [`Config`], or every problem found, each with its key path.
//!
//! Every section and every array element is deserialized on its own so that one bad rule does not hide the
//! problems of the next; unknown keys are collected (not fatal to the rest) with `serde_ignored`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::*;
use crate::model::Grants;

/// LiteLLM's accepted `budget_duration` values (litellm-api.md §4), stricter where LiteLLM is sloppy:
/// trailing junk (`30days`) and leading spaces are rejected instead of silently truncated.
pub fn validate_budget_duration(s: &str) -> Result<(), String> {
    const HINT: &str = "use a number followed by s, m, h, d, w (e.g. 30s, 15m, 24h, 7d, 2w), 1mo, or one of \
                        hourly, daily, weekly, monthly";
    if ["hourly", "daily", "weekly", "monthly"].contains(&s.to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    if num.is_empty() {
        return Err(format!("invalid budget_duration {s:?}: {HINT}"));
    }
    let n: u64 = num.parse().map_err(|_| format!("invalid budget_duration {s:?}: number too large"))?;
    if n == 0 {
        return Err(format!("invalid budget_duration {s:?}: must be positive"));
    }
    match unit {
        "s" | "m" | "h" | "d" | "w" => Ok(()),
        "mo" if n == 1 => Ok(()),
        "mo" => Err(format!("invalid budget_duration {s:?}: LiteLLM only supports 1-month intervals (1mo)")),
        _ => Err(format!("invalid budget_duration {s:?}: {HINT}")),
    }
}

struct Ctx {
    problems: Vec<Problem>,
}

impl Ctx {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { path: path.into(), message: message.into() });
    }

    /// Deserializes `value` as `T`, reporting unknown keys and the first type error under `path`.
    fn de<T: DeserializeOwned>(&mut self, path: &str, value: Value) -> Option<T> {
        let (result, unknown) = deserialize_reporting::<T>(value);
        for key in unknown {
            let message = if key.ends_with("soft_budget") && !path.ends_with("team") {
                "LiteLLM users have no soft budget (LiteLLM drops it silently); set soft_budget on the rule's team"
            } else {
                "unknown key"
            };
            self.problem(join(path, &key), message);
        }
        match result {
            Ok(v) => Some(v),
            Err(p) => {
                self.problem(join(path, &p.path), p.message);
                None
            }
        }
    }

    fn duration(&mut self, path: &str, raw: Option<&str>, default: Duration) -> Duration {
        match raw {
            None => default,
            Some(s) => match humantime::parse_duration(s) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.problem(path, "must be greater than zero");
                    default
                }
                Err(e) => {
                    self.problem(path, format!("invalid duration {s:?} ({e}); use e.g. 30s, 5m, 7d"));
                    default
                }
            },
        }
    }
}

/// Deserializes a JSON tree as `T`, collecting every unknown key (as paths) and the path of the first type
/// error. Shared by the config and the file source, so both report problems the same way.
pub(crate) fn deserialize_reporting<T: DeserializeOwned>(value: Value) -> (Result<T, Problem>, Vec<String>) {
    let mut unknown = Vec::new();
    let mut record = |p: serde_ignored::Path<'_>| unknown.push(p.to_string());
    let result: Result<T, _> = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut record));
    let result = result.map_err(|e| {
        let inner = e.path().to_string();
        Problem { path: if inner == "." { String::new() } else { inner }, message: e.into_inner().to_string() }
    });
    (result, unknown)
}

fn join(base: &str, rest: &str) -> String {
    if base.is_empty() {
        rest.to_string()
    } else if rest.is_empty() || rest == "?" {
        base.to_string()
    } else if rest.starts_with('[') {
        format!("{base}{rest}")
    } else {
        format!("{base}.{rest}")
    }
}

/// Splits known `keys` out of an object; the rest is returned for a typed deserialization.
fn split(map: &Map<String, Value>, keys: &[&str]) -> (Map<String, Value>, Map<String, Value>) {
    let (mut known, mut rest) = (Map::new(), Map::new());
    for (k, v) in map {
        if keys.contains(&k.as_str()) {
            known.insert(k.clone(), v.clone());
        } else {
            rest.insert(k.clone(), v.clone());
        }
    }
    (known, rest)
}

const SECTIONS: &[&str] =
    &["litellm", "sources", "rules", "defaults", "precedence", "scope", "safety", "store", "server", "log", "drift"];

/// Validates a raw configuration tree. Pure: no IO, no clock.
pub fn validate(raw: &Value) -> Result<Config, Vec<Problem>> {
    let mut cx = Ctx { problems: Vec::new() };
    let root = match raw {
        Value::Object(m) => m,
        _ => return Err(vec![Problem { path: "(root)".into(), message: "configuration must be a table".into() }]),
    };
    for key in root.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            cx.problem(key.clone(), format!("unknown section; expected one of {}", SECTIONS.join(", ")));
        }
    }
    let section = |name: &str| root.get(name).cloned().unwrap_or(Value::Object(Map::new()));

    let litellm = litellm_section(&mut cx, section("litellm"));

    let sources = match root.get("sources") {
        None => {
            cx.problem("sources", "at least one [[sources]] entry is required");
            Vec::new()
        }
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            let mut names = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let path = format!("sources[{i}]");
                if let Some(s) = source_entry(&mut cx, &path, item) {
                    if !names.insert(s.name.clone()) {
                        cx.problem(format!("{path}.name"), format!("duplicate source name {:?}", s.name));
                    }
                    out.push(s);
                }
            }
            if items.is_empty() {
                cx.problem("sources", "at least one [[sources]] entry is required");
            }
            out
        }
        Some(_) => {
            cx.problem("sources", "must be an array of tables ([[sources]])");
            Vec::new()
        }
    };
    let source_names: BTreeSet<String> = sources.iter().map(|s| s.name.clone()).collect();

    let rules = match root.get("rules") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out: Vec<Rule> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let path = format!("rules[{i}]");
                if let Some(r) = rule_entry(&mut cx, &path, item, &source_names) {
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
    };

    let defaults: Grants = cx.de("defaults", section("defaults")).unwrap_or_default();
    check_grants(&mut cx, "defaults", &defaults);
    let precedence: Precedence = cx.de("precedence", section("precedence")).unwrap_or_default();
    let scope: Scope = cx.de("scope", section("scope")).unwrap_or_default();
    let safety = safety_section(&mut cx, section("safety"));
    let store = store_section(&mut cx, section("store"));
    let server = server_section(&mut cx, section("server"));
    let log = log_section(&mut cx, section("log"));
    let drift = drift_section(&mut cx, section("drift"));

    match (cx.problems.is_empty(), litellm) {
        (true, Some(litellm)) => {
            Ok(Config { litellm, sources, rules, defaults, precedence, scope, safety, store, server, log, drift })
        }
        _ => Err(cx.problems),
    }
}

#[derive(Deserialize)]
struct RawLiteLlm {
    url: Option<String>,
    api_key: Option<Value>,
    api_key_file: Option<PathBuf>,
    timeout: Option<String>,
    concurrency: Option<usize>,
    max_retries: Option<u32>,
    initial_backoff: Option<String>,
    max_backoff: Option<String>,
    bulk: Option<bool>,
}

fn litellm_section(cx: &mut Ctx, v: Value) -> Option<LiteLlmConfig> {
    let raw: RawLiteLlm = cx.de("litellm", v)?;
    let url = match raw.url.as_deref() {
        None => {
            cx.problem("litellm.url", "required (e.g. http://litellm:4000, or LITELLM_SYNC__LITELLM__URL)");
            None
        }
        Some(s) => match url::Url::parse(s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => {
                cx.problem("litellm.url", format!("{s:?} is not an http(s) URL"));
                None
            }
            Err(e) => {
                cx.problem("litellm.url", format!("{s:?} is not a valid URL: {e}"));
                None
            }
        },
    };
    // A secret of the wrong type is reported without echoing it.
    let api_key = match (raw.api_key, raw.api_key_file) {
        (Some(_), Some(_)) => {
            cx.problem("litellm.api_key", "set either api_key or api_key_file, not both");
            None
        }
        (Some(Value::String(s)), None) if !s.is_empty() => Some(Secret::Value(SecretString::from(s))),
        (Some(Value::Number(n)), None) => Some(Secret::Value(SecretString::from(n.to_string()))),
        (Some(_), None) => {
            cx.problem("litellm.api_key", "must be a non-empty string");
            None
        }
        (None, Some(p)) => Some(Secret::File(p)),
        (None, None) => {
            cx.problem(
                "litellm.api_key",
                "required: set LITELLM_SYNC__LITELLM__API_KEY or litellm.api_key_file (a master key or a \
                 proxy_admin user's key)",
            );
            None
        }
    };
    let timeout = cx.duration("litellm.timeout", raw.timeout.as_deref(), Duration::from_secs(30));
    let initial_backoff =
        cx.duration("litellm.initial_backoff", raw.initial_backoff.as_deref(), Duration::from_millis(500));
    let max_backoff = cx.duration("litellm.max_backoff", raw.max_backoff.as_deref(), Duration::from_secs(30));
    if initial_backoff > max_backoff {
        cx.problem("litellm.initial_backoff", "must not be larger than litellm.max_backoff");
    }
    let concurrency = raw.concurrency.unwrap_or(4);
    if !(1..=64).contains(&concurrency) {
        cx.problem("litellm.concurrency", format!("{concurrency} is out of range 1..=64"));
    }
    let max_retries = raw.max_retries.unwrap_or(5);
    if max_retries > 100 {
        cx.problem("litellm.max_retries", format!("{max_retries} is out of range 0..=100"));
    }
    Some(LiteLlmConfig {
        url: url?,
        api_key: api_key?,
        timeout,
        concurrency,
        max_retries,
        initial_backoff,
        max_backoff,
        bulk: raw.bulk.unwrap_or(true),
    })
}

const SOURCE_COMMON: &[&str] = &["name", "type", "user_id_template", "schedule"];

#[derive(Deserialize)]
struct RawSourceCommon {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    user_id_template: Option<String>,
    schedule: Option<String>,
}

fn source_entry(cx: &mut Ctx, path: &str, item: &Value) -> Option<SourceConfig> {
    let Value::Object(map) = item else {
        cx.problem(path, "must be a table");
        return None;
    };
    let (common, rest) = split(map, SOURCE_COMMON);
    let c: RawSourceCommon = cx.de(path, Value::Object(common))?;
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
        Some("file") => {
            let f: FileSourceConfig = cx.de(path, Value::Object(rest))?;
            Some(SourceKind::File(f))
        }
        Some("ldap") => ldap_source(cx, path, rest).map(|l| SourceKind::Ldap(Box::new(l))),
        Some(other) => {
            cx.problem(format!("{path}.type"), format!("unknown source type {other:?}; expected \"file\" or \"ldap\""));
            None
        }
        None => {
            cx.problem(format!("{path}.type"), "required (\"file\" or \"ldap\")");
            None
        }
    };
    Some(SourceConfig { name: name?, user_id_template, schedule: c.schedule, kind: kind? })
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Checks a `{placeholder}` template against the placeholders it may use.
pub(crate) fn check_template(t: &str, allowed: &[&str]) -> Result<(), String> {
    let mut rest = t;
    let mut any = false;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            return Err(format!("{t:?}: unclosed '{{'"));
        };
        let name = &rest[start + 1..start + len];
        if !allowed.contains(&name) {
            return Err(format!(
                "{t:?}: unknown placeholder {{{name}}}; allowed: {}",
                allowed.iter().map(|a| format!("{{{a}}}")).collect::<Vec<_>>().join(", ")
            ));
        }
        any = true;
        rest = &rest[start + len + 1..];
    }
    if rest.contains('}') {
        return Err(format!("{t:?}: unmatched '}}'"));
    }
    if !any {
        return Err(format!("{t:?}: must contain at least one placeholder, or every user would get the same id"));
    }
    Ok(())
}

/// A cron expression as tokio-cron-scheduler reads it: six or seven fields, seconds first.
fn check_cron(s: &str) -> Result<(), String> {
    let n = s.split_whitespace().count();
    if !(6..=7).contains(&n) {
        return Err(format!(
            "{s:?}: expected 6 or 7 cron fields with seconds first (e.g. \"0 */15 * * * *\" for every 15 minutes)"
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct RawLdap {
    #[serde(default)]
    flavor: LdapFlavor,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    starttls: bool,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
    bind_dn: Option<String>,
    bind_password: Option<Value>,
    bind_password_file: Option<PathBuf>,
    connect_timeout: Option<String>,
    operation_timeout: Option<String>,
    read_timeout: Option<String>,
    page_size: Option<u32>,
    user_base: Option<String>,
    user_filter: Option<String>,
    user_scope: Option<LdapScope>,
    group_base: Option<String>,
    group_filter: Option<String>,
    group_scope: Option<LdapScope>,
    disabled_filter: Option<String>,
    #[serde(default)]
    in_chain: bool,
    #[serde(default)]
    ignore_referrals: bool,
    #[serde(default)]
    attributes: RawAttrs,
}

#[derive(Deserialize, Default)]
struct RawAttrs {
    id: Option<String>,
    user_name: Option<String>,
    email: Option<String>,
    display_name: Option<String>,
    group_name: Option<String>,
    member: Option<String>,
    member_of: Option<String>,
    #[serde(default)]
    overrides: BTreeMap<String, String>,
}

/// Checks an LDAP filter with ldap3's own parser (the one that will encode it).
fn check_filter(f: &str) -> Result<(), String> {
    ldap3::parse_filter(f.trim())
        .map(drop)
        .map_err(|()| format!("{f:?} is not a valid LDAP filter (RFC 4515), e.g. (&(objectClass=person)(uid=*))"))
}

fn ldap_source(cx: &mut Ctx, path: &str, rest: Map<String, Value>) -> Option<LdapSourceConfig> {
    let raw: RawLdap = cx.de(path, Value::Object(rest))?;
    let ad = raw.flavor == LdapFlavor::ActiveDirectory;
    let mut urls = Vec::new();
    if raw.urls.is_empty() {
        cx.problem(format!("{path}.urls"), "at least one server URL is required (ldap://host:389 or ldaps://host:636)");
    }
    for (i, u) in raw.urls.iter().enumerate() {
        match url::Url::parse(u) {
            Ok(parsed) if matches!(parsed.scheme(), "ldap" | "ldaps") && parsed.host().is_some() => {
                if raw.starttls && parsed.scheme() == "ldaps" {
                    cx.problem(
                        format!("{path}.urls[{i}]"),
                        "starttls = true needs ldap:// URLs (ldaps:// is TLS already)",
                    );
                }
                urls.push(parsed);
            }
            Ok(_) => cx.problem(format!("{path}.urls[{i}]"), format!("{u:?} is not an ldap:// or ldaps:// URL")),
            Err(e) => cx.problem(format!("{path}.urls[{i}]"), format!("{u:?} is not a valid URL: {e}")),
        }
    }
    let bind_password = match (raw.bind_password, raw.bind_password_file) {
        (Some(_), Some(_)) => {
            cx.problem(format!("{path}.bind_password"), "set either bind_password or bind_password_file, not both");
            None
        }
        (Some(Value::String(s)), None) if !s.is_empty() => Some(Secret::Value(SecretString::from(s))),
        (Some(Value::Number(n)), None) => Some(Secret::Value(SecretString::from(n.to_string()))),
        (Some(_), None) => {
            cx.problem(format!("{path}.bind_password"), "must be a non-empty string");
            None
        }
        (None, Some(p)) => Some(Secret::File(p)),
        (None, None) => {
            cx.problem(
                format!("{path}.bind_password"),
                "required: bind_password_file, or bind_password (e.g. from LITELLM_SYNC__SOURCES__<NAME>__BIND_PASSWORD)",
            );
            None
        }
    };
    let bind_dn = raw.bind_dn.unwrap_or_default();
    if bind_dn.trim().is_empty() {
        cx.problem(format!("{path}.bind_dn"), "required: the service account to bind as (not the directory admin)");
    }
    let page_size = raw.page_size.unwrap_or(500);
    if !(1..=100_000).contains(&page_size) {
        cx.problem(format!("{path}.page_size"), format!("{page_size} is out of range 1..=100000"));
    }
    let mut need = |key: &str, v: Option<String>| -> String {
        match v.filter(|s| !s.trim().is_empty()) {
            Some(s) => s,
            None => {
                cx.problem(format!("{path}.{key}"), "required");
                String::new()
            }
        }
    };
    let user_base = need("user_base", raw.user_base);
    let group_base = need("group_base", raw.group_base);
    let user_filter = raw.user_filter.unwrap_or_else(|| {
        if ad { "(&(objectCategory=person)(objectClass=user))" } else { "(objectClass=inetOrgPerson)" }.to_string()
    });
    let group_filter = raw.group_filter.unwrap_or_else(|| {
        if ad { "(objectClass=group)" } else { "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))" }
            .to_string()
    });
    for (key, f) in [
        ("user_filter", Some(&user_filter)),
        ("group_filter", Some(&group_filter)),
        ("disabled_filter", raw.disabled_filter.as_ref()),
    ] {
        if let Some(f) = f {
            if let Err(e) = check_filter(f) {
                cx.problem(format!("{path}.{key}"), e);
            }
        }
    }
    let a = raw.attributes;
    for field in a.overrides.keys() {
        if !crate::sources::ldap::convert::OVERRIDE_FIELDS.contains(&field.as_str()) {
            cx.problem(
                format!("{path}.attributes.overrides.{field}"),
                format!(
                    "not an override field; use one of {}",
                    crate::sources::ldap::convert::OVERRIDE_FIELDS.join(", ")
                ),
            );
        }
    }
    let attributes = crate::sources::ldap::convert::AttrMap {
        id: a.id.unwrap_or_else(|| if ad { "objectGUID" } else { "entryUUID" }.into()),
        user_name: a.user_name.unwrap_or_else(|| if ad { "sAMAccountName" } else { "uid" }.into()),
        email: a.email.unwrap_or_else(|| "mail".into()),
        display_name: a.display_name.unwrap_or_else(|| if ad { "displayName" } else { "cn" }.into()),
        group_name: a.group_name.unwrap_or_else(|| "cn".into()),
        member: a.member.unwrap_or_else(|| "member".into()),
        member_of: a.member_of.or_else(|| ad.then(|| "memberOf".to_string())).filter(|m| !m.is_empty()),
        user_account_control: ad,
        overrides: a.overrides,
    };
    let connect_timeout =
        cx.duration(&format!("{path}.connect_timeout"), raw.connect_timeout.as_deref(), Duration::from_secs(10));
    let operation_timeout =
        cx.duration(&format!("{path}.operation_timeout"), raw.operation_timeout.as_deref(), Duration::from_secs(60));
    let read_timeout =
        cx.duration(&format!("{path}.read_timeout"), raw.read_timeout.as_deref(), Duration::from_secs(900));
    Some(LdapSourceConfig {
        flavor: raw.flavor,
        urls,
        starttls: raw.starttls,
        ca_file: raw.ca_file,
        insecure_skip_verify: raw.insecure_skip_verify,
        bind_dn,
        bind_password: bind_password?,
        connect_timeout,
        operation_timeout,
        read_timeout,
        page_size,
        user_base,
        user_filter,
        user_scope: raw.user_scope.unwrap_or(LdapScope::Sub),
        group_base,
        group_filter,
        group_scope: raw.group_scope.unwrap_or(LdapScope::Sub),
        disabled_filter: raw.disabled_filter,
        in_chain: raw.in_chain,
        ignore_referrals: raw.ignore_referrals,
        attributes,
    })
}

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

fn rule_entry(cx: &mut Ctx, path: &str, item: &Value, sources: &BTreeSet<String>) -> Option<Rule> {
    let Value::Object(map) = item else {
        cx.problem(path, "must be a table");
        return None;
    };
    let (common, rest) = split(map, RULE_KEYS);
    let c: Option<RawRuleCommon> = cx.de(path, Value::Object(common));
    let grants: Option<Grants> = cx.de(path, Value::Object(rest));
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
        let tp = format!("{path}.team");
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

/// Like [`check_template`] but a constant (no placeholder) is allowed.
fn check_template_any(t: &str, allowed: &[&str]) -> Result<(), String> {
    match check_template(t, allowed) {
        Err(e) if e.contains("must contain at least one placeholder") => Ok(()),
        other => other,
    }
}

fn check_models(sink: &mut impl ProblemSink, path: &str, models: Option<&[String]>) {
    if let Some(models) = models {
        if models.is_empty() {
            sink.push(
                path.to_string(),
                "an empty list cannot be sent to LiteLLM; leave it out, or use [\"all-proxy-models\"] for every model"
                    .into(),
            );
        }
        if models.iter().any(|m| m.trim().is_empty()) {
            sink.push(path.to_string(), "model names must not be empty".into());
        }
    }
}

pub(crate) fn check_grants(sink: &mut impl ProblemSink, path: &str, g: &Grants) {
    let mut check_money = |field: &str, v: Option<f64>| {
        if v.is_some_and(|b| !(b.is_finite() && b >= 0.0)) {
            sink.push(join(path, field), "must be a non-negative number".into());
        }
    };
    check_money("max_budget", g.max_budget);
    for (model, b) in g.model_max_budget.iter().flatten() {
        if !(b.is_finite() && *b >= 0.0) {
            sink.push(join(path, &format!("model_max_budget.{model}")), "must be a non-negative number".into());
        }
    }
    if let Some(d) = &g.budget_duration {
        if let Err(e) = validate_budget_duration(d) {
            sink.push(join(path, "budget_duration"), e);
        }
    }
    check_models(sink, &join(path, "models"), g.models.as_deref());
    if g.metadata.contains_key(crate::reconcile::MARKER_KEY) || g.metadata.contains_key("scim_active") {
        sink.push(
            join(path, "metadata"),
            format!("keys {:?} and \"scim_active\" are reserved for litellm-sync", crate::reconcile::MARKER_KEY),
        );
    }
}

/// Where [`check_grants`] reports; lets the file source reuse it for per-user overrides.
pub(crate) trait ProblemSink {
    fn push(&mut self, path: String, message: String);
}

impl ProblemSink for Ctx {
    fn push(&mut self, path: String, message: String) {
        self.problem(path, message);
    }
}

impl ProblemSink for Vec<Problem> {
    fn push(&mut self, path: String, message: String) {
        self.push(Problem { path, message });
    }
}

#[derive(Deserialize)]
struct RawSafety {
    max_deletions: Option<u32>,
    max_deletions_percent: Option<f64>,
    #[serde(default)]
    deprovision: Deprovision,
    delete_after: Option<String>,
    #[serde(default)]
    adopt_existing: bool,
}

fn safety_section(cx: &mut Ctx, v: Value) -> Safety {
    let raw: Option<RawSafety> = cx.de("safety", v);
    let raw = raw.unwrap_or(RawSafety {
        max_deletions: None,
        max_deletions_percent: None,
        deprovision: Deprovision::Deactivate,
        delete_after: None,
        adopt_existing: false,
    });
    let pct = raw.max_deletions_percent.unwrap_or(10.0);
    if !(0.0..=100.0).contains(&pct) || !pct.is_finite() {
        cx.problem("safety.max_deletions_percent", format!("{pct} is out of range 0..=100"));
    }
    let delete_after = raw
        .delete_after
        .as_deref()
        .map(|s| cx.duration("safety.delete_after", Some(s), Duration::from_secs(30 * 86400)));
    if delete_after.is_some() && raw.deprovision == Deprovision::Delete {
        cx.problem("safety.delete_after", "has no effect with deprovision = \"delete\" (users are deleted at once)");
    }
    Safety {
        max_deletions: raw.max_deletions.unwrap_or(10),
        max_deletions_percent: pct,
        deprovision: raw.deprovision,
        delete_after,
        adopt_existing: raw.adopt_existing,
    }
}

#[derive(Deserialize)]
struct RawStore {
    path: Option<PathBuf>,
}

fn store_section(cx: &mut Ctx, v: Value) -> StoreConfig {
    let raw: Option<RawStore> = cx.de("store", v);
    StoreConfig { path: raw.and_then(|r| r.path).unwrap_or_else(|| PathBuf::from("/var/lib/litellm-sync/state.db")) }
}

#[derive(Deserialize, Default)]
struct RawServer {
    listen: Option<String>,
    shutdown_grace: Option<String>,
    unready_after: Option<String>,
    probe_interval: Option<String>,
}

fn server_section(cx: &mut Ctx, v: Value) -> ServerConfig {
    let default: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 8080));
    let raw: RawServer = cx.de("server", v).unwrap_or_default();
    let shutdown_grace = cx.duration("server.shutdown_grace", raw.shutdown_grace.as_deref(), Duration::from_secs(30));
    let unready_after = cx.duration("server.unready_after", raw.unready_after.as_deref(), Duration::from_secs(900));
    let probe_interval = cx.duration("server.probe_interval", raw.probe_interval.as_deref(), Duration::from_secs(15));
    let listen = match raw.listen {
        None => default,
        Some(s) => s.parse().unwrap_or_else(|e| {
            cx.problem("server.listen", format!("{s:?} is not an address:port ({e})"));
            default
        }),
    };
    ServerConfig { listen, shutdown_grace, unready_after, probe_interval }
}

#[derive(Deserialize, Default)]
struct RawDrift {
    schedule: Option<String>,
    enabled: Option<bool>,
}

fn drift_section(cx: &mut Ctx, v: Value) -> DriftConfig {
    let raw: RawDrift = cx.de("drift", v).unwrap_or_default();
    let schedule = raw.schedule.unwrap_or_else(|| "0 7 * * * *".to_string());
    if let Err(e) = check_cron(&schedule) {
        cx.problem("drift.schedule", e);
    }
    DriftConfig { schedule: raw.enabled.unwrap_or(true).then_some(schedule) }
}

#[derive(Deserialize)]
struct RawLog {
    #[serde(default)]
    format: LogFormat,
    level: Option<String>,
    audit_path: Option<PathBuf>,
}

fn log_section(cx: &mut Ctx, v: Value) -> LogConfig {
    let raw: Option<RawLog> = cx.de("log", v);
    let raw = raw.unwrap_or(RawLog { format: LogFormat::Pretty, level: None, audit_path: None });
    let level = raw.level.unwrap_or_else(|| "info".to_string());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        cx.problem("log.level", format!("{level:?} is not a log filter (e.g. info, debug, litellm_sync=debug)"));
    }
    LogConfig { format: raw.format, level, audit_path: raw.audit_path }
}
