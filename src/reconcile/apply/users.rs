//! User operations: create (through the bulk endpoint where it can), the key a rule mints at creation, update,
//! reactivation, deactivation and deletion. Every write to an existing user is re-derived from its fresh row.

use std::collections::HashMap;

use futures::stream::{self, StreamExt};
use serde_json::Value;
use tracing::Instrument;

use super::{is_ours, After, OpResult, Outcome, Run, WINDOW};
use crate::litellm::types::{NewUserRequest, UpdateUserRequest, UserRow};
use crate::litellm::{ApiError, ErrorClass, BULK_MAX};

/// Bulk-create requests in flight.
const BULK_IN_FLIGHT: usize = 2;
use crate::mapper::DesiredUser;
use crate::reconcile::key_sink::Delivery;
use crate::reconcile::op::Op;
use crate::reconcile::plan::{new_user_request, user_update};
use crate::reconcile::{read_marker, MetadataPatch, UserMarker, MARKER_KEY, SCIM_ACTIVE};

/// The outcome of a user write, and the row it leaves.
type Written = Result<(Outcome, After), Outcome>;

/// The follow-ups of users the bulk endpoint created, and their results.
async fn follow_ups(run: &Run<'_>, landed: Vec<&Op>) -> Vec<OpResult> {
    stream::iter(landed)
        .map(|op| {
            async move {
                let _g = run.locks.acquire(&op.resources()).await;
                let r = match finish_create(run, op).await {
                    Ok((o, after)) => OpResult::new(op, o).with_after(after),
                    Err(o) => OpResult::new(op, o),
                };
                note_create(run, op, &r);
                run.done(op, r)
            }
            .instrument(super::op_span(op))
        })
        .buffer_unordered(run.concurrency())
        .collect()
        .await
}

