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

    /// Records one applied (or failed) operation.
    pub fn record(&self, run_id: &str, source: &str, op: &Op, result: &OpResult) {
        if matches!(result.outcome, Outcome::Skipped) {
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
