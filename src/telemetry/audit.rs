//! The audit trail: one JSON line per applied change (what, to whom, from what, to what, why, which run),
//! appended to a file or written to stdout. Request bodies contain no secrets (the API key travels only in a
//! header), and key tokens are hashes.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use chrono::Utc;
use serde_json::{json, Value};

use crate::reconcile::apply::{OpResult, Outcome};
use crate::reconcile::plan::Op;

pub struct AuditLog {
    out: Mutex<Box<dyn Write + Send>>,
}

impl AuditLog {
    /// `-` means stdout.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        let out: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(std::io::stdout())
        } else {
            Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)
        };
        Ok(AuditLog { out: Mutex::new(out) })
    }

    /// Records one applied operation, or one LiteLLM refused for good. Attempts that will be retried (LiteLLM
    /// unreachable, shutdown) are not changes: they are in the logs and metrics, not in the audit trail.
    pub fn record(&self, run_id: &str, source: &str, op: &Op, result: &OpResult) {
        let final_outcome = match &result.outcome {
            Outcome::Applied | Outcome::AlreadyDone { .. } => true,
            Outcome::Failed { class, .. } => class != "retryable",
            Outcome::Skipped | Outcome::Deferred { .. } => false,
        };
        if !final_outcome {
            return;
        }
        let line = audit_line(run_id, source, op, result);
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
            tracing::error!(error = %e, "Cannot write the audit log");
        }
    }
}

pub fn audit_line(run_id: &str, source: &str, op: &Op, result: &OpResult) -> Value {
    let mut detail = serde_json::to_value(op).unwrap_or(Value::Null);
    if let Some(obj) = detail.as_object_mut() {
        obj.remove("op");
    }
    json!({
        "ts": Utc::now().to_rfc3339(),
        "run_id": run_id,
        "source": source,
        "actor": "litellm-sync",
        "op": op.kind(),
        "target": op.target(),
        "outcome": result.outcome,
        "change": detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::apply::OpResult;

    #[test]
    fn lines_are_json_and_carry_no_secret() {
        let op = Op::RemoveMember { team_id: "eng".into(), user_id: "alice".into() };
        let r = OpResult { op: op.kind(), target: op.target(), outcome: Outcome::Applied, written_metadata: None };
        let line = audit_line("run-1", "corp", &op, &r);
        assert_eq!(line["op"], "remove_member");
        assert_eq!(line["target"], "team eng member alice");
        assert_eq!(line["outcome"]["result"], "applied");
        assert_eq!(line["change"]["user_id"], "alice");
        assert!(!line.to_string().contains("sk-"));
    }

    #[test]
    fn only_final_outcomes_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let op = Op::RemoveMember { team_id: "eng".into(), user_id: "alice".into() };
        let with = |outcome| OpResult { op: op.kind(), target: op.target(), outcome, written_metadata: None };
        log.record("r", "corp", &op, &with(Outcome::Deferred { reason: "down".into() }));
        log.record("r", "corp", &op, &with(Outcome::Failed { class: "retryable".into(), error: "down".into() }));
        log.record("r", "corp", &op, &with(Outcome::Skipped));
        log.record("r", "corp", &op, &with(Outcome::Applied));
        log.record("r", "corp", &op, &with(Outcome::Failed { class: "invalid".into(), error: "no".into() }));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }
}