/// Creates users: the bulk endpoint for batches (500 rows a request, one licence check and one insert per batch),
/// one by one otherwise. Follow-ups (model_max_budget, which `/user/new` refuses without an Enterprise licence
/// and with which the bulk endpoint skips the key, and minted keys) run after the user exists.
pub(super) async fn create_users(run: &Run<'_>, ops: &[&Op]) -> Vec<OpResult> {
    let mut results = Vec::with_capacity(ops.len());
    // Users that need an invitation e-mail cannot go through the bulk endpoint.
    let (bulkable, single): (Vec<&Op>, Vec<&Op>) =
        ops.iter().partition(|op| matches!(op, Op::CreateUser { request, .. } if !request.send_invite_email));
    let mut one_by_one: Vec<(&Op, Option<String>)> = single.into_iter().map(|op| (op, None)).collect();
    if bulkable.len() > 1 {
        // Two batches in flight: LiteLLM reads and checks one while its database inserts the other.
        let mut answers = stream::iter(bulkable.chunks(BULK_MAX))
            .map(|chunk| async move {
                run.check_guard().await;
                if run.closed().is_some() {
                    return (chunk, None);
                }
                let rows: Vec<NewUserRequest> = chunk
                    .iter()
                    .filter_map(|op| match op {
                        Op::CreateUser { request, .. } => {
                            Some(NewUserRequest { model_max_budget: None, ..request.clone() })
                        }
                        _ => None,
                    })
                    .collect();
                (chunk, Some(run.client.bulk_create(&rows).await))
            })
            .buffered(BULK_IN_FLIGHT);
        while let Some((chunk, answer)) = answers.next().await {
            let Some(answer) = answer else {
                one_by_one.extend(chunk.iter().map(|op| (*op, None)));
                continue;
            };
            match answer {
                Ok(None) => one_by_one.extend(chunk.iter().map(|op| (*op, None))),
                Ok(Some(rows)) => {
                    let mut landed: Vec<&Op> = Vec::new();
                    let by_id: HashMap<String, (bool, Option<String>)> =
                        rows.into_iter().filter_map(|r| r.user_id.map(|id| (id, (r.success, r.error)))).collect();
                    for op in chunk {
                        let Op::CreateUser { user_id, .. } = op else { continue };
                        match by_id.get(user_id) {
                            Some((true, None)) => landed.push(op),
                            // Created, but not all of it: not a clean success.
                            Some((true, Some(err))) => {
                                let error = format!("LiteLLM created {user_id} but reported: {err}");
                                let r = OpResult::new(op, Outcome::Failed { class: "invalid".into(), error });
                                run.known.fail(format!("user:{user_id}"), true, "its create failed".into());
                                results.push(run.done(op, r));
                            }
                            Some((false, Some(err))) if err.contains("already exists") && err.contains("User id") => {
                                one_by_one.push((op, Some(err.clone())))
                            }
                            Some((false, err)) => {
                                let error = format!(
                                    "LiteLLM refused to create {user_id}: {}",
                                    err.as_deref().unwrap_or("no reason given")
                                );
                                run.known.fail(format!("user:{user_id}"), true, format!("its create failed: {error}"));
                                let r = OpResult::new(op, Outcome::Failed { class: "invalid".into(), error });
                                results.push(run.done(op, r));
                            }
                            // A row LiteLLM did not report on: find out one by one.
                            None => one_by_one.push((op, None)),
                        }
                    }
                    // The batch's follow-ups now, so that its results are reported (and recorded by the caller)
                    // while the next batch is sent, not after the last one.
                    results.extend(follow_ups(run, landed).await);
                }
                Err(ApiError::DryRun { .. }) => {
                    for op in chunk {
                        let r = OpResult::new(op, Outcome::Skipped);
                        note_create(run, op, &r);
                        results.push(run.done(op, r));
                    }
                }
                // The whole batch failed (after retries): each user is tried on its own so one bad row cannot sink
                // the rest, and a retried batch that half-landed resolves through the 409 path.
                Err(e) => {
                    tracing::warn!(error = %e, "Bulk create failed; creating these users one by one");
                    run.note_error(&e);
                    one_by_one.extend(chunk.iter().map(|op| (*op, None)));
                }
            }
        }
    } else {
        one_by_one.extend(bulkable.into_iter().map(|op| (op, None)));
    }
    let singles: Vec<OpResult> = stream::iter(one_by_one)
        .map(|(op, conflict)| {
            async move {
                let _g = run.locks.acquire(&op.resources()).await;
                let r = match run.closed() {
                    Some(d) => OpResult::new(op, d),
                    None => {
                        let res = match conflict {
                            Some(why) => resolve_conflict(run, op, &why).await,
                            None => create_one(run, op).await,
                        };
                        match res {
                            Ok((o, after)) => OpResult::new(op, o).with_after(after),
                            Err(o) => OpResult::new(op, o),
                        }
                    }
                };
                note_create(run, op, &r);
                run.done(op, r)
            }
            .instrument(super::op_span(op))
        })
        .buffer_unordered(run.concurrency())
        .collect()
        .await;
    results.extend(singles);
    results
}

/// What later phases learn from a create: the row, or that it failed.
fn note_create(run: &Run<'_>, op: &Op, r: &OpResult) {
    let Some(user_id) = op.user_id() else { return };
    match (&r.outcome, &r.after) {
        (o, After::User(row)) if o.succeeded() => run.known.set_user(user_id, Some((**row).clone())),
        // A dry run goes on as if the user had been created, so its memberships are shown as they would be sent.
        (Outcome::Skipped, _) => {
            if let Op::CreateUser { request, .. } = op {
                run.known.set_user(user_id, Some(UserRow::created(request)));
            }
        }
        (o, _) if o.succeeded() => {}
        (o, _) => {
            let permanent = o.is_final();
            run.known.fail(format!("user:{user_id}"), permanent, format!("its create did not succeed ({})", o.label()));
        }
    }
}

