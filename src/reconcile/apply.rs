//! The applier: runs a plan against LiteLLM in dependency order (phases), with bounded concurrency and never two
//! operations on one user or one team at once. Creates and deletes go through the bulk endpoints when the proxy
//! has them. Every write passes the client's single write point, where dry-run stops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{Map, Value};

use super::plan::{user_update, Op};
use super::{read_marker, UserMarker, MARKER_KEY};
use crate::litellm::types::{NewUserRequest, UpdateUserRequest};
use crate::litellm::{ApiError, Client, ErrorClass, BULK_MAX};
use crate::mapper::ExternalKey;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    /// Nothing to do after all (the object was already in the wanted state, or already gone).
    AlreadyDone {
        detail: String,
    },
    /// Dry run: everything ran but the write.
    Skipped,
    /// Not attempted: shutdown began, or LiteLLM was found unreachable earlier in this run. Stays in the outbox.
    Deferred {
        reason: String,
    },
    Failed {
        class: String,
        error: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct OpResult {
    pub op: &'static str,
    pub target: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The user or team metadata actually written (re-based on a fresh read), for the store's ledger.
    #[serde(skip)]
    pub written_metadata: Option<Map<String, Value>>,
}

impl OpResult {
    fn new(op: &Op, outcome: Outcome) -> OpResult {
        OpResult { op: op.kind(), target: op.target(), outcome, written_metadata: None }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub results: Vec<OpResult>,
}

impl ApplyReport {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| matches!(r.outcome, Outcome::Failed { .. })).count()
    }
    pub fn applied(&self) -> usize {
        self.results.iter().filter(|r| matches!(r.outcome, Outcome::Applied)).count()
    }
}

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub concurrency: usize,
    pub adopt_existing: bool,
    /// Stop starting operations once this is cancelled (shutdown); the rest come back `Deferred`.
    pub stop: Option<tokio_util::sync::CancellationToken>,
    /// After an operation fails because LiteLLM is unreachable (retries exhausted), defer the rest instead of
    /// waiting out the retries of each one (the daemon's outbox keeps them).
    pub defer_when_unavailable: bool,
}

/// Decides whether an operation may still start.
struct Gate<'a> {
    opts: &'a ApplyOptions,
    unavailable: std::sync::atomic::AtomicBool,
}

