//! The audit trail: one JSON line per applied change (what, to whom, from what, to what, why, which run),
//! appended to a file or written to stdout. Request bodies contain no secrets (the API key travels only in a
//! header), and key tokens are hashes.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use chrono::Utc;
use serde_json::{json, Value};

use crate::directory::ApprovalRecord;
use crate::reconcile::apply::OpResult;
use crate::reconcile::op::Op;

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

    /// Records one applied operation, or one refused or not sent for good. Attempts that will be retried (LiteLLM
    /// unreachable, shutdown) are not changes: they are in the logs and metrics, not in the audit trail.
    pub fn record(&self, run_id: &str, op: &Op, result: &OpResult) {
        if result.outcome.is_final() {
            self.write(&audit_line(run_id, op, result));
        }
    }

    /// Records that a person's approval released held operations in this run.
    pub fn approval(&self, run_id: &str, a: &ApprovalRecord, released: &[String]) {
        self.write(&json!({
            "ts": Utc::now().to_rfc3339(),
            "run_id": run_id,
            "actor": a.by,
            "op": "approval",
            "approved_at": a.at.to_rfc3339(),
            "approved_in_run": a.run_id,
            "approved": a.ids,
            "released": released,
        }));
    }

    fn write(&self, line: &Value) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
            tracing::error!(error = %e, "Cannot write the audit log");
        }
    }
}

pub fn audit_line(run_id: &str, op: &Op, result: &OpResult) -> Value {
    let mut detail = serde_json::to_value(op).unwrap_or(Value::Null);
    if let Some(obj) = detail.as_object_mut() {
        obj.remove("op");
    }
    json!({
        "ts": Utc::now().to_rfc3339(),
        "run_id": run_id,
        "source": op.user_key().map(|k| k.source.as_str()),
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
    use crate::reconcile::apply::Outcome;

    #[test]
    fn lines_are_json_and_carry_no_secret() {
        let op = Op::RemoveMember { team_id: "eng".into(), user_id: "alice".into(), team_keys: Some(2) };
        let r = OpResult::new(&op, Outcome::Applied);
        let line = audit_line("run-1", &op, &r);
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
        let op = Op::RemoveMember { team_id: "eng".into(), user_id: "alice".into(), team_keys: None };
        let with = |outcome| OpResult::new(&op, outcome);
        log.record("r", &op, &with(Outcome::Deferred { reason: "down".into() }));
        log.record("r", &op, &with(Outcome::Failed { class: "retryable".into(), error: "down".into() }));
        log.record("r", &op, &with(Outcome::Skipped));
        log.record("r", &op, &with(Outcome::Applied));
        log.record("r", &op, &with(Outcome::Failed { class: "invalid".into(), error: "no".into() }));
        log.record("r", &op, &with(Outcome::NotSent { reason: "not ours".into() }));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
    }
}