/// One-by-one create: `/user/new` (never with a key: a key is minted afterwards under a unique alias, which is
/// safe to look up after a lost answer), then the follow-ups. A 409 means the user exists (a retried request, or
/// a race): go to update if it is ours.
async fn create_one(run: &Run<'_>, op: &Op) -> Written {
    let Op::CreateUser { request, .. } = op else { return Err(not_a(op)) };
    let req = NewUserRequest { model_max_budget: None, ..request.clone() };
    match run.client.create_user(&req).await {
        Ok(()) => finish_create(run, op).await,
        Err(e) if e.class() == ErrorClass::Conflict => resolve_conflict(run, op, &e.to_string()).await,
        Err(e) => Err(run.failed(e)),
    }
}

fn not_a(op: &Op) -> Outcome {
    Outcome::Failed { class: "other".into(), error: format!("{} is not a user create", op.id()) }
}

/// After the user exists: the per-model budget, and the key a rule mints.
async fn finish_create(run: &Run<'_>, op: &Op) -> Written {
    let Op::CreateUser { request, desired, .. } = op else { return Err(not_a(op)) };
    let mut row = UserRow::created(request);
    if let Some(m) = &request.model_max_budget {
        let upd = UpdateUserRequest {
            user_id: request.user_id.clone(),
            model_max_budget: Some(m.clone()),
            ..Default::default()
        };
        run.client.update_user(&upd).await.map_err(|e| run.failed(e))?;
        row = row.updated(&upd);
    }
    mint_key(run, desired).await?;
    Ok((Outcome::Applied, After::User(Box::new(row))))
}

/// The key alias and duration a desired user's key rule gives, if any.
pub(super) fn key_spec(d: &DesiredUser) -> Option<(String, Option<String>)> {
    let k = d.create.key.as_ref()?;
    let alias = k
        .alias
        .as_deref()
        .unwrap_or("{user_id}")
        .replace("{user_name}", &d.user_name)
        .replace("{user_id}", &d.user_id)
        .replace("{email}", d.email.as_deref().unwrap_or(""));
    Some((alias, k.duration.clone()))
}

/// Mints the user's key (when a rule asks for one) and delivers its plaintext to the key sink. Exactly one key
/// reaches its owner: a key of this user under this alias that the sink already has is left alone; one whose
/// plaintext was lost (an earlier attempt's answer never arrived) is deleted and minted again.
async fn mint_key(run: &Run<'_>, d: &DesiredUser) -> Result<(), Outcome> {
    let Some((alias, duration)) = key_spec(d) else { return Ok(()) };
    let Some(sink) = run.opts.key_sink.as_ref() else {
        return Err(Outcome::Failed {
            class: "invalid".into(),
            error: "a rule asks for a key but no [keys] file is configured to deliver it to".into(),
        });
    };
    if sink.has(&d.user_id, &alias) {
        return Ok(());
    }
    for attempt in 0..2 {
        let existing = run.client.keys_by_alias(&alias).await.map_err(|e| run.failed(e))?;
        let (mine, foreign): (Vec<_>, Vec<_>) =
            existing.into_iter().partition(|k| k.user_id.as_deref() == Some(d.user_id.as_str()));
        if !foreign.is_empty() {
            return Err(Outcome::Failed {
                class: "conflict".into(),
                error: format!(
                    "key alias {alias:?} is taken by another user's key; LiteLLM requires unique aliases: change the \
                     rule's key alias template"
                ),
            });
        }
        if !mine.is_empty() {
            tracing::warn!(user_id = %d.user_id, alias = %alias,
                "A key minted earlier never reached the key file (its answer was lost); replacing it");
            let tokens: Vec<String> = mine.into_iter().map(|k| k.token).collect();
            run.client.delete_keys(&tokens).await.map_err(|e| run.failed(e))?;
        }
        match run.client.generate_key(&d.user_id, &alias, duration.as_deref()).await {
            Ok(key) => {
                let delivery = Delivery {
                    user_id: &d.user_id,
                    user_email: d.email.as_deref(),
                    alias: &alias,
                    source: &d.key.source,
                    external_id: &d.key.external_id,
                };
                return sink.deliver(&delivery, &key).map_err(|e| Outcome::Failed {
                    class: "other".into(),
                    error: format!("the key of {} was minted but could not be delivered: {e}", d.user_id),
                });
            }
            // The answer was lost (or LiteLLM failed mid-way): look again, once.
            Err(e) if e.class() == ErrorClass::Retryable && attempt == 0 => {
                tracing::warn!(user_id = %d.user_id, error = %e, "Minting a key failed; checking what landed");
            }
            Err(e) => return Err(run.failed(e)),
        }
    }
    Err(Outcome::Failed { class: "retryable".into(), error: format!("could not mint the key of {}", d.user_id) })
}

