//! The deployment kit (Dockerfile, deploy/) checked against itself and against the crate. External tools check
//! each file on its own (scripts/check-deploy.sh: hadolint, kubernetes-validate, check-jsonschema, checkov,
//! yamllint, promtool); what only this project knows is checked here, in Rust, with the crate's own config
//! loading and validation:
//!
//! - `kit_*` tests (no peer needed; scripts/check-deploy.sh runs them): the ports of the config, the container,
//!   the probes, the Service, the ServiceMonitor and the NetworkPolicy agree; every path the config reads or
//!   writes is on a volume of the right kind; the Secret's keys are the config's secret files; the grace periods,
//!   the CronJob's schedule and deadlines, the compose stack, the alert rules, the dashboard and the metric names
//!   they use;
//! - the live tests start the real binary exactly the way the Deployment, the CronJob and the approve Job do
//!   (same user, arguments and paths, under a temporary root, endpoints on loopback) against the real LiteLLM:
//!   the daemon's probes, volume and SIGTERM, and that every metric the dashboard and the alerts use is exported
//!   by the running daemon; the CLI's store on the CronJob's volume, its exit code, and the approve Job on it.
//!
//! Long (over 1,000 lines) because it is one check per cross-file rule, each with its own error text; they share
//! the parsed kit, so they stay in one file.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use litellm_sync::config::{Config, SourceKind};
use serde_yaml_ng::Value as Yaml;

use crate::deploy_kit::*;
use crate::support::free_port;
use crate::support::{eventually, litellm_env};

const STATE: &str = "/var/lib/litellm-sync";
const K8S: &str = "deploy/kubernetes";
const CRON: &str = "deploy/kubernetes/cronjob";
const HA: &str = "deploy/kubernetes/ha";

/// Every `litellm_sync_*` metric name in a text, without histogram suffixes.
fn metric_names(text: &str) -> BTreeSet<String> {
    metric_refs(text).into_iter().map(|(base, _)| base).collect()
}

/// Every `litellm_sync_*` name in a text as (base name, suffix): `x_bucket` → (`x`, `_bucket`).
fn metric_refs(text: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("litellm_sync_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let (base, suffix) = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).map(|b| (b, *s)))
            .unwrap_or((name, ""));
        out.insert((base.to_string(), suffix.to_string()));
        rest = &tail[end..];
    }
    out
}

/// Every `expr` of a parsed dashboard or rules file (comments are not queries).
fn exprs(path: &str) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr", serde_json::Value::String(q)) => out.push(q.clone()),
                        _ => walk(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let text = read(path);
    let docs: Vec<serde_json::Value> = if path.ends_with(".json") {
        vec![serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))]
    } else {
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
            .collect()
    };
    let mut out = Vec::new();
    docs.iter().for_each(|d| walk(d, &mut out));
    out
}

/// The metric names used by every `expr` of a dashboard or rules file.
fn used_metrics(path: &str) -> BTreeSet<String> {
    exprs(path).iter().flat_map(|q| metric_names(q)).collect()
}

const METRIC_ARTEFACTS: [&str; 4] = [
    "deploy/grafana/litellm-sync.json",
    "deploy/prometheus/litellm-sync.rules.yaml",
    "deploy/kubernetes/prometheusrule.yaml",
    "deploy/kubernetes/ha/prometheusrule.yaml",
];

/// The Dockerfile's JSON-form instruction (`ENTRYPOINT ["a", "b"]`) as a list.
fn docker_json(dockerfile: &str, instr: &str) -> Vec<String> {
    let line = dockerfile
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{instr} ")))
        .unwrap_or_else(|| panic!("no {instr} in the Dockerfile"));
    serde_json::from_str(line.trim_start()[instr.len()..].trim()).unwrap_or_else(|e| panic!("{instr}: {e}"))
}

/// The ConfigMap's `config.toml`, loaded and validated by the crate, and the path it is mounted at.
fn embedded_config(configmap: &Yaml, container_env: &[(String, String)], where_: &str) -> (String, Config) {
    let text = configmap["data"]["config.toml"].as_str().unwrap_or_else(|| panic!("{where_}: no data.config.toml"));
    (text.to_string(), load_config(text, container_env, where_))
}

/// What a pod running litellm-sync must have, whatever runs it (the daemon's Deployment, the CronJob, the approve
/// Job): the config file from the ConfigMap, every file the config reads from a read-only ConfigMap or Secret
/// item that exists, every path it writes on a writable volume (a SQLite store on the PersistentVolumeClaim; a
/// PostgreSQL store, `pvc: None`, has none and writes no state locally), a writable /tmp, the Secret's keys all
/// used, and a NetworkPolicy that lets it reach LiteLLM, LDAP, PostgreSQL and DNS.
struct Pod<'a> {
    what: String,
    labels: &'a Yaml,
    pod: &'a Yaml,
    container: &'a Yaml,
    config_path: PathBuf,
    cfg: &'a Config,
    configmap: &'a Yaml,
    secret: &'a Yaml,
    pvc: Option<&'a Yaml>,
    policy: &'a Yaml,
}

impl Pod<'_> {
    fn check(&self, p: &mut Problems) {
        let w = &self.what;
        // The config file: an item of the ConfigMap, mounted read-only.
        match mount_of(self.pod, self.container, &self.config_path) {
            Some((m, v, rel)) => {
                p.check(v["configMap"]["name"] == self.configmap["metadata"]["name"], || {
                    format!(
                        "{w}: {} is not on a volume of ConfigMap {}",
                        self.config_path.display(),
                        s(&self.configmap["metadata"]["name"])
                    )
                });
                let key = projected_key(&v["configMap"], &rel);
                p.check(key.as_deref() == Some("config.toml"), || {
                    format!("{w}: {} is ConfigMap key {key:?}, not config.toml", self.config_path.display())
                });
                p.check(m["readOnly"].as_bool() == Some(true), || format!("{w}: the config mount is not readOnly"));
            }
            None => p.push(format!("{w}: no volume mount holds the config file {}", self.config_path.display())),
        }
        // Every file the config reads: an existing key of the Secret (or a ConfigMap), mounted read-only.
        let template_keys = secret_keys(self.secret);
        let mut used_keys = BTreeSet::new();
        for (key, path) in read_files(self.cfg) {
            let Some((m, v, rel)) = mount_of(self.pod, self.container, &path) else {
                p.push(format!("{w}: {key} = {} is on no volume (the root file system is read-only)", path.display()));
                continue;
            };
            p.check(m["readOnly"].as_bool() == Some(true), || {
                format!("{w}: {key}: mount {} is not readOnly", s(&m["mountPath"]))
            });
            if v["secret"].is_mapping() {
                p.check(v["secret"]["secretName"] == self.secret["metadata"]["name"], || {
                    format!(
                        "{w}: {key} is on Secret {}, not {}",
                        s(&v["secret"]["secretName"]),
                        s(&self.secret["metadata"]["name"])
                    )
                });
                match projected_key(&v["secret"], &rel) {
                    Some(k) if template_keys.contains(&k) => {
                        used_keys.insert(k);
                    }
                    k => p.push(format!(
                        "{w}: {key} = {} is Secret key {k:?}, not one of {template_keys:?}",
                        path.display()
                    )),
                }
            } else if v["configMap"].is_mapping() {
                let k = projected_key(&v["configMap"], &rel);
                p.check(k.as_ref().is_some_and(|k| !self.configmap["data"][k.as_str()].is_null()), || {
                    format!("{w}: {key} = {} is ConfigMap key {k:?}, which the ConfigMap lacks", path.display())
                });
            } else {
                p.push(format!(
                    "{w}: {key} = {} is on volume {}, neither a Secret nor a ConfigMap",
                    path.display(),
                    s(&v["name"])
                ));
            }
        }
        // Every key the Secret volume mounts is read by the config (no forgotten credential).
        for v in
            seq(&self.pod["volumes"]).iter().filter(|v| v["secret"]["secretName"] == self.secret["metadata"]["name"])
        {
            for item in seq(&v["secret"]["items"]) {
                p.check(used_keys.contains(&s(&item["key"])), || {
                    format!("{w}: Secret key {} is mounted but no *_file key of the config reads it", s(&item["key"]))
                });
            }
        }
        for k in &template_keys {
            p.check(used_keys.contains(k), || format!("{w}: Secret key {k} of the template is not read by the config"));
        }
        // Every path it writes: a writable volume; state on the PersistentVolumeClaim.
        let claim = self.pvc.map(|pvc| s(&pvc["metadata"]["name"])).unwrap_or_default();
        for (key, dir, persistent) in written_paths(self.cfg) {
            let Some((m, v, _)) = mount_of(self.pod, self.container, &dir) else {
                p.push(format!("{w}: {key} writes under {}, which is on no volume (read-only root)", dir.display()));
                continue;
            };
            p.check(m["readOnly"].as_bool() != Some(true), || {
                format!("{w}: {key}: mount {} is readOnly", s(&m["mountPath"]))
            });
            if persistent && self.pvc.is_none() {
                p.push(format!(
                    "{w}: {key} ({}) is state on replicas without a volume claim: it needs a ReadWriteMany volume \
                     shared by every replica (a key file), or belongs in PostgreSQL",
                    dir.display()
                ));
            } else if persistent {
                p.check(s(&v["persistentVolumeClaim"]["claimName"]) == claim, || {
                    format!("{w}: {key} ({}) is not on the PersistentVolumeClaim {claim}", dir.display())
                });
            } else {
                p.check(v["persistentVolumeClaim"].is_mapping() || v["emptyDir"].is_mapping(), || {
                    format!("{w}: {key} ({}) is on volume {}, not a writable one", dir.display(), s(&v["name"]))
                });
            }
        }
        if let Some(pvc) = self.pvc {
            p.check(seq(&pvc["spec"]["accessModes"]).iter().map(s).collect::<Vec<_>>() == ["ReadWriteOnce"], || {
                format!("{w}: PVC {claim} is not ReadWriteOnce (one SQLite file, one writer)")
            });
        } else {
            p.check(!seq(&self.pod["volumes"]).iter().any(|v| v["persistentVolumeClaim"].is_mapping()), || {
                format!("{w}: mounts a PersistentVolumeClaim, though its store is PostgreSQL")
            });
        }
        match mount_of(self.pod, self.container, Path::new("/tmp/x")) {
            Some((m, v, _)) if v["emptyDir"].is_mapping() && m["readOnly"].as_bool() != Some(true) => {}
            _ => p.push(format!("{w}: /tmp is not a writable emptyDir (SQLite's temporary files, read-only root)")),
        }
        // The NetworkPolicy selects it and lets it reach DNS, LiteLLM and every directory server.
        p.check(selects(&self.policy["spec"]["podSelector"], self.labels), || {
            format!("{w}: NetworkPolicy {} does not select its labels", s(&self.policy["metadata"]["name"]))
        });
        let types: BTreeSet<String> = seq(&self.policy["spec"]["policyTypes"]).iter().map(s).collect();
        p.check(types.contains("Ingress") && types.contains("Egress"), || {
            format!(
                "{w}: NetworkPolicy {} does not restrict both ingress and egress",
                s(&self.policy["metadata"]["name"])
            )
        });
        for proto in ["UDP", "TCP"] {
            p.check(policy_allows(self.policy, "egress", proto, 53), || {
                format!("{w}: egress {proto} 53 (DNS) not allowed")
            });
        }
        for (what, port) in egress_ports(self.cfg) {
            p.check(policy_allows(self.policy, "egress", "TCP", port), || {
                format!("{w}: NetworkPolicy egress does not allow TCP {port} for {what}")
            });
        }
    }
}

