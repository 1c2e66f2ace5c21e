//! The ledger: managed users and teams as litellm-sync last applied them. Scheduled runs plan against it instead
//! of listing all of LiteLLM (which costs ~0.2 s per 100 users, litellm-api.md §0), so a run also works while
//! LiteLLM is down; the periodic drift check lists LiteLLM and replaces it. Pure: applying an operation's result
//! to the ledger is a function of the operation and what was written.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::litellm::types::{TeamMemberRow, TeamRow, UserRow};
use crate::reconcile::apply::{OpResult, Outcome};
use crate::reconcile::plan::{Actual, Op};
use crate::reconcile::{read_marker, TeamMarker, UserMarker};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    pub users: BTreeMap<String, UserRow>,
    pub teams: BTreeMap<String, TeamRow>,
}

/// A change to persist.
#[derive(Debug, Clone, PartialEq)]
pub enum LedgerWrite {
    PutUser(Box<UserRow>),
    DeleteUser(String),
    PutTeam(Box<TeamRow>),
}

impl Ledger {
    /// A full LiteLLM listing. Unmanaged objects are kept too, so that a ledger-based plan still knows which
    /// ids are taken by users and teams litellm-sync must not touch.
    pub fn from_actual(a: &Actual) -> Ledger {
        Ledger {
            users: a.users.iter().map(|u| (u.user_id.clone(), u.clone())).collect(),
            teams: a.teams.iter().map(|t| (t.team_id.clone(), t.clone())).collect(),
        }
    }

    pub fn managed_teams(&self) -> usize {
        self.teams.values().filter(|t| read_marker::<TeamMarker>(&t.metadata).is_some()).count()
    }

    pub fn managed_users(&self) -> usize {
        self.users.values().filter(|u| read_marker::<UserMarker>(&u.metadata).is_some()).count()
    }

    pub fn managed_users_of(&self, source: &str) -> usize {
        self.users
            .values()
            .filter(|u| read_marker::<UserMarker>(&u.metadata).is_some_and(|m| m.source == source))
            .count()
    }

    pub fn actual(&self) -> Actual {
        Actual { users: self.users.values().cloned().collect(), teams: self.teams.values().cloned().collect() }
    }

