//! Helpers of the deployment checks (`deploy.rs`): reading the manifests, the configurations they embed (loaded
//! and validated by the crate itself), and the questions every check asks of a pod: which volume holds a path,
//! which NetworkPolicy port admits a connection, which labels a selector picks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use litellm_sync::config::{self, Config, Secret, SourceKind};
use serde_yaml_ng::Value as Yaml;

/// A path of the repository under test: this one, or the copy LITELLM_SYNC_DEPLOY_ROOT names (to show that a
/// check fails on a deliberately broken copy without rebuilding).
pub fn repo(path: &str) -> PathBuf {
    std::env::var_os("LITELLM_SYNC_DEPLOY_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join(path)
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn yaml_docs(path: &str) -> Vec<Yaml> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .filter(|d: &Yaml| !d.is_null())
        .collect()
}

pub fn yaml(path: &str) -> Yaml {
    let mut docs = yaml_docs(path);
    assert_eq!(docs.len(), 1, "{path}: one YAML document expected");
    docs.remove(0)
}

pub fn doc_of_kind(path: &str, kind: &str) -> Yaml {
    yaml_docs(path)
        .into_iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in {path}"))
}

/// A scalar as text (numbers too), "" when absent.
pub fn s(v: &Yaml) -> String {
    match v {
        Yaml::String(x) => x.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

pub fn seq(v: &Yaml) -> &[Yaml] {
    v.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

/// Every problem a check finds, reported together at the end (like `check-config`).
#[derive(Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }
    pub fn push(&mut self, what: String) {
        self.0.push(what);
    }
    pub fn assert_none(self, what: &str) {
        assert!(self.0.is_empty(), "{what}: {} problem(s):\n  - {}", self.0.len(), self.0.join("\n  - "));
    }
}

/// Loads a configuration the way the binary does (the crate's `load_raw`: the `config` crate's TOML reading),
/// applies the container's `LITELLM_SYNC__*` environment overrides, and validates it with the crate's pure
/// `validate`. Secret files are not read: they exist only in the cluster.
pub fn load_config(toml_text: &str, container_env: &[(String, String)], where_: &str) -> Config {
    let leaked: Vec<String> = std::env::vars().map(|(k, _)| k).filter(|k| k.starts_with("LITELLM_SYNC__")).collect();
    assert!(leaked.is_empty(), "unset {leaked:?}: they would override the configuration under test");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml_text).expect("write config");
    let mut raw = config::load_raw(&path).unwrap_or_else(|e| panic!("{where_}: {e}"));
    let (sources, rest): (Vec<_>, Vec<_>) = container_env
        .iter()
        .filter(|(k, _)| k.starts_with("LITELLM_SYNC__"))
        .cloned()
        .partition(|(k, _)| k.starts_with("LITELLM_SYNC__SOURCES__"));
    assert!(
        rest.is_empty(),
        "{where_}: section overrides in the container's environment are not modelled here: {rest:?}"
    );
    config::apply_sources_env(&mut raw, &sources)
        .unwrap_or_else(|p| panic!("{where_}: {}", p.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")));
    config::validate(&raw).unwrap_or_else(|problems| {
        panic!(
            "{where_} is rejected by the crate's validation:\n  - {}",
            problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  - ")
        )
    })
}

/// The files a configuration reads, with the config key naming each (secrets, CA files, file sources).
pub fn read_files(cfg: &Config) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    if let Secret::File(p) = &cfg.litellm.api_key {
        out.push(("litellm.api_key_file".to_string(), p.clone()));
    }
    for (i, src) in cfg.sources.iter().enumerate() {
        match &src.kind {
            SourceKind::Ldap(l) => {
                if let Secret::File(p) = &l.bind_password {
                    out.push((format!("sources[{i}].bind_password_file"), p.clone()));
                }
                if let Some(ca) = &l.ca_file {
                    out.push((format!("sources[{i}].ca_file"), ca.clone()));
                }
            }
            SourceKind::File(f) => out.push((format!("sources[{i}].path"), f.path.clone())),
            // Token hashes are inline; an OIDC issuer is fetched, not read from a file.
            SourceKind::Scim(_) => {}
        }
    }
    if let Some(Secret::File(p)) = cfg.store.postgres.as_ref().and_then(|pg| pg.password.as_ref()) {
        out.push(("store.password_file".to_string(), p.clone()));
    }
    out
}

/// The paths a configuration writes, with the config key naming each (the SQLite store's directory, the key
/// file, the audit file); `persistent` when losing them on a restart loses state. A PostgreSQL store writes none.
pub fn written_paths(cfg: &Config) -> Vec<(String, PathBuf, bool)> {
    let mut out = Vec::new();
    if let Some(dir) = cfg.store.path.parent().filter(|_| cfg.store.postgres.is_none()) {
        out.push(("store.path".to_string(), dir.to_path_buf(), true));
    }
    if let Some(k) = &cfg.keys {
        out.push(("keys.path".to_string(), k.path.parent().map(Path::to_path_buf).unwrap_or_default(), true));
    }
    if let Some(a) = cfg.log.audit_path.as_ref().filter(|a| a.as_os_str() != "-") {
        out.push(("log.audit_path".to_string(), a.parent().map(Path::to_path_buf).unwrap_or_default(), false));
    }
    out
}

/// The TCP ports a configuration connects to: LiteLLM, every LDAP server and a PostgreSQL store, with a name for
/// the report.
pub fn egress_ports(cfg: &Config) -> Vec<(String, u16)> {
    let mut out =
        vec![(format!("litellm.url {}", cfg.litellm.url), cfg.litellm.url.port_or_known_default().unwrap_or(0))];
    if let Some(pg) = &cfg.store.postgres {
        let port = url::Url::parse(&pg.url).ok().and_then(|u| u.port()).unwrap_or(5432);
        out.push((format!("store.url {}", pg.url), port));
    }
    for (i, src) in cfg.sources.iter().enumerate() {
        if let SourceKind::Ldap(l) = &src.kind {
            for u in &l.urls {
                let port = u.port().unwrap_or(if u.scheme() == "ldaps" { 636 } else { 389 });
                out.push((format!("sources[{i}].urls {u}"), port));
            }
        }
    }
    out
}

/// Does a label selector (`matchLabels` and `matchExpressions`) select these labels?
pub fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    let label = |k: &str| labels[k].as_str().map(str::to_string);
    let by_labels =
        selector["matchLabels"].as_mapping().map(|m| m.iter().all(|(k, v)| label(&s(k)) == Some(s(v)))).unwrap_or(true);
    let by_expressions = seq(&selector["matchExpressions"]).iter().all(|e| {
        let values: BTreeSet<String> = seq(&e["values"]).iter().map(s).collect();
        let have = label(&s(&e["key"]));
        match e["operator"].as_str() {
            Some("In") => have.is_some_and(|v| values.contains(&v)),
            Some("NotIn") => have.is_none_or(|v| !values.contains(&v)),
            Some("Exists") => have.is_some(),
            Some("DoesNotExist") => have.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// Does some rule of a NetworkPolicy direction (`ingress` or `egress`) admit TCP/UDP `port`? A rule without
/// `ports` admits every port. Peers (`to`/`from`) are the cluster's business and are not judged here.
pub fn policy_allows(policy: &Yaml, direction: &str, protocol: &str, port: u16) -> bool {
    seq(&policy["spec"][direction]).iter().any(|rule| {
        let ports = seq(&rule["ports"]);
        ports.is_empty()
            || ports.iter().any(|p| {
                let proto = p["protocol"].as_str().unwrap_or("TCP");
                let from = p["port"].as_u64();
                let end = p["endPort"].as_u64().or(from);
                proto == protocol && from.zip(end).is_some_and(|(a, b)| (a..=b).contains(&u64::from(port)))
            })
    })
}

/// The volume mount of `container` holding `path` (the longest mount path that contains it), and its volume.
pub fn mount_of<'a>(pod: &'a Yaml, container: &'a Yaml, path: &Path) -> Option<(&'a Yaml, &'a Yaml, PathBuf)> {
    let mount = seq(&container["volumeMounts"])
        .iter()
        .filter(|m| path.starts_with(s(&m["mountPath"])))
        .max_by_key(|m| s(&m["mountPath"]).len())?;
    let volume = seq(&pod["volumes"]).iter().find(|v| v["name"] == mount["name"])?;
    let rel = path.strip_prefix(s(&mount["mountPath"])).ok()?.to_path_buf();
    Some((mount, volume, rel))
}

/// The key of a configMap/secret volume that appears as file `rel` under its mount (`items`, or every key).
pub fn projected_key(volume_source: &Yaml, rel: &Path) -> Option<String> {
    let items = seq(&volume_source["items"]);
    if items.is_empty() {
        return rel.to_str().map(str::to_string);
    }
    items.iter().find(|i| Path::new(&s(&i["path"])) == rel).map(|i| s(&i["key"]))
}

/// The keys a Secret manifest holds (`stringData` and `data`).
pub fn secret_keys(secret: &Yaml) -> BTreeSet<String> {
    ["stringData", "data"].iter().filter_map(|k| secret[*k].as_mapping()).flat_map(|m| m.keys().map(s)).collect()
}

/// A container's environment as (name, value) pairs (plain values only).
pub fn env_of(container: &Yaml) -> Vec<(String, String)> {
    seq(&container["env"]).iter().map(|e| (s(&e["name"]), s(&e["value"]))).collect()
}

/// The minimal interval between two runs of a Kubernetes (five-field) cron schedule, over a year of runs.
pub fn min_cron_interval(schedule: &str) -> std::time::Duration {
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .build()
        .parse(schedule)
        .unwrap_or_else(|e| panic!("schedule {schedule:?}: {e}"));
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("date").to_utc();
    let times: Vec<_> = cron.iter_after(start).take(40_000).collect();
    times
        .windows(2)
        .map(|w| (w[1] - w[0]).to_std().unwrap_or_default())
        .min()
        .unwrap_or_else(|| panic!("schedule {schedule:?} runs less than twice"))
}

/// LDIF entries (`dn` → attribute → values, attribute names lower-cased; folded lines joined).
pub fn ldif_entries(text: &str) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>> {
    let unfolded = text.replace("\n ", "");
    let mut out = std::collections::BTreeMap::new();
    for block in unfolded.split("\n\n") {
        let mut attrs: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
        for line in block.lines().filter(|l| !l.starts_with('#')) {
            if let Some((k, v)) = line.split_once(':') {
                attrs.entry(k.trim().to_ascii_lowercase()).or_default().push(v.trim().to_string());
            }
        }
        if let Some(dn) = attrs.get("dn").and_then(|d| d.first()).map(|d| d.to_ascii_lowercase()) {
            out.insert(dn, attrs);
        }
    }
    out
}
