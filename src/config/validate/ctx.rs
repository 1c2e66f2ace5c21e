//! What every section's validation shares: the problem list ([`Ctx`]), typed deserialization that reports each
//! unknown key by its path with a "did you mean" ([`Ctx::de`], [`Known`]), and the readers of value kinds that
//! several sections use (durations, secrets).
//!
//! No rule of a particular section lives here, and nothing here reads a file, the environment or the clock.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::de::{DeserializeOwned, Visitor};
use serde_json::{Map, Value};

use super::suggest::did_you_mean;
use crate::config::{Problem, Secret};

#[derive(Default)]
pub(super) struct Ctx {
    pub(super) problems: Vec<Problem>,
}

/// Where problems go: the config's [`Ctx`], or a plain list (the file source's per-user overrides).
pub(crate) trait ProblemSink {
    fn push(&mut self, path: String, message: String);
}

impl ProblemSink for Ctx {
    fn push(&mut self, path: String, message: String) {
        self.problem(path, message);
    }
}

impl ProblemSink for Vec<Problem> {
    fn push(&mut self, path: String, message: String) {
        self.push(Problem { path, message });
    }
}

/// The keys each table of a value accepts, by the table's path below that value (`""` for the value itself,
/// `"team"`, `"attributes"`; array indices left out): what an unknown key is compared with.
#[derive(Default)]
pub(super) struct Known(Vec<(&'static str, &'static [&'static str])>);

impl Known {
    /// The fields of `T` at the top.
    pub(super) fn of<T: DeserializeOwned>() -> Known {
        Known::default().table("", fields::<T>())
    }

    /// The fields of `T` for the table at `at`.
    pub(super) fn nested<T: DeserializeOwned>(self, at: &'static str) -> Known {
        self.table(at, fields::<T>())
    }

    /// More keys for the table at `at` (those split off and read by another type).
    pub(super) fn table(mut self, at: &'static str, keys: &'static [&'static str]) -> Known {
        self.0.push((at, keys));
        self
    }

    pub(super) fn keys<'a>(&'a self, at: &'a str) -> impl Iterator<Item = &'static str> + 'a {
        self.0.iter().filter(move |(a, _)| *a == at).flat_map(|(_, keys)| keys.iter().copied())
    }
}

/// The field names serde derived for `T` (what `#[derive(Deserialize)]` passes to `deserialize_struct`),
/// renames applied; empty for a type that is not a struct. Read from serde rather than listed by hand so the
/// suggestions cannot drift from the types.
pub(super) fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Fields<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Fields<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("fields read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    // Always an error: the deserializer stops as soon as it has seen the field list.
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

/// Where `serde_ignored` found an unknown key, in the config's own notation (`team.max_budgets`,
/// `members[0].x`; `Option` and newtype layers left out).
struct KeyPath {
    shown: String,
    /// The keys of the tables above it, dot-joined, without indices: what [`Known`] is asked.
    table: String,
    key: Option<String>,
}

impl KeyPath {
    fn of(path: &serde_ignored::Path<'_>) -> KeyPath {
        enum Seg {
            Key(String),
            Index(usize),
        }
        fn walk(p: &serde_ignored::Path<'_>, out: &mut Vec<Seg>) {
            use serde_ignored::Path as P;
            match p {
                P::Root => {}
                P::Seq { parent, index } => {
                    walk(parent, out);
                    out.push(Seg::Index(*index));
                }
                P::Map { parent, key } => {
                    walk(parent, out);
                    out.push(Seg::Key(key.clone()));
                }
                P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => walk(parent, out),
            }
        }
        let mut segs = Vec::new();
        walk(path, &mut segs);
        let key = match segs.last() {
            Some(Seg::Key(k)) => Some(k.clone()),
            _ => None,
        };
        let mut shown = String::new();
        let mut tables = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if !shown.is_empty() {
                        shown.push('.');
                    }
                    shown.push_str(k);
                    if i + 1 < segs.len() {
                        tables.push(k.as_str());
                    }
                }
                Seg::Index(n) => shown.push_str(&format!("[{n}]")),
            }
        }
        KeyPath { shown, table: tables.join("."), key }
    }
}

/// Deserializes `value` as `T` through `serde_ignored` (each unknown key goes to `on_unknown`) and
/// `serde_path_to_error` (the first type error, with its path).
fn deserialize_observing<T: DeserializeOwned>(
    value: Value,
    mut on_unknown: impl FnMut(serde_ignored::Path<'_>),
) -> Result<T, Problem> {
    let result: Result<T, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut on_unknown));
    result.map_err(|e| {
        let inner = e.path().to_string();
        Problem { path: if inner == "." { String::new() } else { inner }, message: e.into_inner().to_string() }
    })
}

