//! Pure LDAP entry → identity conversion: DN normalization, objectGUID decoding, disabled-account detection,
//! per-user override attributes, and membership resolution. No IO; tested on fixture entries.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::config::validate_budget_duration;
use crate::model::{Grants, Group, Identity, Role};

/// An entry as read from the directory: DN plus attribute values as raw bytes, keyed by lower-cased name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawEntry {
    pub dn: String,
    pub attrs: HashMap<String, Vec<Vec<u8>>>,
}

impl RawEntry {
    /// Builds an entry from ldap3's split text/binary maps (values that are not UTF-8 arrive as binary).
    pub fn from_maps(dn: String, text: HashMap<String, Vec<String>>, bin: HashMap<String, Vec<Vec<u8>>>) -> RawEntry {
        let mut attrs: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        for (k, vs) in text {
            attrs.entry(k.to_ascii_lowercase()).or_default().extend(vs.into_iter().map(String::into_bytes));
        }
        for (k, vs) in bin {
            attrs.entry(k.to_ascii_lowercase()).or_default().extend(vs);
        }
        RawEntry { dn, attrs }
    }

    pub fn values(&self, attr: &str) -> &[Vec<u8>] {
        self.attrs.get(&attr.to_ascii_lowercase()).map(Vec::as_slice).unwrap_or(&[])
    }

    fn first(&self, attr: &str) -> Option<&[u8]> {
        self.values(attr).first().map(Vec::as_slice)
    }

    /// The first value as UTF-8 text; `Err` when present but not UTF-8.
    fn text(&self, attr: &str) -> Result<Option<String>, String> {
        match self.first(attr) {
            None => Ok(None),
            Some(b) => String::from_utf8(b.to_vec())
                .map(|s| Some(s.trim().to_string()).filter(|s| !s.is_empty()))
                .map_err(|_| format!("attribute {attr} is not valid UTF-8")),
        }
    }

    /// Every value as text, lossily (for DN lists, which are UTF-8 by definition).
    fn texts(&self, attr: &str) -> Vec<String> {
        self.values(attr).iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()
    }
}

/// Which attributes carry what (defaults per directory flavour in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct AttrMap {
    pub id: String,
    pub user_name: String,
    pub email: String,
    pub display_name: String,
    pub group_name: String,
    /// Group attribute listing members: `member`, `uniqueMember` (DNs) or `memberUid` (user names).
    pub member: String,
    /// Optional user attribute listing the user's groups (AD and the OpenLDAP memberof overlay).
    pub member_of: Option<String>,
    /// Read `userAccountControl` and treat bit 2 (ACCOUNTDISABLE) as disabled.
    pub user_account_control: bool,
    /// Override field (`max_budget`, `models`, …) → attribute.
    pub overrides: BTreeMap<String, String>,
}

impl AttrMap {
    /// Attributes to request for users.
    pub fn user_attrs(&self) -> Vec<String> {
        let mut a = vec![self.id.clone(), self.user_name.clone(), self.email.clone(), self.display_name.clone()];
        a.extend(self.member_of.clone());
        if self.user_account_control {
            a.push("userAccountControl".into());
        }
        a.extend(self.overrides.values().cloned());
        a.sort();
        a.dedup();
        a
    }

    pub fn group_attrs(&self) -> Vec<String> {
        let mut a = vec![self.id.clone(), self.group_name.clone(), self.member.clone()];
        a.sort();
        a.dedup();
        a
    }

    fn member_is_dn(&self) -> bool {
        !self.member.eq_ignore_ascii_case("memberUid")
    }
}

pub const OVERRIDE_FIELDS: &[&str] =
    &["role", "max_budget", "budget_duration", "models", "tpm_limit", "rpm_limit", "max_parallel_requests"];

/// Canonical text of a stable id: objectGUID (16 bytes) in its usual hyphenated form (Microsoft byte order);
/// any other UTF-8 value (entryUUID, ipaUniqueID) lower-cased and trimmed.
pub fn canonical_id(attr: &str, raw: &[u8]) -> Result<String, String> {
    if attr.eq_ignore_ascii_case("objectGUID") {
        let b: [u8; 16] = raw.try_into().map_err(|_| format!("objectGUID has {} bytes, expected 16", raw.len()))?;
        return Ok(format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
        ));
    }
    let s = std::str::from_utf8(raw).map_err(|_| format!("{attr} is not valid UTF-8"))?.trim().to_lowercase();
    if s.is_empty() {
        return Err(format!("{attr} is empty"));
    }
    Ok(s)
}