/// A create LiteLLM answered "exists": read the user; if it is ours (or adoptable), bring it to the desired
/// state through the update path, which also unblocks what a deactivation blocked.
async fn resolve_conflict(run: &Run<'_>, op: &Op, why: &str) -> Written {
    let Op::CreateUser { user_id, key, desired, request } = op else { return Err(not_a(op)) };
    let Some(row) = run.client.get_user(user_id).await.map_err(|e| run.failed(e))? else {
        return Err(Outcome::Failed {
            class: "conflict".into(),
            error: format!(
                "LiteLLM refused to create {user_id} ({why}) but has no user with that id: the e-mail address {:?} \
                 belongs to another LiteLLM user",
                request.user_email.as_deref().unwrap_or("")
            ),
        });
    };
    let marker = read_marker::<UserMarker>(&row.metadata);
    let ours = marker.as_ref().is_some_and(|m| m.source == key.source && m.external_id == key.external_id);
    if !(ours || (marker.is_none() && run.opts.adopt_existing)) {
        // The row is passed on all the same: the ledger learns the id is taken, and the next plan says so
        // instead of trying the create again.
        let failed = Outcome::Failed {
            class: "conflict".into(),
            error: format!(
                "user {user_id} already exists in LiteLLM and is not managed by litellm-sync for {key}; set \
                 safety.adopt_existing = true to take it over"
            ),
        };
        return Ok((failed, After::User(Box::new(row))));
    }
    let (outcome, after) = write_update(run, desired, &row, marker.as_ref()).await?;
    mint_key(run, desired).await?;
    let outcome = match outcome {
        Outcome::AlreadyDone { .. } => {
            Outcome::AlreadyDone { detail: "already exists with the wanted settings".into() }
        }
        o => o,
    };
    Ok((outcome, after))
}

/// Brings an existing user to the desired state: unblocks the keys its marker recorded, then one update.
async fn write_update(run: &Run<'_>, d: &DesiredUser, row: &UserRow, marker: Option<&UserMarker>) -> Written {
    let mut u = user_update(d, row, marker);
    // `/v2/user/info` does not return max_parallel_requests: send it whenever it is owned and unknown.
    if u.request.max_parallel_requests.is_none() && row.max_parallel_requests.is_none() {
        u.request.max_parallel_requests = d.fields.max_parallel_requests;
    }
    if u.request.is_empty() && u.unblock_keys.is_empty() {
        return Ok((
            Outcome::AlreadyDone { detail: "already in the wanted state".into() },
            After::User(Box::new(row.clone())),
        ));
    }
    for token in &u.unblock_keys {
        run.client.set_key_blocked(token, false).await.map_err(|e| run.failed(e))?;
    }
    if !u.request.is_empty() {
        run.client.update_user(&u.request).await.map_err(|e| run.failed(e))?;
    }
    Ok((Outcome::Applied, After::User(Box::new(row.updated(&u.request)))))
}

