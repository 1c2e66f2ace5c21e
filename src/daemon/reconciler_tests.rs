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

/// A daemon's applying run of `fresh` (every configured source covered, the others' stored views joined).
fn daemon_run(fresh: Vec<Snapshot>) -> RunRequest {
    RunRequest {
        trigger: "test".into(),
        fresh,
        sources: vec!["corp".into(), "hr".into()],
        use_stored: true,
        apply: true,
        ..Default::default()
    }
}

/// A view with a group but nobody in it: nothing to provision, so a run applies nothing and needs no LiteLLM.
fn nobody(source: &str, group: &str) -> Snapshot {
    let mut s = snapshot(source, &[]);
    s.groups[0].name = group.into();
    s
}

async fn quiet(store: &Arc<dyn Store>) -> Option<super::Quiet> {
    store.get_meta(meta::QUIET).await.unwrap().as_deref().and_then(super::Quiet::parse)
}

#[tokio::test]
async fn an_unchanged_read_after_a_quiet_run_is_not_planned_again() {
    let mut s = setup(Some("this")).await;
    s.rec.quiet = true;
    s.store.save_snapshot(&nobody("hr", "ops")).await.unwrap();
    let r = s.rec.run(daemon_run(vec![nobody("corp", "eng")])).await.unwrap();
    assert!(!r.unchanged && r.pass.plan.is_empty(), "the first run plans");
    let q = quiet(&s.store).await.expect("a run that found nothing to do leaves the quiet record");
    assert_eq!(q.views.get("corp").cloned().flatten(), Some(nobody("corp", "eng").digest()));
    assert_eq!(q.views.get("hr").cloned().flatten(), Some(nobody("hr", "ops").digest()), "the stored view too");
    let r = s.rec.run(daemon_run(vec![nobody("corp", "eng")])).await.unwrap();
    assert!(r.unchanged, "the same read again is not planned");
    let r = s.rec.run(daemon_run(Vec::new())).await.unwrap();
    assert!(r.unchanged, "a retry with nothing read either");
    // Another read is planned, and leaves a record of its own.
    let r = s.rec.run(daemon_run(vec![nobody("corp", "sales")])).await.unwrap();
    assert!(!r.unchanged);
    assert_eq!(quiet(&s.store).await.unwrap().run_id, r.run_id);
}

/// A listing of a shared LiteLLM puts other configurations' managed users into the ledger, some deactivated long
/// ago. Their grace periods are not this plan's: it never deletes them, and the record holds.
#[tokio::test]
async fn another_sources_deactivated_user_does_not_make_every_run_due() {
    let mut s = setup(Some("this")).await;
    s.rec.quiet = true;
    s.rec.cfg.safety.delete_after = Some(std::time::Duration::from_secs(7 * 86_400));
    let marker = crate::reconcile::UserMarker {
        source: "elsewhere".into(),
        external_id: "z".into(),
        fields: Default::default(),
        metadata_keys: Default::default(),
        deactivated_at: Some(chrono::Utc::now() - chrono::Duration::days(400)),
        blocked_keys: Vec::new(),
        blocking: false,
    };
    let row: crate::litellm::types::UserRow = serde_json::from_value(json!({
        "user_id": "elsewhere-z",
        "metadata": {crate::model::MARKER_KEY: marker, crate::reconcile::SCIM_ACTIVE: false},
    }))
    .unwrap();
    let ledger = Ledger { users: [("elsewhere-z".to_string(), row)].into(), teams: Default::default() };
    s.store.replace_ledger(&ledger).await.unwrap();
    let r = s.rec.run(daemon_run(vec![nobody("corp", "eng")])).await.unwrap();
    assert!(!r.unchanged && r.pass.plan.is_empty(), "the other source's user is not planned");
    assert_eq!(quiet(&s.store).await.expect("a record").due, None);
    assert!(s.rec.run(daemon_run(vec![nobody("corp", "eng")])).await.unwrap().unchanged);
}

#[tokio::test]
async fn whatever_could_change_the_plan_makes_a_full_run() {
    let mut s = setup(Some("this")).await;
    s.rec.quiet = true;
    let read = || vec![nobody("corp", "eng")];
    let settle = |r: RunReport| assert!(!r.unchanged, "a full run");
    settle(s.rec.run(daemon_run(read())).await.unwrap());
    // Another source's stored view changed (a snapshot stored, a SCIM write): the record is gone.
    s.store.save_snapshot(&nobody("hr", "ops")).await.unwrap();
    settle(s.rec.run(daemon_run(read())).await.unwrap());
    assert!(s.rec.run(daemon_run(read())).await.unwrap().unchanged);
    // A failed read of another source, a drift-check-like refresh, a push source's change run: planned.
    let failed = crate::sources::SourceError::Ldap { source_name: "hr".into(), message: "down".into() };
    settle(s.rec.run(RunRequest { failures: vec![failed], ..daemon_run(read()) }).await.unwrap());
    assert!(quiet(&s.store).await.is_none(), "a run with a failed read writes no record");
    settle(s.rec.run(daemon_run(read())).await.unwrap());
    settle(s.rec.run(RunRequest { push_change: true, ..daemon_run(read()) }).await.unwrap());
    assert!(quiet(&s.store).await.is_none(), "a push change run neither checks nor writes the record");
    settle(s.rec.run(daemon_run(read())).await.unwrap());
    assert!(s.rec.run(daemon_run(read())).await.unwrap().unchanged);
    // Another configuration of the rules: planned.
    let mut other = s.rec.cfg.clone();
    other.rules[0].grants.max_budget = Some(99.0);
    let key = other.litellm.api_key.resolve("litellm.api_key").unwrap();
    let client = Client::new(&other.litellm, key, false).unwrap();
    let mut rec2 = Reconciler::new(other, client, s.store.clone(), "test2");
    rec2.quiet = true;
    settle(rec2.run(daemon_run(read())).await.unwrap());
    // Fewer sources covered: planned.
    settle(s.rec.run(RunRequest { sources: vec!["corp".into()], ..daemon_run(read()) }).await.unwrap());
    // An applying run of the CLI (no quiet path) takes the record away: its writes are not the daemon's.
    assert!(s.rec.run(RunRequest { sources: vec!["corp".into()], ..daemon_run(read()) }).await.unwrap().unchanged);
    s.rec.quiet = false;
    s.rec.run(daemon_run(read())).await.unwrap();
    assert!(quiet(&s.store).await.is_none(), "the CLI leaves no record");
    s.rec.quiet = true;
    settle(s.rec.run(daemon_run(read())).await.unwrap());
}

#[tokio::test]
async fn a_change_during_a_run_takes_its_claim_and_no_record_is_written() {
    let s = setup(Some("this")).await;
    // The claim is what a run writes first; a change (here a stored view) deletes it; the compare-and-set fails.
    s.store.set_meta(meta::QUIET, &super::quiet::claim("r1")).await.unwrap();
    s.store.save_snapshot(&nobody("hr", "ops")).await.unwrap();
    assert!(!s.store.replace_meta(meta::QUIET, &super::quiet::claim("r1"), "{}").await.unwrap());
    assert!(s.store.get_meta(meta::QUIET).await.unwrap().is_none());
}
