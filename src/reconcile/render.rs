//! Human (terraform-plan-like) and JSON renderings of a plan and of an apply report.
//!
//! The JSON layout is a documented interface (README "JSON output"); `format_version` changes when it does.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{json, Value};

use super::apply::{ApplyReport, Outcome};
use super::plan::{Change, Op, Plan};

/// 2: one `add_member` per membership (was `add_members` with a list), `collisions`, `errors`, `approved`,
/// `basis`, `remove_member.team_keys`, and the `not_sent` result.
pub const FORMAT_VERSION: u32 = 2;

fn short(v: &Value) -> String {
    let s = match v {
        Value::Null => "(unset)".to_string(),
        other => serde_json::to_string(other).unwrap_or_default(),
    };
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

fn changes_text(out: &mut String, changes: &[Change]) {
    let width = changes.iter().map(|c| c.field.len()).max().unwrap_or(0);
    for c in changes {
        let _ = writeln!(out, "      {:width$}  {} → {}", c.field, short(&c.from), short(&c.to));
    }
}

fn op_text(out: &mut String, op: &Op) {
    match op {
        Op::CreateTeam { team_id, request } => {
            let _ = writeln!(out, "  + create team {team_id}");
            let body = serde_json::to_value(request).unwrap_or_default();
            fields_text(out, &body, &["team_id"]);
        }
        Op::UpdateTeam { team_id, changes, .. } => {
            let _ = writeln!(out, "  ~ update team {team_id}");
            changes_text(out, changes);
        }
        Op::CreateUser { user_id, key, request, desired } => {
            let _ = writeln!(out, "  + create user {user_id}  [{key}]");
            let body = serde_json::to_value(request).unwrap_or_default();
            fields_text(out, &body, &["user_id", "auto_create_key"]);
            if let Some(k) = desired.create.key.as_ref() {
                let alias = k.alias.as_deref().unwrap_or("{user_id}");
                let _ = writeln!(out, "      mints a key (alias template {alias:?}), delivered to the [keys] file");
            }
        }
        Op::UpdateUser { user_id, reason, changes, unblock_keys, .. } => {
            let verb = match reason.as_str() {
                "reactivate" => "reactivate",
                "adopt" => "adopt",
                _ => "update",
            };
            let _ = writeln!(out, "  ~ {verb} user {user_id}");
            changes_text(out, changes);
            if !unblock_keys.is_empty() {
                let _ = writeln!(out, "      unblock {} key(s) blocked at deactivation", unblock_keys.len());
            }
        }
        Op::DeactivateUser { user_id, reason, .. } => {
            let _ = writeln!(out, "  - deactivate user {user_id}: {reason} (keys blocked, scim_active=false)");
        }
        Op::DeleteUser { user_id, reason, .. } => {
            let _ = writeln!(out, "  - delete user {user_id}: {reason}");
        }
        Op::AddMember { team_id, user_id, role } => {
            let _ = writeln!(out, "  + add to team {team_id}: {user_id} ({role})");
        }
        Op::UpdateMember { team_id, user_id, role } => {
            let _ = writeln!(out, "  ~ team {team_id}: {user_id} becomes {role}");
        }
        Op::RemoveMember { team_id, user_id, team_keys } => {
            let keys = match team_keys {
                Some(0) => " (holds no key of the team)".to_string(),
                Some(n) => format!(" (deletes the {n} key(s) the member holds for the team)"),
                None => " (deletes the keys the member holds for the team)".to_string(),
            };
            let _ = writeln!(out, "  - remove from team {team_id}: {user_id}{keys}");
        }
    }
}

/// One operation on one line (the first line of its text), for lists of held operations.
pub fn op_line(op: &Op) -> String {
    let mut out = String::new();
    op_text(&mut out, op);
    out.lines().next().unwrap_or_default().trim().to_string()
}

fn fields_text(out: &mut String, body: &Value, skip: &[&str]) {
    if let Value::Object(m) = body {
        let width = m.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in m {
            if !skip.contains(&k.as_str()) {
                let _ = writeln!(out, "      {k:width$}  {}", short(v));
            }
        }
    }
}

fn counts(ops: &[Op]) -> BTreeMap<&'static str, usize> {
    let mut c = BTreeMap::new();
    for op in ops {
        *c.entry(op.kind()).or_insert(0) += 1;
    }
    c
}