/// An update, reactivation or adoption, re-derived from the user's fresh row.
pub(super) async fn update_user(run: &Run<'_>, op: &Op) -> OpResult {
    let Op::UpdateUser { user_id, key, reason, desired, .. } = op else { return OpResult::new(op, not_a(op)) };
    let Some(d) = desired.as_deref() else {
        return OpResult::new(
            op,
            Outcome::Failed { class: "other".into(), error: "the operation lost its desired state".into() },
        );
    };
    let row = match run.confirmed(user_id) {
        Ok(r) => r,
        Err(o) => return OpResult::new(op, o),
    };
    let res = match row {
        // A managed user that vanished (deleted by hand): re-created through the create path, marker and all.
        None => recreate(run, d).await.map(|(o, a)| {
            let mut r = OpResult::new(op, o).with_after(a);
            r.recreated = true;
            r
        }),
        Some(row) => {
            let marker = read_marker::<UserMarker>(&row.metadata);
            let allowed = if reason == "adopt" { marker.is_none() || is_ours(&row, key) } else { is_ours(&row, key) };
            if !allowed {
                return OpResult::new(
                    op,
                    Outcome::NotSent {
                        reason: format!(
                            "user {user_id} no longer carries the marker of {key} in LiteLLM; it is not ours to change"
                        ),
                    },
                );
            }
            write_update(run, d, &row, marker.as_ref()).await.map(|(o, a)| OpResult::new(op, o).with_after(a))
        }
    };
    let r = res.unwrap_or_else(|o| OpResult::new(op, o));
    if let After::User(row) = &r.after {
        run.known.set_user(user_id, Some((**row).clone()));
    }
    r
}

async fn recreate(run: &Run<'_>, d: &DesiredUser) -> Written {
    tracing::warn!(user_id = %d.user_id, key = %d.key, "A managed user no longer exists in LiteLLM; re-creating it");
    let op = Op::CreateUser {
        user_id: d.user_id.clone(),
        key: d.key.clone(),
        request: new_user_request(d),
        desired: Box::new(d.clone()),
    };
    create_one(run, &op).await
}

/// Deactivation, re-entrant: the keys to block are recorded in the marker (with `scim_active=false`, which
/// already stops every key) *before* they are blocked; a later attempt reads the marker back and completes the
/// same set. Keys someone else had blocked are not recorded, so reactivation leaves them blocked.
pub(super) async fn deactivate_user(run: &Run<'_>, op: &Op) -> OpResult {
    let Op::DeactivateUser { user_id, key, .. } = op else { return OpResult::new(op, not_a(op)) };
    let row = match run.confirmed(user_id) {
        Ok(Some(row)) => row,
        Ok(None) => {
            return OpResult::new(op, Outcome::AlreadyDone { detail: "the user no longer exists".into() })
                .with_after(After::UserGone(user_id.clone()))
        }
        Err(o) => return OpResult::new(op, o),
    };
    let Some(marker) = read_marker::<UserMarker>(&row.metadata).filter(|_| is_ours(&row, key)) else {
        return OpResult::new(
            op,
            Outcome::NotSent {
                reason: format!("user {user_id} does not carry the marker of {key}; its keys are not ours to block"),
            },
        );
    };
    match deactivate(run, user_id, &row, marker).await {
        Ok(row) => OpResult::new(op, Outcome::Applied).with_after(After::User(Box::new(row))),
        Err(o) => OpResult::new(op, o),
    }
}

async fn deactivate(run: &Run<'_>, user_id: &str, row: &UserRow, mut marker: UserMarker) -> Result<UserRow, Outcome> {
    let keys = run.client.list_keys(user_id).await.map_err(|e| run.failed(e))?;
    let to_block: Vec<String> = keys.into_iter().filter(|k| k.blocked != Some(true)).map(|k| k.token).collect();
    for t in &to_block {
        if !marker.blocked_keys.contains(t) {
            marker.blocked_keys.push(t.clone());
        }
    }
    marker.deactivated_at.get_or_insert_with(chrono::Utc::now);
    marker.blocking = !to_block.is_empty();
    let write = |marker: &UserMarker, base: &serde_json::Map<String, Value>| {
        let mut set = serde_json::Map::new();
        set.insert(SCIM_ACTIVE.into(), Value::Bool(false));
        set.insert(MARKER_KEY.into(), serde_json::to_value(marker).unwrap_or(Value::Null));
        let metadata = MetadataPatch { set, remove: Vec::new() }.apply(base);
        UpdateUserRequest { user_id: user_id.to_string(), metadata: Some(metadata), ..Default::default() }
    };
    let first = write(&marker, &row.metadata);
    run.client.update_user(&first).await.map_err(|e| run.failed(e))?;
    let mut after = row.updated(&first);
    if marker.blocking {
        for t in &to_block {
            run.client.set_key_blocked(t, true).await.map_err(|e| run.failed(e))?;
        }
        marker.blocking = false;
        let done = write(&marker, &after.metadata);
        run.client.update_user(&done).await.map_err(|e| run.failed(e))?;
        after = after.updated(&done);
    }
    Ok(after)
}

