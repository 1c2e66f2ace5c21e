//! Command line: `plan`, `sync`, `explain`, `check-config`, `approve`, `run`. Exit codes are part of the
//! interface: plan 0 = in sync, 2 = changes pending; sync 0 = done, 3 = destructive changes held; 1 = error
//! (including a `user_id` collision or a refused read, which someone must look at).
//!
//! With `[store]` configured, `plan` and `sync` plan against the store's ledger exactly as the daemon does (no
//! listing of LiteLLM), and `sync` records what it applied there; without it they list LiteLLM every time.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, Config, ConfigError};
use crate::daemon::{Basis, Reconciler, RunReport, RunRequest};
use crate::directory::{self, meta, ApprovalRecord, Held, SqliteStore, Store};
use crate::litellm::Client;
use crate::mapper::{normalize_email, ExternalKey};
use crate::reconcile::apply::{apply, ApplyOptions, ApplyReport, OpResult};
use crate::reconcile::pass;
use crate::reconcile::plan::{Approval, Op};
use crate::reconcile::render;
use crate::reconcile::{read_marker, UserMarker};

pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_PENDING: u8 = 2;
pub const EXIT_HELD: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "litellm-sync",
    version,
    about = "Keeps LiteLLM users, teams and budgets in step with your identity provider"
)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = config::CONFIG_ENV)]
    pub config: Option<PathBuf>,
    /// Overrides litellm.url.
    #[arg(long, global = true, env = "LITELLM_SYNC_LITELLM_URL")]
    pub litellm_url: Option<String>,
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show what a sync would change. Writes nothing. Exit 0: in sync, 2: changes pending, 1: error.
    Plan(PlanArgs),
    /// Compute and apply the changes. Exit 0: done, 1: errors, 3: destructive changes held by the safety limit.
    Sync(SyncArgs),
    /// Explain where each desired field of one user comes from, and how LiteLLM differs now.
    Explain(ExplainArgs),
    /// Validate the configuration and reach every configured endpoint.
    CheckConfig,
    /// Approve the destructive operations the last run held, for the daemon's next run to apply.
    Approve(ApproveArgs),
    /// Run as a service: scheduled full resyncs per source, SCIM, /metrics, /healthz, /readyz.
    Run,
    /// Print a new random SCIM bearer token and the hash to put in `[sources.auth] tokens` (or, with --stdin, the
    /// hash of a token read from standard input). Needs no configuration.
    HashToken(HashTokenArgs),
}

#[derive(Args, Debug, Clone)]
pub struct HashTokenArgs {
    /// Hash the token on standard input (one line) instead of generating one.
    #[arg(long)]
    pub stdin: bool,
}

