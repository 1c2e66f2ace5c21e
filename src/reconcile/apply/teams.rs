//! Team operations: create and update (metadata re-based on a fresh read, never on a team without our marker),
//! and memberships. Member adds of one team go together in chunks, by role, and a refused chunk is retried member
//! by member, so one member LiteLLM refuses (an `admin` without an Enterprise licence) cannot fail the others.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};

use super::{is_managed, After, OpResult, Outcome, Run};
use crate::litellm::types::{MemberSpec, TeamRequest, TeamRow};
use crate::litellm::{ErrorClass, MEMBER_CHUNK};
use crate::reconcile::op::Op;
use crate::reconcile::{read_marker, MetadataPatch, TeamMarker};

pub(super) async fn teams(run: &Run<'_>, ops: &[&Op]) -> Vec<OpResult> {
    run.each(ops, |op| async move {
        let res = match op {
            Op::CreateTeam { team_id, request } => create_team(run, team_id, request).await,
            Op::UpdateTeam { team_id, request, metadata_patch, .. } => {
                update_team(run, team_id, request, metadata_patch.as_ref()).await
            }
            _ => Err(Outcome::Failed { class: "other".into(), error: "not a team operation".into() }),
        };
        let r = match res {
            Ok((o, after)) => OpResult::new(op, o).with_after(after),
            Err(o) => OpResult::new(op, o),
        };
        if let Some(team_id) = op.team_id() {
            if !r.outcome.succeeded() && r.outcome != Outcome::Skipped {
                run.known.fail(
                    format!("team:{team_id}"),
                    r.outcome.is_final(),
                    format!("its {} did not succeed ({})", op.kind(), r.outcome.label()),
                );
            }
        }
        r
    })
    .await
}

type Written = Result<(Outcome, After), Outcome>;

/// Creates a team. "Already exists" (a retried request, a race, or a team someone made by hand) is resolved by
/// reading it: ours (or adoptable) is brought to the wanted settings with metadata re-based on the fresh read;
/// anything else is left untouched and reported.
async fn create_team(run: &Run<'_>, team_id: &str, request: &TeamRequest) -> Written {
    match run.client.create_team(request).await {
        Ok(true) => return Ok((Outcome::Applied, After::Team(Box::new(TeamRow::created(request))))),
        Ok(false) => {}
        Err(e) => return Err(run.failed(e)),
    }
    let Some(row) = run.client.get_team(team_id).await.map_err(|e| run.failed(e))? else {
        return Err(Outcome::Failed {
            class: "conflict".into(),
            error: format!("LiteLLM says team {team_id} exists but cannot find it"),
        });
    };
    if read_marker::<TeamMarker>(&row.metadata).is_none() && !run.opts.adopt_existing {
        return Err(Outcome::NotSent {
            reason: format!(
                "team {team_id} already exists in LiteLLM and is not managed by litellm-sync; left alone (set \
                 safety.adopt_existing = true to take it over)"
            ),
        });
    }
    // Every field of the create, and our metadata keys set on the team's own metadata.
    let patch = MetadataPatch { set: request.metadata.clone().unwrap_or_default(), remove: Vec::new() };
    let req = TeamRequest { metadata: Some(patch.apply(&row.metadata)), ..request.clone() };
    run.client.update_team(&req).await.map_err(|e| run.failed(e))?;
    Ok((Outcome::Applied, After::Team(Box::new(row.updated(&req)))))
}

async fn update_team(run: &Run<'_>, team_id: &str, request: &TeamRequest, patch: Option<&MetadataPatch>) -> Written {
    let Some(fresh) = run.client.get_team(team_id).await.map_err(|e| run.failed(e))? else {
        return Err(Outcome::NotSent { reason: format!("team {team_id} no longer exists in LiteLLM; not updated") });
    };
    if read_marker::<TeamMarker>(&fresh.metadata).is_none() && !run.opts.adopt_existing {
        return Err(Outcome::NotSent {
            reason: format!("team {team_id} no longer carries the litellm-sync marker; not updated"),
        });
    }
    let mut req = request.clone();
    if let Some(p) = patch {
        req.metadata = Some(p.apply(&fresh.metadata));
    }
    run.client.update_team(&req).await.map_err(|e| run.failed(e))?;
    Ok((Outcome::Applied, After::Team(Box::new(fresh.updated(&req)))))
}

/// Whether a membership operation may be sent: the team did not fail, and the user exists with our marker
/// (`/team/member_add` would otherwise create a bare user nobody manages).
fn member_gate(run: &Run<'_>, op: &Op) -> Result<(), Outcome> {
    let (Some(team_id), Some(user_id)) = (op.team_id(), op.user_id()) else { return Ok(()) };
    run.team_ok(team_id)?;
    match run.confirmed(user_id)? {
        Some(row) if is_managed(&row) => Ok(()),
        Some(_) => Err(Outcome::NotSent {
            reason: format!("user {user_id} does not carry the litellm-sync marker; its memberships are not ours"),
        }),
        None if matches!(op, Op::RemoveMember { .. }) => {
            Err(Outcome::AlreadyDone { detail: format!("user {user_id} no longer exists, nor its membership") })
        }
        None => Err(Outcome::NotSent {
            reason: format!(
                "user {user_id} does not exist in LiteLLM; adding it to team {team_id} would create it without a \
                 marker"
            ),
        }),
    }
}

