//! Unit tests of the applier on plain data: a plan made by the real mapper and planner, applied through a client
//! whose LiteLLM does not answer (a loopback port where nothing listens). What must hold without a peer: a deposed
//! leader sends nothing, an unreachable LiteLLM defers everything for the outbox (nothing is final, nothing
//! after a failed prerequisite is sent), and results come back one per operation, matched by id.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::config::Config;
use crate::model::fixtures::{closed_port, eng_snapshot};
use crate::model::Snapshot;
use crate::reconcile::plan::{plan, Actual, Approval, PlanContext};

fn config() -> Config {
    crate::config::validate(&json!({
        "litellm": {"url": format!("http://127.0.0.1:{}", closed_port()), "api_key": "sk-test", "timeout": "2s",
                    "max_retries": 0},
        "sources": [{"name": "corp", "type": "file", "path": "corp.yaml"}],
        "rules": [{"name": "eng", "match": {"groups": ["eng"]}, "max_budget": 10.0, "team": {"id": "eng"}}],
    }))
    .unwrap()
}

fn snapshot(ids: &[&str]) -> Snapshot {
    eng_snapshot("corp", "g-eng", ids)
}

/// A first provisioning of `ids` into an empty LiteLLM: the team, the users, their memberships.
fn first_plan(cfg: &Config, ids: &[&str]) -> Vec<Op> {
    let snaps = vec![snapshot(ids)];
    let desired = crate::reconcile::pass::map(cfg, &snaps);
    let configured: BTreeSet<String> = cfg.sources.iter().map(|s| s.name.clone()).collect();
    let cx = PlanContext::for_snapshots(&cfg.safety, configured, &snaps, chrono::Utc::now(), Approval::None);
    let p = plan(&desired, &Actual::default(), &cx);
    assert!(p.held.is_empty());
    p.ops
}

fn client(cfg: &Config) -> Client {
    Client::new(&cfg.litellm, cfg.litellm.api_key.resolve("litellm.api_key").unwrap(), false).unwrap()
}

struct Deposed;

#[async_trait::async_trait]
impl WriteGuard for Deposed {
    async fn may_write(&self) -> bool {
        false
    }
}

fn opts() -> ApplyOptions {
    ApplyOptions { concurrency: 4, defer_when_unavailable: true, ..Default::default() }
}

fn kinds(ops: &[Op]) -> Vec<&'static str> {
    let mut k: Vec<&'static str> = ops.iter().map(Op::kind).collect();
    k.dedup();
    k
}

#[tokio::test]
async fn a_deposed_leader_sends_nothing_and_keeps_everything_for_the_new_one() {
    let cfg = config();
    let ops = first_plan(&cfg, &["alice", "bob"]);
    assert_eq!(kinds(&ops), ["create_team", "create_user", "add_member"]);
    let c = client(&cfg);
    let o = ApplyOptions { guard: Some(Arc::new(Deposed)), ..opts() };
    let report = apply(&c, &ops, &o, &|_, _| {}).await;
    assert_eq!(report.results.len(), ops.len());
    for (op, r) in ops.iter().zip(&report.results) {
        assert_eq!(r.id, op.id(), "one result per operation, in order, matched by id");
        assert!(matches!(r.outcome, Outcome::Deferred { .. }), "{r:?}");
        assert!(!r.outcome.is_final(), "stays in the outbox");
    }
    assert_eq!(c.counters().writes.load(Ordering::Relaxed), 0);
    assert_eq!(c.counters().reads.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn an_unreachable_litellm_defers_everything_and_sends_nothing_after_a_failed_prerequisite() {
    let cfg = config();
    let ops = first_plan(&cfg, &["alice", "bob", "carol"]);
    let c = client(&cfg);
    let report = apply(&c, &ops, &opts(), &|_, _| {}).await;
    assert_eq!(report.results.len(), ops.len());
    let ids: BTreeSet<&str> = report.results.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), ops.len(), "every operation has its own result");
    for r in &report.results {
        assert!(!r.outcome.is_final(), "nothing is done or refused for good while LiteLLM is away: {r:?}");
        assert!(!r.outcome.succeeded(), "{r:?}");
    }
    // Once LiteLLM is known to be away, the rest is deferred without being tried: no membership is sent for a
    // user whose create did not happen (LiteLLM's /team/member_add would create a bare, unmarked user).
    for r in report.results.iter().filter(|r| r.op == "add_member") {
        assert!(matches!(r.outcome, Outcome::Deferred { .. }), "{r:?}");
    }
    assert!(report.failed() + report.applied() <= ops.len());
}

#[tokio::test]
async fn a_stop_before_the_first_batch_defers_every_operation() {
    let cfg = config();
    let ops = first_plan(&cfg, &["alice"]);
    let c = client(&cfg);
    let stop = tokio_util::sync::CancellationToken::new();
    stop.cancel();
    let o = ApplyOptions { stop: Some(stop), ..opts() };
    let report = apply(&c, &ops, &o, &|_, _| {}).await;
    assert!(report.results.iter().all(|r| matches!(r.outcome, Outcome::Deferred { .. })), "{:?}", report.results);
    assert_eq!(c.counters().writes.load(Ordering::Relaxed), 0);
}
