//! Pure LDAP entry → identity conversion: DN normalization, objectGUID decoding, disabled-account detection,
//! per-user override attributes, and membership resolution. No IO; tested on fixture entries.
//!
//! An entry that cannot be converted becomes an [`Unreadable`], never a silent skip: a person whose entry was seen
//! but not understood has not left, and a group whose members cannot be read is not empty.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

use ldap3::asn1::StructureTag;

pub use crate::config::ldap::{AttrMap, MemberAttr, MemberKind, OVERRIDE_FIELDS};
use crate::config::validate_budget_duration;
pub use crate::model::dn::normalize_dn;
use crate::model::{EntryKind, Grants, Group, Identity, Role, Unreadable};

/// An entry as read from the directory: DN plus attribute values as raw bytes, keyed by lower-cased name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawEntry {
    pub dn: String,
    pub attrs: HashMap<String, Vec<Vec<u8>>>,
}

impl RawEntry {
    /// Builds an entry straight from a search result entry as the server encoded it (RFC 4511 §4.5.2:
    /// `[APPLICATION 4] SEQUENCE { objectName, attributes SEQUENCE OF SEQUENCE { type, vals SET OF value } }`).
    /// The values are moved, not copied or checked: whether one must be text is the converter's question, for the
    /// attributes it reads. Attribute names are lower-cased in place, and a name sent twice keeps every value in
    /// the order sent. `None` is an entry of any other shape, or whose DN or an attribute name is not UTF-8:
    /// malformed, so nobody can say whose it is.
    pub fn from_ber(entry: StructureTag) -> Option<RawEntry> {
        let mut parts = entry.match_id(4)?.expect_constructed()?.into_iter();
        let dn = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
        let list = parts.next()?.expect_constructed()?;
        let mut attrs: HashMap<String, Vec<Vec<u8>>> = HashMap::with_capacity(list.len());
        for attr in list {
            let mut attr = attr.expect_constructed()?.into_iter();
            let mut name = String::from_utf8(attr.next()?.expect_primitive()?).ok()?;
            name.make_ascii_lowercase();
            let vals = attr.next()?.expect_constructed()?;
            let mut values = Vec::with_capacity(vals.len());
            for v in vals {
                values.push(v.expect_primitive()?);
            }
            match attrs.entry(name) {
                Entry::Occupied(mut o) => o.get_mut().extend(values),
                Entry::Vacant(v) => {
                    v.insert(values);
                }
            }
        }
        Some(RawEntry { dn, attrs })
    }

    pub fn values(&self, attr: &str) -> &[Vec<u8>] {
        // Most configured names are lower case already: look them up without building a lower-cased copy.
        let found = if attr.bytes().any(|b| b.is_ascii_uppercase()) {
            self.attrs.get(&attr.to_ascii_lowercase())
        } else {
            self.attrs.get(attr)
        };
        found.map(Vec::as_slice).unwrap_or(&[])
    }

    fn first(&self, attr: &str) -> Option<&[u8]> {
        self.values(attr).first().map(Vec::as_slice)
    }

    /// The first value as UTF-8 text; `Err` when present but not UTF-8.
    fn text(&self, attr: &str) -> Result<Option<&str>, String> {
        match self.first(attr) {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b)
                .map(|s| Some(s.trim()).filter(|s| !s.is_empty()))
                .map_err(|_| format!("attribute {attr} is not valid UTF-8")),
        }
    }

    /// Every value as text, lossily (for DN lists, which are UTF-8 by definition).
    fn texts(&self, attr: &str) -> impl Iterator<Item = Cow<'_, str>> {
        self.values(attr).iter().map(|b| String::from_utf8_lossy(b))
    }
}

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

/// An entry that could not be converted, with its id when that much was readable.
fn unreadable(e: &RawEntry, kind: EntryKind, external_id: Option<String>, reason: String) -> Unreadable {
    Unreadable { external_id, kind, entry: e.dn.clone(), reason }
}

/// The entry's stable id; without one the entry could be anybody.
fn entry_id(e: &RawEntry, map: &AttrMap, kind: EntryKind) -> Result<String, Unreadable> {
    let raw = e.first(&map.id).ok_or_else(|| {
        unreadable(e, kind, None, format!("no {} value (missing, or hidden from the bind DN)", map.id))
    })?;
    canonical_id(&map.id, raw).map_err(|m| unreadable(e, kind, None, m))
}