struct Daemon {
    deployment: Yaml,
    configmap: Yaml,
    service: Yaml,
    monitor: Yaml,
    secret: Yaml,
    pvc: Yaml,
    policy: Yaml,
}

fn daemon_manifests() -> Daemon {
    Daemon {
        deployment: doc_of_kind(&format!("{K8S}/deployment.yaml"), "Deployment"),
        configmap: doc_of_kind(&format!("{K8S}/configmap.yaml"), "ConfigMap"),
        service: doc_of_kind(&format!("{K8S}/service.yaml"), "Service"),
        monitor: doc_of_kind(&format!("{K8S}/servicemonitor.yaml"), "ServiceMonitor"),
        secret: doc_of_kind(&format!("{K8S}/secret.example.yaml"), "Secret"),
        pvc: doc_of_kind(&format!("{K8S}/pvc.yaml"), "PersistentVolumeClaim"),
        policy: doc_of_kind(&format!("{K8S}/networkpolicy.yaml"), "NetworkPolicy"),
    }
}

/// The daemon's config file path: `--config` in the arguments, else LITELLM_SYNC_CONFIG.
fn config_path_of(container: &Yaml) -> PathBuf {
    let args: Vec<String> = seq(&container["args"]).iter().map(s).collect();
    args.iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| env_of(container).into_iter().find(|(k, _)| k == "LITELLM_SYNC_CONFIG").map(|(_, v)| v))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{}: no --config and no LITELLM_SYNC_CONFIG", s(&container["name"])))
}

/// `{matchLabels: labels}`: a Service's plain selector as a label selector.
fn match_labels(labels: &Yaml) -> Yaml {
    let mut m = serde_yaml_ng::Mapping::new();
    m.insert(Yaml::from("matchLabels"), labels.clone());
    Yaml::Mapping(m)
}

/// The port a probe or Service names (a container port name or a number) as a number.
fn resolve_port(container: &Yaml, port: &Yaml) -> Option<u64> {
    port.as_u64().or_else(|| {
        seq(&container["ports"]).iter().find(|p| p["name"] == *port).and_then(|p| p["containerPort"].as_u64())
    })
}

#[test]
fn kit_the_daemon_manifests_agree_with_each_other_and_with_their_config() {
    let d = daemon_manifests();
    let spec = &d.deployment["spec"];
    let pod = &spec["template"]["spec"];
    let labels = &spec["template"]["metadata"]["labels"];
    let c = &seq(&pod["containers"])[0];
    let (_, cfg) = embedded_config(&d.configmap, &env_of(c), "deploy/kubernetes/configmap.yaml config.toml");
    let mut p = Problems::default();

    Pod {
        what: "Deployment".into(),
        labels,
        pod,
        container: c,
        config_path: config_path_of(c),
        cfg: &cfg,
        configmap: &d.configmap,
        secret: &d.secret,
        pvc: Some(&d.pvc),
        policy: &d.policy,
    }
    .check(&mut p);

    // One reconciler on one SQLite file: one replica, never two pods at once.
    p.check(spec["replicas"].as_u64() == Some(1), || "Deployment: replicas must be 1 (one SQLite store)".into());
    p.check(spec["strategy"]["type"].as_str() == Some("Recreate"), || "Deployment: strategy must be Recreate".into());
    p.check(selects(&spec["selector"], labels), || "Deployment: the selector does not select the pod".into());
    p.check(seq(&c["args"]).iter().map(s).collect::<Vec<_>>() == ["run"], || "Deployment: args must be [run]".into());

    // Ports: server.listen = container port "http" = probes = Service = ServiceMonitor = NetworkPolicy ingress.
    let listen = cfg.server.listen;
    p.check(listen.ip().is_unspecified(), || format!("server.listen {listen}: listen on 0.0.0.0 inside a container"));
    let http = resolve_port(c, &Yaml::from("http"));
    p.check(http == Some(u64::from(listen.port())), || {
        format!("containerPort http {http:?} != server.listen {listen}")
    });
    for (probe, path) in [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        p.check(resolve_port(c, &get["port"]) == Some(u64::from(listen.port())), || {
            format!("{probe}: port {} is not server.listen's {}", s(&get["port"]), listen.port())
        });
        p.check(get["path"].as_str() == Some(path), || format!("{probe}: path {} is not {path}", s(&get["path"])));
    }
    p.check(selects(&match_labels(&d.service["spec"]["selector"]), labels), || {
        "Service: its selector does not select the pod".into()
    });
    let svc_ports = seq(&d.service["spec"]["ports"]);
    p.check(svc_ports.iter().any(|sp| resolve_port(c, &sp["targetPort"]) == Some(u64::from(listen.port()))), || {
        format!("Service: no port targets server.listen's {}", listen.port())
    });
    p.check(selects(&d.monitor["spec"]["selector"], &d.service["metadata"]["labels"]), || {
        "ServiceMonitor: its selector does not select the Service's labels".into()
    });
    for ep in seq(&d.monitor["spec"]["endpoints"]) {
        let sp = svc_ports.iter().find(|sp| sp["name"] == ep["port"]);
        p.check(sp.is_some_and(|sp| resolve_port(c, &sp["targetPort"]) == Some(u64::from(listen.port()))), || {
            format!("ServiceMonitor: endpoint port {} is not the Service port of server.listen", s(&ep["port"]))
        });
        p.check(ep["path"].as_str().unwrap_or("/metrics") == "/metrics", || {
            "ServiceMonitor: path is not /metrics".into()
        });
    }
    p.check(policy_allows(&d.policy, "ingress", "TCP", listen.port()), || {
        format!("NetworkPolicy: ingress does not allow TCP {} (metrics scrapes)", listen.port())
    });

    // SIGTERM: the daemon may take server.shutdown_grace; the kubelet must wait longer before SIGKILL.
    let tgp = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30));
    p.check(tgp >= cfg.server.shutdown_grace + Duration::from_secs(5), || {
        format!(
            "terminationGracePeriodSeconds {tgp:?} must exceed server.shutdown_grace {:?} by 5 s",
            cfg.server.shutdown_grace
        )
    });
    p.assert_none("deploy/kubernetes (Deployment)");
}

