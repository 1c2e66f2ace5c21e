//! Where the plaintext of a minted key goes: a JSON-lines file, created with mode 0600, one line per key (user,
//! alias, key), fsynced before the key counts as delivered. LiteLLM's answer to `/key/generate` is the only place
//! the plaintext ever exists, so it goes here and nowhere else: never to a log, an error, the audit trail or the
//! store.
//!
//! The sink also remembers which `(user_id, alias)` pairs it delivered, so that a create retried after a lost
//! answer can tell a key that reached its owner from one whose plaintext was lost (that one is replaced).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum KeySinkError {
    #[error("cannot open the key file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key file {path} can be read by other users (mode {mode:o}); it holds plaintext keys: chmod 600 it")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("cannot write to the key file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One delivered key, as written (the key itself only in the file).
pub struct Delivery<'a> {
    pub user_id: &'a str,
    pub user_email: Option<&'a str>,
    pub alias: &'a str,
    pub source: &'a str,
    pub external_id: &'a str,
}

pub struct KeySink {
    path: PathBuf,
    file: Mutex<File>,
    delivered: Mutex<BTreeSet<(String, String)>>,
}

impl std::fmt::Debug for KeySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySink({})", self.path.display())
    }
}

impl KeySink {
    /// Opens (creating with mode 0600) the file; refuses one that others can read.
    pub fn open(path: &Path) -> Result<KeySink, KeySinkError> {
        let open_err = |source| KeySinkError::Open { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let file = OpenOptions::new().create(true).append(true).read(true).mode(0o600).open(path).map_err(open_err)?;
        let mode = file.metadata().map_err(open_err)?.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeySinkError::TooOpen { path: path.to_path_buf(), mode });
        }
        let delivered = read_deliveries(path).map_err(open_err)?;
        Ok(KeySink { path: path.to_path_buf(), file: Mutex::new(file), delivered: Mutex::new(delivered) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a key of this user with this alias was delivered to the file before. A miss reads the file again:
    /// with several replicas sharing it, the key may have been delivered by another (an earlier leader).
    pub fn has(&self, user_id: &str, alias: &str) -> bool {
        let pair = (user_id.to_string(), alias.to_string());
        let mut delivered = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
        if delivered.contains(&pair) {
            return true;
        }
        match read_deliveries(&self.path) {
            Ok(now) => *delivered = now,
            // Unreadable now: "not delivered" would replace a key someone may hold, so count it as delivered.
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "Cannot re-read the key file");
                return true;
            }
        }
        delivered.contains(&pair)
    }

    /// Appends one key and syncs the file to disk.
    pub fn deliver(&self, d: &Delivery<'_>, key: &SecretString) -> Result<(), KeySinkError> {
        let line = json!({
            "ts": chrono::Utc::now().to_rfc3339(),
            "user_id": d.user_id,
            "user_email": d.user_email,
            "key_alias": d.alias,
            "key": key.expose_secret(),
            "source": d.source,
            "external_id": d.external_id,
        });
        let write_err = |source| KeySinkError::Write { path: self.path.clone(), source };
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        writeln!(f, "{line}").map_err(write_err)?;
        f.sync_data().map_err(write_err)?;
        self.delivered.lock().unwrap_or_else(|p| p.into_inner()).insert((d.user_id.to_string(), d.alias.to_string()));
        Ok(())
    }
}

/// The `(user_id, key_alias)` pairs in the file; lines that are not a delivery are skipped.
fn read_deliveries(path: &Path) -> std::io::Result<BTreeSet<(String, String)>> {
    let mut delivered = BTreeSet::new();
    for line in BufReader::new(File::open(path)?).lines().map_while(Result::ok) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if let (Some(u), Some(a)) = (v["user_id"].as_str(), v["key_alias"].as_str()) {
                delivered.insert((u.to_string(), a.to_string()));
            }
        }
    }
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery<'a>(user: &'a str, alias: &'a str) -> Delivery<'a> {
        Delivery { user_id: user, user_email: None, alias, source: "corp", external_id: "1" }
    }

    #[test]
    fn file_is_private_and_remembers_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/keys.jsonl");
        let sink = KeySink::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        sink.deliver(&delivery("alice", "alice-key"), &SecretString::from("sk-secret-1")).unwrap();
        assert!(sink.has("alice", "alice-key"));
        assert!(!sink.has("alice", "other"));
        drop(sink);
        let again = KeySink::open(&path).unwrap();
        assert!(again.has("alice", "alice-key"), "deliveries survive a restart");
        let text = std::fs::read_to_string(&path).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["key"], "sk-secret-1");
        assert_eq!(line["user_id"], "alice");
        assert!(!format!("{again:?}").contains("sk-"), "Debug never shows a key");
    }

    /// Replicas share one file: a key the previous leader delivered is known to the next one, which must not
    /// replace it as "lost".
    #[test]
    fn a_delivery_by_another_process_on_the_same_file_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.jsonl");
        let first = KeySink::open(&path).unwrap();
        let second = KeySink::open(&path).unwrap();
        assert!(!second.has("bob", "bob-key"));
        first.deliver(&delivery("bob", "bob-key"), &SecretString::from("sk-secret-2")).unwrap();
        assert!(second.has("bob", "bob-key"), "read again on a miss");
        assert!(!second.has("bob", "other"));
        std::fs::remove_file(&path).unwrap();
        assert!(second.has("carol", "carol-key"), "an unreadable file never makes a key look lost");
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.jsonl");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let err = KeySink::open(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn garbage_lines_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.jsonl");
        std::fs::write(&path, "not json\n{\"user_id\": 5}\n").unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let sink = KeySink::open(&path).unwrap();
        assert!(!sink.has("5", ""));
    }
}