impl Gate<'_> {
    fn closed(&self) -> Option<Outcome> {
        if self.opts.stop.as_ref().is_some_and(|t| t.is_cancelled()) {
            return Some(Outcome::Deferred { reason: "shutting down".into() });
        }
        if self.unavailable.load(std::sync::atomic::Ordering::Relaxed) {
            return Some(Outcome::Deferred { reason: "LiteLLM unreachable".into() });
        }
        None
    }

    fn note_error(&self, e: &ApiError) {
        if self.opts.defer_when_unavailable && e.class() == ErrorClass::Retryable {
            self.unavailable.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn note(&self, r: &OpResult) {
        if self.opts.defer_when_unavailable
            && matches!(&r.outcome, Outcome::Failed { class, .. } if class == "retryable")
        {
            self.unavailable.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Per-resource locks; acquired in sorted order so two operations cannot deadlock.
#[derive(Default)]
struct Locks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    async fn acquire(&self, keys: &[String]) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let mutexes: Vec<_> = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            keys.iter().map(|k| map.entry(k.clone()).or_default().clone()).collect()
        };
        let mut guards = Vec::with_capacity(mutexes.len());
        for m in mutexes {
            guards.push(m.lock_owned().await);
        }
        guards
    }
}

/// Called after every finished operation (progress bars, metrics).
pub type Progress<'a> = &'a (dyn Fn(&Op, &OpResult) + Sync);

pub async fn apply(client: &Client, ops: &[Op], opts: &ApplyOptions, progress: Progress<'_>) -> ApplyReport {
    let locks = Locks::default();
    let gate = Gate { opts, unavailable: std::sync::atomic::AtomicBool::new(false) };
    let gate = &gate;
    let mut report = ApplyReport::default();
    let mut phases: Vec<Vec<&Op>> = Vec::new();
    for op in ops {
        match phases.last_mut() {
            Some(last) if last[0].phase() == op.phase() => last.push(op),
            _ => phases.push(vec![op]),
        }
    }
    for phase in phases {
        if let Some(deferred) = gate.closed() {
            report_all(&phase, &deferred, progress, &mut report.results);
            continue;
        }
        let results = match phase[0] {
            Op::CreateUser { .. } => create_users(client, &phase, opts, &locks, gate, progress).await,
            Op::DeleteUser { .. } => delete_users(client, &phase, opts, &locks, gate, progress).await,
            _ => {
                stream::iter(phase)
                    .map(|op| async {
                        let _g = locks.acquire(&op.resources()).await;
                        let r = match gate.closed() {
                            Some(d) => OpResult::new(op, d),
                            None => finish(op, run_one(client, op, opts).await),
                        };
                        gate.note(&r);
                        progress(op, &r);
                        r
                    })
                    .buffer_unordered(opts.concurrency.max(1))
                    .collect::<Vec<_>>()
                    .await
            }
        };
        report.results.extend(results);
    }
    report
}

/// The same outcome for every operation of a batch (dry run, or deferred).
fn report_all(ops: &[&Op], outcome: &Outcome, progress: Progress<'_>, results: &mut Vec<OpResult>) {
    for op in ops {
        let r = OpResult::new(op, outcome.clone());
        progress(op, &r);
        results.push(r);
    }
}

fn finish(op: &Op, r: Result<(Outcome, Option<Map<String, Value>>), ApiError>) -> OpResult {
    let mut written = None;
    let outcome = match r {
        Ok((o, m)) => {
            written = m;
            o
        }
        Err(ApiError::DryRun { .. }) => Outcome::Skipped,
        Err(e) => {
            tracing::error!(op = op.kind(), target = %op.target(), error = %e, "Operation failed");
            Outcome::Failed { class: e.class().label().into(), error: e.to_string() }
        }
    };
    if matches!(outcome, Outcome::Applied) {
        tracing::info!(op = op.kind(), target = %op.target(), "Applied");
    }
    OpResult { written_metadata: written, ..OpResult::new(op, outcome) }
}

type Done = (Outcome, Option<Map<String, Value>>);

fn applied() -> Result<Done, ApiError> {
    Ok((Outcome::Applied, None))
}

async fn run_one(client: &Client, op: &Op, opts: &ApplyOptions) -> Result<Done, ApiError> {
    match op {
        Op::CreateTeam { request, .. } => {
            if !client.create_team(request).await? {
                // Created meanwhile (or by a retried request): make sure it has our settings.
                client.update_team(request).await?;
            }
            Ok((Outcome::Applied, request.metadata.clone()))
        }
        Op::UpdateTeam { team_id, request, metadata_patch, .. } => {
            let mut req = request.clone();
            if let Some(patch) = metadata_patch {
                let Some(fresh) = client.get_team(team_id).await? else {
                    return Ok((gone(&format!("team {team_id}")), None));
                };
                req.metadata = Some(patch.apply(&fresh.metadata));
            }
            client.update_team(&req).await?;
            Ok((Outcome::Applied, req.metadata))
        }
        Op::CreateUser { .. } => create_one(client, op, opts).await,
        Op::UpdateUser { user_id, request, unblock_keys, metadata_patch, .. } => {
            let mut req = request.clone();
            if let Some(patch) = metadata_patch {
                let Some(fresh) = client.get_user(user_id).await? else {
                    return Ok((gone(&format!("user {user_id}")), None));
                };
                req.metadata = Some(patch.apply(&fresh.metadata));
            }
            for token in unblock_keys {
                client.set_key_blocked(token, false).await?;
            }
            client.update_user(&req).await?;
            Ok((Outcome::Applied, req.metadata))
        }
        Op::DeactivateUser { user_id, metadata_patch, .. } => {
            let Some(fresh) = client.get_user(user_id).await? else {
                return Ok((Outcome::AlreadyDone { detail: "the user no longer exists".into() }, None));
            };
            let mut patch = metadata_patch.clone();
            let mut marker: UserMarker =
                patch.set.get(MARKER_KEY).and_then(|v| serde_json::from_value(v.clone()).ok()).ok_or_else(|| {
                    ApiError::Decode { endpoint: "plan".into(), detail: "deactivation without marker".into() }
                })?;
            for key in client.list_keys(user_id).await? {
                if key.blocked != Some(true) && client.set_key_blocked(&key.token, true).await? {
                    marker.blocked_keys.push(key.token);
                }
            }
            patch.set.insert(MARKER_KEY.into(), serde_json::to_value(&marker).unwrap_or_default());
            let metadata = patch.apply(&fresh.metadata);
            let req =
                UpdateUserRequest { user_id: user_id.clone(), metadata: Some(metadata.clone()), ..Default::default() };
            client.update_user(&req).await?;
            Ok((Outcome::Applied, Some(metadata)))
        }
        Op::DeleteUser { user_id, key, .. } => match verify_for_delete(client, user_id, key).await? {
            Some(done) => Ok((done, None)),
            None => Ok((
                if client.delete_user(user_id).await? {
                    Outcome::Applied
                } else {
                    Outcome::AlreadyDone { detail: "already deleted".into() }
                },
                None,
            )),
        },
        Op::AddMembers { team_id, members } => client.add_members(team_id, members).await.and_then(|_| applied()),
        Op::UpdateMember { team_id, user_id, role } => {
            client.update_member(team_id, user_id, role).await.and_then(|_| applied())
        }
        Op::RemoveMember { team_id, user_id } => client.remove_member(team_id, user_id).await.and_then(|_| applied()),
    }
}

fn gone(what: &str) -> Outcome {
    Outcome::Failed { class: "not_found".into(), error: format!("{what} no longer exists in LiteLLM; not updated") }
}

/// Re-reads a user before deleting it: `Some(outcome)` when the delete must not happen (gone, or no longer
/// carrying this source's marker).
async fn verify_for_delete(client: &Client, user_id: &str, key: &ExternalKey) -> Result<Option<Outcome>, ApiError> {
    match client.get_user(user_id).await? {
        None => Ok(Some(Outcome::AlreadyDone { detail: "already deleted".into() })),
        Some(row) => match read_marker::<UserMarker>(&row.metadata) {
            Some(m) if m.source == key.source && m.external_id == key.external_id => Ok(None),
            _ => Ok(Some(Outcome::Failed {
                class: "conflict".into(),
                error: format!("user {user_id} no longer carries the marker of {key}; not deleted"),
            })),
        },
    }
}

/// One-by-one create. `/user/new` refuses `model_max_budget` without an Enterprise licence, so it follows in an
/// update. A 409 means the user exists (a retried request, or a race): go to update if it is ours.
async fn create_one(client: &Client, op: &Op, opts: &ApplyOptions) -> Result<Done, ApiError> {
    let Op::CreateUser { request, .. } = op else { return applied() };
    let mut req = request.clone();
    let mmb = req.model_max_budget.take();
    match client.create_user(&req).await {
        Ok(()) => {
            if let Some(m) = mmb {
                let upd =
                    UpdateUserRequest { user_id: req.user_id.clone(), model_max_budget: Some(m), ..Default::default() };
                client.update_user(&upd).await?;
            }
            Ok((Outcome::Applied, Some(req.metadata)))
        }
        Err(e) if e.class() == ErrorClass::Conflict => resolve_conflict(client, op, opts, &e.to_string()).await,
        Err(e) => Err(e),
    }
}

async fn resolve_conflict(client: &Client, op: &Op, opts: &ApplyOptions, why: &str) -> Result<Done, ApiError> {
    let Op::CreateUser { user_id, key, desired, request } = op else { return applied() };
    let Some(row) = client.get_user(user_id).await? else {
        return Ok((
            Outcome::Failed {
                class: "conflict".into(),
                error: format!(
                "LiteLLM refused to create {user_id} ({why}) but has no user with that id: the e-mail address {:?} \
                 belongs to another LiteLLM user",
                request.user_email.as_deref().unwrap_or("")
            ),
            },
            None,
        ));
    };
    let marker = read_marker::<UserMarker>(&row.metadata);
    let ours = marker.as_ref().is_some_and(|m| m.source == key.source && m.external_id == key.external_id);
    let adoptable = marker.is_none() && opts.adopt_existing;
    if !(ours || adoptable) {
        return Ok((
            Outcome::Failed {
                class: "conflict".into(),
                error: format!(
                    "user {user_id} already exists in LiteLLM and is not managed by litellm-sync for {key}; set \
                 safety.adopt_existing = true to take it over"
                ),
            },
            None,
        ));
    }
    let mut upd = user_update(desired, &row, marker.as_ref()).request;
    // /v2/user/info does not return max_parallel_requests: send it whenever it is owned.
    if upd.max_parallel_requests.is_none() {
        upd.max_parallel_requests = desired.fields.max_parallel_requests;
    }
    if upd.is_empty() {
        return Ok((
            Outcome::AlreadyDone { detail: "already exists with the wanted settings".into() },
            Some(row.metadata),
        ));
    }
    client.update_user(&upd).await?;
    let written = upd.metadata.unwrap_or(row.metadata);
    Ok((Outcome::Applied, Some(written)))
}

async fn create_users(
    client: &Client,
    ops: &[&Op],
    opts: &ApplyOptions,
    locks: &Locks,
    gate: &Gate<'_>,
    progress: Progress<'_>,
) -> Vec<OpResult> {
    let mut results = Vec::with_capacity(ops.len());
    // Users that need an invitation e-mail cannot go through the bulk endpoint.
    let (bulkable, single): (Vec<&Op>, Vec<&Op>) =
        ops.iter().partition(|op| matches!(op, Op::CreateUser { request, .. } if !request.send_invite_email));
    let mut fallback: Vec<&Op> = single;
    let mut conflicts: Vec<(&Op, String)> = Vec::new();
    let mut followups: Vec<&Op> = Vec::new();
    if bulkable.len() > 1 {
        for chunk in bulkable.chunks(BULK_MAX) {
            if gate.closed().is_some() {
                fallback.extend(chunk);
                continue;
            }
            // model_max_budget goes in a follow-up update, as for one-by-one creates: with it, LiteLLM (without an
            // Enterprise licence) creates the user but not its key, and reports that only in the row's `error`.
            let rows: Vec<NewUserRequest> = chunk
                .iter()
                .filter_map(|op| match op {
                    Op::CreateUser { request, .. } => {
                        Some(NewUserRequest { model_max_budget: None, ..request.clone() })
                    }
                    _ => None,
                })
                .collect();
            match client.bulk_create(&rows).await {
                Ok(None) => fallback.extend(chunk),
                Ok(Some(rows)) => {
                    let by_id: HashMap<String, (bool, Option<String>)> =
                        rows.into_iter().filter_map(|r| r.user_id.map(|id| (id, (r.success, r.error)))).collect();
                    for op in chunk {
                        let Op::CreateUser { user_id, .. } = op else { continue };
                        match by_id.get(user_id) {
                            Some((true, None)) => {
                                if matches!(op, Op::CreateUser { request, .. } if request.model_max_budget.is_some()) {
                                    followups.push(op);
                                    continue;
                                }
                                let mut r = OpResult::new(op, Outcome::Applied);
                                if let Op::CreateUser { request, .. } = op {
                                    r.written_metadata = Some(request.metadata.clone());
                                }
                                tracing::info!(op = op.kind(), target = %op.target(), "Applied (bulk)");
                                progress(op, &r);
                                results.push(r);
                            }
                            // Created, but not all of it (e.g. the requested key): not a clean success.
                            Some((true, Some(err))) => {
                                let error = format!("LiteLLM created {user_id} but reported: {err}");
                                tracing::error!(op = op.kind(), target = %op.target(), error = %error, "Operation failed");
                                let r = OpResult::new(op, Outcome::Failed { class: "invalid".into(), error });
                                progress(op, &r);
                                results.push(r);
                            }
                            Some((false, Some(err))) if err.contains("already exists") => {
                                conflicts.push((op, err.clone()))
                            }
                            Some((false, err)) => {
                                let error = format!(
                                    "LiteLLM refused to create {user_id}: {}",
                                    err.as_deref().unwrap_or("no reason given")
                                );
                                tracing::error!(op = op.kind(), target = %op.target(), error = %error, "Operation failed");
                                let r = OpResult::new(op, Outcome::Failed { class: "invalid".into(), error });
                                progress(op, &r);
                                results.push(r);
                            }
                            // A row LiteLLM did not report on: find out one by one.
                            None => fallback.push(op),
                        }
                    }
                }
                Err(ApiError::DryRun { .. }) => report_all(chunk, &Outcome::Skipped, progress, &mut results),
                // The whole batch failed (after retries): each user is tried on its own so one bad row cannot
                // sink the rest, and a retried batch that half-landed resolves through the 409 path.
                Err(e) => {
                    tracing::warn!(error = %e, "Bulk create failed; creating these users one by one");
                    gate.note_error(&e);
                    fallback.extend(chunk);
                }
            }
        }
    } else {
        fallback.extend(bulkable);
    }
    let set_mmb = stream::iter(followups)
        .map(|op| async move {
            let _g = locks.acquire(&op.resources()).await;
            let Op::CreateUser { request, .. } = op else { return finish(op, applied()) };
            let upd = UpdateUserRequest {
                user_id: request.user_id.clone(),
                model_max_budget: request.model_max_budget.clone(),
                ..Default::default()
            };
            let res = client.update_user(&upd).await.map(|()| (Outcome::Applied, Some(request.metadata.clone())));
            let r = finish(op, res);
            gate.note(&r);
            progress(op, &r);
            r
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    results.extend(set_mmb);
    let singles = stream::iter(
        fallback.into_iter().map(|op| (op, None)).chain(conflicts.into_iter().map(|(op, e)| (op, Some(e)))),
    )
    .map(|(op, conflict)| async move {
        let _g = locks.acquire(&op.resources()).await;
        if let Some(d) = gate.closed() {
            let r = OpResult::new(op, d);
            progress(op, &r);
            return r;
        }
        let res = match conflict {
            Some(why) => resolve_conflict(client, op, opts, &why).await,
            None => create_one(client, op, opts).await,
        };
        let r = finish(op, res);
        gate.note(&r);
        progress(op, &r);
        r
    })
    .buffer_unordered(opts.concurrency.max(1))
    .collect::<Vec<_>>()
    .await;
    results.extend(singles);
    results
}

async fn delete_users(
    client: &Client,
    ops: &[&Op],
    opts: &ApplyOptions,
    locks: &Locks,
    gate: &Gate<'_>,
    progress: Progress<'_>,
) -> Vec<OpResult> {
    // Re-read every user first; only those still ours are deleted.
    let checked: Vec<(&Op, Result<Option<Outcome>, ApiError>)> = stream::iter(ops.iter().copied())
        .map(|op| async move {
            let Op::DeleteUser { user_id, key, .. } = op else { return (op, Ok(None)) };
            (op, verify_for_delete(client, user_id, key).await)
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    let mut results = Vec::new();
    let mut todo: Vec<&Op> = Vec::new();
    for (op, res) in checked {
        match res {
            Ok(None) => todo.push(op),
            Err(e) if gate.opts.defer_when_unavailable && e.class() == ErrorClass::Retryable => {
                gate.note_error(&e);
                let r = OpResult::new(op, Outcome::Deferred { reason: "LiteLLM unreachable".into() });
                progress(op, &r);
                results.push(r);
            }
            other => {
                let r = finish(op, other.map(|o| (o.unwrap_or(Outcome::Applied), None)));
                progress(op, &r);
                results.push(r);
            }
        }
    }
    let mut single: Vec<&Op> = Vec::new();
    if todo.len() > 1 {
        for chunk in todo.chunks(BULK_MAX) {
            if gate.closed().is_some() {
                single.extend(chunk);
                continue;
            }
            let ids: Vec<String> = chunk.iter().map(|op| target_id(op)).collect();
            match client.bulk_delete(&ids).await {
                Ok(Some(rows)) => {
                    let by_id: HashMap<String, (bool, Option<String>)> =
                        rows.into_iter().filter_map(|r| r.user_id.map(|id| (id, (r.success, r.error)))).collect();
                    for op in chunk {
                        let outcome = match by_id.get(&target_id(op)) {
                            Some((true, _)) => Outcome::Applied,
                            Some((false, Some(e))) if e.contains("not found") => {
                                Outcome::AlreadyDone { detail: "already deleted".into() }
                            }
                            Some((false, e)) => Outcome::Failed {
                                class: "invalid".into(),
                                error: e.clone().unwrap_or_else(|| "LiteLLM gave no reason".into()),
                            },
                            None => {
                                single.push(op);
                                continue;
                            }
                        };
                        let r = OpResult::new(op, outcome);
                        progress(op, &r);
                        results.push(r);
                    }
                }
                Ok(None) => single.extend(chunk),
                Err(ApiError::DryRun { .. }) => report_all(chunk, &Outcome::Skipped, progress, &mut results),
                Err(e) => {
                    tracing::warn!(error = %e, "Bulk delete failed; deleting these users one by one");
                    gate.note_error(&e);
                    single.extend(chunk);
                }
            }
        }
    } else {
        single = todo;
    }
    let rest = stream::iter(single)
        .map(|op| async move {
            let _g = locks.acquire(&op.resources()).await;
            if let Some(d) = gate.closed() {
                let r = OpResult::new(op, d);
                progress(op, &r);
                return r;
            }
            let Op::DeleteUser { user_id, .. } = op else { return finish(op, applied()) };
            let res = client.delete_user(user_id).await.map(|deleted| {
                let o =
                    if deleted { Outcome::Applied } else { Outcome::AlreadyDone { detail: "already deleted".into() } };
                (o, None)
            });
            let r = finish(op, res);
            gate.note(&r);
            progress(op, &r);
            r
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    results.extend(rest);
    results
}

fn target_id(op: &Op) -> String {
    match op {
        Op::DeleteUser { user_id, .. } | Op::CreateUser { user_id, .. } => user_id.clone(),
        other => other.target(),
    }
}
