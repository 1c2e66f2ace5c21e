//! The identity model every source speaks and every later stage consumes.
//!
//! Sources translate the outside world into these types; nothing here does IO or knows about LiteLLM's wire
//! format (that lives in `litellm::types`).

pub mod dn;
#[cfg(test)]
pub(crate) mod fixtures;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The metadata key of the ownership marker every user and team litellm-sync creates carries (`reconcile`).
pub const MARKER_KEY: &str = "litellm_sync";
/// LiteLLM's own "deactivated" flag: keys of a user with `scim_active=false` stop working (litellm-api.md §6).
pub const SCIM_ACTIVE: &str = "scim_active";

/// LiteLLM's global user roles that an operator may assign, ordered from least to most privilege so that
/// `max()` picks the most privileged one (DESIGN.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    InternalUserViewer,
    InternalUser,
    ProxyAdminViewer,
    ProxyAdmin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::InternalUserViewer => "internal_user_viewer",
            Role::InternalUser => "internal_user",
            Role::ProxyAdminViewer => "proxy_admin_viewer",
            Role::ProxyAdmin => "proxy_admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "internal_user_viewer" => Some(Role::InternalUserViewer),
            "internal_user" => Some(Role::InternalUser),
            "proxy_admin_viewer" => Some(Role::ProxyAdminViewer),
            "proxy_admin" => Some(Role::ProxyAdmin),
            _ => None,
        }
    }
}

/// A team member's role inside one team (`Member.role` in LiteLLM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TeamRole {
    #[default]
    User,
    Admin,
}

impl TeamRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::User => "user",
            TeamRole::Admin => "admin",
        }
    }
}

/// The LiteLLM user settings a rule, a default or a per-user override can contribute. Every field is
/// optional: `None` means "this layer says nothing about it".
/// Unknown keys are reported by the config and file-source loaders (with `serde_ignored`), not rejected here,
/// so that one typo does not hide the other problems of the same entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Grants {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel_requests: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_max_budget: Option<BTreeMap<String, f64>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// One person as a source reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The source's immutable id (entryUUID, objectGUID, SCIM id). Never a mutable name.
    pub external_id: String,
    pub user_name: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub active: bool,
    /// Ids of groups the source says the user belongs to directly (e.g. from `memberOf`), in addition to the
    /// groups' own member lists.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Per-user attribute overrides; they beat every group rule.
    #[serde(default)]
    pub overrides: Grants,
}

/// One group as a source reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub external_id: String,
    pub name: String,
    /// Distinguished name for directory sources, used by rules that match on DN.
    pub dn: Option<String>,
    /// External ids of member users.
    #[serde(default)]
    pub members: Vec<String>,
    /// External ids of member groups (nested groups): their members are members of this group too.
    #[serde(default)]
    pub member_groups: Vec<String>,
}

/// The complete view of one source at one moment. Only a complete snapshot may lead to deprovisioning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub source: String,
    pub users: Vec<Identity>,
    pub groups: Vec<Group>,
    /// Entries the source returned but could not convert. They are doubt, never departures: a managed user whose
    /// id is listed here is kept as it was, and an entry without a readable id stops every deprovisioning of the
    /// source for this read (it could be anyone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<Unreadable>,
}

/// One entry a source saw but could not turn into an identity or group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreadable {
    /// The source's immutable id of the entry, when that much could be read.
    pub external_id: Option<String>,
    /// Whether the entry came from the user or the group search. A group listed here is not in
    /// `Snapshot::groups`; its members, and the members of every group nesting it, are not known for this read,
    /// so its team must not be stripped and the grants it gives must not be taken away.
    #[serde(default)]
    pub kind: EntryKind,
    /// Where it is (a DN, a record number), for people.
    pub entry: String,
    pub reason: String,
}

/// Which kind of entry an [`Unreadable`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    #[default]
    User,
    Group,
}

/// What sources send on the event channel (DESIGN.md §1). A full read produces one `Snapshot`; a push source
/// (SCIM) commits each change to the directory's rows itself, before it answers, and then says which of its
/// users the change touched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceEvent {
    Snapshot(Snapshot),
    /// The source's stored view changed; `users` are the external ids the change touched (their own record, or a
    /// group they are in).
    Changed {
        source: String,
        users: Vec<String>,
    },
}

impl Snapshot {
    /// An empty view of `source`.
    pub fn empty(source: &str) -> Snapshot {
        Snapshot { source: source.to_string(), users: Vec::new(), groups: Vec::new(), unreadable: Vec::new() }
    }
}

impl SourceEvent {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceEvent::Snapshot(_) => "snapshot",
            SourceEvent::Changed { .. } => "changed",
        }
    }

    pub fn source(&self) -> &str {
        match self {
            SourceEvent::Snapshot(s) => &s.source,
            SourceEvent::Changed { source, .. } => source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_order_is_privilege_order() {
        assert!(Role::ProxyAdmin > Role::ProxyAdminViewer);
        assert!(Role::ProxyAdminViewer > Role::InternalUser);
        assert!(Role::InternalUser > Role::InternalUserViewer);
        for r in [Role::ProxyAdmin, Role::ProxyAdminViewer, Role::InternalUser, Role::InternalUserViewer] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("org_admin"), None);
        assert_eq!(Role::parse("Proxy_Admin"), None);
    }
}