#[test]
fn kit_the_cronjob_runs_the_cli_on_its_own_store_like_the_deployment_runs_the_daemon() {
    let d = daemon_manifests();
    let cron = doc_of_kind(&format!("{CRON}/cronjob.yaml"), "CronJob");
    let approve = doc_of_kind(&format!("{CRON}/approve.job.yaml"), "Job");
    let configmap = doc_of_kind(&format!("{CRON}/configmap.yaml"), "ConfigMap");
    let pvc = doc_of_kind(&format!("{CRON}/pvc.yaml"), "PersistentVolumeClaim");
    let policy = doc_of_kind(&format!("{CRON}/networkpolicy.yaml"), "NetworkPolicy");
    let job = &cron["spec"]["jobTemplate"]["spec"];
    let pod = &job["template"]["spec"];
    let c = &seq(&pod["containers"])[0];
    let (_, cfg) = embedded_config(&configmap, &env_of(c), "deploy/kubernetes/cronjob/configmap.yaml config.toml");
    let mut p = Problems::default();

    for (what, j) in [("CronJob", job), ("approve Job", &approve["spec"])] {
        let jpod = &j["template"]["spec"];
        let jc = &seq(&jpod["containers"])[0];
        Pod {
            what: what.into(),
            labels: &j["template"]["metadata"]["labels"],
            pod: jpod,
            container: jc,
            config_path: config_path_of(jc),
            cfg: &cfg,
            configmap: &configmap,
            secret: &d.secret,
            pvc: Some(&pvc),
            policy: &policy,
        }
        .check(&mut p);
        // The same hardening as the daemon's pod, and the same Secret.
        let dpod = &d.deployment["spec"]["template"]["spec"];
        let dc = &seq(&dpod["containers"])[0];
        p.check(jpod["securityContext"] == dpod["securityContext"], || {
            format!("{what}: pod securityContext differs from the Deployment's")
        });
        p.check(jc["securityContext"] == dc["securityContext"], || {
            format!("{what}: container securityContext differs from the Deployment's")
        });
        p.check(jpod["automountServiceAccountToken"].as_bool() == Some(false), || {
            format!("{what}: mounts an API token")
        });
        let secret_volume =
            |pod: &Yaml| seq(&pod["volumes"]).iter().find(|v| v["secret"].is_mapping()).map(|v| v["secret"].clone());
        p.check(secret_volume(jpod) == secret_volume(dpod), || {
            format!("{what}: its Secret volume differs from the Deployment's")
        });
        p.check(jpod["restartPolicy"].as_str() == Some("Never"), || format!("{what}: restartPolicy must be Never"));
        p.check(jpod["volumes"] == pod["volumes"], || {
            format!("{what}: its volumes differ from the CronJob's (it must work on the same store)")
        });
    }

    // The CLI's sync on the store's ledger, never on the daemon's store.
    let args: Vec<String> = seq(&c["args"]).iter().map(s).collect();
    p.check(
        args.first().map(String::as_str) == Some("--config") && args.get(2).map(String::as_str) == Some("sync"),
        || format!("CronJob: args {args:?} must be [--config, PATH, sync, …]"),
    );
    let approve_args: Vec<String> =
        seq(&seq(&approve["spec"]["template"]["spec"]["containers"])[0]["args"]).iter().map(s).collect();
    p.check(approve_args.get(2).map(String::as_str) == Some("approve") && approve_args[..2] == args[..2], || {
        format!("approve Job: args {approve_args:?} must be [--config, PATH, approve, …] with the CronJob's config")
    });
    p.check(cfg.store.configured, || {
        "CronJob config: [store] path must be set (plans against the ledger, records what it applied)".into()
    });
    let daemon_claim = s(&d.pvc["metadata"]["name"]);
    let claims: Vec<String> = seq(&pod["volumes"])
        .iter()
        .map(|v| s(&v["persistentVolumeClaim"]["claimName"]))
        .filter(|c| !c.is_empty())
        .collect();
    p.check(!claims.contains(&daemon_claim) && s(&pvc["metadata"]["name"]) != daemon_claim, || {
        format!("CronJob: uses the daemon's PVC {daemon_claim}: a CronJob and the daemon must not share a store")
    });
    p.check(seq(&policy["spec"]["ingress"]).is_empty(), || {
        "CronJob NetworkPolicy: the CLI serves nothing, allow no ingress".into()
    });
    p.check(!selects(&policy["spec"]["podSelector"], &d.deployment["spec"]["template"]["metadata"]["labels"]), || {
        "CronJob NetworkPolicy also selects the daemon's pod".into()
    });
    p.check(!selects(&d.policy["spec"]["podSelector"], &job["template"]["metadata"]["labels"]), || {
        "the daemon's NetworkPolicy also selects the CronJob's pod".into()
    });

    // Scheduling: no overlap, a hung run stops before the next one, exit 3 fails the Job at once.
    let spec = &cron["spec"];
    p.check(spec["concurrencyPolicy"].as_str() == Some("Forbid"), || {
        "CronJob: concurrencyPolicy must be Forbid".into()
    });
    let period = min_cron_interval(spec["schedule"].as_str().unwrap_or_default());
    let deadline = Duration::from_secs(job["activeDeadlineSeconds"].as_u64().unwrap_or(u64::MAX));
    p.check(deadline < period, || {
        format!("CronJob: activeDeadlineSeconds {deadline:?} must be below the schedule's period {period:?}")
    });
    let starting = Duration::from_secs(spec["startingDeadlineSeconds"].as_u64().unwrap_or(u64::MAX));
    p.check(starting < period, || {
        format!("CronJob: startingDeadlineSeconds {starting:?} must be below the period {period:?}")
    });
    let backoff = job["backoffLimit"].as_u64().unwrap_or(6);
    p.check(backoff <= 3, || format!("CronJob: backoffLimit {backoff}: the next schedule retries anyway"));
    let fails_on_held = seq(&job["podFailurePolicy"]["rules"]).iter().any(|r| {
        r["action"].as_str() == Some("FailJob")
            && r["onExitCodes"]["containerName"] == c["name"]
            && r["onExitCodes"]["operator"].as_str() == Some("In")
            && seq(&r["onExitCodes"]["values"])
                .iter()
                .any(|v| v.as_u64() == Some(u64::from(litellm_sync::cli::EXIT_HELD)))
    });
    p.check(fails_on_held, || {
        format!(
            "CronJob: podFailurePolicy must FailJob on exit code {} (held by the safety limit)",
            litellm_sync::cli::EXIT_HELD
        )
    });
    p.check(s(&job["template"]["metadata"]["labels"]["app.kubernetes.io/component"]) == "cronjob", || {
        "CronJob: pod label component=cronjob".into()
    });
    p.check(cfg.sources.iter().all(|src| src.schedule.is_none()), || {
        "CronJob config: a source schedule is the daemon's; the CronJob's schedule replaces it".into()
    });
    p.assert_none("deploy/kubernetes/cronjob");
}

/// The configuration as a TOML table without `[store]` (for "the same as the base's but for the store").
fn config_without_store(text: &str, where_: &str) -> toml::Table {
    let mut table: toml::Table = toml::from_str(text).unwrap_or_else(|e| panic!("{where_}: {e}"));
    table.remove("store");
    table
}

/// A `maxUnavailable`/`maxSurge`/`minAvailable` value as a count of `replicas` (an integer, or a percentage
/// rounded as Kubernetes does: down for unavailable, up for surge and available).
fn int_or_percent(v: &Yaml, replicas: u64, round_up: bool) -> Option<u64> {
    match v {
        Yaml::Number(n) => n.as_u64(),
        Yaml::String(p) => {
            let pct: u64 = p.strip_suffix('%')?.parse().ok()?;
            Some(if round_up { (pct * replicas).div_ceil(100) } else { pct * replicas / 100 })
        }
        _ => None,
    }
}