    /// Applies one finished operation; returns what to persist. Failed and skipped operations change nothing.
    pub fn record(&mut self, op: &Op, r: &OpResult) -> Vec<LedgerWrite> {
        if !matches!(r.outcome, Outcome::Applied | Outcome::AlreadyDone { .. }) {
            return Vec::new();
        }
        let written = r.written_metadata.clone();
        match op {
            Op::CreateUser { request, .. } => {
                let mmb: Map<String, Value> =
                    request.model_max_budget.iter().flatten().map(|(k, v)| (k.clone(), json!(v))).collect();
                let row = UserRow {
                    user_id: request.user_id.clone(),
                    user_email: request.user_email.clone(),
                    user_alias: request.user_alias.clone(),
                    user_role: request.user_role.clone(),
                    max_budget: request.max_budget,
                    budget_duration: request.budget_duration.clone(),
                    models: request.models.clone().unwrap_or_default(),
                    tpm_limit: request.tpm_limit,
                    rpm_limit: request.rpm_limit,
                    max_parallel_requests: request.max_parallel_requests,
                    model_max_budget: mmb,
                    metadata: written.unwrap_or_else(|| request.metadata.clone()),
                    teams: Vec::new(),
                };
                self.put_user(row)
            }
            Op::UpdateUser { user_id, request: q, .. } => {
                let mut row = self
                    .users
                    .get(user_id)
                    .cloned()
                    .unwrap_or_else(|| UserRow { user_id: user_id.clone(), ..empty_user() });
                if let Some(v) = &q.user_email {
                    row.user_email = Some(v.clone());
                }
                if let Some(v) = &q.user_alias {
                    row.user_alias = Some(v.clone());
                }
                if let Some(v) = &q.user_role {
                    row.user_role = Some(v.clone());
                }
                if let Some(v) = &q.max_budget {
                    row.max_budget = *v;
                }
                if let Some(v) = &q.budget_duration {
                    row.budget_duration = v.clone();
                }
                if let Some(v) = &q.tpm_limit {
                    row.tpm_limit = *v;
                }
                if let Some(v) = &q.rpm_limit {
                    row.rpm_limit = *v;
                }
                if let Some(v) = &q.models {
                    row.models = v.clone();
                }
                if let Some(v) = q.max_parallel_requests {
                    row.max_parallel_requests = Some(v);
                }
                if let Some(v) = &q.model_max_budget {
                    row.model_max_budget = v.iter().map(|(k, b)| (k.clone(), json!(b))).collect();
                }
                if let Some(m) = written.or_else(|| q.metadata.clone()) {
                    row.metadata = m;
                }
                self.put_user(row)
            }
            Op::DeactivateUser { user_id, metadata_patch, .. } => match self.users.get(user_id).cloned() {
                Some(mut row) => {
                    row.metadata = written.unwrap_or_else(|| metadata_patch.apply(&row.metadata));
                    self.put_user(row)
                }
                None => Vec::new(),
            },
            Op::DeleteUser { user_id, .. } => {
                self.users.remove(user_id);
                vec![LedgerWrite::DeleteUser(user_id.clone())]
            }
            Op::CreateTeam { request, .. } => {
                let row = TeamRow {
                    team_id: request.team_id.clone(),
                    team_alias: request.team_alias.clone(),
                    max_budget: request.max_budget,
                    soft_budget: request.soft_budget,
                    budget_duration: request.budget_duration.clone(),
                    models: request.models.clone().unwrap_or_default(),
                    tpm_limit: request.tpm_limit,
                    rpm_limit: request.rpm_limit,
                    metadata: written.or_else(|| request.metadata.clone()).unwrap_or_default(),
                    members_with_roles: Vec::new(),
                };
                self.put_team(row)
            }
            Op::UpdateTeam { team_id, request: q, .. } => {
                let Some(mut row) = self.teams.get(team_id).cloned() else { return Vec::new() };
                if let Some(v) = &q.team_alias {
                    row.team_alias = Some(v.clone());
                }
                row.max_budget = q.max_budget.or(row.max_budget);
                row.soft_budget = q.soft_budget.or(row.soft_budget);
                if let Some(v) = &q.budget_duration {
                    row.budget_duration = Some(v.clone());
                }
                if let Some(v) = &q.models {
                    row.models = v.clone();
                }
                row.tpm_limit = q.tpm_limit.or(row.tpm_limit);
                row.rpm_limit = q.rpm_limit.or(row.rpm_limit);
                if let Some(m) = written.or_else(|| q.metadata.clone()) {
                    row.metadata = m;
                }
                self.put_team(row)
            }
            Op::AddMembers { team_id, members } => {
                let Some(mut row) = self.teams.get(team_id).cloned() else { return Vec::new() };
                for m in members {
                    if !row.members_with_roles.iter().any(|x| x.user_id.as_deref() == Some(m.user_id.as_str())) {
                        row.members_with_roles.push(TeamMemberRow {
                            user_id: Some(m.user_id.clone()),
                            user_email: None,
                            role: Some(m.role.clone()),
                        });
                    }
                }
                self.put_team(row)
            }
            Op::UpdateMember { team_id, user_id, role } => {
                let Some(mut row) = self.teams.get(team_id).cloned() else { return Vec::new() };
                for m in &mut row.members_with_roles {
                    if m.user_id.as_deref() == Some(user_id.as_str()) {
                        m.role = Some(role.clone());
                    }
                }
                self.put_team(row)
            }
            Op::RemoveMember { team_id, user_id } => {
                let Some(mut row) = self.teams.get(team_id).cloned() else { return Vec::new() };
                row.members_with_roles.retain(|m| m.user_id.as_deref() != Some(user_id.as_str()));
                self.put_team(row)
            }
        }
    }

    fn put_user(&mut self, row: UserRow) -> Vec<LedgerWrite> {
        self.users.insert(row.user_id.clone(), row.clone());
        vec![LedgerWrite::PutUser(Box::new(row))]
    }

    fn put_team(&mut self, row: TeamRow) -> Vec<LedgerWrite> {
        self.teams.insert(row.team_id.clone(), row.clone());
        vec![LedgerWrite::PutTeam(Box::new(row))]
    }
}

