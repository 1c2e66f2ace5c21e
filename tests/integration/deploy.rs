//! The deployment artefacts against the real binary: the Kubernetes Deployment, its ConfigMap and the
//! Dockerfile describe one way of starting `litellm-sync`; this test starts it exactly that way (same user, same
//! arguments, same paths mapped under a temporary root, network endpoints pointed at loopback), checks the
//! probes, port and volume, and checks that every metric the dashboard and the alert rules use is exported by the
//! running daemon.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_yaml_ng::Value as Yaml;

use crate::daemon::free_port;
use crate::support::{eventually, litellm_env};

const STATE: &str = "/var/lib/litellm-sync";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn yaml_docs(path: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn doc_of_kind(path: &str, kind: &str) -> Yaml {
    yaml_docs(path)
        .into_iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in {path}"))
}

fn s(v: &Yaml) -> String {
    v.as_str().map(str::to_string).or_else(|| v.as_u64().map(|n| n.to_string())).unwrap_or_default()
}

/// Every `litellm_sync_*` metric name in a text, without histogram suffixes.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("litellm_sync_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        out.insert(base.to_string());
        rest = &tail[end..];
    }
    out
}

/// The metric names used by every `expr` in a parsed dashboard or rules file (comments are not queries).
fn used_metrics(path: &str) -> BTreeSet<String> {
    fn walk(v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr", serde_json::Value::String(q)) => out.extend(metric_names(q)),
                        _ => walk(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let docs: Vec<serde_json::Value> = if path.ends_with(".json") {
        vec![serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))]
    } else {
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
            .collect()
    };
    let mut out = BTreeSet::new();
    docs.iter().for_each(|d| walk(d, &mut out));
    out
}

