//! `type = "file"`: users and groups from a YAML or TOML file. The demo and test source, and a way to keep
//! LiteLLM access in Git. The file is validated as a whole: one bad entry fails the read (nothing is emitted),
//! with every problem listed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::SourceError;
use crate::config::{FileSourceConfig, Problem};
use crate::model::{Grants, Group, Identity, Snapshot};

/// Files larger than this are refused rather than read into memory.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

pub struct FileSource {
    name: String,
    path: PathBuf,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Deserialize)]
struct RawUser {
    id: String,
    user_name: String,
    email: Option<String>,
    display_name: Option<String>,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    overrides: Grants,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct RawGroup {
    id: String,
    name: Option<String>,
    dn: Option<String>,
    #[serde(default)]
    members: Vec<String>,
    /// Nested groups: their members belong to this group too.
    #[serde(default)]
    groups: Vec<String>,
}

impl FileSource {
    pub fn new(name: &str, cfg: &FileSourceConfig) -> FileSource {
        FileSource { name: name.to_string(), path: cfg.path.clone() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn snapshot(&self) -> Result<Snapshot, SourceError> {
        let io = |message: String| SourceError::Io {
            source_name: self.name.clone(),
            path: self.path.display().to_string(),
            message,
        };
        let meta = tokio::fs::metadata(&self.path).await.map_err(|e| io(e.to_string()))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(io(format!("file is {} bytes; the limit is {MAX_FILE_BYTES}", meta.len())));
        }
        let bytes = tokio::fs::read(&self.path).await.map_err(|e| io(e.to_string()))?;
        parse(&self.name, &self.path, &bytes)
    }
}

/// Parses and validates a file source's content. Pure.
pub fn parse(source: &str, path: &Path, bytes: &[u8]) -> Result<Snapshot, SourceError> {
    let shown = path.display().to_string();
    let is_toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let parse_err = |format: &'static str, message: String| SourceError::Parse {
        source_name: source.to_string(),
        path: shown.clone(),
        format,
        message,
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|e| parse_err(if is_toml { "TOML" } else { "YAML" }, format!("not UTF-8: {e}")))?;
    let tree: Value = if is_toml {
        toml::from_str(text).map_err(|e| parse_err("TOML", e.to_string()))?
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| parse_err("YAML", e.to_string()))?
    };
    let (raw, unknown) = crate::config::deserialize_reporting::<RawFile>(tree);
    let mut problems: Vec<Problem> =
        unknown.into_iter().map(|k| Problem { path: k, message: "unknown key".into() }).collect();
    let raw = match raw {
        Ok(r) => r,
        Err(mut p) => {
            if p.path.is_empty() {
                p.path = "(file)".into();
            }
            problems.push(p);
            return Err(SourceError::Invalid { source_name: source.into(), path: shown, problems });
        }
    };