pub fn plan_text(plan: &Plan, sources: &[String], incomplete: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "litellm-sync plan for source(s): {}", sources.join(", "));
    let _ = writeln!(out);
    if !incomplete.is_empty() {
        let _ = writeln!(
            out,
            "INCOMPLETE: no usable read of source(s) {}; nothing of theirs is planned or deprovisioned.\n",
            incomplete.join(", ")
        );
    }
    if plan.is_empty() && incomplete.is_empty() && !plan.has_errors() {
        let _ = writeln!(out, "No changes: LiteLLM is in sync ({} managed users).", plan.managed_users);
    } else {
        // Adds to one team read better on one line.
        let mut i = 0;
        while i < plan.ops.len() {
            if let Op::AddMember { team_id, .. } = &plan.ops[i] {
                let mut names = Vec::new();
                while let Some(Op::AddMember { team_id: t, user_id, role }) = plan.ops.get(i) {
                    if t != team_id {
                        break;
                    }
                    names.push(format!("{user_id} ({role})"));
                    i += 1;
                }
                let _ = writeln!(out, "  + add to team {team_id}: {}", names.join(", "));
                continue;
            }
            op_text(&mut out, &plan.ops[i]);
            i += 1;
        }
    }
    if !plan.held.is_empty() {
        let _ = writeln!(out, "\nHeld by the safety limit (NOT applied):");
        for op in &plan.held {
            op_text(&mut out, op);
        }
        if let Some(r) = &plan.hold_reason {
            let _ = writeln!(out, "  {r}");
        }
    }
    if !plan.approved.is_empty() {
        let _ = writeln!(out, "\nApproved and applied in this run: {} held operation(s).", plan.approved.len());
    }
    if !plan.collisions.is_empty() {
        let _ = writeln!(out, "\nuser_id collisions (NOT provisioned; someone must look):");
        for c in &plan.collisions {
            let _ = writeln!(out, "  ✗ {}", c.describe());
        }
    }
    if !plan.errors.is_empty() {
        let _ = writeln!(out, "\nErrors:");
        for e in &plan.errors {
            let _ = writeln!(out, "  ✗ {e}");
        }
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for n in &plan.notes {
            let _ = writeln!(out, "  ! {n}");
        }
    }
    if !plan.is_empty() {
        let c = counts(&plan.ops);
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        let team_changes =
            get("create_team") + get("update_team") + get("add_member") + get("update_member") + get("remove_member");
        let _ = writeln!(
            out,
            "\nPlan: {} to create, {} to update, {} to deactivate, {} to delete, {} team change(s); {} held.",
            get("create_user"),
            get("update_user"),
            get("deactivate_user"),
            get("delete_user"),
            team_changes,
            plan.held.len()
        );
    }
    out
}

pub fn report_text(report: &ApplyReport) -> String {
    let mut out = String::new();
    let (mut applied, mut done, mut skipped, mut failed) = (0, 0, 0, 0);
    for r in &report.results {
        match &r.outcome {
            Outcome::Applied => applied += 1,
            Outcome::AlreadyDone { .. } => done += 1,
            Outcome::Skipped => skipped += 1,
            Outcome::Deferred { reason } => {
                failed += 1;
                let _ = writeln!(out, "  ✗ {} {}: deferred ({reason})", r.op, r.target);
            }
            Outcome::NotSent { reason } => {
                failed += 1;
                let _ = writeln!(out, "  ✗ {} {}: not sent: {reason}", r.op, r.target);
            }
            Outcome::Failed { error, .. } => {
                failed += 1;
                let _ = writeln!(out, "  ✗ {} {}: {error}", r.op, r.target);
            }
        }
    }
    let _ =
        writeln!(out, "Applied: {applied} applied, {done} already done, {skipped} skipped (dry run), {failed} failed.");
    out
}

pub fn plan_json(plan: &Plan, sources: &[String], incomplete: &[String], report: Option<&ApplyReport>) -> Value {
    let mut v = json!({
        "format_version": FORMAT_VERSION,
        "sources": sources,
        "incomplete_sources": incomplete,
        "in_sync": plan.is_empty() && incomplete.is_empty() && !plan.has_errors(),
        "managed_users": plan.managed_users,
        "summary": counts(&plan.ops),
        "operations": plan.ops,
        "held": plan.held,
        "hold_reason": plan.hold_reason,
        "approved": plan.approved,
        "collisions": plan.collisions,
        "errors": plan.errors,
        "notes": plan.notes,
    });
    if let Some(r) = report {
        v["results"] = serde_json::to_value(&r.results).unwrap_or_default();
        v["failed"] = json!(r.failed());
    }
    v
}