#[test]
fn kit_the_ha_variant_runs_replicas_on_postgres_and_is_the_daemon_otherwise() {
    let d = daemon_manifests();
    let deployment = doc_of_kind(&format!("{HA}/deployment.yaml"), "Deployment");
    let configmap = doc_of_kind(&format!("{HA}/configmap.yaml"), "ConfigMap");
    let secret = doc_of_kind(&format!("{HA}/secret.example.yaml"), "Secret");
    let policy = doc_of_kind(&format!("{HA}/networkpolicy.yaml"), "NetworkPolicy");
    let pdb = doc_of_kind(&format!("{HA}/pdb.yaml"), "PodDisruptionBudget");
    let spec = &deployment["spec"];
    let pod = &spec["template"]["spec"];
    let labels = &spec["template"]["metadata"]["labels"];
    let c = &seq(&pod["containers"])[0];
    let where_ = "deploy/kubernetes/ha/configmap.yaml config.toml";
    let (text, cfg) = embedded_config(&configmap, &env_of(c), where_);
    let mut p = Problems::default();

    // The store is PostgreSQL, its password a file of the Secret; nothing is kept on a local volume.
    match &cfg.store.postgres {
        Some(pg) => {
            p.check(matches!(pg.password, Some(litellm_sync::config::Secret::File(_))), || {
                "HA config: store.password must be store.password_file (a key of the Secret, mounted)".into()
            });
            p.check(url::Url::parse(&pg.url).is_ok_and(|u| u.host_str().is_some()), || {
                format!("HA config: store.url {} names no host", pg.url)
            });
        }
        None => p.push("HA config: [store] url is not set: several replicas need PostgreSQL, not SQLite".into()),
    }
    p.check(cfg.keys.is_none(), || {
        "HA config: [keys] needs a ReadWriteMany volume shared by every replica; add one to deployment.yaml and \
         adapt this check"
            .into()
    });
    Pod {
        what: "HA Deployment".into(),
        labels,
        pod,
        container: c,
        config_path: config_path_of(c),
        cfg: &cfg,
        configmap: &configmap,
        secret: &secret,
        pvc: None,
        policy: &policy,
    }
    .check(&mut p);
    for f in std::fs::read_dir(repo(HA)).expect("read_dir").filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        if f.ends_with(".yaml") && f != "kustomization.yaml" {
            for doc in yaml_docs(&format!("{HA}/{f}")) {
                p.check(doc["kind"] != "PersistentVolumeClaim", || {
                    format!("{HA}/{f}: a PersistentVolumeClaim (the state lives in PostgreSQL)")
                });
            }
        }
    }

    // Several replicas, replaced one at a time with none missing, spread over nodes, kept through a drain.
    let replicas = spec["replicas"].as_u64().unwrap_or(1);
    p.check(replicas >= 2, || format!("HA Deployment: replicas {replicas}, at least 2"));
    let rolling = &spec["strategy"]["rollingUpdate"];
    p.check(spec["strategy"]["type"].as_str() == Some("RollingUpdate"), || {
        "HA Deployment: strategy must be RollingUpdate".into()
    });
    p.check(int_or_percent(&rolling["maxUnavailable"], replicas, false) == Some(0), || {
        "HA Deployment: rollingUpdate.maxUnavailable must be 0 (a replica always serves)".into()
    });
    p.check(int_or_percent(&rolling["maxSurge"], replicas, true).is_some_and(|n| n >= 1), || {
        "HA Deployment: rollingUpdate.maxSurge must be at least 1 (else a rollout with maxUnavailable 0 stalls)".into()
    });
    let anti = &pod["affinity"]["podAntiAffinity"];
    let spread_by_node = seq(&anti["preferredDuringSchedulingIgnoredDuringExecution"])
        .iter()
        .map(|t| &t["podAffinityTerm"])
        .chain(seq(&anti["requiredDuringSchedulingIgnoredDuringExecution"]))
        .chain(seq(&pod["topologySpreadConstraints"]))
        .any(|t| t["topologyKey"].as_str() == Some("kubernetes.io/hostname") && selects(&t["labelSelector"], labels));
    p.check(spread_by_node, || {
        "HA Deployment: no pod anti-affinity or topology spread by kubernetes.io/hostname that selects its pods".into()
    });
    p.check(selects(&pdb["spec"]["selector"], labels), || "PodDisruptionBudget: does not select the pods".into());
    p.check(pdb["metadata"]["namespace"].is_null(), || "PodDisruptionBudget sets a namespace".into());
    let min_available = int_or_percent(&pdb["spec"]["minAvailable"], replicas, true);
    let max_unavailable = int_or_percent(&pdb["spec"]["maxUnavailable"], replicas, false);
    p.check(
        min_available.is_some_and(|m| (1..replicas).contains(&m))
            || max_unavailable.is_some_and(|m| m >= 1 && m < replicas),
        || {
            format!(
                "PodDisruptionBudget: keep at least 1 of {replicas} replicas and let a drain evict one \
                 (minAvailable {min_available:?}, maxUnavailable {max_unavailable:?})"
            )
        },
    );

    // Otherwise the base's daemon: the same container, pod settings, labels, probes, mounts and configuration.
    let dspec = &d.deployment["spec"];
    let dpod = &dspec["template"]["spec"];
    let dc = &seq(&dpod["containers"])[0];
    for key in ["name", "image", "imagePullPolicy", "args", "env", "ports", "resources", "securityContext"] {
        p.check(c[key] == dc[key], || format!("HA Deployment: container {key} differs from the base's"));
    }
    for key in ["startupProbe", "livenessProbe", "readinessProbe"] {
        p.check(c[key] == dc[key], || {
            format!("HA Deployment: {key} differs from the base's (/readyz stays ready on a follower)")
        });
    }
    for key in [
        "serviceAccountName",
        "automountServiceAccountToken",
        "enableServiceLinks",
        "terminationGracePeriodSeconds",
        "securityContext",
    ] {
        p.check(pod[key] == dpod[key], || format!("HA Deployment: pod {key} differs from the base's"));
    }
    p.check(spec["selector"] == dspec["selector"] && *labels == dspec["template"]["metadata"]["labels"], || {
        "HA Deployment: selector or pod labels differ from the base's (the Service and ServiceMonitor select them)"
            .into()
    });
    p.check(deployment["metadata"]["name"] == d.deployment["metadata"]["name"], || {
        "HA Deployment: not named like the base's (one or the other runs, never both)".into()
    });
    let base_state = |m: &&Yaml| !s(&m["mountPath"]).starts_with(STATE);
    let base_mounts: Vec<&Yaml> = seq(&dc["volumeMounts"]).iter().filter(base_state).collect();
    p.check(seq(&c["volumeMounts"]).iter().collect::<Vec<_>>() == base_mounts, || {
        format!("HA Deployment: its mounts must be the base's without {STATE}")
    });
    let (base_text, _) = embedded_config(&d.configmap, &env_of(dc), "deploy/kubernetes/configmap.yaml config.toml");
    p.check(config_without_store(&text, where_) == config_without_store(&base_text, "base config.toml"), || {
        "HA config.toml differs from the base's in more than [store]: keep them in step".into()
    });
    p.check(configmap["metadata"]["name"] == d.configmap["metadata"]["name"], || {
        "HA ConfigMap: not named like the base's".into()
    });
    let base_keys = secret_keys(&d.secret);
    p.check(
        base_keys.is_subset(&secret_keys(&secret)) && secret["metadata"]["name"] == d.secret["metadata"]["name"],
        || format!("HA Secret template: must be the base's Secret ({base_keys:?}) with the store's password added"),
    );
    p.check(
        policy["spec"]["ingress"] == d.policy["spec"]["ingress"]
            && policy["spec"]["podSelector"] == d.policy["spec"]["podSelector"],
        || "HA NetworkPolicy: ingress or podSelector differ from the base's".into(),
    );
    let ha_egress = seq(&policy["spec"]["egress"]);
    for rule in seq(&d.policy["spec"]["egress"]) {
        p.check(ha_egress.contains(rule), || "HA NetworkPolicy: lacks an egress rule of the base's".into());
    }
    for (f, kind) in [
        ("service.yaml", "Service"),
        ("servicemonitor.yaml", "ServiceMonitor"),
        ("serviceaccount.yaml", "ServiceAccount"),
    ] {
        p.check(doc_of_kind(&format!("{HA}/{f}"), kind) == doc_of_kind(&format!("{K8S}/{f}"), kind), || {
            format!("{HA}/{f} differs from {K8S}/{f}")
        });
    }
    p.assert_none("deploy/kubernetes/ha");
}

