//! The safety limit over destructive operations (DESIGN.md §2.3): deactivations, deletions and team member
//! removals (LiteLLM deletes the member's team keys). Held operations are not applied; an approval releases them.
//!
//! - per team: removing more than `max_deletions`, or more than `max_deletions_percent` of the team's managed
//!   members (rounded up), holds that team's removals;
//! - per run: more than `max_deletions` deprovisionings, or more than the percentage of the managed users, or more
//!   than `max_deletions` destructive operations of any kind together, holds every destructive operation.

use super::teams::TeamRemovals;
use super::{Approval, Op, Plan, PlanContext};

/// How many of `of` the percentage allows (rounded up, so a small population can still lose one).
fn allowance(percent: f64, of: usize) -> usize {
    (percent / 100.0 * of as f64).ceil() as usize
}

pub(super) fn limit(
    cx: &PlanContext<'_>,
    p: &mut Plan,
    deprovision: Vec<Op>,
    teams: Vec<TeamRemovals>,
    ops: &mut Vec<Op>,
) {
    let s = cx.safety;
    let max = s.max_deletions as usize;
    let mut reasons: Vec<String> = Vec::new();
    let mut held: Vec<Op> = Vec::new();
    let mut passed: Vec<Op> = Vec::new();

    for t in teams {
        let n = t.ops.len();
        let pct = allowance(s.max_deletions_percent, t.managed_members);
        if n > max {
            reasons.push(format!("team {:?}: {n} member removals exceed safety.max_deletions = {max}", t.team_id));
            held.extend(t.ops);
        } else if n > pct {
            reasons.push(format!(
                "team {:?}: {n} member removals exceed safety.max_deletions_percent = {}% of its {} managed members \
                 (at most {pct})",
                t.team_id, s.max_deletions_percent, t.managed_members
            ));
            held.extend(t.ops);
        } else {
            passed.extend(t.ops);
        }
    }

    // Finishing a deactivation that was already counted (and approved) is not counted again.
    let (counted, resumed): (Vec<Op>, Vec<Op>) = deprovision.into_iter().partition(Op::is_destructive);
    ops.extend(resumed);
    let n = counted.len();
    let pct = allowance(s.max_deletions_percent, p.managed_users);
    let all = if n > max {
        Some(format!("{n} deactivations/deletions exceed safety.max_deletions = {max}"))
    } else if n > pct {
        Some(format!(
            "{n} deactivations/deletions exceed safety.max_deletions_percent = {}% of {} managed users (at most {pct})",
            s.max_deletions_percent, p.managed_users
        ))
    } else if n + passed.len() > max {
        Some(format!(
            "{} destructive operations ({n} deactivations/deletions, {} team member removals) exceed \
             safety.max_deletions = {max}",
            n + passed.len(),
            passed.len()
        ))
    } else {
        None
    };
    match all {
        Some(r) => {
            reasons.push(r);
            held.extend(counted);
            held.append(&mut passed);
        }
        None => passed.extend(counted),
    }
    ops.append(&mut passed);

    match &cx.approval {
        Approval::None => {}
        Approval::All => {
            p.approved.extend(held.iter().map(Op::id));
            ops.append(&mut held);
        }
        Approval::Ops(ids) => {
            let (ok, still): (Vec<Op>, Vec<Op>) = held.into_iter().partition(|op| ids.contains(&op.id()));
            p.approved.extend(ok.iter().map(Op::id));
            ops.extend(ok);
            held = still;
        }
    }
    if !held.is_empty() {
        p.hold_reason = Some(format!(
            "{}; nothing destructive of these was applied. Approve with `sync --allow-deletions` (CLI) or \
             `litellm-sync approve` (daemon).",
            reasons.join("; ")
        ));
    }
    p.held = held;
}