/// Deserializes a JSON tree as `T`, collecting every unknown key (as `serde_ignored` prints paths) and the path
/// of the first type error. Used by the file source; the config's own sections go through [`Ctx::de`].
pub(crate) fn deserialize_reporting<T: DeserializeOwned>(value: Value) -> (Result<T, Problem>, Vec<String>) {
    let mut unknown = Vec::new();
    let result = deserialize_observing(value, |p| unknown.push(p.to_string()));
    (result, unknown)
}

impl Ctx {
    pub(super) fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { path: path.into(), message: message.into() });
    }

    /// Deserializes `value` (found at `path`) as `T`, reporting each unknown key, with the closest of `known`
    /// as a suggestion, and the first type error.
    pub(super) fn de<T: DeserializeOwned>(&mut self, path: &str, value: Value, known: &Known) -> Option<T> {
        let mut unknown = Vec::new();
        let result = deserialize_observing::<T>(value, |p| unknown.push(KeyPath::of(&p)));
        for key in unknown {
            let message = if key.shown.ends_with("soft_budget") && !path.ends_with("team") {
                "LiteLLM users have no soft budget (LiteLLM drops it silently); set soft_budget on the rule's team"
                    .to_string()
            } else {
                unknown_key(key.key.as_deref().and_then(|k| did_you_mean(k, known.keys(&key.table))))
            };
            self.problem(join(path, &key.shown), message);
        }
        match result {
            Ok(v) => Some(v),
            Err(p) => {
                self.problem(join(path, &p.path), p.message);
                None
            }
        }
    }

    pub(super) fn duration(&mut self, path: &str, raw: Option<&str>, default: Duration) -> Duration {
        match raw {
            None => default,
            Some(s) => match humantime::parse_duration(s) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.problem(path, "must be greater than zero");
                    default
                }
                Err(e) => {
                    self.problem(path, format!("invalid duration {s:?} ({e}); use e.g. 30s, 5m, 7d"));
                    default
                }
            },
        }
    }

    /// A secret given inline (`at.key`) or as a file (`at.key_file`), exactly one of them; `required` says how
    /// to give it. A value of the wrong type is reported without being echoed. The file is not read here.
    pub(super) fn secret(
        &mut self,
        at: &str,
        key: &str,
        inline: Option<Value>,
        file: Option<PathBuf>,
        required: &str,
    ) -> Option<Secret> {
        let path = join(at, key);
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(path, format!("set either {key} or {key}_file, not both"));
                None
            }
            (Some(Value::String(s)), None) if !s.is_empty() => Some(Secret::Value(SecretString::from(s))),
            (Some(Value::Number(n)), None) => Some(Secret::Value(SecretString::from(n.to_string()))),
            (Some(_), None) => {
                self.problem(path, "must be a non-empty string");
                None
            }
            (None, Some(p)) => Some(Secret::File(p)),
            (None, None) => {
                self.problem(path, required);
                None
            }
        }
    }
}

/// The message for an unknown key, with the suggestion if there is one.
pub(super) fn unknown_key(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!("unknown key; did you mean `{s}`?"),
        None => "unknown key".to_string(),
    }
}

pub(super) fn join(base: &str, rest: &str) -> String {
    if base.is_empty() {
        rest.to_string()
    } else if rest.is_empty() || rest == "?" {
        base.to_string()
    } else if rest.starts_with('[') {
        format!("{base}{rest}")
    } else {
        format!("{base}.{rest}")
    }
}

/// Splits known `keys` out of an object; the rest is returned for a typed deserialization.
pub(super) fn split(map: &Map<String, Value>, keys: &[&str]) -> (Map<String, Value>, Map<String, Value>) {
    let (mut known, mut rest) = (Map::new(), Map::new());
    for (k, v) in map {
        if keys.contains(&k.as_str()) {
            known.insert(k.clone(), v.clone());
        } else {
            rest.insert(k.clone(), v.clone());
        }
    }
    (known, rest)
}