    let mut user_ids = BTreeSet::new();
    let group_ids: BTreeSet<&str> = raw.groups.iter().map(|g| g.id.as_str()).collect();
    for (i, u) in raw.users.iter().enumerate() {
        let at = format!("users[{i}]");
        if u.id.trim().is_empty() {
            problems.push(Problem { path: format!("{at}.id"), message: "must not be empty".into() });
        } else if !user_ids.insert(u.id.as_str()) {
            problems.push(Problem { path: format!("{at}.id"), message: format!("duplicate user id {:?}", u.id) });
        }
        if u.user_name.trim().is_empty() {
            problems.push(Problem { path: format!("{at}.user_name"), message: "must not be empty".into() });
        }
        if u.email.as_deref().is_some_and(|e| !e.contains('@')) {
            problems.push(Problem {
                path: format!("{at}.email"),
                message: format!("{:?} is not an e-mail address", u.email.as_deref().unwrap_or("")),
            });
        }
        for g in &u.groups {
            if !group_ids.contains(g.as_str()) {
                problems.push(Problem { path: format!("{at}.groups"), message: format!("no group with id {g:?}") });
            }
        }
        crate::config::validate_grants_into(&mut problems, &format!("{at}.overrides"), &u.overrides);
    }
    let mut seen_groups = BTreeSet::new();
    for (i, g) in raw.groups.iter().enumerate() {
        let at = format!("groups[{i}]");
        if g.id.trim().is_empty() {
            problems.push(Problem { path: format!("{at}.id"), message: "must not be empty".into() });
        } else if !seen_groups.insert(g.id.as_str()) {
            problems.push(Problem { path: format!("{at}.id"), message: format!("duplicate group id {:?}", g.id) });
        }
        for m in &g.members {
            if !user_ids.contains(m.as_str()) {
                problems.push(Problem { path: format!("{at}.members"), message: format!("no user with id {m:?}") });
            }
        }
        for n in &g.groups {
            if !group_ids.contains(n.as_str()) {
                problems.push(Problem { path: format!("{at}.groups"), message: format!("no group with id {n:?}") });
            }
        }
    }
    if !problems.is_empty() {
        return Err(SourceError::Invalid { source_name: source.into(), path: shown, problems });
    }
    Ok(Snapshot {
        source: source.to_string(),
        users: raw
            .users
            .into_iter()
            .map(|u| Identity {
                external_id: u.id,
                user_name: u.user_name,
                email: u.email,
                display_name: u.display_name,
                active: u.active,
                groups: u.groups,
                overrides: u.overrides,
            })
            .collect(),
        groups: raw
            .groups
            .into_iter()
            .map(|g| Group {
                name: g.name.unwrap_or_else(|| g.id.clone()),
                external_id: g.id,
                dn: g.dn,
                members: g.members,
                member_groups: g.groups,
            })
            .collect(),
        // A file is all or nothing: a bad record fails the read (above), so nothing is left unread.
        unreadable: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Snapshot, SourceError> {
        parse("demo", Path::new("users.yaml"), text.as_bytes())
    }

    fn problems(r: Result<Snapshot, SourceError>) -> Vec<String> {
        match r {
            Err(SourceError::Invalid { problems, .. }) => problems.iter().map(|p| p.to_string()).collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn reads_users_groups_and_nesting() {
        let s = p(r#"
users:
  - {id: "1", user_name: alice, email: Alice@Example.com, display_name: Alice}
  - {id: "2", user_name: bob, active: false, overrides: {max_budget: 5}}
groups:
  - {id: eng, name: Engineering, members: ["1"]}
  - {id: all, members: ["2"], groups: [eng]}
"#)
        .unwrap();
        assert_eq!(s.users.len(), 2);
        assert!(s.users[0].active && !s.users[1].active);
        assert_eq!(s.users[1].overrides.max_budget, Some(5.0));
        assert_eq!(s.groups[1].name, "all");
        assert_eq!(s.groups[1].member_groups, vec!["eng"]);
    }

    #[test]
    fn toml_works_too() {
        let s = parse("demo", Path::new("u.toml"), b"[[users]]\nid = \"1\"\nuser_name = \"a\"\n").unwrap();
        assert_eq!(s.users[0].user_name, "a");
    }

    #[test]
    fn duplicates_and_dangling_references_are_all_reported() {
        let errs = problems(p(r#"
users:
  - {id: "1", user_name: alice, groups: [nope]}
  - {id: "1", user_name: ""}
groups:
  - {id: g, members: ["1", "9"], groups: [missing]}
  - {id: g}
"#));
        let all = errs.join("\n");
        for want in [
            "users[1].id: duplicate user id",
            "users[1].user_name: must not be empty",
            "users[0].groups: no group with id \"nope\"",
            "groups[0].members: no user with id \"9\"",
            "groups[0].groups: no group with id \"missing\"",
            "groups[1].id: duplicate group id",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_overrides_are_reported() {
        let errs = problems(p(r#"
users:
  - {id: "1", user_name: a, emial: x@y, overrides: {budget_duration: "2mo", max_budget: -1, metadata: {litellm_sync: 1}}}
"#));
        let all = errs.join("\n");
        assert!(all.contains("users.0.emial: unknown key"), "{all}");
        assert!(all.contains("users[0].overrides.budget_duration"), "{all}");
        assert!(all.contains("users[0].overrides.max_budget"), "{all}");
        assert!(all.contains("users[0].overrides.metadata"), "{all}");
    }

    #[test]
    fn malformed_files_fail_cleanly() {
        assert!(matches!(p("users: [\n"), Err(SourceError::Parse { .. })));
        assert!(matches!(p("users: 5"), Err(SourceError::Invalid { .. })));
        assert!(matches!(p("- just\n- a list"), Err(SourceError::Invalid { .. })));
        assert!(matches!(parse("d", Path::new("u.yaml"), b"\xff\xfe"), Err(SourceError::Parse { .. })));
        assert!(matches!(p("users:\n  - {id: 1, user_name: [x]}"), Err(SourceError::Invalid { .. })));
        // A YAML alias bomb is refused by the parser's own limits rather than expanded.
        let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nusers: []\n";
        assert!(p(bomb).is_err());
    }

    #[test]
    fn empty_file_is_an_empty_snapshot() {
        let s = p("{}").unwrap();
        assert!(s.users.is_empty() && s.groups.is_empty());
    }
}