/// Re-reads every user first (in windows); only those still carrying this identity's marker are deleted, in
/// bulk where the proxy can.
pub(super) async fn delete_users(run: &Run<'_>, ops: &[&Op]) -> Vec<OpResult> {
    let mut results = Vec::new();
    let mut todo: Vec<&Op> = Vec::new();
    for window in ops.chunks(WINDOW) {
        run.confirm(window.iter().filter_map(|op| op.user_id())).await;
        for op in window {
            let Op::DeleteUser { user_id, key, .. } = op else { continue };
            let outcome = match run.confirmed(user_id) {
                Ok(None) => Outcome::AlreadyDone { detail: "already deleted".into() },
                Ok(Some(row)) if is_ours(&row, key) => {
                    todo.push(op);
                    continue;
                }
                Ok(Some(_)) => Outcome::NotSent {
                    reason: format!("user {user_id} no longer carries the marker of {key}; not deleted"),
                },
                Err(o) => o,
            };
            let after = match &outcome {
                Outcome::AlreadyDone { .. } => After::UserGone(user_id.clone()),
                _ => After::Unknown,
            };
            results.push(run.done(op, OpResult::new(op, outcome).with_after(after)));
        }
    }
    let mut single: Vec<&Op> = Vec::new();
    if todo.len() > 1 {
        for chunk in todo.chunks(BULK_MAX) {
            run.check_guard().await;
            if run.closed().is_some() {
                single.extend(chunk);
                continue;
            }
            let ids: Vec<String> = chunk.iter().filter_map(|op| op.user_id()).map(str::to_string).collect();
            match run.client.bulk_delete(&ids).await {
                Ok(Some(rows)) => {
                    let by_id: HashMap<String, (bool, Option<String>)> =
                        rows.into_iter().filter_map(|r| r.user_id.map(|id| (id, (r.success, r.error)))).collect();
                    for op in chunk {
                        let id = op.user_id().unwrap_or_default().to_string();
                        let outcome = match by_id.get(&id) {
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
                        let after = if outcome.succeeded() { After::UserGone(id) } else { After::Unknown };
                        results.push(run.done(op, OpResult::new(op, outcome).with_after(after)));
                    }
                }
                Ok(None) => single.extend(chunk),
                Err(ApiError::DryRun { .. }) => {
                    for op in chunk {
                        results.push(run.done(op, OpResult::new(op, Outcome::Skipped)));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Bulk delete failed; deleting these users one by one");
                    run.note_error(&e);
                    single.extend(chunk);
                }
            }
        }
    } else {
        single = todo;
    }
    let rest = run
        .each(&single, |op| async move {
            let id = op.user_id().unwrap_or_default().to_string();
            match run.client.delete_user(&id).await {
                Ok(deleted) => {
                    let o = if deleted {
                        Outcome::Applied
                    } else {
                        Outcome::AlreadyDone { detail: "already deleted".into() }
                    };
                    OpResult::new(op, o).with_after(After::UserGone(id))
                }
                Err(e) => OpResult::new(op, run.failed(e)),
            }
        })
        .await;
    results.extend(rest);
    results
}
