//! Source adapters: they translate the outside world into [`Snapshot`]s and `SourceEvent`s and never talk to
//! LiteLLM. A read either returns a complete snapshot or fails; there is no partial success, because only a
//! complete snapshot may lead to deprovisioning.

pub mod file;
pub mod ldap;

use crate::config::{Problem, SourceConfig, SourceKind};
use crate::model::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {source_name:?}: cannot read {path}: {message}")]
    Io { source_name: String, path: String, message: String },
    #[error("source {source_name:?}: {path} is not valid {format}: {message}")]
    Parse { source_name: String, path: String, format: &'static str, message: String },
    #[error("source {source_name:?} (LDAP): {message}")]
    Ldap { source_name: String, message: String },
    #[error("source {source_name:?}: {path} has {} problem(s):\n{}", .problems.len(),
        .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { source_name: String, path: String, problems: Vec<Problem> },
}

impl SourceError {
    pub fn source_name(&self) -> &str {
        match self {
            SourceError::Io { source_name, .. }
            | SourceError::Parse { source_name, .. }
            | SourceError::Ldap { source_name, .. }
            | SourceError::Invalid { source_name, .. } => source_name,
        }
    }
}

/// A configured source, ready to read.
pub enum Source {
    File(file::FileSource),
    Ldap(Box<ldap::LdapSource>),
}

impl Source {
    pub fn new(cfg: &SourceConfig) -> Source {
        match &cfg.kind {
            SourceKind::File(f) => Source::File(file::FileSource::new(&cfg.name, f)),
            SourceKind::Ldap(l) => Source::Ldap(Box::new(ldap::LdapSource::new(&cfg.name, l))),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Source::File(f) => f.name(),
            Source::Ldap(l) => l.name(),
        }
    }

    /// Reads the complete current view of the source.
    pub async fn snapshot(&self) -> Result<Snapshot, SourceError> {
        match self {
            Source::File(f) => f.snapshot().await,
            Source::Ldap(l) => l.snapshot().await,
        }
    }

    /// `check-config`: a short description of what the source can see, or why it cannot.
    pub async fn check(&self) -> Result<String, SourceError> {
        match self {
            Source::Ldap(l) => l.check().await,
            Source::File(f) => {
                let s = f.snapshot().await?;
                Ok(format!("{} users, {} groups", s.users.len(), s.groups.len()))
            }
        }
    }
}