/// A user found missing while the plan thought it managed: the ledger forgets it so the next plan re-creates it.
fn gone_after(run: &Run<'_>, op: &Op) -> After {
    match op.user_id() {
        Some(id) if run.known.user(id) == Some(None) => After::UserGone(id.to_string()),
        _ => After::Unknown,
    }
}

/// Role changes and removals, one by one.
pub(super) async fn member(run: &Run<'_>, op: &Op) -> OpResult {
    if let Err(o) = member_gate(run, op) {
        return OpResult::new(op, o).with_after(gone_after(run, op));
    }
    let res = match op {
        Op::UpdateMember { team_id, user_id, role } => run.client.update_member(team_id, user_id, role).await,
        Op::RemoveMember { team_id, user_id, .. } => run.client.remove_member(team_id, user_id).await,
        _ => return OpResult::new(op, Outcome::Failed { class: "other".into(), error: "not a member op".into() }),
    };
    match res {
        Ok(()) => OpResult::new(op, Outcome::Applied),
        Err(e) => OpResult::new(op, run.failed(e)),
    }
}

/// Member adds, per team: confirmed users only, sent in chunks by role; a chunk LiteLLM refuses is retried one
/// member at a time so that each member gets its own answer.
pub(super) async fn add_members(run: &Run<'_>, ops: &[&Op]) -> Vec<OpResult> {
    run.confirm(ops.iter().filter_map(|op| op.user_id())).await;
    let mut results = Vec::with_capacity(ops.len());
    let mut by_team: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        match member_gate(run, op) {
            Ok(()) => by_team.entry(op.team_id().unwrap_or_default()).or_default().push(op),
            Err(o) => {
                let after = gone_after(run, op);
                results.push(run.done(op, OpResult::new(op, o).with_after(after)));
            }
        }
    }
    let per_team: Vec<Vec<OpResult>> = stream::iter(by_team)
        .map(|(team_id, ops)| async move {
            let mut out = Vec::with_capacity(ops.len());
            let _g = run.locks.acquire(&[format!("team:{team_id}")]).await;
            // `user` members first: a refused `admin` chunk then costs the admins only.
            let (users, admins): (Vec<&Op>, Vec<&Op>) =
                ops.into_iter().partition(|op| matches!(op, Op::AddMember { role, .. } if role != "admin"));
            for group in [users, admins] {
                for chunk in group.chunks(MEMBER_CHUNK) {
                    out.extend(add_chunk(run, team_id, chunk).await);
                }
            }
            out
        })
        .buffer_unordered(run.concurrency())
        .collect()
        .await;
    results.extend(per_team.into_iter().flatten());
    results
}

fn spec(op: &Op) -> Option<MemberSpec> {
    match op {
        Op::AddMember { user_id, role, .. } => Some(MemberSpec { user_id: user_id.clone(), role: role.clone() }),
        _ => None,
    }
}

async fn add_chunk(run: &Run<'_>, team_id: &str, chunk: &[&Op]) -> Vec<OpResult> {
    run.check_guard().await;
    if let Some(d) = run.closed() {
        return chunk.iter().map(|op| run.done(op, OpResult::new(op, d.clone()))).collect();
    }
    let specs: Vec<MemberSpec> = chunk.iter().filter_map(|op| spec(op)).collect();
    match run.client.add_members(team_id, &specs).await {
        Ok(()) => chunk.iter().map(|op| run.done(op, OpResult::new(op, Outcome::Applied))).collect(),
        // LiteLLM refuses a whole call for one bad member: give each member its own answer.
        Err(e) if chunk.len() > 1 && matches!(e.class(), ErrorClass::Invalid | ErrorClass::Other) => {
            tracing::warn!(team_id, error = %e, "A member add was refused; adding these members one by one");
            let mut out = Vec::with_capacity(chunk.len());
            for op in chunk {
                let r = match spec(op) {
                    Some(s) => match run.client.add_members(team_id, &[s]).await {
                        Ok(()) => OpResult::new(op, Outcome::Applied),
                        Err(e) => OpResult::new(op, run.failed(e)),
                    },
                    None => OpResult::new(op, Outcome::Failed { class: "other".into(), error: "not an add".into() }),
                };
                out.push(run.done(op, r));
            }
            out
        }
        Err(e) => {
            let o = run.failed(e);
            chunk.iter().map(|op| run.done(op, OpResult::new(op, o.clone()))).collect()
        }
    }
}
