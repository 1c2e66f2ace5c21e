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

    /// SHA-256 (hex) of the view's content, whatever the order its entries, a user's groups and a group's members
    /// were read in: two views with one digest map to the same desired state. The daemon compares a fresh read's
    /// digest with the one of its last run that found nothing to do, and skips planning an unchanged read.
    pub fn digest(&self) -> String {
        use ring::digest::{digest, Context, SHA256};
        let mut items: Vec<[u8; 32]> = Vec::with_capacity(self.users.len() + self.groups.len() + self.unreadable.len());
        let mut buf: Vec<u8> = Vec::with_capacity(512);
        let mut add = |buf: &[u8]| {
            let mut a = [0u8; 32];
            a.copy_from_slice(digest(&SHA256, buf).as_ref());
            items.push(a);
        };
        for u in &self.users {
            let groups = sorted(&u.groups);
            let view = (&u.external_id, &u.user_name, &u.email, &u.display_name, u.active, groups, &u.overrides);
            canonical(&mut buf, b'u', &view);
            add(&buf);
        }
        for g in &self.groups {
            canonical(&mut buf, b'g', &(&g.external_id, &g.name, &g.dn, sorted(&g.members), sorted(&g.member_groups)));
            add(&buf);
        }
        for x in &self.unreadable {
            canonical(&mut buf, b'x', x);
            add(&buf);
        }
        items.sort_unstable();
        let mut cx = Context::new(&SHA256);
        cx.update(self.source.as_bytes());
        cx.update(&[0]);
        for i in &items {
            cx.update(i);
        }
        hex(cx.finish().as_ref())
    }
}

/// The strings in order, borrowed.
fn sorted(v: &[String]) -> Vec<&str> {
    let mut s: Vec<&str> = v.iter().map(String::as_str).collect();
    s.sort_unstable();
    s
}

/// `tag` followed by the JSON of `v` (its Debug text if it had no JSON, which serde_json only refuses for
/// non-string map keys: none here).
fn canonical<T: Serialize + std::fmt::Debug>(buf: &mut Vec<u8>, tag: u8, v: &T) {
    buf.clear();
    buf.push(tag);
    if serde_json::to_writer(&mut *buf, v).is_err() {
        buf.truncate(1);
        buf.extend_from_slice(format!("{v:?}").as_bytes());
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
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

    fn view() -> Snapshot {
        let mut s = fixtures::eng_snapshot("corp", "corp-eng", &["alice", "bob", "carol"]);
        s.users[0].groups = vec!["g2".into(), "g1".into()];
        s
    }

    #[test]
    fn a_digest_ignores_the_order_of_what_was_read() {
        let a = view();
        let mut b = a.clone();
        b.users.reverse();
        b.users[2].groups.reverse();
        b.groups[0].members.reverse();
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.digest().len(), 64);
    }

    #[test]
    fn a_digest_changes_with_any_field_of_any_entry() {
        let a = view();
        let d = a.digest();
        type Change = Box<dyn Fn(&mut Snapshot)>;
        let changed: Vec<Change> = vec![
            Box::new(|s| s.source = "other".into()),
            Box::new(|s| s.users[1].active = false),
            Box::new(|s| s.users[1].email = None),
            Box::new(|s| s.users[1].display_name = Some("Bobby".into())),
            Box::new(|s| s.users[1].user_name = "bobby".into()),
            Box::new(|s| s.users[2].groups.push("g9".into())),
            Box::new(|s| s.users[2].overrides.max_budget = Some(1.0)),
            Box::new(|s| {
                s.users[2].overrides.metadata.insert("k".into(), serde_json::json!(1));
            }),
            Box::new(|s| s.groups[0].name = "renamed".into()),
            Box::new(|s| s.groups[0].dn = Some("cn=eng,dc=example,dc=org".into())),
            Box::new(|s| {
                s.groups[0].members.pop();
            }),
            Box::new(|s| s.groups[0].member_groups.push("nested".into())),
            Box::new(|s| {
                s.users.pop();
            }),
            Box::new(|s| {
                let u = s.users[0].clone();
                s.users.push(u)
            }),
            Box::new(|s| {
                s.unreadable.push(Unreadable {
                    external_id: None,
                    kind: EntryKind::User,
                    entry: "uid=x".into(),
                    reason: "no uid".into(),
                })
            }),
        ];
        for (i, change) in changed.iter().enumerate() {
            let mut b = a.clone();
            change(&mut b);
            assert_ne!(b.digest(), d, "change {i} must change the digest");
        }
        // A value moved from one field to another is a change too.
        let mut b = a.clone();
        b.users[0].display_name = Some(b.users[0].user_name.clone());
        b.users[0].user_name = "x".into();
        assert_ne!(b.digest(), d);
    }
}
