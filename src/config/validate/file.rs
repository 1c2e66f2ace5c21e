//! `type = "file"` sources: the keys of the source entry (its `path`).
//!
//! The file's own content (users, groups, overrides) is read and checked by `sources::file` when the source
//! runs, never here: validation does no IO.

use serde_json::{Map, Value};

use super::ctx::{Ctx, Known};
use super::sources::SOURCE_COMMON;
use crate::config::FileSourceConfig;

/// The file-specific keys of the source at `path` (`rest`: all but the common ones).
pub(super) fn source(cx: &mut Ctx, path: &str, rest: Map<String, Value>) -> Option<FileSourceConfig> {
    cx.de(path, Value::Object(rest), &Known::of::<FileSourceConfig>().table("", SOURCE_COMMON))
}