#[test]
fn kit_each_kustomization_lists_its_manifests_and_no_manifest_names_a_namespace() {
    let mut p = Problems::default();
    for (dir, templates) in
        [(K8S, &["secret.example.yaml"][..]), (CRON, &["approve.job.yaml"][..]), (HA, &["secret.example.yaml"][..])]
    {
        let kust = yaml(&format!("{dir}/kustomization.yaml"));
        let listed: BTreeSet<String> = seq(&kust["resources"]).iter().map(s).collect();
        let present: BTreeSet<String> = std::fs::read_dir(repo(dir))
            .expect("read_dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
            .collect();
        let expected: BTreeSet<String> = present.iter().filter(|n| !templates.contains(&n.as_str())).cloned().collect();
        p.check(listed == expected, || format!("{dir}/kustomization.yaml lists {listed:?}, the directory has {expected:?} (templates {templates:?} excluded)"));
        p.check(kust["namespace"].is_null(), || {
            format!("{dir}/kustomization.yaml sets a namespace (the kit is namespace-agnostic)")
        });
        let images: BTreeSet<String> = seq(&kust["images"]).iter().map(|i| s(&i["name"])).collect();
        for f in &present {
            for doc in yaml_docs(&format!("{dir}/{f}")) {
                p.check(doc["metadata"]["namespace"].is_null(), || {
                    format!("{dir}/{f}: {} sets metadata.namespace", s(&doc["kind"]))
                });
                let pod = if doc["kind"] == "CronJob" {
                    &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
                } else {
                    &doc["spec"]["template"]["spec"]
                };
                for c in seq(&pod["containers"]) {
                    let image = s(&c["image"]);
                    let name = image.rsplit_once(':').map_or(image.as_str(), |(n, _)| n);
                    p.check(images.contains(name), || {
                        format!("{dir}/{f}: image {image} is not set by the kustomization's images")
                    });
                }
            }
        }
    }
    p.assert_none("kustomizations");
}

#[test]
fn kit_the_dockerfile_builds_what_cargo_names_and_runs_what_the_manifests_expect() {
    let df = read("Dockerfile");
    let cargo: toml::Value = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml");
    let deployment = doc_of_kind(&format!("{K8S}/deployment.yaml"), "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let c = &seq(&pod["containers"])[0];
    let mut p = Problems::default();
    let runtime = &df[df.rfind("\nFROM ").expect("a runtime stage")..];

    // The builder's Rust is at least the crate's rust-version; the build is release and locked.
    let builder = df.lines().find(|l| l.starts_with("FROM rust:")).unwrap_or_default();
    let version = |v: &str| v.split('.').map(|x| x.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>();
    let tag = builder.trim_start_matches("FROM rust:").split(['-', ' ']).next().unwrap_or_default();
    let needed = cargo["package"]["rust-version"].as_str().unwrap_or("0");
    p.check(!tag.is_empty() && version(tag) >= version(needed), || {
        format!("builder {builder:?} is older than rust-version {needed}")
    });
    p.check(df.contains("cargo build --release --locked"), || {
        "the image is not built with cargo build --release --locked".into()
    });
    // The dependency layer stubs every target Cargo.toml names, or cargo rejects the manifest.
    let mut targets = vec!["src/main.rs".to_string(), "src/lib.rs".to_string()];
    for kind in ["test", "bench", "example"] {
        for t in cargo.get(kind).and_then(|v| v.as_array()).map(Vec::as_slice).unwrap_or_default() {
            let name = t["name"].as_str().unwrap_or_default();
            let dir = match kind {
                "test" => "tests",
                "bench" => "benches",
                _ => "examples",
            };
            targets.push(
                t.get("path").and_then(|p| p.as_str()).map_or_else(|| format!("{dir}/{name}.rs"), str::to_string),
            );
        }
    }
    for t in &targets {
        p.check(df.contains(&format!("> {t}")), || {
            format!("the dependency layer has no stub for {t} (named by Cargo.toml)")
        });
    }
    p.check(!repo("build.rs").exists() || df.contains("build.rs"), || {
        "build.rs exists but the Dockerfile does not copy it".into()
    });
    // sqlx::migrate! embeds migrations/ at compile time: it must be copied before the build.
    let embeds = std::fs::read_dir(repo("src/directory"))
        .expect("src/directory")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .any(|t| t.contains("migrate!(\"./migrations\")"));
    p.check(!embeds || df.contains("COPY migrations ./migrations"), || {
        "the crate embeds ./migrations but the Dockerfile does not COPY it".into()
    });

    // The runtime stage runs what the Deployment expects.
    let uid = s(&c["securityContext"]["runAsUser"]);
    p.check(runtime.contains(&format!("\nUSER {uid}:{uid}")), || {
        format!("runtime USER is not {uid}:{uid} (runAsUser)")
    });
    p.check(s(&pod["securityContext"]["fsGroup"]) == uid, || format!("fsGroup is not {uid}"));
    p.check(runtime.contains(&format!("--chown={uid}:{uid} /out{STATE} {STATE}")), || {
        format!("{STATE} is not owned by {uid} in the image")
    });
    let args: Vec<String> = seq(&c["args"]).iter().map(s).collect();
    p.check(docker_json(runtime, "CMD") == args, || format!("Dockerfile CMD vs Deployment args {args:?}"));
    p.check(docker_json(runtime, "ENTRYPOINT") == ["litellm-sync"], || "ENTRYPOINT is not [litellm-sync]".into());
    let config_path = config_path_of(c);
    p.check(runtime.contains(&format!("ENV LITELLM_SYNC_CONFIG={}", config_path.display())), || {
        "ENV LITELLM_SYNC_CONFIG vs the Deployment".into()
    });
    let port = resolve_port(c, &Yaml::from("http")).unwrap_or(0);
    p.check(runtime.contains(&format!("\nEXPOSE {port}\n")), || format!("EXPOSE is not the container port {port}"));
    let state_mount = seq(&c["volumeMounts"]).iter().any(|m| s(&m["mountPath"]) == STATE);
    p.check(state_mount && runtime.contains(&format!("VOLUME [\"{STATE}\"]")), || {
        format!("VOLUME and the state mount are not both {STATE}")
    });
    p.assert_none("Dockerfile");
}

#[test]
fn kit_the_compose_stack_agrees_with_its_config_its_secrets_and_its_ldap_seed() {
    let dir = repo("deploy/compose");
    let compose = yaml("deploy/compose/compose.yaml");
    let services = &compose["services"];
    let sync = &services["litellm-sync"];
    // Compose writes `environment:` as a mapping.
    let env: Vec<(String, String)> =
        sync["environment"].as_mapping().map(|m| m.iter().map(|(k, v)| (s(k), s(v))).collect()).unwrap_or_default();
    let cfg = load_config(&read("deploy/compose/config.toml"), &env, "deploy/compose/config.toml");
    let mut p = Problems::default();
    let declared_volumes: BTreeSet<String> =
        compose["volumes"].as_mapping().map(|m| m.keys().map(s).collect()).unwrap_or_default();
    let secrets = &compose["secrets"];

    for (name, svc) in services.as_mapping().expect("services") {
        let name = s(name);
        if svc["build"].is_mapping() {
            let ctx = dir.join(s(&svc["build"]["context"]));
            p.check(
                ctx.canonicalize().ok() == repo("").canonicalize().ok()
                    && ctx.join(s(&svc["build"]["dockerfile"])).is_file(),
                || format!("{name}: not built from the repository's Dockerfile"),
            );
        } else {
            let image = s(&svc["image"]);
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
            p.check(
                !tag.is_empty() && !tag.contains("latest") && !["main", "stable", "main-stable"].contains(&tag),
                || format!("{name}: image {image:?} is not pinned to a release"),
            );
        }
        for port in seq(&svc["ports"]) {
            p.check(s(port).starts_with("127.0.0.1:"), || {
                format!("{name}: port {} is not published on loopback only", s(port))
            });
        }
        for v in seq(&svc["volumes"]).iter().map(s) {
            let src = v.split(':').next().unwrap_or_default();
            if src.starts_with('.') || src.starts_with('/') {
                p.check(dir.join(src).exists(), || format!("{name}: bind mount source {src} does not exist"));
            } else {
                p.check(declared_volumes.contains(src), || format!("{name}: volume {src} is not declared"));
            }
        }
        for sec in seq(&svc["secrets"]).iter().map(s) {
            p.check(dir.join(s(&secrets[sec.as_str()]["file"])).is_file(), || {
                format!("{name}: secret {sec} has no file")
            });
        }
    }
    let litellm_image = s(&services["litellm"]["image"]);
    p.check(litellm_image.contains(":main-v1.106.") || litellm_image.contains(":v1.106."), || {
        format!("litellm: {litellm_image} is not a 1.106.x release (the one litellm-sync is tested against)")
    });
    p.check(!litellm_image.contains("1.107.0"), || "litellm: 1.107.0 is a compromised release".into());

    // litellm-sync's service against its config.
    let mounts: BTreeMap<String, String> = seq(&sync["volumes"])
        .iter()
        .map(s)
        .filter_map(|v| v.split(':').nth(1).map(|t| (t.to_string(), v.clone())))
        .collect();
    let config_path = env.iter().find(|(k, _)| k == "LITELLM_SYNC_CONFIG").map(|(_, v)| v.clone()).unwrap_or_default();
    p.check(mounts.get(&config_path).is_some_and(|v| v.starts_with("./config.toml:") && v.ends_with(":ro")), || {
        format!("litellm-sync: ./config.toml is not mounted read-only at LITELLM_SYNC_CONFIG {config_path:?}")
    });
    for (key, dir_, _) in written_paths(&cfg) {
        let vol = mounts.iter().filter(|(t, _)| dir_.starts_with(t)).max_by_key(|(t, _)| t.len());
        p.check(vol.is_some_and(|(_, v)| declared_volumes.contains(v.split(':').next().unwrap_or_default())), || {
            format!("litellm-sync: {key} ({}) is not on a named volume (read-only root)", dir_.display())
        });
    }
    p.check(sync["read_only"].as_bool() == Some(true) && seq(&sync["tmpfs"]).iter().any(|t| s(t) == "/tmp"), || {
        "litellm-sync: read_only with a /tmp tmpfs".into()
    });
    p.check(s(&sync["user"]).split(':').next() == Some("65532"), || "litellm-sync: user is not 65532".into());
    let port = cfg.server.listen.port();
    p.check(seq(&sync["ports"]).iter().any(|x| s(x).ends_with(&format!(":{port}"))), || {
        format!("litellm-sync: server.listen port {port} is not published")
    });
    let stop =
        humantime::parse_duration(sync["stop_grace_period"].as_str().unwrap_or("10s")).expect("stop_grace_period");
    p.check(stop >= cfg.server.shutdown_grace + Duration::from_secs(5), || {
        format!("litellm-sync: stop_grace_period {stop:?} must exceed server.shutdown_grace by 5 s")
    });
    // Secrets: each file the config reads is an attached secret; the LiteLLM key is LiteLLM's master key.
    let attached: BTreeSet<String> = seq(&sync["secrets"]).iter().map(s).collect();
    let secret_value = |path: &Path| -> Option<String> {
        let name = path.strip_prefix("/run/secrets").ok()?.to_str()?.to_string();
        if !attached.contains(&name) {
            return None;
        }
        let file = dir.join(s(&secrets[name.as_str()]["file"]));
        std::fs::read_to_string(file).ok().map(|v| v.trim_end_matches(['\n', '\r']).to_string())
    };
    for (key, path) in read_files(&cfg) {
        p.check(secret_value(&path).is_some(), || {
            format!("litellm-sync: {key} = {} is not an attached secret", path.display())
        });
    }
    let lit = &services["litellm"];
    let master = s(&lit["environment"]["LITELLM_MASTER_KEY"]);
    let key_file =
        read_files(&cfg).into_iter().find(|(k, _)| k == "litellm.api_key_file").map(|(_, p)| p).unwrap_or_default();
    p.check(secret_value(&key_file) == Some(master.clone()) && master.starts_with("sk-"), || {
        "litellm.api_key_file's secret is not service litellm's LITELLM_MASTER_KEY (sk-…)".into()
    });
    let lit_cmd: Vec<String> = seq(&lit["command"]).iter().map(s).collect();
    let lit_port =
        lit_cmd.iter().position(|a| a == "--port").and_then(|i| lit_cmd.get(i + 1)?.parse().ok()).unwrap_or(4000u16);
    p.check(
        cfg.litellm.url.host_str() == Some("litellm") && cfg.litellm.url.port_or_known_default() == Some(lit_port),
        || format!("litellm.url {} is not service litellm on port {lit_port}", cfg.litellm.url),
    );
    let db = url::Url::parse(&s(&lit["environment"]["DATABASE_URL"])).expect("DATABASE_URL");
    let pg = &services["postgres"]["environment"];
    p.check(
        db.host_str() == Some("postgres")
            && db.username() == s(&pg["POSTGRES_USER"])
            && db.password() == Some(s(&pg["POSTGRES_PASSWORD"]).as_str())
            && db.path().trim_start_matches('/') == s(&pg["POSTGRES_DB"]),
        || "litellm: DATABASE_URL is not service postgres with its user, password and database".into(),
    );
    for dep in ["litellm", "openldap"] {
        p.check(
            sync["depends_on"][dep]["condition"].as_str() == Some("service_healthy")
                && services[dep]["healthcheck"].is_mapping(),
            || format!("litellm-sync does not wait for a healthcheck of {dep}"),
        );
    }

    // The LDAP source against the seed: the service account and its password, the bases, the rules' groups.
    let mut ldif = String::new();
    for e in std::fs::read_dir(dir.join("ldap")).expect("ldap/") {
        ldif.push_str(&std::fs::read_to_string(e.expect("entry").path()).expect("ldif"));
        ldif.push_str("\n\n");
    }
    let entries = ldif_entries(&ldif);
    let base = s(&services["openldap"]["environment"]["LDAP_DOMAIN"])
        .split('.')
        .map(|d| format!("dc={d}"))
        .collect::<Vec<_>>()
        .join(",");
    let group_names: BTreeSet<String> = entries.values().filter_map(|e| e.get("cn")?.first().cloned()).collect();
    for (i, src) in cfg.sources.iter().enumerate() {
        let SourceKind::Ldap(l) = &src.kind else { continue };
        for u in &l.urls {
            p.check(
                u.host_str().is_some_and(|h| !services[h].is_null()) && u.port_or_known_default() == Some(389),
                || format!("sources[{i}].urls {u} is not service openldap on 389"),
            );
        }
        let account = entries.get(&l.bind_dn.to_ascii_lowercase());
        let password = match &l.bind_password {
            litellm_sync::config::Secret::File(f) => secret_value(f),
            litellm_sync::config::Secret::Value(_) => None,
        };
        let stored = account.and_then(|a| a.get("userpassword"));
        p.check(password.is_some() && stored == password.map(|pw| vec![pw]).as_ref(), || {
            format!(
                "sources[{i}].bind_dn {} is not in the seed with the ldap-bind-password secret as its password",
                l.bind_dn
            )
        });
        p.check(
            ldif.contains(&format!("by dn=\"{}\" read", l.bind_dn.replace(&format!(",{base}"), ",{{ LDAP_BASE_DN }}"))),
            || format!("the seed's ACL does not let {} read", l.bind_dn),
        );
        for b in [&l.user_base, &l.group_base] {
            p.check(entries.contains_key(&b.to_ascii_lowercase()) && b.ends_with(&base), || {
                format!("sources[{i}]: base {b} is not in the seed under {base}")
            });
        }
        for r in &cfg.rules {
            for g in &r.matcher.groups {
                let cn = g.strip_prefix("cn=").map_or(g.as_str(), |x| x.split(',').next().unwrap_or_default());
                p.check(group_names.contains(cn), || format!("rule {}: group {g} is not in the seed", r.name));
            }
        }
    }

    // The monitoring profile: Prometheus scrapes the daemon and loads the rules; Grafana loads the dashboard.
    let prom = yaml("deploy/compose/prometheus/prometheus.yml");
    let targets: Vec<String> = seq(&prom["scrape_configs"])
        .iter()
        .flat_map(|sc| seq(&sc["static_configs"]).iter().flat_map(|st| seq(&st["targets"]).iter().map(s)))
        .collect();
    p.check(targets.contains(&format!("litellm-sync:{port}")), || {
        format!("prometheus does not scrape litellm-sync:{port}")
    });
    let prom_mounts: Vec<String> = seq(&services["prometheus"]["volumes"]).iter().map(s).collect();
    for rf in seq(&prom["rule_files"]).iter().map(s) {
        p.check(
            prom_mounts.iter().any(|v| {
                v.split(':').nth(1) == Some(rf.as_str()) && dir.join(v.split(':').next().unwrap_or_default()).is_file()
            }),
            || format!("prometheus rule file {rf} is not mounted from a file of the repository"),
        );
    }
    let provisioning = yaml("deploy/compose/grafana/provisioning/dashboards/litellm-sync.yaml");
    let dash_dir = s(&seq(&provisioning["providers"])[0]["options"]["path"]);
    let graf_mounts: Vec<String> = seq(&services["grafana"]["volumes"]).iter().map(s).collect();
    p.check(
        graf_mounts.iter().any(|v| {
            v.split(':').nth(1) == Some(dash_dir.as_str())
                && dir.join(v.split(':').next().unwrap_or_default()).join("litellm-sync.json").is_file()
        }),
        || format!("grafana does not load deploy/grafana/litellm-sync.json from {dash_dir}"),
    );
    p.assert_none("deploy/compose");
}

#[test]
fn kit_the_alert_rules_are_one_set_each_documented_and_tested() {
    let plain = yaml("deploy/prometheus/litellm-sync.rules.yaml");
    let tests = yaml("deploy/prometheus/litellm-sync.rules.test.yaml");
    let mut p = Problems::default();
    for dir in [K8S, HA] {
        let operator = doc_of_kind(&format!("{dir}/prometheusrule.yaml"), "PrometheusRule");
        p.check(operator["spec"]["groups"] == plain["groups"], || {
            format!(
                "{dir}/prometheusrule.yaml spec.groups differs from deploy/prometheus/litellm-sync.rules.yaml \
                 (edit the latter, then `scripts/check-deploy.sh --sync-rules`)"
            )
        });
    }
    let alerts: Vec<&Yaml> =
        seq(&plain["groups"]).iter().flat_map(|g| seq(&g["rules"])).filter(|r| r["alert"].is_string()).collect();
    let names: BTreeSet<String> = alerts.iter().map(|r| s(&r["alert"])).collect();
    p.check(names.len() == alerts.len(), || "alert names are not unique".into());
    for r in &alerts {
        let name = s(&r["alert"]);
        p.check(["critical", "warning", "info"].contains(&s(&r["labels"]["severity"]).as_str()), || {
            format!("{name}: severity must be critical, warning or info")
        });
        for a in ["summary", "description"] {
            p.check(!s(&r["annotations"][a]).is_empty(), || format!("{name}: no {a} annotation"));
        }
    }
    // Every alert has a unit test that makes it fire (two ratio/info alerts excepted).
    let fired: BTreeSet<String> = seq(&tests["tests"])
        .iter()
        .flat_map(|t| seq(&t["alert_rule_test"]))
        .filter(|a| !seq(&a["exp_alerts"]).is_empty())
        .map(|a| s(&a["alertname"]))
        .collect();
    for name in
        names.iter().filter(|n| !["LitellmSyncRunsSkipped", "LitellmSyncLiteLLMClientErrors"].contains(&n.as_str()))
    {
        p.check(fired.contains(name), || format!("{name}: no test in litellm-sync.rules.test.yaml makes it fire"));
    }
    p.assert_none("alert rules");
}

#[test]
fn kit_the_dashboard_is_portable_and_promtool_parses_every_query() {
    let path = "deploy/grafana/litellm-sync.json";
    let dash: serde_json::Value = serde_json::from_str(&read(path)).expect("dashboard JSON");
    let mut p = Problems::default();
    p.check(dash["uid"].is_string() && dash["title"].is_string(), || "no uid or title".into());
    p.check(dash["id"].is_null(), || "an instance-specific dashboard id".into());
    let vars = dash["templating"]["list"].as_array().cloned().unwrap_or_default();
    p.check(vars.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource"), || {
        "no datasource variable".into()
    });
    let mut panels = Vec::new();
    fn walk(ps: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
        for p in ps.as_array().into_iter().flatten() {
            out.push(p.clone());
            walk(&p["panels"], out);
        }
    }
    walk(&dash["panels"], &mut panels);
    let ids: BTreeSet<u64> = panels.iter().filter_map(|x| x["id"].as_u64()).collect();
    p.check(ids.len() == panels.len(), || "panel ids are missing or not unique".into());
    let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        let g = &panel["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap_or(0),
            g["y"].as_u64().unwrap_or(0),
            g["w"].as_u64().unwrap_or(0),
            g["h"].as_u64().unwrap_or(0),
        );
        p.check(w > 0 && h > 0 && x + w <= 24, || format!("panel {title:?}: gridPos outside the 24-column grid"));
        'cells: for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), title.clone()) {
                    p.push(format!("panel {title:?} overlaps {other:?}"));
                    break 'cells;
                }
            }
        }
        if panel["type"] != "row" {
            p.check(panel["datasource"]["uid"] == "${datasource}", || {
                format!("panel {title:?}: does not use $datasource")
            });
            p.check(panel["targets"].as_array().is_some_and(|t| !t.is_empty()), || {
                format!("panel {title:?}: no queries")
            });
        }
    }
    p.check(!read(path).to_ascii_lowercase().contains("scim"), || {
        "a SCIM panel (the SCIM source has no metrics yet)".into()
    });
    // Every query, with Grafana's variables replaced, through promtool's PromQL parser (as recording rules).
    let subst = [
        ("$__rate_interval", "5m"),
        ("$__interval", "1m"),
        ("$__range", "1h"),
        ("$namespace", ".*"),
        ("$source", ".*"),
    ];
    let rules: Vec<serde_json::Value> = exprs(path)
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let q = subst.iter().fold(e.clone(), |q, (k, v)| q.replace(k, v));
            if q.contains('$') {
                p.push(format!("query {i}: unknown variable in {q}"));
            }
            serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": q})
        })
        .collect();
    p.check(!rules.is_empty(), || "the dashboard has no query".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dashboard-queries.rules.yaml");
    let doc = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, serde_yaml_ng::to_string(&doc).expect("yaml")).expect("write");
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool (Debian package prometheus) is required: scripts/test.sh installs it");
    p.check(out.status.success(), || {
        format!(
            "promtool rejects a dashboard query:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    p.assert_none(path);
}

/// Metric names and types of a Prometheus text exposition (`# TYPE` lines; sample lines add their names as
/// untyped), or of a file of names (one per line, optionally followed by its type).
fn exported(text: &str) -> BTreeMap<String, String> {
    const TYPES: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (line, typed) = match line.strip_prefix("# TYPE ") {
            Some(rest) => (rest, true),
            None if line.starts_with('#') => continue,
            None => (line, false),
        };
        let mut it = line.split(|c: char| c.is_whitespace() || c == '{');
        let name = it.next().unwrap_or_default().to_string();
        let kind = it.find(|t| !t.is_empty()).filter(|t| TYPES.contains(t));
        match kind {
            Some(k) if typed || !line.contains('{') => {
                out.insert(name, k.to_string());
            }
            _ => {
                out.entry(name).or_insert_with(|| "untyped".to_string());
            }
        }
    }
    out
}

#[test]
fn kit_alerts_and_dashboard_use_only_exported_metrics_by_their_types() {
    // The crate's own metrics struct, every series created as the daemon creates them; or, with
    // `scripts/check-deploy.sh --metric-names FILE`, a scrape of a live daemon (or a list of names).
    let (text, whence) = match std::env::var_os("LITELLM_SYNC_DEPLOY_METRIC_NAMES") {
        Some(f) => (std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{f:?}: {e}")), format!("{f:?}")),
        None => {
            let m = litellm_sync::telemetry::metrics::Metrics::new().expect("metrics");
            m.init_global();
            m.init_source("corp-ldap");
            litellm_sync::litellm::Observer::request(&m, "user/list", Some(200), Duration::ZERO);
            let text = m.render();
            let mut child = std::process::Command::new("promtool")
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("promtool (Debian package prometheus) is required: scripts/test.sh installs it");
            std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes()).expect("write");
            let out = child.wait_with_output().expect("promtool");
            assert!(
                out.status.success(),
                "promtool check metrics:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (text, "the crate's Metrics".to_string())
        }
    };
    let types = exported(&text);
    assert!(types.keys().any(|k| k.starts_with("litellm_sync_")), "no litellm_sync_* metric in {whence}");
    let mut p = Problems::default();
    for artefact in METRIC_ARTEFACTS {
        for q in exprs(artefact) {
            for (base, suffix) in metric_refs(&q) {
                let name = format!("{base}{suffix}");
                let t = types.get(&base).or_else(|| types.get(&name)).map(String::as_str);
                p.check(t.is_some(), || format!("{artefact}: {name} is not exported ({whence})"));
                p.check(
                    suffix.is_empty()
                        || types.contains_key(&name)
                        || matches!(t, Some("histogram" | "summary" | "untyped")),
                    || format!("{artefact}: {name}: {base} is a {t:?}, not a histogram"),
                );
            }
            // rate()/increase() need counters (or histogram series); histogram_quantile needs _bucket.
            for f in ["rate(", "irate(", "increase("] {
                for (i, _) in q
                    .match_indices(f)
                    .filter(|(i, _)| *i == 0 || !q[..*i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
                {
                    let arg = q[i + f.len()..].trim_start();
                    if let Some((base, suffix)) =
                        metric_refs(arg).into_iter().find(|(b, s)| arg.starts_with(&format!("{b}{s}")))
                    {
                        let t = types.get(&base).map(String::as_str);
                        p.check(!suffix.is_empty() || matches!(t, Some("counter") | None), || {
                            format!("{artefact}: {f}…) over {base}, a {t:?}")
                        });
                    }
                }
            }
            for (i, _) in q.match_indices("histogram_quantile(") {
                if let Some((base, suffix)) = metric_refs(&q[i..]).into_iter().next() {
                    p.check(suffix == "_bucket", || {
                        format!("{artefact}: histogram_quantile over {base}{suffix} (needs _bucket)")
                    });
                }
            }
        }
    }
    p.assert_none("metric names in the alerts and the dashboard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployment_and_the_image_start_the_daemon_the_way_it_runs() {
    let deployment = doc_of_kind("deploy/kubernetes/deployment.yaml", "Deployment");
    let configmap = doc_of_kind("deploy/kubernetes/configmap.yaml", "ConfigMap");
    let pod = &deployment["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args: Vec<String> = seq(&c["args"]).iter().map(s).collect();
    let uid = s(&c["securityContext"]["runAsUser"]);
    let config_path = config_path_of(c).display().to_string();
    let mounts: Vec<(String, String)> =
        seq(&c["volumeMounts"]).iter().map(|m| (s(&m["name"]), s(&m["mountPath"]))).collect();
    let text = configmap["data"]["config.toml"].as_str().expect("config.toml").to_string();
    let cfg = load_config(&text, &env_of(c), "configmap.yaml config.toml");
    let listen = cfg.server.listen.to_string();
    let store = cfg.store.path.display().to_string();
    let secrets_mount = mounts.iter().find(|(n, _)| n == "secrets").map(|(_, p)| p.clone()).expect("secrets mount");
    let config_mount = mounts.iter().find(|(n, _)| n == "config").map(|(_, p)| p.clone()).expect("config mount");
    let probe = |kind: &str| s(&c[kind]["httpGet"]["path"]);
    let grace = pod["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");

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
        .replace(&format!("\"{listen}\""), &format!("\"127.0.0.1:{http}\""));
    assert!(!mapped.contains("example.org:") && !mapped.contains("litellm:4000"), "an endpoint was not redirected");
    assert!(mapped.contains(&format!("127.0.0.1:{http}")), "server.listen was not redirected");
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
        eventually("the startup probe's path answers", Duration::from_secs(30), || get(probe("startupProbe"))).await;
    assert_eq!(status, 200, "{}", logs());
    assert_eq!(get(probe("livenessProbe")).await.map(|r| r.0), Some(200));
    let ready =
        eventually("the readiness probe's path answers", Duration::from_secs(30), || get(probe("readinessProbe")))
            .await;
    assert!(ready.0 == 200 || ready.0 == 503, "readiness: {ready:?}");
    assert!(ready.1.contains("\"ready\""), "readiness body: {}", ready.1);
    assert!(at(&store).exists(), "the store was not created on the state volume as user {uid}:\n{}", logs());

    // Every metric the dashboard and the alert rules use is exported by this running daemon. The LiteLLM request
    // histogram has series only once a first request to LiteLLM (the readiness probe's) has ended, which may be
    // after /readyz first answers: scrape until every name is there, for at most 30 s.
    let used_anywhere: BTreeSet<String> = METRIC_ARTEFACTS.iter().flat_map(|a| used_metrics(a)).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exported = loop {
        let scrape = get("/metrics".into()).await.expect("/metrics").1;
        let names: BTreeSet<String> = scrape
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect();
        if used_anywhere.is_subset(&names) || std::time::Instant::now() > deadline {
            break names;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for artefact in METRIC_ARTEFACTS {
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

/// The CronJob's container started the way the Job starts it (same user, arguments and paths under a temporary
/// root, LiteLLM real, the directory unreachable): `sync` reads its config and Secret files, creates its store on
/// the PVC's path as uid 65532, and exits 1 for the failed source, which the Job retries; then the approve Job's
/// container, on the same store, finds nothing held and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cronjob_and_the_approve_job_run_the_cli_the_way_they_are_configured() {
    let cron = doc_of_kind(&format!("{CRON}/cronjob.yaml"), "CronJob");
    let approve = doc_of_kind(&format!("{CRON}/approve.job.yaml"), "Job");
    let configmap = doc_of_kind(&format!("{CRON}/configmap.yaml"), "ConfigMap");
    let c = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let uid = s(&c["securityContext"]["runAsUser"]);
    let config_path = config_path_of(c).display().to_string();
    let text = configmap["data"]["config.toml"].as_str().expect("config.toml").to_string();
    let cfg = load_config(&text, &env_of(c), "cronjob/configmap.yaml config.toml");
    let secrets_mount = seq(&c["volumeMounts"])
        .iter()
        .find(|m| m["name"] == "secrets")
        .map(|m| s(&m["mountPath"]))
        .expect("secrets mount");

    let root = tempfile::tempdir().expect("root");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod root");
    let at = |p: &str| root.path().join(p.trim_start_matches('/'));
    let (url, key) = litellm_env();
    let dead_ldap = free_port();
    let mapped = text
        .replace(STATE, &at(STATE).display().to_string())
        .replace(&secrets_mount, &at(&secrets_mount).display().to_string())
        .replace("http://litellm:4000", &url)
        .replace("ldap://ldap1.example.org:389", &format!("ldap://127.0.0.1:{dead_ldap}"))
        .replace("ldap://ldap2.example.org:389", &format!("ldap://127.0.0.1:{dead_ldap}"));
    assert!(!mapped.contains("example.org:") && !mapped.contains("litellm:4000"), "an endpoint was not redirected");
    for (p, body) in [
        (at(&config_path), mapped.as_str()),
        (at(&format!("{secrets_mount}/litellm-api-key")), key.as_str()),
        (at(&format!("{secrets_mount}/ldap-bind-password")), "unused"),
    ] {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        for d in p.ancestors().skip(1).take_while(|d| d.starts_with(root.path()) && *d != root.path()) {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
        }
        std::fs::write(&p, body).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).expect("chmod");
    }
    std::fs::create_dir_all(at(STATE)).expect("state dir");
    let chown = std::process::Command::new("chown").arg(format!("{uid}:{uid}")).arg(at(STATE)).status().expect("chown");
    assert!(chown.success());
    // The container's arguments with the config path mapped under the root.
    let run = |container: &Yaml| {
        let args: Vec<String> = seq(&container["args"])
            .iter()
            .map(s)
            .map(|a| if a == config_path { at(&config_path).display().to_string() } else { a })
            .collect();
        let mut cmd = tokio::process::Command::new("setpriv");
        cmd.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()])
            .arg(env!("CARGO_BIN_EXE_litellm-sync"))
            .args(&args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        async move {
            let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
                .await
                .expect("the run ends within 2 minutes")
                .expect("setpriv (util-linux)");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };

    let (code, stdout, stderr) = run(c).await;
    assert_eq!(
        code,
        Some(i32::from(litellm_sync::cli::EXIT_ERROR)),
        "sync with the directory down:\n{stdout}\n{stderr}"
    );
    assert!(stderr.contains(&cfg.sources[0].name), "the failed source is named:\n{stderr}");
    let store = at(&cfg.store.path.display().to_string());
    assert!(store.exists(), "sync did not create its store on the PVC's path as uid {uid}:\n{stderr}");

    let a = &approve["spec"]["template"]["spec"]["containers"][0];
    let (code, stdout, stderr) = run(a).await;
    assert_eq!(code, Some(0), "the approve Job on the CronJob's store:\n{stdout}\n{stderr}");
    assert!(stdout.contains("Nothing is held"), "approve output:\n{stdout}");
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

#[test]
fn label_selectors_network_policy_ports_and_cron_periods() {
    let labels: Yaml = serde_yaml_ng::from_str("{app: x, component: cronjob}").expect("yaml");
    let sel = |t: &str| serde_yaml_ng::from_str::<Yaml>(t).expect("yaml");
    assert!(selects(&sel("{matchLabels: {app: x}}"), &labels));
    assert!(!selects(&sel("{matchLabels: {app: y}}"), &labels));
    assert!(selects(&sel("{matchExpressions: [{key: component, operator: In, values: [cronjob, approve]}]}"), &labels));
    assert!(!selects(&sel("{matchExpressions: [{key: component, operator: NotIn, values: [cronjob]}]}"), &labels));
    let policy = sel(
        "{spec: {egress: [{ports: [{port: 53, protocol: UDP}, {port: 389}]}, {ports: [{port: 1000, endPort: 2000}]}]}}",
    );
    assert!(policy_allows(&policy, "egress", "UDP", 53));
    assert!(!policy_allows(&policy, "egress", "TCP", 53));
    assert!(policy_allows(&policy, "egress", "TCP", 389));
    assert!(policy_allows(&policy, "egress", "TCP", 1500));
    assert!(!policy_allows(&policy, "egress", "TCP", 4000));
    assert!(!policy_allows(&policy, "ingress", "TCP", 8080), "no ingress rule admits nothing");
    assert_eq!(min_cron_interval("*/15 * * * *"), Duration::from_secs(900));
    assert_eq!(min_cron_interval("0 7,8 * * *"), Duration::from_secs(3600));
}
