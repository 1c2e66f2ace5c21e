//! Command line: `plan`, `sync`, `explain`, `check-config`. Exit codes are part of the interface:
//! plan 0 = in sync, 2 = changes pending; sync 0 = done, 3 = destructive changes held; 1 = error.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::config::{self, Config, ConfigError};
use crate::engine::{self, Pass};
use crate::litellm::Client;
use crate::mapper::{normalize_email, ExternalKey};
use crate::reconcile::apply::{apply, ApplyOptions, ApplyReport, OpResult};
use crate::reconcile::plan::Op;
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
    /// Run as a service: scheduled full resyncs per source, /metrics, /healthz, /readyz.
    Run,
}

#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// Limit the run to these sources (repeatable); default all.
    #[arg(long = "source")]
    pub sources: Vec<String>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct SyncArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Run everything but the writes.
    #[arg(long)]
    pub dry_run: bool,
    /// Approve deactivations/deletions beyond safety.max_deletions for this run.
    #[arg(long)]
    pub allow_deletions: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ExplainArgs {
    /// User name, e-mail, source id or LiteLLM user_id.
    pub user: String,
    #[arg(long = "source")]
    pub sources: Vec<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// Loads the config named by `--config`/`LITELLM_SYNC_CONFIG`, applying `--litellm-url`.
pub fn load_config(cli: &Cli) -> Result<Config, ConfigError> {
    let path = cli.config.as_ref().ok_or(ConfigError::NoFile)?;
    let mut raw = config::load_raw(path)?;
    if let Some(url) = &cli.litellm_url {
        if let Some(root) = raw.as_object_mut() {
            let section = root.entry("litellm").or_insert_with(|| json!({}));
            if let Some(s) = section.as_object_mut() {
                s.insert("url".into(), json!(url));
            }
        }
    }
    let cfg = config::validate(&raw).map_err(ConfigError::Invalid)?;
    cfg.check_secret_files()?;
    Ok(cfg)
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
        Command::Run => crate::app::run(cfg).await.map(|()| EXIT_OK),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn print_json(pass: &Pass, report: Option<&ApplyReport>) -> anyhow::Result<()> {
    let doc = render::plan_json(&pass.plan, &pass.sources, &pass.incomplete_sources(), report);
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

/// Prints failed and refused source reads; true when there were any (the run then exits 1).
fn print_failures(pass: &Pass) -> bool {
    for f in &pass.failures {
        eprintln!("error: {f}");
    }
    for s in &pass.plan.refused_sources {
        eprintln!("error: source {s:?} returned no users although litellm-sync manages users from it; treated as a failed read, nobody was deprovisioned");
    }
    !pass.failures.is_empty() || !pass.plan.refused_sources.is_empty()
}

async fn cmd_plan(cfg: &Config, a: &PlanArgs) -> anyhow::Result<u8> {
    let c = client(cfg, true)?;
    let pass = engine::compute(cfg, &c, &a.sources, chrono::Utc::now(), false).await?;
    match a.output {
        Output::Text => print!("{}", render::plan_text(&pass.plan, &pass.sources, &pass.incomplete_sources())),
        Output::Json => print_json(&pass, None)?,
    }
    let failed = print_failures(&pass);
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
    let pass = engine::compute(cfg, &c, &a.plan.sources, chrono::Utc::now(), a.allow_deletions).await?;
    let text = a.plan.output == Output::Text;
    if text {
        print!("{}", render::plan_text(&pass.plan, &pass.sources, &pass.incomplete_sources()));
    }
    let bar = (text && pass.plan.ops.len() >= 20 && std::io::stderr().is_terminal()).then(|| {
        let pb = indicatif::ProgressBar::new(pass.plan.ops.len() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} operations ({eta} left) {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    });
    let tick = |_: &Op, r: &OpResult| {
        if let Some(pb) = &bar {
            pb.inc(1);
            pb.set_message(r.target.clone());
        }
    };
    let opts = ApplyOptions {
        concurrency: cfg.litellm.concurrency,
        adopt_existing: cfg.safety.adopt_existing,
        ..Default::default()
    };
    let report = apply(&c, &pass.plan.ops, &opts, &tick).await;
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    match a.plan.output {
        Output::Text => print!("{}", render::report_text(&report)),
        Output::Json => print_json(&pass, Some(&report))?,
    }
    let failed = print_failures(&pass);
    let counters = c.counters();
    tracing::info!(
        reads = counters.reads.load(std::sync::atomic::Ordering::Relaxed),
        writes = counters.writes.load(std::sync::atomic::Ordering::Relaxed),
        retries = counters.retries.load(std::sync::atomic::Ordering::Relaxed),
        "Sync finished"
    );
    Ok(if report.failed() > 0 || failed {
        EXIT_ERROR
    } else if !pass.plan.held.is_empty() {
        EXIT_HELD
    } else {
        EXIT_OK
    })
}

async fn cmd_explain(cfg: &Config, a: &ExplainArgs) -> anyhow::Result<u8> {
    let c = client(cfg, true)?;
    let pass = engine::compute(cfg, &c, &a.sources, chrono::Utc::now(), false).await?;
    let _ = print_failures(&pass);
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
    Ok(if ok { EXIT_OK } else { EXIT_ERROR })
}
