//! The identity model every source speaks and every later stage consumes.
//!
//! Sources translate the outside world into these types; nothing here does IO or knows about LiteLLM's wire
//! format (that lives in `litellm::types`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
}

/// What sources send on the event channel (DESIGN.md §1). A full read produces one `Snapshot`; push sources
/// (SCIM) produce deltas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceEvent {
    Snapshot(Snapshot),
    UserUpserted { source: String, user: Identity },
    UserRemoved { source: String, external_id: String },
    GroupUpserted { source: String, group: Group },
    GroupRemoved { source: String, external_id: String },
}

impl Snapshot {
    /// An empty view of `source` (the start for a push source that has sent nothing yet).
    pub fn empty(source: &str) -> Snapshot {
        Snapshot { source: source.to_string(), users: Vec::new(), groups: Vec::new() }
    }

    /// Folds one event into this view of the source: a snapshot replaces it, a delta changes one user or group
    /// (and drops references to what it removes). Events of another source are ignored.
    pub fn apply(&mut self, ev: SourceEvent) {
        if ev.source() != self.source {
            return;
        }
        match ev {
            SourceEvent::Snapshot(s) => *self = s,
            SourceEvent::UserUpserted { user, .. } => {
                match self.users.iter_mut().find(|u| u.external_id == user.external_id) {
                    Some(u) => *u = user,
                    None => self.users.push(user),
                }
            }
            SourceEvent::UserRemoved { external_id, .. } => {
                self.users.retain(|u| u.external_id != external_id);
                for g in &mut self.groups {
                    g.members.retain(|m| *m != external_id);
                }
            }
            SourceEvent::GroupUpserted { group, .. } => {
                match self.groups.iter_mut().find(|g| g.external_id == group.external_id) {
                    Some(g) => *g = group,
                    None => self.groups.push(group),
                }
            }
            SourceEvent::GroupRemoved { external_id, .. } => {
                self.groups.retain(|g| g.external_id != external_id);
                for g in &mut self.groups {
                    g.member_groups.retain(|m| *m != external_id);
                }
                for u in &mut self.users {
                    u.groups.retain(|m| *m != external_id);
                }
            }
        }
    }
}

impl SourceEvent {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceEvent::Snapshot(_) => "snapshot",
            SourceEvent::UserUpserted { .. } => "user_upserted",
            SourceEvent::UserRemoved { .. } => "user_removed",
            SourceEvent::GroupUpserted { .. } => "group_upserted",
            SourceEvent::GroupRemoved { .. } => "group_removed",
        }
    }

    pub fn source(&self) -> &str {
        match self {
            SourceEvent::Snapshot(s) => &s.source,
            SourceEvent::UserUpserted { source, .. }
            | SourceEvent::UserRemoved { source, .. }
            | SourceEvent::GroupUpserted { source, .. }
            | SourceEvent::GroupRemoved { source, .. } => source,
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

    fn user(id: &str, name: &str) -> Identity {
        Identity {
            external_id: id.into(),
            user_name: name.into(),
            email: None,
            display_name: None,
            active: true,
            groups: vec![],
            overrides: Grants::default(),
        }
    }

    fn group(id: &str, members: &[&str], nested: &[&str]) -> Group {
        Group {
            external_id: id.into(),
            name: id.into(),
            dn: None,
            members: members.iter().map(|s| s.to_string()).collect(),
            member_groups: nested.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn deltas_fold_into_the_view() {
        let src = "scim".to_string();
        let mut s = Snapshot::empty("scim");
        let ev = |e: SourceEvent| e;
        s.apply(ev(SourceEvent::UserUpserted { source: src.clone(), user: user("1", "ann") }));
        s.apply(ev(SourceEvent::UserUpserted { source: src.clone(), user: user("2", "bob") }));
        s.apply(ev(SourceEvent::GroupUpserted { source: src.clone(), group: group("g", &["1", "2"], &[]) }));
        s.apply(ev(SourceEvent::GroupUpserted { source: src.clone(), group: group("top", &[], &["g"]) }));
        // The same user twice: the last state wins (coalescing).
        let mut renamed = user("1", "ann.b");
        renamed.active = false;
        s.apply(ev(SourceEvent::UserUpserted { source: src.clone(), user: renamed }));
        assert_eq!(s.users.len(), 2);
        assert_eq!((s.users[0].user_name.as_str(), s.users[0].active), ("ann.b", false));
        s.apply(ev(SourceEvent::UserRemoved { source: src.clone(), external_id: "2".into() }));
        assert_eq!(s.groups[0].members, vec!["1"]);
        s.apply(ev(SourceEvent::GroupRemoved { source: src.clone(), external_id: "g".into() }));
        assert_eq!(s.groups.len(), 1);
        assert!(s.groups[0].member_groups.is_empty());
        // Another source's event changes nothing; a snapshot replaces the view.
        s.apply(ev(SourceEvent::UserRemoved { source: "other".into(), external_id: "1".into() }));
        assert_eq!(s.users.len(), 1);
        s.apply(ev(SourceEvent::Snapshot(Snapshot::empty("scim"))));
        assert!(s.users.is_empty() && s.groups.is_empty());
    }
}
