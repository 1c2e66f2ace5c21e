//! Unit tests of one run on plain data and the real SQLite store. The LiteLLM client points at a loopback port
//! where nothing listens, so a run that asks LiteLLM anything fails: what passes here planned from the store alone.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::directory::SqliteStore;
use crate::model::fixtures::{closed_port, eng_snapshot};

fn config(url: &str) -> Config {
    crate::config::validate(&json!({
        "litellm": {"url": url, "api_key": "sk-test", "timeout": "2s", "max_retries": 0},
        "sources": [
            {"name": "corp", "type": "file", "path": "corp.yaml"},
            {"name": "hr", "type": "file", "path": "hr.yaml"},
        ],
        "rules": [{"name": "eng", "match": {"groups": ["eng"]}, "max_budget": 10.0}],
    }))
    .unwrap()
}

fn snapshot(source: &str, ids: &[&str]) -> Snapshot {
    eng_snapshot(source, &format!("{source}-eng"), ids)
}

struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    rec: Reconciler,
}

/// A reconciler on a fresh SQLite store whose ledger says "this LiteLLM (`bootstrapped_for`) holds nothing of
/// ours", or that has no ledger at all.
async fn setup(bootstrapped_for: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("state.db")).await.unwrap());
    let url = format!("http://127.0.0.1:{}", closed_port());
    let cfg = config(&url);
    if let Some(of) = bootstrapped_for {
        let of = if of == "this" { cfg.litellm.url.as_str() } else { of };
        store.replace_ledger(&Ledger::default()).await.unwrap();
        store.set_meta(meta::BOOTSTRAPPED, of).await.unwrap();
    }
    let key = cfg.litellm.api_key.resolve("litellm.api_key").unwrap();
    let client = Client::new(&cfg.litellm, key, false).unwrap();
    let rec = Reconciler::new(cfg, client, store.clone(), "test");
    Setup { _dir: dir, store, rec }
}

fn plan_only(fresh: Vec<Snapshot>) -> RunRequest {
    let sources = fresh.iter().map(|s| s.source.clone()).collect();
    RunRequest { trigger: "test".into(), fresh, sources, ..Default::default() }
}

fn created(r: &RunReport) -> Vec<String> {
    let mut v: Vec<String> = r
        .pass
        .plan
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::CreateUser { user_id, .. } => Some(user_id.clone()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_bootstrapped_ledger_is_planned_against_without_asking_litellm() {
    let mut s = setup(Some("this")).await;
    let r = s.rec.run(plan_only(vec![snapshot("corp", &["alice", "bob"])])).await.unwrap();
    assert_eq!(r.basis, Basis::Ledger);
    assert_eq!(created(&r), ["alice", "bob"]);
    assert!(r.results.is_empty() && r.counts == Counts::default(), "a plan applies nothing");
    assert!(s.store.outbox().await.unwrap().is_empty(), "a plan writes no outbox");
}

#[tokio::test]
async fn a_ledger_of_another_litellm_is_never_planned_against() {
    let mut s = setup(Some("http://127.0.0.1:1")).await;
    let e = s.rec.run(plan_only(vec![snapshot("corp", &["alice"])])).await.err().expect("it must list LiteLLM");
    assert_eq!(e.metric_label(), "litellm", "{e}");
    // The store still names the other proxy: nothing was replaced by a failed listing.
    assert_eq!(s.store.get_meta(meta::BOOTSTRAPPED).await.unwrap().as_deref(), Some("http://127.0.0.1:1"));
}

#[tokio::test]
async fn no_ledger_or_a_refresh_lists_litellm_first() {
    let mut s = setup(None).await;
    let e = s.rec.run(plan_only(vec![snapshot("corp", &["alice"])])).await.err().expect("no ledger: a listing");
    assert_eq!(e.metric_label(), "litellm", "{e}");

    let mut s = setup(Some("this")).await;
    let req = RunRequest { refresh: true, ..plan_only(vec![snapshot("corp", &["alice"])]) };
    let e = s.rec.run(req).await.err().expect("--refresh: a listing");
    assert_eq!(e.metric_label(), "litellm", "{e}");
}

#[tokio::test]
async fn nothing_read_asks_nothing_and_plans_nothing() {
    let mut s = setup(None).await;
    let r = s.rec.run(plan_only(Vec::new())).await.unwrap();
    assert!(r.pass.plan.ops.is_empty() && r.pass.plan.held.is_empty());
}

#[tokio::test]
async fn the_daemon_plans_every_source_and_a_failed_read_keeps_its_last_view() {
    let mut s = setup(Some("this")).await;
    s.store.save_snapshot(&snapshot("hr", &["carol"])).await.unwrap();
    // Without the stored views (the CLI with one source named) only what was read is planned.
    let r = s.rec.run(plan_only(vec![snapshot("corp", &["alice"])])).await.unwrap();
    assert_eq!(created(&r), ["alice"]);
    // The daemon joins the stored view of every other covered source, also of one whose read failed now.
    let failed = crate::sources::SourceError::Ldap { source_name: "hr".into(), message: "down".into() };
    let req = RunRequest {
        use_stored: true,
        sources: vec!["corp".into(), "hr".into()],
        failures: vec![failed],
        ..plan_only(vec![snapshot("corp", &["alice"])])
    };
    let r = s.rec.run(req).await.unwrap();
    assert_eq!(created(&r), ["alice", "carol"]);
    assert_eq!(r.failures.len(), 1, "the failure is reported with the run");
    assert_eq!(r.pass.incomplete_sources(), ["hr"]);
}

#[tokio::test]
async fn every_run_has_its_own_id() {
    let mut s = setup(Some("this")).await;
    let a = s.rec.run(plan_only(vec![snapshot("corp", &["alice"])])).await.unwrap();
    let b = s.rec.run(plan_only(vec![snapshot("corp", &["alice"])])).await.unwrap();
    assert_ne!(a.run_id, b.run_id);
}