/// The Dockerfile's JSON-form instruction (`ENTRYPOINT ["a", "b"]`) as a list.
fn docker_json(dockerfile: &str, instr: &str) -> Vec<String> {
    let line = dockerfile
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{instr} ")))
        .unwrap_or_else(|| panic!("no {instr} in the Dockerfile"));
    serde_json::from_str(line.trim_start()[instr.len()..].trim()).unwrap_or_else(|e| panic!("{instr}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployment_and_the_image_start_the_daemon_the_way_it_runs() {
    let deployment = doc_of_kind("deploy/kubernetes/deployment.yaml", "Deployment");
    let configmap = doc_of_kind("deploy/kubernetes/configmap.yaml", "ConfigMap");
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    let pod = &deployment["spec"]["template"]["spec"];
    let c = &pod["containers"][0];

    // The image and the Deployment agree with each other.
    let args: Vec<String> = c["args"].as_sequence().expect("args").iter().map(s).collect();
    assert_eq!(docker_json(&dockerfile, "CMD"), args, "Dockerfile CMD vs Deployment args");
    assert_eq!(docker_json(&dockerfile, "ENTRYPOINT"), vec!["litellm-sync"]);
    let uid = s(&c["securityContext"]["runAsUser"]);
    assert!(dockerfile.contains(&format!("USER {uid}:")), "Dockerfile USER vs runAsUser {uid}");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"].as_bool(), Some(false));
    let env = c["env"].as_sequence().expect("env");
    let config_path = env
        .iter()
        .find(|e| e["name"].as_str() == Some("LITELLM_SYNC_CONFIG"))
        .map(|e| s(&e["value"]))
        .expect("LITELLM_SYNC_CONFIG");
    assert!(dockerfile.contains(&format!("ENV LITELLM_SYNC_CONFIG={config_path}")));
    let port = c["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .find(|p| p["name"].as_str() == Some("http"))
        .map(|p| p["containerPort"].as_u64().expect("containerPort"))
        .expect("port named http");
    assert!(dockerfile.contains(&format!("EXPOSE {port}")));
    let mounts: Vec<(String, String)> =
        c["volumeMounts"].as_sequence().expect("mounts").iter().map(|m| (s(&m["name"]), s(&m["mountPath"]))).collect();
    assert!(mounts.iter().any(|(_, p)| p == STATE), "the state volume is mounted at {STATE}: {mounts:?}");
    assert!(dockerfile.contains(&format!("VOLUME [\"{STATE}\"]")));

    // The ConfigMap's configuration agrees with the Deployment.
    let text = configmap["data"]["config.toml"].as_str().expect("config.toml").to_string();
    let cfg: toml::Value = toml::from_str(&text).expect("config.toml parses");
    let listen = cfg["server"]["listen"].as_str().expect("server.listen");
    assert!(listen.ends_with(&format!(":{port}")), "server.listen {listen} vs containerPort {port}");
    let store = cfg["store"]["path"].as_str().expect("store.path");
    assert!(store.starts_with(&format!("{STATE}/")), "store.path {store} is not on the state volume");
    let secrets_mount = mounts.iter().find(|(n, _)| n == "secrets").map(|(_, p)| p.clone()).expect("secrets mount");
    let config_mount = mounts.iter().find(|(n, _)| n == "config").map(|(_, p)| p.clone()).expect("config mount");
    assert!(config_path.starts_with(&config_mount), "{config_path} not under {config_mount}");
    let secret_items: Vec<String> = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"].as_str() == Some("secrets"))
        .and_then(|v| v["secret"]["items"].as_sequence())
        .expect("secret items")
        .iter()
        .map(|i| s(&i["path"]))
        .collect();
    for file_key in [cfg["litellm"]["api_key_file"].as_str(), cfg["sources"][0]["bind_password_file"].as_str()] {
        let f = file_key.expect("secret file key");
        let name =
            f.strip_prefix(&format!("{secrets_mount}/")).unwrap_or_else(|| panic!("{f} not under {secrets_mount}"));
        assert!(secret_items.iter().any(|i| i == name), "{name} is not an item of the Secret volume");
    }
    let probe = |kind: &str| (s(&c[kind]["httpGet"]["path"]), s(&c[kind]["httpGet"]["port"]));
    for kind in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(probe(kind).1, "http", "{kind} targets the http port");
    }
    let grace = pod["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");
    let shutdown = humantime::parse_duration(cfg["server"]["shutdown_grace"].as_str().unwrap_or("30s")).expect("grace");
    assert!(
        shutdown.as_secs() < grace,
        "shutdown_grace {shutdown:?} must be below terminationGracePeriodSeconds {grace}"
    );

    // Start it that way: the same user, arguments and paths (under a temporary root), endpoints on loopback.
    let root = tempfile::tempdir().expect("root");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod root");
    let at = |p: &str| root.path().join(p.trim_start_matches('/'));
    let (url, key) = litellm_env();
    let dead_ldap = free_port();
    let http = free_port();
    let mapped = text
        .replace(STATE, &at(STATE).display().to_string())
        .replace(&secrets_mount, &at(&secrets_mount).display().to_string())
        .replace("http://litellm:4000", &url)
        .replace("ldap://ldap1.example.org:389", &format!("ldap://127.0.0.1:{dead_ldap}"))
        .replace("ldap://ldap2.example.org:389", &format!("ldap://127.0.0.1:{dead_ldap}"))
        .replace(listen, &format!("127.0.0.1:{http}"));
    assert!(!mapped.contains("example.org:") && !mapped.contains("litellm:4000"), "an endpoint was not redirected");
    let write = |p: &Path, body: &str, mode: u32| {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, body).expect("write");
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    for dir in [&config_mount, &secrets_mount] {
        std::fs::create_dir_all(at(dir)).expect("mkdir");
        std::fs::set_permissions(at(dir), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    write(&at(&config_path), &mapped, 0o444);
    write(&at(&format!("{secrets_mount}/litellm-api-key")), &key, 0o444);
    write(&at(&format!("{secrets_mount}/ldap-bind-password")), "unused", 0o444);
    std::fs::create_dir_all(at(STATE)).expect("state dir");
    let chown = std::process::Command::new("chown").arg(format!("{uid}:{uid}")).arg(at(STATE)).status().expect("chown");
    assert!(chown.success());
    let log = root.path().join("daemon.log");
    let out = std::fs::File::create(&log).expect("log");
    let mut child = tokio::process::Command::new("setpriv")
        .args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()])
        .arg(env!("CARGO_BIN_EXE_litellm-sync"))
        .args(&args)
        .env_clear()
        .env("LITELLM_SYNC_CONFIG", at(&config_path))
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().expect("log")))
        .stderr(Stdio::from(out))
        .kill_on_drop(true)
        .spawn()
        .expect("setpriv (util-linux)");
    let get = |path: String| async move {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{http}{path}"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        Some((r.status().as_u16(), r.text().await.unwrap_or_default()))
    };
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let (status, _) =
        eventually("the startup probe's path answers", Duration::from_secs(30), || get(probe("startupProbe").0)).await;
    assert_eq!(status, 200, "{}", logs());
    assert_eq!(get(probe("livenessProbe").0).await.map(|r| r.0), Some(200));
    let ready =
        eventually("the readiness probe's path answers", Duration::from_secs(30), || get(probe("readinessProbe").0))
            .await;
    assert!(ready.0 == 200 || ready.0 == 503, "readiness: {ready:?}");
    assert!(ready.1.contains("\"ready\""), "readiness body: {}", ready.1);
    assert!(at(store).exists(), "the store was not created on the state volume as user {uid}:\n{}", logs());

    // Every metric the dashboard and the alert rules use is exported by this running daemon.
    let scrape = get("/metrics".into()).await.expect("/metrics").1;
    let exported: BTreeSet<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    for artefact in [
        "deploy/grafana/litellm-sync.json",
        "deploy/prometheus/litellm-sync.rules.yaml",
        "deploy/kubernetes/prometheusrule.yaml",
    ] {
        let used = used_metrics(artefact);
        assert!(!used.is_empty(), "{artefact} references no litellm_sync metric");
        let missing: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
        assert!(
            missing.is_empty(),
            "{artefact} uses metrics the daemon does not export: {missing:?}\nexported: {exported:?}"
        );
    }

    // SIGTERM: it stops within the pod's grace period, exit code 0.
    let pid = child.id().expect("pid");
    assert!(std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().expect("kill").success());
    let st = tokio::time::timeout(Duration::from_secs(grace), child.wait())
        .await
        .expect("exits in the grace period")
        .expect("wait");
    assert!(st.success(), "exit status {st:?}:\n{}", logs());
}

#[test]
fn metric_name_extraction() {
    let names = metric_names(
        "rate(litellm_sync_runs_total{x=\"1\"}[5m]) + litellm_sync_x_seconds_bucket and litellm_sync_y_count",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        vec!["litellm_sync_runs_total", "litellm_sync_x_seconds", "litellm_sync_y"]
    );
}