/// At most 64 characters of a value, for a reason shown to people (values may be huge or hostile).
fn shown(v: &str) -> String {
    let mut s: String = v.chars().take(64).collect();
    if s.len() < v.len() {
        s.push('…');
    }
    format!("{s:?}")
}

/// Converts a user entry. `Err` is an entry that was seen but cannot be used: with its id when the id is
/// readable (no user name, an undecodable `userAccountControl`), without when the id itself is not. The caller
/// reports it in `Snapshot::unreadable`: doubt, never a departure.
pub fn user_from_entry(e: &RawEntry, map: &AttrMap) -> Result<UserRecord, Unreadable> {
    let external_id = entry_id(e, map, EntryKind::User)?;
    let user_name = match e.text(&map.user_name) {
        Ok(Some(n)) if !n.contains(char::is_control) => n.to_string(),
        Ok(Some(n)) => {
            let why = format!("{} {} contains a control character", map.user_name, shown(n));
            return Err(unreadable(e, EntryKind::User, Some(external_id), why));
        }
        Ok(None) => {
            let why = format!("no {} value (missing, empty, or hidden from the bind DN)", map.user_name);
            return Err(unreadable(e, EntryKind::User, Some(external_id), why));
        }
        Err(m) => return Err(unreadable(e, EntryKind::User, Some(external_id), m)),
    };
    let email = e.text(&map.email).unwrap_or(None).filter(|m| m.contains('@')).map(str::to_string);
    let display_name =
        e.first(&map.display_name).map(|b| String::from_utf8_lossy(b).trim().to_string()).filter(|s| !s.is_empty());
    let mut active = true;
    if map.user_account_control {
        // Without a readable userAccountControl nobody can tell whether the account is disabled.
        let why = match e.text("userAccountControl") {
            Ok(Some(uac)) => match uac.parse::<i64>() {
                Ok(v) => {
                    active = v & 0x2 == 0;
                    None
                }
                Err(_) => Some(format!("userAccountControl {} is not a number", shown(uac))),
            },
            Ok(None) => Some("no userAccountControl value (missing, or hidden from the bind DN)".to_string()),
            Err(m) => Some(m),
        };
        if let Some(why) = why {
            return Err(unreadable(e, EntryKind::User, Some(external_id), why));
        }
    }
    let mut warnings = Vec::new();
    let overrides = overrides_from_entry(e, map, &mut warnings);
    let member_of =
        map.member_of.as_deref().map(|a| e.texts(a).map(|d| normalize_dn(&d)).collect()).unwrap_or_default();
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
        let vals: Vec<String> = e.texts(attr).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
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
    /// Normalized DNs from the DN-valued member attributes (users or nested groups).
    pub member_dns: Vec<String>,
    /// Case-folded user names from the name-valued member attributes (`memberUid`).
    pub member_names: Vec<String>,
}

/// Converts a group entry. `Err` is a group whose member list cannot be read in full (a value that is not
/// UTF-8, a range-limited attribute) or whose name is not UTF-8, with its id; or a group without a readable id.
/// Such a group must not look empty: the caller reports it in `Snapshot::unreadable` and leaves it out of the
/// groups.
pub fn group_from_entry(e: &RawEntry, map: &AttrMap) -> Result<GroupRecord, Unreadable> {
    let external_id = entry_id(e, map, EntryKind::Group)?;
    let name = match e.text(&map.group_name) {
        Ok(n) => n.map_or_else(|| e.dn.clone(), str::to_string),
        Err(m) => return Err(unreadable(e, EntryKind::Group, Some(external_id), m)),
    };
    let mut member_dns = Vec::new();
    let mut member_names = Vec::new();
    for attr in &map.members {
        if let Some(ranged) = ranged_key(e, &attr.name) {
            let why = format!(
                "the server sent only part of {} ({ranged}): ranged retrieval is not supported, so its members are \
                 unknown",
                attr.name
            );
            return Err(unreadable(e, EntryKind::Group, Some(external_id), why));
        }
        for v in e.values(&attr.name) {
            let Ok(text) = std::str::from_utf8(v) else {
                let why = format!("a {} value is not valid UTF-8", attr.name);
                return Err(unreadable(e, EntryKind::Group, Some(external_id), why));
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            match attr.kind {
                MemberKind::Dn => member_dns.push(normalize_dn(text)),
                MemberKind::DnOptionalUid => member_dns.push(normalize_dn(strip_optional_uid(text))),
                MemberKind::Name => member_names.push(text.to_lowercase()),
            }
        }
    }
    Ok(GroupRecord { external_id, name, dn: e.dn.clone(), dn_norm: normalize_dn(&e.dn), member_dns, member_names })
}

/// An attribute key like `member;range=0-1499`: Active Directory's answer for a group with more values than its
/// MaxValRange, sent instead of the plain attribute.
fn ranged_key<'a>(e: &'a RawEntry, attr: &str) -> Option<&'a str> {
    let n = attr.len();
    e.attrs.keys().map(String::as_str).find(|k| {
        let b = k.as_bytes();
        b.len() > n && b[..n].eq_ignore_ascii_case(attr.as_bytes()) && b[n..].starts_with(b";range=")
    })
}