/// Normalizes a DN for comparison (RFC 4514): RDNs split on unescaped commas, spaces around separators
/// dropped, escapes (`\,` and `\2C`) decoded and re-escaped uniformly, case folded.
///
/// Called for every user DN and every member value (hundreds of thousands per large snapshot), so plain ASCII
/// DNs without escapes take a single-pass fast path; anything else takes the general one.
pub fn normalize_dn(dn: &str) -> String {
    fast_normalize_dn(dn).unwrap_or_else(|| slow_normalize_dn(dn))
}

fn fast_normalize_dn(dn: &str) -> Option<String> {
    if !dn.is_ascii() || dn.bytes().any(|b| matches!(b, b'\\' | b'"' | b'+' | b'<' | b'>')) {
        return None;
    }
    let mut out = String::with_capacity(dn.len());
    for (i, rdn) in dn.split([',', ';']).enumerate() {
        let (ty, val) = rdn.split_once('=')?;
        if val.contains('=') {
            return None;
        }
        if i > 0 {
            out.push(',');
        }
        out.push_str(&ty.trim_matches(' ').to_ascii_lowercase());
        out.push('=');
        out.push_str(&val.trim_matches(' ').to_ascii_lowercase());
    }
    Some(out)
}

fn slow_normalize_dn(dn: &str) -> String {
    let mut rdns: Vec<String> = Vec::new();
    let mut cur = String::new();
    // (char, was_escaped)
    let mut chars: Vec<(char, bool)> = Vec::new();
    let bytes: Vec<char> = dn.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == '\\' && i + 1 < bytes.len() {
            let (a, b) = (bytes[i + 1], bytes.get(i + 2).copied().unwrap_or(' '));
            if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() {
                // Collect a run of hex escapes (a UTF-8 sequence) and decode it.
                let mut raw = Vec::new();
                while bytes.get(i) == Some(&'\\')
                    && bytes.get(i + 1).is_some_and(char::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(char::is_ascii_hexdigit)
                {
                    let h: String = bytes[i + 1..i + 3].iter().collect();
                    raw.push(u8::from_str_radix(&h, 16).unwrap_or(b'?'));
                    i += 3;
                }
                for ch in String::from_utf8_lossy(&raw).chars() {
                    chars.push((ch, true));
                }
                continue;
            }
            chars.push((a, true));
            i += 2;
            continue;
        }
        chars.push((c, false));
        i += 1;
    }
    let flush = |cur: &mut String, rdns: &mut Vec<String>| {
        rdns.push(normalize_rdn(cur));
        cur.clear();
    };
    for (c, esc) in chars {
        if !esc && (c == ',' || c == ';') {
            flush(&mut cur, &mut rdns);
        } else if esc {
            cur.push('\u{0}');
            cur.push(c);
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() || !rdns.is_empty() {
        flush(&mut cur, &mut rdns);
    }
    rdns.join(",")
}

/// One RDN (escaped characters arrive prefixed with NUL): `type=value` with type and value trimmed and
/// lower-cased, and special characters escaped.
fn normalize_rdn(raw: &str) -> String {
    let mut out = String::new();
    let mut it = raw.chars().peekable();
    let mut text = String::new();
    let mut escaped_positions = Vec::new();
    while let Some(c) = it.next() {
        if c == '\u{0}' {
            if let Some(n) = it.next() {
                escaped_positions.push(text.chars().count());
                text.push(n);
            }
        } else {
            text.push(c);
        }
    }
    let chars: Vec<char> = text.chars().collect();
    // Trim unescaped spaces at both ends.
    let (mut s, mut e) = (0, chars.len());
    while s < e && chars[s] == ' ' && !escaped_positions.contains(&s) {
        s += 1;
    }
    while e > s && chars[e - 1] == ' ' && !escaped_positions.contains(&(e - 1)) {
        e -= 1;
    }
    let mut seen_eq = false;
    let mut pending_space = false;
    for (idx, c) in chars.iter().enumerate().take(e).skip(s) {
        let esc = escaped_positions.contains(&idx);
        if !esc && *c == '=' && !seen_eq {
            seen_eq = true;
            while out.ends_with(' ') {
                out.pop();
            }
            out.push('=');
            pending_space = true;
            continue;
        }
        if pending_space && *c == ' ' && !esc {
            continue;
        }
        pending_space = false;
        let lc: String = c.to_lowercase().collect();
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push_str(&lc);
    }
    out
}

/// What one user entry became.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub identity: Identity,
    pub dn_norm: String,
    /// Normalized DNs from the member-of attribute, resolved to group ids later.
    pub member_of: Vec<String>,
    /// Override attributes that were present but unusable (reported, the entry is still imported).
    pub warnings: Vec<String>,
}

/// Converts a user entry. `Err` means the entry is unusable (no stable id, no user name, undecodable id) and
/// is skipped and counted by the caller.
pub fn user_from_entry(e: &RawEntry, map: &AttrMap) -> Result<UserRecord, String> {
    let id_raw = e.first(&map.id).ok_or_else(|| format!("{}: no {} attribute", e.dn, map.id))?;
    let external_id = canonical_id(&map.id, id_raw).map_err(|m| format!("{}: {m}", e.dn))?;
    let user_name = e
        .text(&map.user_name)
        .map_err(|m| format!("{}: {m}", e.dn))?
        .ok_or_else(|| format!("{}: no {} attribute", e.dn, map.user_name))?;
    let email = e.text(&map.email).unwrap_or(None).filter(|m| m.contains('@'));
    let display_name =
        e.first(&map.display_name).map(|b| String::from_utf8_lossy(b).trim().to_string()).filter(|s| !s.is_empty());
    let mut active = true;
    if map.user_account_control {
        if let Some(uac) = e.text("userAccountControl").ok().flatten() {
            match uac.parse::<i64>() {
                Ok(v) => active = v & 0x2 == 0,
                Err(_) => return Err(format!("{}: userAccountControl {uac:?} is not a number", e.dn)),
            }
        }
    }
    let mut warnings = Vec::new();
    let overrides = overrides_from_entry(e, map, &mut warnings);
    let member_of =
        map.member_of.as_deref().map(|a| e.texts(a).iter().map(|d| normalize_dn(d)).collect()).unwrap_or_default();
    Ok(UserRecord {
        identity: Identity { external_id, user_name, email, display_name, active, groups: Vec::new(), overrides },
        dn_norm: normalize_dn(&e.dn),
        member_of,
        warnings,
    })
}

fn overrides_from_entry(e: &RawEntry, map: &AttrMap, warnings: &mut Vec<String>) -> Grants {
    let mut g = Grants::default();
    for (field, attr) in &map.overrides {
        let vals: Vec<String> =
            e.texts(attr).into_iter().map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
        let Some(first) = vals.first() else { continue };
        let bad = |w: &mut Vec<String>, why: &str| {
            w.push(format!("{}: override {field} from {attr} = {first:?} ignored: {why}", e.dn))
        };
        match field.as_str() {
            "role" => match Role::parse(first) {
                Some(r) => g.role = Some(r),
                None => bad(warnings, "not a LiteLLM role"),
            },
            "max_budget" => match first.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => g.max_budget = Some(v),
                _ => bad(warnings, "not a non-negative number"),
            },
            "budget_duration" => match validate_budget_duration(first) {
                Ok(()) => g.budget_duration = Some(first.clone()),
                Err(m) => bad(warnings, &m),
            },
            "models" => g.models = Some(vals.clone()),
            "tpm_limit" | "rpm_limit" | "max_parallel_requests" => match first.parse::<u64>() {
                Ok(v) => match field.as_str() {
                    "tpm_limit" => g.tpm_limit = Some(v),
                    "rpm_limit" => g.rpm_limit = Some(v),
                    _ => g.max_parallel_requests = Some(v),
                },
                Err(_) => bad(warnings, "not a non-negative integer"),
            },
            _ => {}
        }
    }
    g
}

