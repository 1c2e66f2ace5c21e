//! The ledger: managed users and teams as litellm-sync last applied them. Scheduled runs plan against it instead
//! of listing all of LiteLLM (which costs ~0.2 s per 100 users, litellm-api.md §0), so a run also works while
//! LiteLLM is down; the periodic drift check lists LiteLLM and replaces it. Pure: applying an operation's result
//! to the ledger is a function of the operation and what was written.

use std::collections::BTreeMap;

use crate::litellm::types::{TeamMemberRow, TeamRow, UserRow};
use crate::reconcile::apply::{After, OpResult};
use crate::reconcile::plan::{Actual, Op};
use crate::reconcile::{read_marker, TeamMarker, UserMarker};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    pub users: BTreeMap<String, UserRow>,
    pub teams: BTreeMap<String, TeamRow>,
}

/// The keys of a ledger lent out by [`Ledger::into_parts`].
#[derive(Debug, Default)]
pub struct LedgerKeys {
    users: Vec<String>,
    teams: Vec<String>,
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

    /// [`Ledger::actual`] without the copy: the rows move into the [`Actual`] (in the same order), and
    /// [`Ledger::from_parts`] puts them back under the same keys. A run plans against the ledger and then
    /// records into it, so it lends the rows to the plan instead of holding them twice.
    pub fn into_parts(self) -> (Actual, LedgerKeys) {
        let (user_keys, users): (Vec<String>, Vec<UserRow>) = self.users.into_iter().unzip();
        let (team_keys, teams): (Vec<String>, Vec<TeamRow>) = self.teams.into_iter().unzip();
        (Actual { users, teams }, LedgerKeys { users: user_keys, teams: team_keys })
    }

    /// The ledger [`Ledger::into_parts`] took apart, from the same (unchanged) [`Actual`].
    pub fn from_parts(a: Actual, keys: LedgerKeys) -> Ledger {
        debug_assert_eq!(a.users.len(), keys.users.len());
        debug_assert_eq!(a.teams.len(), keys.teams.len());
        Ledger {
            users: keys.users.into_iter().zip(a.users).collect(),
            teams: keys.teams.into_iter().zip(a.teams).collect(),
        }
    }

    /// Applies one finished operation; returns what to persist. The applier says what the object looks like
    /// afterwards (it re-derives writes from fresh reads); memberships and deletions follow from the operation.
    pub fn record(&mut self, op: &Op, r: &OpResult) -> Vec<LedgerWrite> {
        let mut writes = match &r.after {
            After::User(row) => self.put_user((**row).clone()),
            After::UserGone(id) => self.forget_user(id),
            After::Team(row) => {
                let mut row = (**row).clone();
                // A create's row has no roster yet; keep what the ledger knows of an existing team's.
                if row.members_with_roles.is_empty() {
                    if let Some(old) = self.teams.get(&row.team_id) {
                        row.members_with_roles = old.members_with_roles.clone();
                    }
                }
                self.put_team(row)
            }
            After::Unknown => Vec::new(),
        };
        if !r.outcome.succeeded() {
            return writes;
        }
        match op {
            Op::DeleteUser { user_id, .. } if !matches!(r.after, After::UserGone(_)) => {
                writes.extend(self.forget_user(user_id))
            }
            Op::AddMember { team_id, user_id, role } => {
                if let Some(mut row) = self.teams.get(team_id).cloned() {
                    if !row.members_with_roles.iter().any(|x| x.user_id.as_deref() == Some(user_id.as_str())) {
                        row.members_with_roles.push(TeamMemberRow {
                            user_id: Some(user_id.clone()),
                            user_email: None,
                            role: Some(role.clone()),
                        });
                    }
                    writes.extend(self.put_team(row));
                }
            }
            Op::UpdateMember { team_id, user_id, role } => {
                if let Some(mut row) = self.teams.get(team_id).cloned() {
                    for m in &mut row.members_with_roles {
                        if m.user_id.as_deref() == Some(user_id.as_str()) {
                            m.role = Some(role.clone());
                        }
                    }
                    writes.extend(self.put_team(row));
                }
            }
            Op::RemoveMember { team_id, user_id, .. } => {
                if let Some(mut row) = self.teams.get(team_id).cloned() {
                    row.members_with_roles.retain(|m| m.user_id.as_deref() != Some(user_id.as_str()));
                    writes.extend(self.put_team(row));
                }
            }
            _ => {}
        }
        writes
    }

