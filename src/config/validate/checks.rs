//! Checks of one value's form that several sections (and the file source) share: LiteLLM durations, templates,
//! cron expressions, model lists, and a set of user grants.
//!
//! Each is a pure function of its value. Nothing that belongs to one section, and no IO, lives here.

use super::ctx::{join, ProblemSink};
use crate::model::{Grants, MARKER_KEY, SCIM_ACTIVE};

/// LiteLLM's accepted `budget_duration` values (litellm-api.md §4), stricter where LiteLLM is sloppy:
/// trailing junk (`30days`) and leading spaces are rejected instead of silently truncated.
pub fn validate_budget_duration(s: &str) -> Result<(), String> {
    const HINT: &str = "use a number followed by s, m, h, d, w (e.g. 30s, 15m, 24h, 7d, 2w), 1mo, or one of \
                        hourly, daily, weekly, monthly";
    if ["hourly", "daily", "weekly", "monthly"].contains(&s.to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    if num.is_empty() {
        return Err(format!("invalid budget_duration {s:?}: {HINT}"));
    }
    let n: u64 = num.parse().map_err(|_| format!("invalid budget_duration {s:?}: number too large"))?;
    if n == 0 {
        return Err(format!("invalid budget_duration {s:?}: must be positive"));
    }
    match unit {
        "s" | "m" | "h" | "d" | "w" => Ok(()),
        "mo" if n == 1 => Ok(()),
        "mo" => Err(format!("invalid budget_duration {s:?}: LiteLLM only supports 1-month intervals (1mo)")),
        _ => Err(format!("invalid budget_duration {s:?}: {HINT}")),
    }
}

/// Checks a `{placeholder}` template against the placeholders it may use.
pub(crate) fn check_template(t: &str, allowed: &[&str]) -> Result<(), String> {
    let mut rest = t;
    let mut any = false;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            return Err(format!("{t:?}: unclosed '{{'"));
        };
        let name = &rest[start + 1..start + len];
        if !allowed.contains(&name) {
            return Err(format!(
                "{t:?}: unknown placeholder {{{name}}}; allowed: {}",
                allowed.iter().map(|a| format!("{{{a}}}")).collect::<Vec<_>>().join(", ")
            ));
        }
        any = true;
        rest = &rest[start + len + 1..];
    }
    if rest.contains('}') {
        return Err(format!("{t:?}: unmatched '}}'"));
    }
    if !any {
        return Err(format!("{t:?}: must contain at least one placeholder, or every user would get the same id"));
    }
    Ok(())
}

/// Like [`check_template`] but a constant (no placeholder) is allowed.
pub(super) fn check_template_any(t: &str, allowed: &[&str]) -> Result<(), String> {
    match check_template(t, allowed) {
        Err(e) if e.contains("must contain at least one placeholder") => Ok(()),
        other => other,
    }
}

/// A cron expression as tokio-cron-scheduler reads it: six or seven fields, seconds first, each field valid.
/// Parsed by the scheduler's own parser (croner, as the scheduler configures it), so `check-config` and `run`
/// can never disagree.
pub(crate) fn check_cron(s: &str) -> Result<(), String> {
    let n = s.split_whitespace().count();
    if !(6..=7).contains(&n) {
        return Err(format!(
            "{s:?}: expected 6 or 7 cron fields with seconds first (e.g. \"0 */15 * * * *\" for every 15 minutes)"
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .build()
        .parse(s)
        .map_err(|e| format!("{s:?} is not a valid cron expression: {e}"))?;
    tokio_cron_scheduler::Job::new_async(s, |_, _| Box::pin(async {}))
        .map_err(|e| format!("{s:?} is not a schedule the scheduler accepts: {e}"))?;
    Ok(())
}

pub(super) fn check_models(sink: &mut impl ProblemSink, path: &str, models: Option<&[String]>) {
    if let Some(models) = models {
        if models.is_empty() {
            sink.push(
                path.to_string(),
                "an empty list cannot be sent to LiteLLM; leave it out, or use [\"all-proxy-models\"] for every model"
                    .into(),
            );
        }
        if models.iter().any(|m| m.trim().is_empty()) {
            sink.push(path.to_string(), "model names must not be empty".into());
        }
    }
}

pub(crate) fn check_grants(sink: &mut impl ProblemSink, path: &str, g: &Grants) {
    let mut check_money = |field: &str, v: Option<f64>| {
        if v.is_some_and(|b| !(b.is_finite() && b >= 0.0)) {
            sink.push(join(path, field), "must be a non-negative number".into());
        }
    };
    check_money("max_budget", g.max_budget);
    for (model, b) in g.model_max_budget.iter().flatten() {
        if !(b.is_finite() && *b >= 0.0) {
            sink.push(join(path, &format!("model_max_budget.{model}")), "must be a non-negative number".into());
        }
    }
    if let Some(d) = &g.budget_duration {
        if let Err(e) = validate_budget_duration(d) {
            sink.push(join(path, "budget_duration"), e);
        }
    }
    check_models(sink, &join(path, "models"), g.models.as_deref());
    if g.metadata.contains_key(MARKER_KEY) || g.metadata.contains_key(SCIM_ACTIVE) {
        sink.push(
            join(path, "metadata"),
            format!("keys {MARKER_KEY:?} and {SCIM_ACTIVE:?} are reserved for litellm-sync"),
        );
    }
}