/// `hash-token`: the token goes to the IdP, only its hash to the configuration.
pub fn hash_token(a: &HashTokenArgs) -> ExitCode {
    use crate::sources::scim::auth::{generate_token, hash_token};
    if a.stdin {
        let mut line = String::new();
        if let Err(e) = std::io::stdin().read_line(&mut line) {
            eprintln!("error: cannot read the token from standard input: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
        let token = line.trim_end_matches(['\n', '\r']);
        if token.is_empty() {
            eprintln!("error: no token on standard input");
            return ExitCode::from(EXIT_ERROR);
        }
        println!("{}", hash_token(token));
        return ExitCode::from(EXIT_OK);
    }
    let token = generate_token();
    println!("token: {token}");
    println!("hash:  {}", hash_token(&token));
    eprintln!(
        "Give the token to the IdP (Okta: API token; Entra ID: Secret Token) and put the hash in tokens = [...]."
    );
    ExitCode::from(EXIT_OK)
}

#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// Limit the run to these sources (repeatable); default all.
    #[arg(long = "source")]
    pub sources: Vec<String>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// List LiteLLM instead of planning against the store's ledger (and, for sync, replace the ledger).
    #[arg(long)]
    pub refresh: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SyncArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Run everything but the writes (nothing is written to the store either).
    #[arg(long)]
    pub dry_run: bool,
    /// Approve deactivations, deletions and team member removals beyond the safety limits for this run.
    #[arg(long)]
    pub allow_deletions: bool,
    /// How long to wait for another process (the daemon) to finish its run on the same store.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct ExplainArgs {
    /// User name, e-mail, source id or LiteLLM user_id.
    pub user: String,
    #[arg(long = "source")]
    pub sources: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ApproveArgs {
    /// Approve only the held operations concerning this source's users (repeatable); default all.
    #[arg(long = "source")]
    pub sources: Vec<String>,
    /// Who approves, for the audit trail; default $USER.
    #[arg(long)]
    pub by: Option<String>,
    /// Only show what is held.
    #[arg(long)]
    pub list: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// Loads the config named by `--config`/`LITELLM_SYNC_CONFIG`, applying `--litellm-url`.
pub fn load_config(cli: &Cli) -> Result<Config, ConfigError> {
    let path = cli.config.as_ref().ok_or(ConfigError::NoFile)?;
    let overrides = cli.litellm_url.iter().map(|u| ("litellm.url", json!(u))).collect::<Vec<_>>();
    config::load_with(path, &overrides)
}

fn client(cfg: &Config, dry_run: bool) -> anyhow::Result<Client> {
    let key = cfg.litellm.api_key.resolve("litellm.api_key")?;
    Ok(Client::new(&cfg.litellm, key, dry_run)?)
}

pub async fn run(cli: Cli, cfg: Config) -> ExitCode {
    let result = match &cli.command {
        Command::Plan(a) => cmd_plan(&cfg, a).await,
        Command::Sync(a) => cmd_sync(&cfg, a).await,
        Command::Explain(a) => cmd_explain(&cfg, a).await,
        Command::CheckConfig => cmd_check(&cfg).await,
        Command::Approve(a) => cmd_approve(&cfg, a).await,
        Command::Run => crate::app::run(cfg).await.map(|()| EXIT_OK),
        Command::HashToken(a) => return hash_token(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The store a CLI run plans against: the configured one, or an empty one in memory (the run lists LiteLLM).
async fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(if cfg.store.configured {
        Arc::new(SqliteStore::open(&cfg.store.path).await?)
    } else {
        Arc::new(SqliteStore::in_memory().await?)
    })
}

/// Reads the sources and plans; with `apply`, applies through the store's outbox under its run lease.
async fn compute(
    cfg: &Config,
    c: &Client,
    a: &PlanArgs,
    apply: bool,
    approval: Approval,
    wait: Duration,
) -> anyhow::Result<RunReport> {
    let names = pass::select_sources(cfg, &a.sources)?;
    let (mut snapshots, mut failures) = crate::sources::read_all(cfg, &names).await;
    let store = open_store(cfg).await?;
    // A push source (SCIM) has nothing to read: its view is what the IdP pushed into the daemon's store, when this
    // command shares it. That view is planned, never stored again (the daemon may be writing to it now).
    let mut pushed = Vec::new();
    if cfg.store.configured {
        let mut kept = Vec::new();
        for f in failures {
            match &f {
                crate::sources::SourceError::Push { source_name, .. } => pushed.push(
                    store
                        .last_snapshot(source_name)
                        .await?
                        .unwrap_or_else(|| crate::model::Snapshot::empty(source_name)),
                ),
                _ => kept.push(f),
            }
        }
        failures = kept;
    }
    let (audit, sink) = if apply { crate::app::outputs(cfg)? } else { (None, None) };
    let mut rec = Reconciler::new(cfg.clone(), c.clone(), store.clone(), "cli")
        .with_audit(audit)
        .with_key_sink(sink)
        .with_progress(progress_bar(a.output));
    if apply {
        rec.lease(wait).await?;
        for s in &snapshots {
            store.save_snapshot(s).await?;
        }
    }
    snapshots.extend(pushed);
    let req = RunRequest {
        trigger: "cli".into(),
        fresh: snapshots,
        failures,
        sources: names,
        use_stored: false,
        refresh: a.refresh,
        approval,
        apply,
        digests: Default::default(),
        push_change: false,
    };
    let report = rec.run(req).await;
    if apply {
        rec.release().await;
    }
    store.close().await;
    Ok(report?)
}

/// A progress bar on a terminal for runs of 20 operations or more.
fn progress_bar(output: Output) -> Option<crate::daemon::reconciler::ProgressFn> {
    if output != Output::Text || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::hidden();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} operations ({eta} left) {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(Arc::new(move |done: usize, total: usize, r: &OpResult| {
        if total >= 20 {
            if bar.is_hidden() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.set_length(total as u64);
            }
            bar.set_position(done as u64);
            bar.set_message(r.target.clone());
            if done == total {
                bar.finish_and_clear();
            }
        }
    }))
}

fn basis_text(cfg: &Config, b: Basis) -> String {
    match b {
        Basis::Ledger => {
            format!("Planned against the store's ledger ({}); --refresh lists LiteLLM.", cfg.store.path.display())
        }
        Basis::Listing => "Planned against a fresh listing of LiteLLM.".to_string(),
        Basis::Unlisted => "Planned without listing LiteLLM's users: litellm-sync has not written to this LiteLLM \
                            before (no anchor team), so none of them is managed."
            .to_string(),
    }
}

fn print_json(report: &RunReport, results: Option<&ApplyReport>) -> anyhow::Result<()> {
    let pass = &report.pass;
    let mut doc = render::plan_json(&pass.plan, &pass.sources, &pass.incomplete_sources(), results);
    doc["basis"] = json!(match report.basis {
        Basis::Ledger => "ledger",
        Basis::Listing => "listing",
        Basis::Unlisted => "unlisted",
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

/// Prints failed and refused source reads and plan errors; true when there were any (the run then exits 1).
fn print_failures(report: &RunReport) -> bool {
    let pass = &report.pass;
    for f in &report.failures {
        eprintln!("error: {f}");
    }
    for s in &pass.plan.refused_sources {
        eprintln!(
            "error: the read of source {s:?} is treated as doubt (see the notes); nobody of it was deprovisioned"
        );
    }
    for c in &pass.plan.collisions {
        eprintln!("error: {}", c.describe());
    }
    for e in &pass.plan.errors {
        eprintln!("error: {e}");
    }
    !report.failures.is_empty() || pass.plan.has_errors()
}

async fn cmd_plan(cfg: &Config, a: &PlanArgs) -> anyhow::Result<u8> {
    let c = client(cfg, true)?;
    let report = compute(cfg, &c, a, false, Approval::None, Duration::ZERO).await?;
    let pass = &report.pass;
    match a.output {
        Output::Text => {
            print!("{}", render::plan_text(&pass.plan, &pass.sources, &pass.incomplete_sources()));
            println!("\n{}", basis_text(cfg, report.basis));
        }
        Output::Json => print_json(&report, None)?,
    }
    let failed = print_failures(&report);
    Ok(if failed {
        EXIT_ERROR
    } else if pass.plan.is_empty() {
        EXIT_OK
    } else {
        EXIT_PENDING
    })
}

async fn cmd_sync(cfg: &Config, a: &SyncArgs) -> anyhow::Result<u8> {
    let c = client(cfg, a.dry_run)?;
    let approval = if a.allow_deletions { Approval::All } else { Approval::None };
    let text = a.plan.output == Output::Text;
    // A dry run writes nothing, to LiteLLM or to the store: it plans, then runs the applier against a client
    // that stops at its write point.
    let (report, results) = if a.dry_run {
        let report = compute(cfg, &c, &a.plan, false, approval, a.wait).await?;
        if text {
            print!("{}", render::plan_text(&report.pass.plan, &report.pass.sources, &report.pass.incomplete_sources()));
        }
        let opts = ApplyOptions {
            concurrency: cfg.litellm.concurrency,
            adopt_existing: cfg.safety.adopt_existing,
            ..Default::default()
        };
        let results = apply(&c, &report.pass.plan.ops, &opts, &|_: &Op, _: &OpResult| {}).await;
        (report, results)
    } else {
        let report = compute(cfg, &c, &a.plan, true, approval, a.wait).await?;
        if text {
            print!("{}", render::plan_text(&report.pass.plan, &report.pass.sources, &report.pass.incomplete_sources()));
        }
        let results = ApplyReport { results: report.results.clone() };
        (report, results)
    };
    match a.plan.output {
        Output::Text => {
            print!("{}", render::report_text(&results));
            println!("{}", basis_text(cfg, report.basis));
        }
        Output::Json => print_json(&report, Some(&results))?,
    }
    let failed = print_failures(&report);
    let counters = c.counters();
    tracing::info!(
        reads = counters.reads.load(std::sync::atomic::Ordering::Relaxed),
        writes = counters.writes.load(std::sync::atomic::Ordering::Relaxed),
        retries = counters.retries.load(std::sync::atomic::Ordering::Relaxed),
        "Sync finished"
    );
    Ok(if results.failed() > 0 || failed || report.counts.pending > 0 {
        EXIT_ERROR
    } else if !report.pass.plan.held.is_empty() {
        EXIT_HELD
    } else {
        EXIT_OK
    })
}

async fn cmd_approve(cfg: &Config, a: &ApproveArgs) -> anyhow::Result<u8> {
    for s in &a.sources {
        if cfg.source(s).is_none() {
            anyhow::bail!("no source named {s:?} in the configuration");
        }
    }
    let store = SqliteStore::open(&cfg.store.path).await?;
    let held: Option<Held> = directory::get_json(&store, meta::HELD).await?;
    let Some(held) = held.filter(|h| !h.ops.is_empty()) else {
        println!("Nothing is held: the last run in {} held no destructive operation.", cfg.store.path.display());
        return Ok(EXIT_OK);
    };
    let chosen: Vec<_> = held
        .ops
        .iter()
        .filter(|o| a.sources.is_empty() || o.source.as_ref().is_some_and(|s| a.sources.contains(s)))
        .collect();
    println!("Held by run {} at {} ({}):", held.run_id, held.at.to_rfc3339(), held.reason);
    for o in &held.ops {
        let mark = if chosen.iter().any(|c| c.id == o.id) { "*" } else { " " };
        println!("  {mark} {}", o.text);
    }
    if a.list {
        return Ok(EXIT_OK);
    }
    if chosen.is_empty() {
        println!("None of them concerns the given source(s); nothing approved.");
        return Ok(EXIT_OK);
    }
    let by = a.by.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "unknown".into());
    let record = ApprovalRecord {
        ids: chosen.iter().map(|o| o.id.clone()).collect(),
        by: by.clone(),
        at: chrono::Utc::now(),
        run_id: held.run_id.clone(),
    };
    directory::set_json(&store, meta::APPROVAL, Some(&record)).await?;
    store.close().await;
    println!(
        "Approved {} operation(s) (marked *) as {by:?}. The next run applies them if they are still what it would \
         hold, and records the approval in the audit trail; the approval expires after 24 hours.",
        record.ids.len()
    );
    Ok(EXIT_OK)
}

async fn cmd_explain(cfg: &Config, a: &ExplainArgs) -> anyhow::Result<u8> {
    let c = client(cfg, true)?;
    let args = PlanArgs { sources: a.sources.clone(), output: Output::Text, refresh: false };
    let report = compute(cfg, &c, &args, false, Approval::None, Duration::ZERO).await?;
    let _ = print_failures(&report);
    let pass = report.pass;
    let q = a.user.as_str();
    let qe = normalize_email(q);
    // The person: by a desired user's names, by the marker of a LiteLLM user with that id, or by a source record.
    let key: Option<ExternalKey> = pass
        .desired
        .users
        .values()
        .find(|d| {
            d.user_id == q || d.user_name == q || d.key.external_id == q || d.email.as_deref() == Some(qe.as_str())
        })
        .map(|d| d.key.clone())
        .or_else(|| {
            let row = pass.actual.users.iter().find(|u| u.user_id == q)?;
            let m = read_marker::<UserMarker>(&row.metadata)?;
            Some(ExternalKey { source: m.source, external_id: m.external_id })
        })
        .or_else(|| {
            pass.snapshots.iter().find_map(|s| {
                s.users
                    .iter()
                    .find(|u| {
                        u.user_name == q
                            || u.external_id == q
                            || u.email.as_deref().map(normalize_email).as_deref() == Some(qe.as_str())
                    })
                    .map(|u| ExternalKey { source: s.source.clone(), external_id: u.external_id.clone() })
            })
        });
    let found = key.as_ref().and_then(|k| {
        let snap = pass.snapshots.iter().find(|s| s.source == k.source)?;
        snap.users.iter().find(|u| u.external_id == k.external_id).map(|u| (snap, u))
    });
    let desired = key.as_ref().and_then(|k| pass.desired.users.get(k));
    let Some((snap, ident)) = found else {
        println!("No source record matches {q:?} (searched user names, e-mail addresses, source ids).");
        if let Some(row) = pass.actual.users.iter().find(|u| u.user_id == q) {
            println!("LiteLLM has a user {q:?}: {}", serde_json::to_string(row)?);
        }
        return Ok(EXIT_ERROR);
    };
    println!("User {} (source {:?}, id {:?})", ident.user_name, snap.source, ident.external_id);
    println!("  source record: {}", serde_json::to_string(ident)?);
    if let Some(c) = pass
        .plan
        .collisions
        .iter()
        .find(|c| c.claimant == ExternalKey { source: snap.source.clone(), external_id: ident.external_id.clone() })
    {
        println!("  not provisioned: {}", c.describe());
        return Ok(EXIT_ERROR);
    }
    let Some(d) = desired else {
        match pass
            .desired
            .excluded
            .iter()
            .find(|e| e.key.external_id == ident.external_id && e.key.source == snap.source)
        {
            Some(e) => println!("  not provisioned: {}", e.reason),
            None => println!("  not provisioned"),
        }
        return Ok(EXIT_OK);
    };
    println!(
        "  groups (nesting resolved): {}",
        if d.groups.is_empty() { "(none)".into() } else { d.groups.join(", ") }
    );
    println!(
        "  rules matched: {}",
        if d.rules.is_empty() { "(none: defaults apply)".into() } else { d.rules.join(", ") }
    );
    println!("  active: {}", d.active);
    println!("  desired LiteLLM user {:?}:", d.user_id);
    let fields = serde_json::to_value(&d.fields)?;
    if let Some(obj) = fields.as_object() {
        for (k, v) in obj {
            if v.is_null() || (k == "metadata" && v.as_object().is_some_and(|m| m.is_empty())) {
                continue;
            }
            if k == "metadata" {
                for (mk, mv) in v.as_object().into_iter().flatten() {
                    let from = d.provenance.get(&format!("metadata.{mk}")).map(String::as_str).unwrap_or("?");
                    println!("    metadata.{mk:<20} {:<30} ← {from}", mv.to_string());
                }
                continue;
            }
            let name = if k == "role" { "user_role" } else { k.as_str() };
            let from = d.provenance.get(k.as_str()).map(String::as_str).unwrap_or("?");
            println!("    {name:<29} {:<30} ← {from}", v.to_string());
        }
    }
    let teams: Vec<String> = pass
        .desired
        .teams
        .values()
        .filter_map(|t| t.members.get(&d.key).map(|r| format!("{} ({}, rule {:?})", t.team_id, r.as_str(), t.rule)))
        .collect();
    println!("  teams: {}", if teams.is_empty() { "(none)".into() } else { teams.join(", ") });
    let mine: Vec<&Op> = pass
        .plan
        .ops
        .iter()
        .chain(pass.plan.held.iter())
        .filter(|op| op.resources().iter().any(|r| r.strip_prefix("user:").is_some_and(|id| id == d.user_id)))
        .collect();
    if mine.is_empty() {
        println!("  LiteLLM now: in sync.");
    } else {
        println!("  LiteLLM now differs; pending operations:");
        let sub = crate::reconcile::plan::Plan { ops: mine.into_iter().cloned().collect(), ..Default::default() };
        for line in render::plan_text(&sub, &pass.sources, &[])
            .lines()
            .skip(2)
            .filter(|l| !l.starts_with("Plan:") && !l.is_empty())
        {
            println!("  {line}");
        }
    }
    Ok(EXIT_OK)
}

async fn cmd_check(cfg: &Config) -> anyhow::Result<u8> {
    let mut ok = true;
    println!("✓ configuration is valid ({} source(s), {} rule(s))", cfg.sources.len(), cfg.rules.len());
    for s in &cfg.sources {
        let src = crate::sources::Source::new(s);
        match src.check().await {
            Ok(desc) => println!("✓ source {:?} ({}): {desc}", s.name, s.kind.type_name()),
            Err(e) => {
                ok = false;
                println!("✗ source {:?} ({}): {e}", s.name, s.kind.type_name());
            }
        }
    }
    let c = client(cfg, true)?;
    match c.check_access().await {
        Ok(n) => println!("✓ LiteLLM at {}: key accepted, user listing allowed ({n} users)", cfg.litellm.url),
        Err(e) => {
            ok = false;
            let hint = match e.class() {
                crate::litellm::ErrorClass::Auth => {
                    " — the key must be the master key or a key of a proxy_admin user (LiteLLM answers 401 for a wrong role too)"
                }
                crate::litellm::ErrorClass::Retryable => " — is the URL right and LiteLLM running?",
                _ => "",
            };
            println!("✗ LiteLLM at {}: {e}{hint}", cfg.litellm.url);
        }
    }
    if ok {
        match c.check_write_access().await {
            Ok(()) => println!("✓ LiteLLM: the key may create and update users and teams"),
            Err(e) => {
                ok = false;
                println!(
                    "✗ LiteLLM: the key cannot write users and teams ({e}) — use the master key or a key of a \
                     proxy_admin user; a proxy_admin_viewer's key can only read"
                );
            }
        }
    }
    if let Some(k) = &cfg.keys {
        match crate::reconcile::key_sink::KeySink::open(&k.path) {
            Ok(_) => println!("✓ key file {}: writable, mode 0600", k.path.display()),
            Err(e) => {
                ok = false;
                println!("✗ {e}");
            }
        }
    }
    Ok(if ok { EXIT_OK } else { EXIT_ERROR })
}
