//! Prometheus metrics: one struct owning its registry; names `litellm_sync_<noun>_<unit>[_total]`; every label
//! value comes from a closed set (source names from the config, operation kinds, endpoint paths without ids,
//! status classes), so cardinality is bounded.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::litellm::Observer;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub events_received: IntCounterVec,
    pub operations: IntCounterVec,
    pub litellm_requests: HistogramVec,
    pub run_duration: HistogramVec,
    pub runs: IntCounterVec,
    pub runs_skipped: IntCounterVec,
    pub runs_unchanged: IntCounterVec,
    pub last_success: IntGaugeVec,
    pub managed_users: IntGaugeVec,
    pub managed_teams: IntGauge,
    pub deletions_held: IntGaugeVec,
    pub drift_repaired: IntCounterVec,
    pub errors: IntCounterVec,
    pub source_users: IntGaugeVec,
    pub outbox_depth: IntGaugeVec,
    pub outbox_oldest_age: IntGauge,
    pub entries_skipped: IntCounterVec,
    pub source_read_duration: HistogramVec,
    pub user_id_collisions: IntGaugeVec,
    pub leader: IntGauge,
    pub leader_epoch: IntGauge,
    pub leadership_changes: prometheus::IntCounter,
    pub scim_requests: IntCounterVec,
    pub scim_request_duration: HistogramVec,
    pub scim_auth_failures: IntCounterVec,
    pub scim_push_delay: HistogramVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> prometheus::Result<HistogramVec> {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let r = Registry::new();
        let managed_teams =
            IntGauge::new("litellm_sync_managed_teams", "LiteLLM teams carrying the litellm-sync marker")?;
        r.register(Box::new(managed_teams.clone()))?;
        Ok(Metrics {
            events_received: counter(
                &r,
                "litellm_sync_events_received_total",
                "Source events received",
                &["source", "kind"],
            )?,
            operations: counter(
                &r,
                "litellm_sync_operations_total",
                "LiteLLM operations by kind and result",
                &["op", "result"],
            )?,
            litellm_requests: histogram(
                &r,
                "litellm_sync_litellm_request_duration_seconds",
                "LiteLLM admin API request latency",
                &["endpoint", "status_class"],
                vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            )?,
            run_duration: histogram(
                &r,
                "litellm_sync_run_duration_seconds",
                "Duration of a sync run (read, plan, apply)",
                &["source"],
                vec![0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0, 1800.0],
            )?,
            runs: counter(
                &r,
                "litellm_sync_runs_total",
                "Sync runs by result (success, failed, held)",
                &["source", "result"],
            )?,
            runs_skipped: counter(
                &r,
                "litellm_sync_runs_skipped_total",
                "Scheduled runs skipped because the previous run of the source was still going",
                &["source"],
            )?,
            runs_unchanged: counter(
                &r,
                "litellm_sync_runs_unchanged_total",
                "Runs that read what an earlier run read and found nothing to do for: not planned again",
                &["source"],
            )?,
            last_success: gauge(
                &r,
                "litellm_sync_last_success_timestamp_seconds",
                "Unix time of the last successful sync run",
                &["source"],
            )?,
            managed_users: gauge(
                &r,
                "litellm_sync_managed_users",
                "LiteLLM users carrying the source's marker",
                &["source"],
            )?,
            managed_teams,
            deletions_held: gauge(
                &r,
                "litellm_sync_deletions_held",
                "Deactivations/deletions held by the safety limit in the last run",
                &["source"],
            )?,
            drift_repaired: counter(
                &r,
                "litellm_sync_drift_repaired_total",
                "Managed fields changed by hand in LiteLLM and set back",
                &["source"],
            )?,
            errors: counter(&r, "litellm_sync_errors_total", "Errors by kind", &["kind"])?,
            source_users: gauge(
                &r,
                "litellm_sync_source_users",
                "Users in the source's last complete snapshot",
                &["source"],
            )?,
            outbox_depth: gauge(
                &r,
                "litellm_sync_outbox_depth",
                "Operations in the outbox: pending (waiting for LiteLLM) or failed (refused; retried at the next resync)",
                &["status"],
            )?,
            outbox_oldest_age: {
                let g = IntGauge::new(
                    "litellm_sync_outbox_oldest_age_seconds",
                    "Age of the oldest pending operation in the outbox (0 when empty)",
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            entries_skipped: counter(
                &r,
                "litellm_sync_source_entries_skipped_total",
                "Entries a source returned but could not convert (kept as last known, never deprovisioned)",
                &["source"],
            )?,
            source_read_duration: histogram(
                &r,
                "litellm_sync_source_read_duration_seconds",
                "Duration of a complete read of the source",
                &["source"],
                vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
            )?,
            user_id_collisions: gauge(
                &r,
                "litellm_sync_user_id_collisions",
                "Identities of the source not provisioned because their user_id belongs to another identity",
                &["source"],
            )?,
            leader: {
                let g = IntGauge::new(
                    "litellm_sync_leader",
                    "1 while this replica is the leader (runs schedules, the drift check and the applier)",
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            leader_epoch: {
                let g = IntGauge::new("litellm_sync_leader_epoch", "The leadership epoch this replica last held")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            leadership_changes: {
                let c = prometheus::IntCounter::new(
                    "litellm_sync_leadership_changes_total",
                    "Times this replica became or stopped being the leader",
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            scim_requests: counter(
                &r,
                "litellm_sync_scim_requests_total",
                "SCIM requests by resource (Users, Groups, discovery, other), method and status class",
                &["source", "resource", "method", "status_class"],
            )?,
            scim_request_duration: histogram(
                &r,
                "litellm_sync_scim_request_duration_seconds",
                "SCIM request latency (a write includes its commit to the store)",
                &["source", "resource", "method"],
                vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0],
            )?,
            scim_auth_failures: counter(
                &r,
                "litellm_sync_scim_auth_failures_total",
                "SCIM requests refused by authentication, by method (static, oidc, none) and reason",
                &["source", "method", "reason"],
            )?,
            scim_push_delay: histogram(
                &r,
                "litellm_sync_scim_push_delay_seconds",
                "Time from a committed SCIM write to the end of the reconciler's run that applied it to LiteLLM",
                &["source"],
                vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0],
            )?,
            registry: r,
        })
    }

    /// Creates every labelled series a source will have, at zero, so that a scrape lists every metric from the
    /// start and `increase()` sees the first event.
    pub fn init_source(&self, source: &str) {
        for result in ["success", "failed", "held"] {
            self.runs.with_label_values(&[source, result]);
        }
        self.runs_skipped.with_label_values(&[source]);
        self.runs_unchanged.with_label_values(&[source]);
        self.drift_repaired.with_label_values(&[source]);
        self.deletions_held.with_label_values(&[source]);
        self.managed_users.with_label_values(&[source]);
        self.source_users.with_label_values(&[source]);
        self.last_success.with_label_values(&[source]);
        self.events_received.with_label_values(&[source, "snapshot"]);
        self.run_duration.with_label_values(&[source]);
        self.entries_skipped.with_label_values(&[source]);
        self.source_read_duration.with_label_values(&[source]);
        self.user_id_collisions.with_label_values(&[source]);
    }

    /// Creates a SCIM source's labelled series at zero (auth failures for every method and the `oidc_reasons`).
    pub fn init_scim_source(&self, source: &str, oidc_reasons: &[&str]) {
        for resource in ["Users", "Groups"] {
            for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                self.scim_requests.with_label_values(&[source, resource, method, "2xx"]);
            }
        }
        for (method, reasons) in
            [("none", &["missing", "malformed", "unsupported_scheme"][..]), ("static", &["unknown_token"][..])]
        {
            for reason in reasons {
                self.scim_auth_failures.with_label_values(&[source, method, reason]);
            }
        }
        for reason in oidc_reasons {
            self.scim_auth_failures.with_label_values(&[source, "oidc", reason]);
        }
        self.scim_push_delay.with_label_values(&[source]);
        self.events_received.with_label_values(&[source, "changed"]);
    }

    /// Creates the source-independent labelled series at zero.
    pub fn init_global(&self) {
        for kind in ["source", "litellm", "store", "apply", "config"] {
            self.errors.with_label_values(&[kind]);
        }
        for status in ["pending", "failed"] {
            self.outbox_depth.with_label_values(&[status]);
        }
        for op in crate::reconcile::op::Op::KINDS {
            for result in ["applied", "already_done", "failed", "deferred", "skipped", "not_sent"] {
                self.operations.with_label_values(&[op, result]);
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if enc.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Status class label: 2xx … 5xx, or "error" when no HTTP answer came back.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "error",
    }
}

impl Observer for Metrics {
    fn request(&self, endpoint: &str, status: Option<u16>, elapsed: Duration) {
        self.litellm_requests.with_label_values(&[endpoint, status_class(status)]).observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_bounded_labels() {
        let m = Metrics::new().unwrap();
        m.operations.with_label_values(&["create_user", "applied"]).inc();
        m.request("user/new", Some(201), Duration::from_millis(30));
        m.request("user/new", None, Duration::from_millis(30));
        let text = m.render();
        assert!(text.contains("litellm_sync_operations_total{op=\"create_user\",result=\"applied\"} 1"), "{text}");
        assert!(text.contains(
            "litellm_sync_litellm_request_duration_seconds_count{endpoint=\"user/new\",status_class=\"2xx\"} 1"
        ));
        assert!(text.contains("status_class=\"error\""));
    }
}