    /// A user that no longer exists: gone from the ledger and from every roster (LiteLLM removes a deleted user
    /// from its teams).
    fn forget_user(&mut self, user_id: &str) -> Vec<LedgerWrite> {
        let mut writes = Vec::new();
        if self.users.remove(user_id).is_some() {
            writes.push(LedgerWrite::DeleteUser(user_id.to_string()));
        }
        let teams: Vec<TeamRow> = self
            .teams
            .values()
            .filter(|t| t.members_with_roles.iter().any(|m| m.user_id.as_deref() == Some(user_id)))
            .cloned()
            .collect();
        for mut t in teams {
            t.members_with_roles.retain(|m| m.user_id.as_deref() != Some(user_id));
            writes.extend(self.put_team(t));
        }
        writes
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

#[cfg(test)]
mod tests {
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

    use std::collections::{BTreeMap, BTreeSet};

    use chrono::TimeZone;

    use serde_json::{json, Map};

    use super::*;
    use crate::config::{Deprovision, Safety};
    use crate::litellm::types::UpdateUserRequest;
    use crate::mapper::{CreateOptions, DesiredState, DesiredTeam, DesiredUser, ExternalKey, TeamOwner};
    use crate::model::{Grants, Role, TeamRole};
    use crate::reconcile::apply::Outcome;
    use crate::reconcile::plan::{plan, user_update, Approval, PlanContext};

    #[test]
    fn lending_the_rows_to_a_plan_gives_back_the_same_ledger() {
        let mut ledger = Ledger::default();
        for id in ["carol", "alice", "bob"] {
            let mut u = empty_user();
            u.user_id = id.into();
            u.metadata.insert("n".into(), json!(id.len()));
            ledger.users.insert(id.into(), u);
        }
        for id in ["t2", "t1"] {
            let t: TeamRow =
                serde_json::from_value(json!({"team_id": id, "team_alias": format!("team {id}")})).unwrap();
            ledger.teams.insert(id.into(), t);
        }
        let copied = ledger.actual();
        let (lent, keys) = ledger.clone().into_parts();
        assert_eq!(lent.users, copied.users, "same rows, same order as actual()");
        assert_eq!(lent.teams, copied.teams);
        assert_eq!(lent.users.iter().map(|u| u.user_id.as_str()).collect::<Vec<_>>(), ["alice", "bob", "carol"]);
        assert_eq!(Ledger::from_parts(lent, keys), ledger);
    }

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
            owners: vec![TeamOwner {
                source: "corp".into(),
                group_id: "g".into(),
                group_name: "eng".into(),
                templated: true,
            }],
            source_members: 1,
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
            doubt: BTreeMap::new(),
            configured_sources: BTreeSet::from(["corp".to_string()]),
            push_sources: BTreeSet::new(),
            approval: Approval::None,
        };
        plan(&d, a, &cx).ops
    }

    /// What the applier reports for an operation that went through, against the ledger's row (it re-derives
    /// updates from the row it reads; here the ledger is what LiteLLM holds).
    fn applied_on(ledger: &Ledger, op: &Op) -> OpResult {
        let after = match op {
            Op::CreateUser { request, .. } => After::User(Box::new(UserRow::created(request))),
            Op::UpdateUser { user_id, desired: Some(d), .. } => {
                let row = ledger.users[user_id].clone();
                let marker = crate::reconcile::read_marker(&row.metadata);
                After::User(Box::new(row.updated(&user_update(d, &row, marker.as_ref()).request)))
            }
            Op::DeactivateUser { user_id, metadata_patch, .. } => {
                let row = ledger.users[user_id].clone();
                let req = UpdateUserRequest {
                    user_id: user_id.clone(),
                    metadata: Some(metadata_patch.apply(&row.metadata)),
                    ..Default::default()
                };
                After::User(Box::new(row.updated(&req)))
            }
            Op::CreateTeam { request, .. } => After::Team(Box::new(TeamRow::created(request))),
            _ => After::Unknown,
        };
        let mut r = OpResult::new(op, Outcome::Applied);
        r.after = after;
        r
    }

    /// The ledger after applying a plan must plan to nothing: the property the daemon's idempotence rests on.
    #[test]
    fn recording_a_plan_converges() {
        let d = desired();
        let mut ledger = Ledger::default();
        let ops = run_plan(&d, &ledger.actual(), true);
        assert_eq!(ops.iter().map(Op::kind).collect::<Vec<_>>(), vec!["create_team", "create_user", "add_member"]);
        for op in &ops {
            let r = applied_on(&ledger, op);
            assert!(!ledger.record(op, &r).is_empty());
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
            let r = applied_on(&ledger, op);
            ledger.record(op, &r);
        }
        assert!(run_plan(&d2, &ledger.actual(), true).is_empty());
        // Deactivation converges too.
        let ops = run_plan(&d2, &ledger.actual(), false);
        assert_eq!(ops.iter().map(Op::kind).collect::<Vec<_>>(), vec!["deactivate_user"]);
        for op in &ops {
            let r = applied_on(&ledger, op);
            ledger.record(op, &r);
        }
        assert!(run_plan(&d2, &ledger.actual(), false).is_empty());
    }

    #[test]
    fn failures_change_nothing_and_listings_keep_unmanaged_ids() {
        let d = desired();
        let mut ledger = Ledger::default();
        let ops = run_plan(&d, &ledger.actual(), true);
        let failed = OpResult::new(&ops[1], Outcome::Failed { class: "retryable".into(), error: "down".into() });
        assert!(ledger.record(&ops[1], &failed).is_empty());
        assert!(ledger.users.is_empty());
        let foreign = UserRow { user_id: "bob".into(), ..empty_user() };
        let a = Actual { users: vec![foreign], teams: vec![] };
        let l = Ledger::from_actual(&a);
        assert_eq!(l.users.len(), 1);
        assert_eq!(l.managed_users(), 0);
    }
}