fn empty_user() -> UserRow {
    UserRow {
        user_id: String::new(),
        user_email: None,
        user_alias: None,
        user_role: None,
        max_budget: None,
        budget_duration: None,
        models: Vec::new(),
        tpm_limit: None,
        rpm_limit: None,
        max_parallel_requests: None,
        model_max_budget: Map::new(),
        metadata: Map::new(),
        teams: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use chrono::TimeZone;

    use super::*;
    use crate::config::{Deprovision, Safety};
    use crate::mapper::{CreateOptions, DesiredState, DesiredTeam, DesiredUser, ExternalKey};
    use crate::model::{Grants, Role, TeamRole};
    use crate::reconcile::plan::{plan, PlanContext};

    fn desired() -> DesiredState {
        let key = ExternalKey { source: "corp".into(), external_id: "1".into() };
        let u = DesiredUser {
            key: key.clone(),
            user_id: "alice".into(),
            user_name: "alice".into(),
            email: Some("alice@example.com".into()),
            alias: Some("Alice".into()),
            active: true,
            fields: Grants {
                role: Some(Role::InternalUser),
                max_budget: Some(10.0),
                models: Some(vec!["gpt-4o".into()]),
                model_max_budget: Some([("gpt-4o".to_string(), 1.0)].into()),
                ..Default::default()
            },
            create: CreateOptions::default(),
            ..Default::default()
        };
        let t = DesiredTeam {
            team_id: "eng".into(),
            alias: "Engineering".into(),
            source: "corp".into(),
            group_id: "g".into(),
            rule: "r".into(),
            max_budget: Some(5.0),
            soft_budget: None,
            budget_duration: None,
            models: None,
            tpm_limit: None,
            rpm_limit: None,
            metadata: BTreeMap::new(),
            members: [(key.clone(), TeamRole::User)].into(),
        };
        DesiredState { users: [(key, u)].into(), teams: [("eng".to_string(), t)].into(), ..Default::default() }
    }

    fn run_plan(d: &DesiredState, a: &Actual, active: bool) -> Vec<Op> {
        let mut d = d.clone();
        for u in d.users.values_mut() {
            u.active = active;
        }
        let safety = Safety {
            max_deletions: 10,
            max_deletions_percent: 100.0,
            deprovision: Deprovision::Deactivate,
            delete_after: None,
            adopt_existing: false,
        };
        let cx = PlanContext {
            safety: &safety,
            now: chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            complete_sources: BTreeSet::from(["corp".to_string()]),
            source_user_counts: BTreeMap::from([("corp".to_string(), 1)]),
            allow_mass_deprovision: false,
        };
        plan(&d, a, &cx).ops
    }

    fn applied(op: &Op) -> OpResult {
        OpResult { op: op.kind(), target: op.target(), outcome: Outcome::Applied, written_metadata: None }
    }

    /// The ledger after applying a plan must plan to nothing: the property the daemon's idempotence rests on.
    #[test]
    fn recording_a_plan_converges() {
        let d = desired();
        let mut ledger = Ledger::default();
        let ops = run_plan(&d, &ledger.actual(), true);
        assert_eq!(ops.iter().map(Op::kind).collect::<Vec<_>>(), vec!["create_team", "create_user", "add_members"]);
        for op in &ops {
            assert!(!ledger.record(op, &applied(op)).is_empty());
        }
        assert_eq!(run_plan(&d, &ledger.actual(), true), Vec::<Op>::new());
        // A change in the source → an update → recorded → converged again.
        let mut d2 = d.clone();
        if let Some(u) = d2.users.values_mut().next() {
            u.fields.max_budget = Some(20.0);
            u.fields.metadata.insert("dept".into(), json!("eng"));
        }
        let ops = run_plan(&d2, &ledger.actual(), true);
        assert_eq!(ops.iter().map(Op::kind).collect::<Vec<_>>(), vec!["update_user"]);
        for op in &ops {
            ledger.record(op, &applied(op));
        }
        assert!(run_plan(&d2, &ledger.actual(), true).is_empty());
        // Deactivation converges too.
        let ops = run_plan(&d2, &ledger.actual(), false);
        assert_eq!(ops.iter().map(Op::kind).collect::<Vec<_>>(), vec!["deactivate_user"]);
        for op in &ops {
            ledger.record(op, &applied(op));
        }
        assert!(run_plan(&d2, &ledger.actual(), false).is_empty());
    }

    #[test]
    fn failures_change_nothing_and_listings_keep_unmanaged_ids() {
        let d = desired();
        let mut ledger = Ledger::default();
        let ops = run_plan(&d, &ledger.actual(), true);
        let failed = OpResult {
            outcome: Outcome::Failed { class: "retryable".into(), error: "down".into() },
            ..applied(&ops[1])
        };
        assert!(ledger.record(&ops[1], &failed).is_empty());
        assert!(ledger.users.is_empty());
        let foreign = UserRow { user_id: "bob".into(), ..empty_user() };
        let a = Actual { users: vec![foreign], teams: vec![] };
        let l = Ledger::from_actual(&a);
        assert_eq!(l.users.len(), 1);
        assert_eq!(l.managed_users(), 0);
    }
}
