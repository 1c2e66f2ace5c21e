//! Which LDAP attributes carry what: the attribute map a `[[sources]] type = "ldap"` section resolves to (defaults
//! per directory flavour), read by the pure conversion in `sources::ldap::convert`.

use std::collections::BTreeMap;

/// Which attributes carry what (defaults per directory flavour in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct AttrMap {
    pub id: String,
    pub user_name: String,
    pub email: String,
    pub display_name: String,
    pub group_name: String,
    /// Group attributes listing members, each read by its kind (`member`, `uniqueMember`, `memberUid`).
    pub members: Vec<MemberAttr>,
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
        let mut a = vec![self.id.clone(), self.group_name.clone()];
        a.extend(self.members.iter().map(|m| m.name.clone()));
        a.sort();
        a.dedup();
        a
    }
}

/// How the values of one member attribute name their members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    /// Distinguished names of users or nested groups (`member`).
    Dn,
    /// RFC 4517 Name and Optional UID (`uniqueMember`): a DN, optionally followed by `#'0101'B`.
    DnOptionalUid,
    /// User names, compared with the user-name attribute case-insensitively as LDAP compares `uid` (`memberUid`
    /// of posixGroup).
    Name,
}

/// One group attribute that lists members, and how to read it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberAttr {
    pub name: String,
    pub kind: MemberKind,
}

impl MemberAttr {
    /// The kind by name: listed in `name_valued` (config `attributes.name_valued_members`, default `memberUid`)
    /// means user names; `uniqueMember` is a DN with an optional UID; anything else is a DN.
    pub fn classify(name: &str, name_valued: &[String]) -> MemberAttr {
        let kind = if name_valued.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            MemberKind::Name
        } else if name.eq_ignore_ascii_case("uniqueMember") {
            MemberKind::DnOptionalUid
        } else {
            MemberKind::Dn
        };
        MemberAttr { name: name.to_string(), kind }
    }
}

pub const OVERRIDE_FIELDS: &[&str] =
    &["role", "max_budget", "budget_duration", "models", "tpm_limit", "rpm_limit", "max_parallel_requests"];