/// A group entry before its members are resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    pub external_id: String,
    pub name: String,
    pub dn: String,
    pub dn_norm: String,
    /// Normalized member DNs, or raw user names for `memberUid`.
    pub members: Vec<String>,
}

pub fn group_from_entry(e: &RawEntry, map: &AttrMap) -> Result<GroupRecord, String> {
    let id_raw = e.first(&map.id).ok_or_else(|| format!("{}: no {} attribute", e.dn, map.id))?;
    let external_id = canonical_id(&map.id, id_raw).map_err(|m| format!("{}: {m}", e.dn))?;
    let name = e.text(&map.group_name).map_err(|m| format!("{}: {m}", e.dn))?.unwrap_or_else(|| e.dn.clone());
    let members = e
        .texts(&map.member)
        .into_iter()
        .map(|m| if map.member_is_dn() { normalize_dn(&m) } else { m.trim().to_string() })
        .filter(|m| !m.is_empty())
        .collect();
    Ok(GroupRecord { external_id, name, dn: e.dn.clone(), dn_norm: normalize_dn(&e.dn), members })
}

/// Resolves member DNs (or memberUid names) and member-of lists into user and nested-group ids. Members
/// outside the user and group searches (other OUs, service accounts) are not ours and are dropped; their count
/// is returned.
pub fn resolve(users: &mut [UserRecord], groups: &[GroupRecord], map: &AttrMap) -> (Vec<Group>, usize) {
    let user_by_dn: HashMap<&str, usize> = users.iter().enumerate().map(|(i, u)| (u.dn_norm.as_str(), i)).collect();
    let user_by_name: HashMap<&str, usize> =
        users.iter().enumerate().map(|(i, u)| (u.identity.user_name.as_str(), i)).collect();
    let group_by_dn: HashMap<&str, &GroupRecord> = groups.iter().map(|g| (g.dn_norm.as_str(), g)).collect();
    let mut unknown = 0;
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let mut members = BTreeSet::new();
        let mut nested = BTreeSet::new();
        for m in &g.members {
            if map.member_is_dn() {
                if let Some(&i) = user_by_dn.get(m.as_str()) {
                    members.insert(users[i].identity.external_id.clone());
                } else if let Some(sub) = group_by_dn.get(m.as_str()) {
                    nested.insert(sub.external_id.clone());
                } else {
                    unknown += 1;
                }
            } else if let Some(&i) = user_by_name.get(m.as_str()) {
                members.insert(users[i].identity.external_id.clone());
            } else {
                unknown += 1;
            }
        }
        out.push(Group {
            external_id: g.external_id.clone(),
            name: g.name.clone(),
            dn: Some(g.dn.clone()),
            members: members.into_iter().collect(),
            member_groups: nested.into_iter().collect(),
        });
    }
    for u in users.iter_mut() {
        let mut gs: Vec<String> =
            u.member_of.iter().filter_map(|dn| group_by_dn.get(dn.as_str()).map(|g| g.external_id.clone())).collect();
        gs.sort();
        gs.dedup();
        u.identity.groups = gs;
    }
    (out, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dn: &str, attrs: &[(&str, &[&[u8]])]) -> RawEntry {
        RawEntry {
            dn: dn.into(),
            attrs: attrs
                .iter()
                .map(|(k, vs)| (k.to_ascii_lowercase(), vs.iter().map(|v| v.to_vec()).collect()))
                .collect(),
        }
    }

    fn openldap() -> AttrMap {
        AttrMap {
            id: "entryUUID".into(),
            user_name: "uid".into(),
            email: "mail".into(),
            display_name: "cn".into(),
            group_name: "cn".into(),
            member: "member".into(),
            member_of: None,
            user_account_control: false,
            overrides: [
                ("max_budget".to_string(), "llmBudget".to_string()),
                ("models".to_string(), "llmModel".to_string()),
            ]
            .into(),
        }
    }

    fn ad() -> AttrMap {
        AttrMap {
            id: "objectGUID".into(),
            user_name: "sAMAccountName".into(),
            email: "mail".into(),
            display_name: "displayName".into(),
            member_of: Some("memberOf".into()),
            user_account_control: true,
            overrides: BTreeMap::new(),
            ..openldap()
        }
    }

    #[test]
    fn openldap_user() {
        let e = entry(
            "uid=alice,ou=People,dc=example,dc=org",
            &[
                ("entryUUID", &[b"5D1C2D3A-0000-4000-8000-00000000AB01"]),
                ("uid", &[b"alice"]),
                ("mail", &[b"alice@example.org", b"a@example.org"]),
                ("cn", &[b"Alice Liddell"]),
                ("llmBudget", &[b"42.5"]),
                ("llmModel", &[b"gpt-4o", b"claude"]),
            ],
        );
        let u = user_from_entry(&e, &openldap()).unwrap();
        assert_eq!(u.identity.external_id, "5d1c2d3a-0000-4000-8000-00000000ab01");
        assert_eq!(u.identity.email.as_deref(), Some("alice@example.org"), "first of a multi-valued mail");
        assert_eq!(u.identity.display_name.as_deref(), Some("Alice Liddell"));
        assert!(u.identity.active);
        assert_eq!(u.identity.overrides.max_budget, Some(42.5));
        assert_eq!(u.identity.overrides.models, Some(vec!["gpt-4o".into(), "claude".into()]));
        assert_eq!(u.dn_norm, "uid=alice,ou=people,dc=example,dc=org");
    }

    #[test]
    fn ad_user_guid_and_disabled_flag() {
        // objectGUID bytes as AD stores them, and the textual form AD tools print.
        let guid: [u8; 16] =
            [0x3a, 0x2d, 0x1c, 0x5d, 0x02, 0x01, 0x04, 0x03, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xab, 0x01];
        let e = entry(
            "CN=Bob Builder,CN=Users,DC=example,DC=org",
            &[
                ("objectGUID", &[&guid]),
                ("sAMAccountName", &[b"bob"]),
                ("displayName", &[b"Bob Builder"]),
                ("userAccountControl", &[b"514"]),
                ("memberOf", &[b"CN=LLM Users,OU=Groups,DC=example,DC=org"]),
            ],
        );
        let u = user_from_entry(&e, &ad()).unwrap();
        assert_eq!(u.identity.external_id, "5d1c2d3a-0102-0304-8000-00000000ab01");
        assert!(!u.identity.active, "514 = NORMAL_ACCOUNT | ACCOUNTDISABLE");
        assert_eq!(u.identity.email, None, "missing mail is fine");
        assert_eq!(u.member_of, vec!["cn=llm users,ou=groups,dc=example,dc=org"]);
        let mut enabled = e.clone();
        enabled.attrs.insert("useraccountcontrol".into(), vec![b"512".to_vec()]);
        assert!(user_from_entry(&enabled, &ad()).unwrap().identity.active);
        enabled.attrs.insert("useraccountcontrol".into(), vec![b"lots".to_vec()]);
        assert!(user_from_entry(&enabled, &ad()).is_err());
    }

    #[test]
    fn unusable_entries_are_rejected_with_a_reason() {
        let m = openldap();
        assert!(user_from_entry(&entry("uid=x", &[("uid", &[b"x"])]), &m).unwrap_err().contains("no entryUUID"));
        assert!(user_from_entry(&entry("uid=x", &[("entryUUID", &[b"1"])]), &m).unwrap_err().contains("no uid"));
        assert!(user_from_entry(&entry("uid=x", &[("entryUUID", &[b"1"]), ("uid", &[b"\xff\xfe"])]), &m)
            .unwrap_err()
            .contains("not valid UTF-8"));
        assert!(user_from_entry(&entry("uid=x", &[("entryUUID", &[b"  "]), ("uid", &[b"x"])]), &m).is_err());
        assert!(user_from_entry(&entry("cn=x", &[("objectGUID", &[b"short"]), ("sAMAccountName", &[b"x"])]), &ad())
            .unwrap_err()
            .contains("16"));
    }

    #[test]
    fn non_utf8_display_names_are_kept_lossily_and_bad_overrides_reported() {
        let e = entry(
            "uid=c,dc=x",
            &[
                ("entryUUID", &[b"1"]),
                ("uid", &[b"c"]),
                ("cn", &[b"Caf\xe9"]),
                ("llmBudget", &[b"-3"]),
                ("mail", &[b"not-an-address"]),
            ],
        );
        let u = user_from_entry(&e, &openldap()).unwrap();
        assert_eq!(u.identity.display_name.as_deref(), Some("Caf\u{fffd}"));
        assert_eq!(u.identity.overrides.max_budget, None);
        assert_eq!(u.identity.email, None);
        assert!(u.warnings[0].contains("override max_budget"), "{:?}", u.warnings);
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_one() {
        for dn in [
            "CN=Alice Smith , OU=People,DC=Example,DC=ORG",
            "uid=user00042,ou=people,dc=example,dc=org",
            "cn = a ,ou= b",
            "cn=a;dc=x",
            " cn=a , dc=x ",
            "CN=Group With  Two  Spaces,DC=x",
        ] {
            assert_eq!(fast_normalize_dn(dn), Some(slow_normalize_dn(dn)), "{dn:?}");
        }
        for dn in ["cn=a,,dc=x", "cn=a=b,dc=x", "cn=a\\,b", "cn=\"q\"", "cn=a+uid=b", "cn=jürgen", "nodn", ""] {
            assert_eq!(fast_normalize_dn(dn), None, "{dn:?} must take the general path");
        }
    }

    #[test]
    fn dns_normalize() {
        assert_eq!(
            normalize_dn("CN=Alice Smith , OU=People,DC=Example,DC=ORG"),
            "cn=alice smith,ou=people,dc=example,dc=org"
        );
        assert_eq!(normalize_dn("cn = a ,ou= b"), "cn=a,ou=b");
        // An escaped comma stays inside the value, in either spelling.
        assert_eq!(normalize_dn("CN=Smith\\, John,OU=x"), normalize_dn("cn=smith\\2C john,ou=x"));
        assert_eq!(normalize_dn("CN=Smith\\, John,OU=x"), "cn=smith\\, john,ou=x");
        // Escaped trailing space is significant; hex-escaped UTF-8 decodes.
        assert_ne!(normalize_dn("cn=a\\ ,dc=x"), normalize_dn("cn=a,dc=x"));
        assert_eq!(normalize_dn("cn=J\\C3\\BCrgen,dc=x"), "cn=jürgen,dc=x");
        assert_eq!(normalize_dn("cn=a;dc=x"), "cn=a,dc=x");
        assert_eq!(normalize_dn(""), "");
        assert_eq!(normalize_dn("cn=trailing\\"), "cn=trailing\\\\", "a dangling backslash is kept, escaped");
    }

    #[test]
    fn membership_by_dn_nested_and_member_uid() {
        let m = openldap();
        let mut users = vec![
            user_from_entry(&entry("uid=alice,ou=people,dc=x", &[("entryUUID", &[b"u1"]), ("uid", &[b"alice"])]), &m)
                .unwrap(),
            user_from_entry(&entry("uid=bob,ou=people,dc=x", &[("entryUUID", &[b"u2"]), ("uid", &[b"bob"])]), &m)
                .unwrap(),
        ];
        let eng = group_from_entry(
            &entry(
                "cn=eng,ou=groups,dc=x",
                &[
                    ("entryUUID", &[b"g1"]),
                    ("cn", &[b"eng"]),
                    ("member", &[b"UID=Alice, OU=People,DC=x", b"cn=ghost,dc=x"]),
                ],
            ),
            &m,
        )
        .unwrap();
        let all = group_from_entry(
            &entry(
                "cn=all,ou=groups,dc=x",
                &[
                    ("entryUUID", &[b"g2"]),
                    ("cn", &[b"all"]),
                    ("member", &[b"cn=eng,ou=groups,dc=x", b"uid=bob,ou=people,dc=x"]),
                ],
            ),
            &m,
        )
        .unwrap();
        let (groups, unknown) = resolve(&mut users, &[eng, all], &m);
        assert_eq!(groups[0].members, vec!["u1"]);
        assert_eq!(groups[1].members, vec!["u2"]);
        assert_eq!(groups[1].member_groups, vec!["g1"]);
        assert_eq!(unknown, 1);

        let posix = AttrMap { member: "memberUid".into(), ..openldap() };
        let g = group_from_entry(
            &entry("cn=p,dc=x", &[("entryUUID", &[b"g3"]), ("memberUid", &[b"bob", b"nobody"])]),
            &posix,
        )
        .unwrap();
        assert_eq!(g.name, "cn=p,dc=x", "no cn: the DN names the group");
        let (groups, unknown) = resolve(&mut users, &[g], &posix);
        assert_eq!(groups[0].members, vec!["u2"]);
        assert_eq!(unknown, 1);
    }

    #[test]
    fn member_of_resolves_to_group_ids() {
        let m = ad();
        let guid = |n: u8| -> Vec<u8> {
            let mut g = vec![0u8; 16];
            g[15] = n;
            g
        };
        let (g1, u1) = (guid(1), guid(2));
        let mut users = vec![user_from_entry(
            &entry(
                "CN=A,CN=Users,DC=x",
                &[
                    ("objectGUID", &[&u1]),
                    ("sAMAccountName", &[b"a"]),
                    ("memberOf", &[b"CN=G,CN=Users,DC=x", b"CN=Elsewhere,DC=y"]),
                ],
            ),
            &m,
        )
        .unwrap()];
        let g = group_from_entry(&entry("CN=G,CN=Users,DC=x", &[("objectGUID", &[&g1]), ("cn", &[b"G"])]), &m).unwrap();
        let gid = g.external_id.clone();
        resolve(&mut users, &[g], &m);
        assert_eq!(users[0].identity.groups, vec![gid]);
    }

    #[test]
    fn attribute_lists() {
        let a = ad().user_attrs();
        for want in ["objectGUID", "sAMAccountName", "memberOf", "userAccountControl", "mail", "displayName"] {
            assert!(a.iter().any(|x| x == want), "{want} in {a:?}");
        }
        assert_eq!(openldap().group_attrs(), vec!["cn", "entryUUID", "member"]);
    }
}
