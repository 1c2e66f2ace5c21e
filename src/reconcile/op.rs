//! The operations a plan is made of, in the order LiteLLM needs them, with the names the outbox, the audit trail,
//! the metrics and `plan --output json` use. Only data and its classification live here: what an operation *does*
//! is the applier's business (`apply.rs`), when one is planned the planner's (`plan/`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::MetadataPatch;
use crate::litellm::types::{NewUserRequest, TeamRequest, UpdateUserRequest};
use crate::mapper::{DesiredUser, ExternalKey};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    CreateTeam {
        team_id: String,
        request: TeamRequest,
    },
    UpdateTeam {
        team_id: String,
        request: TeamRequest,
        changes: Vec<Change>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata_patch: Option<MetadataPatch>,
    },
    CreateUser {
        user_id: String,
        key: ExternalKey,
        request: NewUserRequest,
        /// Kept for a 409 (exists already → update). Left out of `plan --output json`; the outbox stores it
        /// beside the operation.
        #[serde(skip)]
        desired: Box<DesiredUser>,
    },
    UpdateUser {
        user_id: String,
        key: ExternalKey,
        /// "update", "reactivate" or "adopt".
        reason: String,
        request: UpdateUserRequest,
        changes: Vec<Change>,
        unblock_keys: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata_patch: Option<MetadataPatch>,
        /// The user as the rules want it: the applier re-derives the update from a fresh read of the user (and
        /// re-creates a managed user that vanished) instead of trusting a plan made from a possibly stale view.
        /// Left out of `plan --output json`; the outbox stores it beside the operation.
        #[serde(skip)]
        desired: Option<Box<DesiredUser>>,
    },
    DeactivateUser {
        user_id: String,
        key: ExternalKey,
        reason: String,
        metadata_patch: MetadataPatch,
        /// Finishes a deactivation an earlier attempt left half done (keys recorded but not all blocked yet). It
        /// was counted and, if need be, approved when it started, so the safety limit does not count it again.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resume: bool,
    },
    DeleteUser {
        user_id: String,
        key: ExternalKey,
        reason: String,
    },
    /// One membership. The applier sends the adds of one team together (in chunks), so one refused member
    /// cannot fail the others.
    AddMember {
        team_id: String,
        user_id: String,
        role: String,
    },
    UpdateMember {
        team_id: String,
        user_id: String,
        role: String,
    },
    /// Destructive: LiteLLM deletes every key the member holds for the team.
    RemoveMember {
        team_id: String,
        user_id: String,
        /// How many of the member's keys belong to the team (and so would be deleted), when it was looked up.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        team_keys: Option<u64>,
    },
}

impl Op {
    /// Dependency order: teams, then users, then memberships, then deprovisioning.
    pub fn phase(&self) -> u8 {
        match self {
            Op::CreateTeam { .. } => 0,
            Op::UpdateTeam { .. } => 1,
            Op::CreateUser { .. } => 2,
            Op::UpdateUser { .. } => 3,
            Op::AddMember { .. } => 4,
            Op::UpdateMember { .. } => 5,
            Op::RemoveMember { .. } => 6,
            Op::DeactivateUser { .. } => 7,
            Op::DeleteUser { .. } => 8,
        }
    }

    /// Every value [`Op::kind`] can return (metric labels are created up front from it).
    pub const KINDS: [&'static str; 9] = [
        "create_team",
        "update_team",
        "create_user",
        "update_user",
        "deactivate_user",
        "delete_user",
        "add_member",
        "update_member",
        "remove_member",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Op::CreateTeam { .. } => "create_team",
            Op::UpdateTeam { .. } => "update_team",
            Op::CreateUser { .. } => "create_user",
            Op::UpdateUser { .. } => "update_user",
            Op::DeactivateUser { .. } => "deactivate_user",
            Op::DeleteUser { .. } => "delete_user",
            Op::AddMember { .. } => "add_member",
            Op::UpdateMember { .. } => "update_member",
            Op::RemoveMember { .. } => "remove_member",
        }
    }

    /// Destructive operations count under `[safety]` and can be held: they lose keys or access.
    pub fn is_destructive(&self) -> bool {
        match self {
            Op::DeactivateUser { resume, .. } => !resume,
            Op::DeleteUser { .. } | Op::RemoveMember { .. } => true,
            _ => false,
        }
    }

    /// The user or team the operation is about, for people.
    pub fn target(&self) -> String {
        match self {
            Op::CreateTeam { team_id, .. } | Op::UpdateTeam { team_id, .. } => format!("team {team_id}"),
            Op::AddMember { team_id, user_id, .. }
            | Op::UpdateMember { team_id, user_id, .. }
            | Op::RemoveMember { team_id, user_id, .. } => format!("team {team_id} member {user_id}"),
            Op::CreateUser { user_id, .. }
            | Op::UpdateUser { user_id, .. }
            | Op::DeactivateUser { user_id, .. }
            | Op::DeleteUser { user_id, .. } => format!("user {user_id}"),
        }
    }

    /// A stable identity: the same change planned twice has the same id (approvals and results refer to it).
    pub fn id(&self) -> String {
        format!("{} {}", self.kind(), self.target())
    }

    /// The LiteLLM user the operation writes to or needs, if any.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Op::CreateTeam { .. } | Op::UpdateTeam { .. } => None,
            Op::CreateUser { user_id, .. }
            | Op::UpdateUser { user_id, .. }
            | Op::DeactivateUser { user_id, .. }
            | Op::DeleteUser { user_id, .. }
            | Op::AddMember { user_id, .. }
            | Op::UpdateMember { user_id, .. }
            | Op::RemoveMember { user_id, .. } => Some(user_id),
        }
    }

    /// The LiteLLM team the operation writes to or needs, if any.
    pub fn team_id(&self) -> Option<&str> {
        match self {
            Op::CreateTeam { team_id, .. }
            | Op::UpdateTeam { team_id, .. }
            | Op::AddMember { team_id, .. }
            | Op::UpdateMember { team_id, .. }
            | Op::RemoveMember { team_id, .. } => Some(team_id),
            _ => None,
        }
    }

    /// The source whose identity the operation serves (user operations only).
    pub fn user_key(&self) -> Option<&ExternalKey> {
        match self {
            Op::CreateUser { key, .. }
            | Op::UpdateUser { key, .. }
            | Op::DeactivateUser { key, .. }
            | Op::DeleteUser { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Lock keys: no two operations on one user or one team run at once.
    pub fn resources(&self) -> Vec<String> {
        let mut r: Vec<String> = self.team_id().map(|t| format!("team:{t}")).into_iter().collect();
        r.extend(self.user_id().map(|u| format!("user:{u}")));
        r
    }
}