/// The DN of a Name and Optional UID value (RFC 4517 §3.3.21: `distinguishedName [ "#" BitString ]`, BitString =
/// `'` *("0" / "1") `'B`). The DN part is not escaped further, so only an unescaped `#` followed by a bit string
/// at the very end is the UID.
pub fn strip_optional_uid(v: &str) -> &str {
    let Some(rest) = v.strip_suffix("'B") else { return v };
    let Some(i) = rest.rfind("#'") else { return v };
    if !rest[i + 2..].bytes().all(|b| b == b'0' || b == b'1') {
        return v;
    }
    let backslashes = rest.as_bytes()[..i].iter().rev().take_while(|&&b| b == b'\\').count();
    if backslashes % 2 == 1 {
        return v;
    }
    v[..i].trim_end()
}

/// A user name folded for comparison, borrowed when it is folded already (the common case: no allocation).
fn fold(name: &str) -> Cow<'_, str> {
    if name.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.to_lowercase())
    }
}

/// Resolves member DNs, member names and member-of lists into user and nested-group ids. Members outside the user
/// and group searches (other OUs, service accounts) are not ours and are dropped; their count is returned.
/// `unreadable` groups (with an id) are known by DN: a group nesting one lists its id in `member_groups` (it is
/// not a foreign member, and not in the returned groups), so that the doubt stays visible upwards.
pub fn resolve(users: &mut [UserRecord], groups: &[GroupRecord], unreadable: &[Unreadable]) -> (Vec<Group>, usize) {
    let user_by_dn: HashMap<&str, usize> = users.iter().enumerate().map(|(i, u)| (u.dn_norm.as_str(), i)).collect();
    // Only posixGroup-style directories need the name index; most reads never build it.
    let user_by_name: HashMap<Cow<'_, str>, usize> = if groups.iter().any(|g| !g.member_names.is_empty()) {
        users.iter().enumerate().map(|(i, u)| (fold(&u.identity.user_name), i)).collect()
    } else {
        HashMap::new()
    };
    let doubtful: Vec<(String, &str)> = unreadable
        .iter()
        .filter(|u| u.kind == EntryKind::Group)
        .filter_map(|u| u.external_id.as_deref().map(|id| (normalize_dn(&u.entry), id)))
        .collect();
    let mut group_by_dn: HashMap<&str, &str> = doubtful.iter().map(|(dn, id)| (dn.as_str(), *id)).collect();
    group_by_dn.extend(groups.iter().map(|g| (g.dn_norm.as_str(), g.external_id.as_str())));
    let mut unknown = 0;
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let mut members = BTreeSet::new();
        let mut nested = BTreeSet::new();
        for m in &g.member_dns {
            if let Some(&i) = user_by_dn.get(m.as_str()) {
                members.insert(users[i].identity.external_id.clone());
            } else if let Some(sub) = group_by_dn.get(m.as_str()) {
                nested.insert(sub.to_string());
            } else {
                unknown += 1;
            }
        }
        for m in &g.member_names {
            match user_by_name.get(m.as_str()) {
                Some(&i) => {
                    members.insert(users[i].identity.external_id.clone());
                }
                None => unknown += 1,
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
            u.member_of.iter().filter_map(|dn| group_by_dn.get(dn.as_str()).map(|id| id.to_string())).collect();
        gs.sort();
        gs.dedup();
        u.identity.groups = gs;
    }
    (out, unknown)
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
