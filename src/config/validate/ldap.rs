//! `type = "ldap"` sources: servers and TLS, the bind account, where and what to search, and which attributes
//! carry what (`attributes`, with defaults per directory flavour).
//!
//! Only the LDAP source's own keys live here; the keys every source has are `sources.rs`'s. Filters are checked
//! with ldap3's parser, but nothing here connects to a server or reads the password file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ctx::{Ctx, Known};
use super::sources::SOURCE_COMMON;
use super::suggest::did_you_mean;
use crate::config::ldap::{AttrMap, MemberAttr, OVERRIDE_FIELDS};
use crate::config::{LdapFlavor, LdapScope, LdapSourceConfig};

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
    /// The one-attribute form of `members`, kept for configurations written before it.
    member: Option<String>,
    members: Option<Vec<String>>,
    name_valued_members: Option<Vec<String>>,
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

/// The LDAP-specific keys of the source at `path` (`rest`: all but the common ones).
pub(super) fn source(cx: &mut Ctx, path: &str, rest: Map<String, Value>) -> Option<LdapSourceConfig> {
    let known = Known::of::<RawLdap>().table("", SOURCE_COMMON).nested::<RawAttrs>("attributes");
    let raw: RawLdap = cx.de(path, Value::Object(rest), &known)?;
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
    let bind_password = cx.secret(
        path,
        "bind_password",
        raw.bind_password,
        raw.bind_password_file,
        "required: bind_password_file, or bind_password (e.g. from LITELLM_SYNC__SOURCES__<NAME>__BIND_PASSWORD)",
    );
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
        if ad {
            "(objectClass=group)"
        } else {
            "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))"
        }
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
        if !OVERRIDE_FIELDS.contains(&field.as_str()) {
            let hint = match did_you_mean(field, OVERRIDE_FIELDS.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? Use one of"),
                None => "use one of".to_string(),
            };
            cx.problem(
                format!("{path}.attributes.overrides.{field}"),
                format!("not an override field; {hint} {}", OVERRIDE_FIELDS.join(", ")),
            );
        }
    }
    let members = member_attrs(cx, path, ad, a.member, a.members, a.name_valued_members);
    let attributes = AttrMap {
        id: a.id.unwrap_or_else(|| if ad { "objectGUID" } else { "entryUUID" }.into()),
        user_name: a.user_name.unwrap_or_else(|| if ad { "sAMAccountName" } else { "uid" }.into()),
        email: a.email.unwrap_or_else(|| "mail".into()),
        display_name: a.display_name.unwrap_or_else(|| if ad { "displayName" } else { "cn" }.into()),
        group_name: a.group_name.unwrap_or_else(|| "cn".into()),
        members,
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

/// `attributes.members` (or the older one-attribute `attributes.member`) with the kind of each:
/// `name_valued_members` (default `memberUid`) hold user names, every other attribute DNs.
fn member_attrs(
    cx: &mut Ctx,
    path: &str,
    ad: bool,
    member: Option<String>,
    members: Option<Vec<String>>,
    name_valued: Option<Vec<String>>,
) -> Vec<MemberAttr> {
    let key = format!("{path}.attributes.members");
    let names = match (member, members) {
        (Some(_), Some(_)) => {
            cx.problem(
                format!("{path}.attributes.member"),
                "set either members (a list) or the older member (one attribute), not both",
            );
            return Vec::new();
        }
        (Some(m), None) => vec![m],
        (None, Some(ms)) => ms,
        (None, None) if ad => vec!["member".to_string()],
        (None, None) => vec!["member".to_string(), "uniqueMember".to_string(), "memberUid".to_string()],
    };
    if names.is_empty() {
        cx.problem(&key, "needs at least one group attribute that lists members, e.g. [\"member\"]");
    }
    for (i, n) in names.iter().enumerate() {
        if n.trim().is_empty() {
            cx.problem(format!("{key}[{i}]"), "must not be empty");
        } else if names[..i].iter().any(|m| m.eq_ignore_ascii_case(n)) {
            cx.problem(format!("{key}[{i}]"), format!("{n:?} is listed twice"));
        }
    }
    let name_valued = match name_valued {
        Some(list) => {
            for (i, n) in list.iter().enumerate() {
                if !names.iter().any(|m| m.eq_ignore_ascii_case(n)) {
                    cx.problem(
                        format!("{path}.attributes.name_valued_members[{i}]"),
                        format!("{n:?} is not one of attributes.members ({})", names.join(", ")),
                    );
                }
            }
            list
        }
        None => vec!["memberUid".to_string()],
    };
    names.iter().map(|n| MemberAttr::classify(n.trim(), &name_valued)).collect()
}
