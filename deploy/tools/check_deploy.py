#!/usr/bin/env python3
"""Static checks of litellm-sync's deployment kit (Dockerfile, deploy/). Run by scripts/check-deploy.sh, in its
venv (PyYAML, kubernetes-validate, jsonschema); Python >= 3.11 (tomllib).

    check_deploy.py dockerfile   REPO
    check_deploy.py kubernetes   REPO [--binary BIN]
    check_deploy.py compose      REPO [--binary BIN]
    check_deploy.py rules        REPO OUT_DIR         # writes the PrometheusRule's groups for promtool
    check_deploy.py dashboard    REPO OUT_DIR         # writes the dashboard's queries as rules for promtool
    check_deploy.py metric-names REPO [NAMES_FILE]
    check_deploy.py prom-config  REPO OUT_DIR         # writes prometheus.yml with local rule paths
    check_deploy.py sync-rules   REPO                 # rewrites prometheusrule.yaml's spec from the plain rules

Each subcommand prints what it checked and exits 1 when anything is wrong (every problem is listed).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import yaml

PROBLEMS: list[str] = []


def problem(msg: str) -> None:
    PROBLEMS.append(msg)
    print(f"  ✗ {msg}")


def ok(msg: str) -> None:
    print(f"  ✓ {msg}")


def note(msg: str) -> None:
    print(f"  · {msg}")


def check(cond: bool, good: str, bad: str | None = None) -> bool:
    if cond:
        ok(good)
    else:
        problem(bad or f"NOT: {good}")
    return cond


def finish() -> int:
    if PROBLEMS:
        print(f"  {len(PROBLEMS)} problem(s)")
        return 1
    return 0


def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def duration_seconds(s: str) -> float:
    """humantime-style durations as used in config.toml and compose (30s, 5m, 1h30m, 45s)."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    total, pos = 0.0, 0
    for m in re.finditer(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", s):
        if m.start() != pos:
            raise ValueError(f"bad duration {s!r}")
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"bad duration {s!r}")
    return total


# ------------------------------------------------------------------------------------------------ config.toml

CONFIG_SECTIONS = ["litellm", "sources", "store", "server", "log"]


def check_config_structure(cfg: dict, where: str) -> None:
    """Key sections and values a deployment relies on (the binary does the full validation)."""
    for s in CONFIG_SECTIONS:
        check(s in cfg, f"{where}: [{s}] present", f"{where}: section [{s}] missing")
    lit = cfg.get("litellm", {})
    check(bool(lit.get("url")), f"{where}: litellm.url set", f"{where}: litellm.url missing")
    check("api_key" not in lit, f"{where}: no inline litellm.api_key (a secret file is used)",
          f"{where}: litellm.api_key is inline: use litellm.api_key_file")
    check(bool(lit.get("api_key_file")), f"{where}: litellm.api_key_file set", f"{where}: litellm.api_key_file missing")
    srcs = cfg.get("sources", [])
    check(isinstance(srcs, list) and len(srcs) > 0, f"{where}: {len(srcs)} source(s)", f"{where}: no [[sources]]")
    for i, s in enumerate(srcs):
        if s.get("type") == "ldap":
            check("bind_password" not in s and bool(s.get("bind_password_file")),
                  f"{where}: sources[{i}] ({s.get('name')}) reads its bind password from a file",
                  f"{where}: sources[{i}] must use bind_password_file, not an inline bind_password")
    check(str(cfg.get("store", {}).get("path", "")).startswith("/var/lib/litellm-sync/"),
          f"{where}: store.path under /var/lib/litellm-sync/ (the image's volume)",
          f"{where}: store.path must be under /var/lib/litellm-sync/")
    listen = cfg.get("server", {}).get("listen", "")
    check(listen.startswith("0.0.0.0:"), f"{where}: server.listen {listen} (all interfaces)",
          f"{where}: server.listen {listen!r} must listen on 0.0.0.0 inside a container")
    for i, s in enumerate(srcs):
        sch = s.get("schedule")
        if sch is not None:
            check(len(sch.split()) in (6, 7), f"{where}: sources[{i}].schedule has seconds first",
                  f"{where}: sources[{i}].schedule {sch!r} needs 6-7 cron fields (seconds first)")


def run_binary_check_config(binary: str, config_path: Path, cfg: dict, where: str) -> None:
    """Validates a config with the real binary (`check-config`), with temporary secret files, and accepts a
    failure only from the reachability checks that follow validation (no LiteLLM/LDAP here)."""
    with tempfile.TemporaryDirectory(prefix="check-deploy-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LITELLM_SYNC")}
        env.pop("RUST_LOG", None)
        key = Path(tmp, "litellm-api-key")
        key.write_text("sk-check-deploy\n")
        env["LITELLM_SYNC__LITELLM__API_KEY_FILE"] = str(key)
        # Fail fast on the network part: one attempt, short timeouts (values are validated as well).
        env["LITELLM_SYNC__LITELLM__MAX_RETRIES"] = "0"
        env["LITELLM_SYNC__LITELLM__TIMEOUT"] = "3s"
        # Network traffic stays on loopback: every endpoint is pointed at 127.0.0.1 port 1, where nothing
        # listens, so the reachability checks fail at once without any DNS lookup of the real host names.
        env["LITELLM_SYNC__LITELLM__URL"] = "http://127.0.0.1:1"
        for i, s in enumerate(cfg.get("sources", [])):
            if s.get("type") == "ldap":
                env[f"LITELLM_SYNC__SOURCES__{i}__URLS"] = '["ldap://127.0.0.1:1"]'
                pw = Path(tmp, f"bind-password-{i}")
                pw.write_text("check-deploy\n")
                env[f"LITELLM_SYNC__SOURCES__{i}__BIND_PASSWORD_FILE"] = str(pw)
                env[f"LITELLM_SYNC__SOURCES__{i}__CONNECT_TIMEOUT"] = "3s"
                env[f"LITELLM_SYNC__SOURCES__{i}__OPERATION_TIMEOUT"] = "3s"
        try:
            r = subprocess.run([binary, "--config", str(config_path), "check-config"], env=env, cwd=tmp,
                               capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            problem(f"{where}: `litellm-sync check-config` did not finish within 120 s")
            return
    out, err = r.stdout, r.stderr
    m = re.search(r"configuration is valid \((\d+) source\(s\), (\d+) rule\(s\)\)", out)
    if not m:
        problem(f"{where}: the real binary rejects it (exit {r.returncode}):\n"
                + "\n".join("      " + line for line in (err + out).strip().splitlines()))
        return
    ok(f"{where}: the real binary validates it ({m.group(0)}), secret files included")
    n_src, n_rules = int(m.group(1)), int(m.group(2))
    check(n_src == len(cfg.get("sources", [])) and n_rules == len(cfg.get("rules", [])),
          f"{where}: the binary read the same {n_src} source(s) and {n_rules} rule(s) as tomllib",
          f"{where}: binary read {n_src} sources/{n_rules} rules, tomllib {len(cfg.get('sources', []))}/"
          f"{len(cfg.get('rules', []))}")
    for line in out.splitlines()[1:]:
        if line.startswith("✗"):
            note(f"{where}: expected here, no servers to reach: {line[2:][:150]}")


# ------------------------------------------------------------------------------------------------ dockerfile


def dockerignore_excluded(patterns: list[str], rel: str) -> bool:
    """Docker's .dockerignore semantics: last matching pattern wins, `!` re-includes, a pattern matching a parent
    directory matches everything below it."""

    def rx(p: str) -> re.Pattern:
        out, i = "", 0
        while i < len(p):
            if p.startswith("**", i):
                out += ".*"
                i += 2
                if i < len(p) and p[i] == "/":
                    out = out[:-2] + "(?:.*/)?"
                    i += 1
            elif p[i] == "*":
                out += "[^/]*"
                i += 1
            elif p[i] == "?":
                out += "[^/]"
                i += 1
            else:
                out += re.escape(p[i])
                i += 1
        return re.compile(out + r"\Z")

    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        neg = raw.startswith("!")
        p = raw[1:] if neg else raw
        p = p.strip().strip("/")
        if not p:
            continue
        r = rx(p)
        if any(r.match(x) for x in prefixes):
            excluded = not neg
    return excluded


def cmd_dockerfile(repo: Path) -> int:
    print("Dockerfile and .dockerignore")
    df = (repo / "Dockerfile").read_text()
    lines = []
    for raw in re.sub(r"\\\n", " ", df).splitlines():
        s = raw.strip()
        if s and not s.startswith("#"):
            lines.append(s)
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    check(len(froms) >= 2, f"multi-stage build ({len(froms)} stages)")
    for f in froms:
        image = f.split()[1]
        pinned = ("@sha256:" in image) or (":" in image.split("/")[-1] and not image.endswith(":latest"))
        check(pinned, f"base image pinned: {image}", f"base image not pinned by tag or digest: {image}")
    check(any("rust:1.95" in f for f in froms), "builder is rust 1.95 (the toolchain the crate is developed with)")
    check("--locked" in df and "--release" in df, "cargo build --release --locked")
    runtime = df[df.rindex("\nFROM ") :]
    user = re.search(r"^USER\s+(\S+)", runtime, re.M)
    check(bool(user) and re.fullmatch(r"[1-9]\d*(:\d+)?", user.group(1) if user else "") is not None,
          f"runtime runs as a numeric non-root user ({user.group(1) if user else '-'})")
    check(bool(user) and user.group(1).split(":")[0] == "65532", "runtime user is 65532 (as the Kubernetes manifest)")
    check(re.search(r'^ENTRYPOINT \["litellm-sync"\]\s*$', runtime, re.M) is not None, 'ENTRYPOINT ["litellm-sync"]')
    check(re.search(r'^CMD \["run"\]\s*$', runtime, re.M) is not None, 'CMD ["run"]')
    check(re.search(r"^EXPOSE 8080\s*$", runtime, re.M) is not None, "EXPOSE 8080 (server.listen default)")
    check(re.search(r"^ENV LITELLM_SYNC_CONFIG=/etc/litellm-sync/config.toml\s*$", runtime, re.M) is not None,
          "LITELLM_SYNC_CONFIG=/etc/litellm-sync/config.toml")
    check(re.search(r'^VOLUME \["/var/lib/litellm-sync"\]\s*$', runtime, re.M) is not None,
          "VOLUME /var/lib/litellm-sync (store.path default /var/lib/litellm-sync/state.db)")
    check("--chown=65532:65532" in runtime, "state directory owned by the runtime user in the image")
    for key in ["title", "description", "licenses", "version", "revision", "source", "created"]:
        check(f"org.opencontainers.image.{key}=" in df, f"OCI label org.opencontainers.image.{key}")
    secretish = re.compile(r"(KEY|PASSWORD|TOKEN|SECRET)", re.I)
    for ln in lines:
        if ln.upper().startswith(("ENV ", "ARG ")):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", ln):
                if secretish.search(name):
                    problem(f"secret-looking build/env variable in the Dockerfile: {name}")
    ok("no secret-looking ENV/ARG")

    patterns = [ln.strip() for ln in (repo / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.strip().startswith("#")]
    # Every COPY source of the build context (not --from) must exist and survive .dockerignore.
    for ln in lines:
        if not ln.upper().startswith("COPY ") or "--from" in ln:
            continue
        toks = [t for t in ln.split()[1:] if not t.startswith("--")]
        for src in toks[:-1]:
            p = repo / src
            if not p.exists():
                problem(f"COPY source missing in the repository: {src}")
                continue
            files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
            rels = [str(f.relative_to(repo)) for f in files]
            dropped = [r for r in rels if dockerignore_excluded(patterns, r)]
            check(not dropped and files, f"COPY {src}: {len(files)} file(s) in the build context",
                  f"COPY {src}: excluded by .dockerignore or empty: {dropped[:5]}")
    migrations = sorted((repo / "migrations").glob("*.sql"))
    check(bool(migrations) and not any(dockerignore_excluded(patterns, f"migrations/{m.name}") for m in migrations),
          f"migrations/ ({len(migrations)} file(s)) is in the build context (sqlx::migrate! embeds it)")
    src_rs = (repo / "src/directory/sqlite.rs")
    if src_rs.exists():
        check('migrate!("./migrations")' in src_rs.read_text(), 'the crate still embeds migrate!("./migrations")')
    for never in ["target/release/litellm-sync", ".git/HEAD", "deploy/compose/secrets/litellm-api-key",
                  "state.db", "scripts/test.sh", "tests/integration/main.rs"]:
        check(dockerignore_excluded(patterns, never), f".dockerignore keeps {never} out of the context")
    cargo = tomllib.loads((repo / "Cargo.toml").read_text())
    stubs = {"src/main.rs", "src/lib.rs"}
    for t in cargo.get("test", []) + cargo.get("bench", []) + cargo.get("example", []):
        path = t.get("path") or f"benches/{t['name']}.rs"
        stubs.add(path)
    missing = [s for s in sorted(stubs) if s not in df]
    check(not missing, "the dependency layer stubs every target Cargo.toml names "
          f"({', '.join(sorted(stubs))})", f"the dependency layer has no stub for: {missing}")
    check(not (repo / "build.rs").exists() or "build.rs" in df,
          "no build.rs (or the Dockerfile copies it)", "build.rs exists but the Dockerfile does not copy it")
    return finish()


# ------------------------------------------------------------------------------------------------ kubernetes

SM_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "namespaceSelector": {"type": "object"},
                "selector": {"type": "object", "additionalProperties": False, "properties": {
                    "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "matchExpressions": {"type": "array"}}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "targetPort": {"type": ["string", "integer"]},
                        "path": {"type": "string", "pattern": "^/"},
                        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                        "interval": {"$ref": "#/$defs/duration"},
                        "scrapeTimeout": {"$ref": "#/$defs/duration"},
                        "honorLabels": {"type": "boolean"},
                        "relabelings": {"type": "array"},
                        "metricRelabelings": {"type": "array"},
                    }}},
            },
        },
    },
    "$defs": {"duration": {"type": "string",
                           "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                                      r"(([0-9]+)s)?(([0-9]+)ms)?)$"}},
}

PR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {"type": "object", "required": ["groups"], "additionalProperties": False, "properties": {
            "groups": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["name", "rules"], "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "interval": {"$ref": "#/$defs/duration"},
                    "limit": {"type": "integer"},
                    "rules": {"type": "array", "items": {
                        "type": "object", "required": ["expr"], "additionalProperties": False,
                        "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                        "properties": {
                            "alert": {"type": "string"}, "record": {"type": "string"},
                            "expr": {"type": ["string", "integer"]},
                            "for": {"$ref": "#/$defs/duration"},
                            "keep_firing_for": {"$ref": "#/$defs/duration"},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                        }}}}}}}},
    },
    "$defs": SM_SCHEMA["$defs"],
}

K8S_VERSIONS = ["1.29.0", None]  # None: the newest schema kubernetes-validate ships


def cmd_kubernetes(repo: Path, binary: str | None) -> int:
    import jsonschema
    import kubernetes_validate
    from kubernetes_validate import utils as kv

    kdir = repo / "deploy/kubernetes"
    print(f"Kubernetes manifests ({kdir.relative_to(repo)}), kubernetes-validate {kubernetes_validate.__version__}")
    versions = [v or kv.latest_version() for v in K8S_VERSIONS]
    files = sorted(kdir.glob("*.yaml"))
    res: dict[tuple[str, str], dict] = {}
    for f in files:
        for doc in load_yaml_docs(f):
            kind, api = doc.get("kind"), doc.get("apiVersion", "")
            name = doc.get("metadata", {}).get("name")
            if kind == "Kustomization":
                continue
            res[(kind, name)] = doc
            check("namespace" not in doc.get("metadata", {}), f"{f.name}: {kind}/{name} sets no namespace",
                  f"{f.name}: {kind}/{name} sets metadata.namespace (the kit is namespace-agnostic)")
            if api.startswith("monitoring.coreos.com/"):
                # kubernetes-validate ships the core API's schemas only, not the Prometheus Operator's CRDs: it
                # would merely warn "Couldn't find schema". Those two kinds are checked against a subset of the
                # operator's CRD schema written here (field names, types, durations; unknown fields rejected),
                # and the rules themselves by promtool.
                schema = {"ServiceMonitor": SM_SCHEMA, "PrometheusRule": PR_SCHEMA}.get(kind)
                if schema is None:
                    problem(f"{f.name}: no schema for {api} {kind}")
                    continue
                errs = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str)
                for e in errs:
                    problem(f"{f.name}: {kind}/{name}: {'.'.join(map(str, e.path))}: {e.message}")
                if not errs:
                    ok(f"{f.name}: {kind}/{name} matches the CRD subset schema (not kubernetes-validate: a CRD)")
                continue
            for v in versions:
                try:
                    got = kv.validate(doc, v, strict=True)
                    ok(f"{f.name}: {kind}/{name} valid (strict) against Kubernetes {got}")
                except kv.ValidationError as e:
                    problem(f"{f.name}: {kind}/{name} invalid against {v}: {'.'.join(map(str, e.path))}: {e.message}")
                except kv.SchemaNotFoundError as e:
                    problem(f"{f.name}: {e.message}")

    # kustomization.yaml: every manifest listed (except the Secret template), every listed file present.
    kust = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    listed = set(kust.get("resources", []))
    present = {f.name for f in files} - {"kustomization.yaml"}
    check(listed <= present, "kustomization.yaml: every resource file exists", f"missing: {sorted(listed - present)}")
    check(present - listed == {"secret.example.yaml"},
          "kustomization.yaml lists every manifest except secret.example.yaml (a template, applied by hand)",
          f"kustomization.yaml: not listed: {sorted(present - listed)}")
    check("namespace" not in kust, "kustomization.yaml sets no namespace (namespace-agnostic)")
    dep_image = None

    def get(kind: str, name: str) -> dict:
        d = res.get((kind, name))
        if d is None:
            problem(f"no {kind}/{name}")
            return {}
        return d

    dep = get("Deployment", "litellm-sync")
    svc = get("Service", "litellm-sync")
    sm = get("ServiceMonitor", "litellm-sync")
    cm = get("ConfigMap", "litellm-sync-config")
    sec = get("Secret", "litellm-sync")
    pvc = get("PersistentVolumeClaim", "litellm-sync-state")
    np_ = get("NetworkPolicy", "litellm-sync")
    sa = get("ServiceAccount", "litellm-sync")
    if not (dep and svc and sm and cm and sec and pvc and np_ and sa):
        return finish()

    spec = dep["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    check(spec.get("replicas") == 1, "Deployment: 1 replica (one SQLite store, one reconciler)")
    check(spec.get("strategy", {}).get("type") == "Recreate", "Deployment: strategy Recreate (RWO volume)")
    check(spec["selector"]["matchLabels"].items() <= pod_labels.items(), "Deployment: selector matches pod labels")
    check(pod.get("serviceAccountName") == sa["metadata"]["name"], "Deployment: uses the ServiceAccount")
    check(pod.get("automountServiceAccountToken") is False, "Deployment: no API token mounted")
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532 and psc.get("fsGroup") == 65532,
          "pod: runAsNonRoot, runAsUser 65532, fsGroup 65532")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod: seccompProfile RuntimeDefault")
    containers = pod["containers"]
    check(len(containers) == 1, "one container")
    c = containers[0]
    dep_image = c.get("image")
    csc = c.get("securityContext", {})
    check(csc.get("allowPrivilegeEscalation") is False, "container: allowPrivilegeEscalation false")
    check(csc.get("readOnlyRootFilesystem") is True, "container: readOnlyRootFilesystem")
    check(csc.get("capabilities", {}).get("drop") == ["ALL"], "container: capabilities drop ALL")
    check(csc.get("runAsNonRoot") is True and csc.get("runAsUser") == 65532, "container: runAsNonRoot, 65532")
    check(csc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "container: seccompProfile RuntimeDefault")
    res_ = c.get("resources", {})
    check(bool(res_.get("requests")) and bool(res_.get("limits", {}).get("memory")),
          "container: resource requests and a memory limit")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check(ports.get("http") == 8080, "container: port http = 8080")
    for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")]:
        hg = c.get(probe, {}).get("httpGet", {})
        check(hg.get("path") == path and hg.get("port") == "http", f"{probe}: GET {path} on port http")
    st = c.get("startupProbe", {})
    check(st.get("periodSeconds", 10) * st.get("failureThreshold", 3) >= 30,
          "startupProbe allows at least 30 s to open the store")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    check(c.get("args") in (None, ["run"]), "container runs `litellm-sync run`")

    # The embedded config.toml, against the mounts.
    raw = cm.get("data", {}).get("config.toml")
    if not check(raw is not None, "ConfigMap has data.config.toml"):
        return finish()
    try:
        cfg = tomllib.loads(raw)
        ok("ConfigMap config.toml parses (tomllib)")
    except tomllib.TOMLDecodeError as e:
        problem(f"ConfigMap config.toml is not TOML: {e}")
        return finish()
    check_config_structure(cfg, "ConfigMap config.toml")
    cfg_mount = next((p for p, m in mounts.items() if vols.get(m["name"], {}).get("configMap")), None)
    check(cfg_mount == "/etc/litellm-sync" and mounts[cfg_mount].get("readOnly") is True,
          "ConfigMap mounted read-only at /etc/litellm-sync")
    if cfg_mount:
        cmv = vols[mounts[cfg_mount]["name"]]["configMap"]
        check(cmv.get("name") == cm["metadata"]["name"], "the config volume names the ConfigMap")
        items = {i["key"]: i["path"] for i in cmv.get("items", [])} or {"config.toml": "config.toml"}
        check(env.get("LITELLM_SYNC_CONFIG") == f"{cfg_mount}/{items.get('config.toml')}",
              f"LITELLM_SYNC_CONFIG = {cfg_mount}/config.toml (the mounted key)")
    sec_mount = next((p for p, m in mounts.items() if vols.get(m["name"], {}).get("secret")), None)
    check(sec_mount == "/run/secrets/litellm-sync" and mounts[sec_mount].get("readOnly") is True,
          "Secret mounted read-only at /run/secrets/litellm-sync")
    if sec_mount:
        sv = vols[mounts[sec_mount]["name"]]["secret"]
        check(sv.get("secretName") == sec["metadata"]["name"], "the secret volume names the Secret")
        files = {i["path"]: i["key"] for i in sv.get("items", [])}
        keys = set(sec.get("stringData", {})) | set(sec.get("data", {}))
        check(set(files.values()) == keys, f"Secret template keys {sorted(keys)} = the mounted items")
        wanted = [("litellm.api_key_file", cfg.get("litellm", {}).get("api_key_file"))]
        wanted += [(f"sources[{i}].bind_password_file", s.get("bind_password_file"))
                   for i, s in enumerate(cfg.get("sources", [])) if s.get("type") == "ldap"]
        for key, path in wanted:
            path = path or ""
            check(os.path.dirname(path) == sec_mount and os.path.basename(path) in files,
                  f"{key} = {path} is a file of the Secret mount",
                  f"{key} = {path!r} is not a key mounted under {sec_mount}")
        for k, v in sec.get("stringData", {}).items():
            check("REPLACE" in v, f"Secret template value {k} is a placeholder",
                  f"Secret template {k} holds something other than a placeholder")
    store_dir = os.path.dirname(cfg.get("store", {}).get("path", ""))
    m = mounts.get(store_dir)
    check(bool(m) and vols.get(m["name"], {}).get("persistentVolumeClaim", {}).get("claimName")
          == pvc["metadata"]["name"], f"store.path's directory {store_dir} is the PersistentVolumeClaim")
    tmp = mounts.get("/tmp")
    check(bool(tmp) and "emptyDir" in vols.get(tmp["name"], {}), "/tmp is an emptyDir (read-only root)")
    listen_port = int(cfg.get("server", {}).get("listen", ":0").rsplit(":", 1)[1])
    check(listen_port == ports.get("http"), f"server.listen port {listen_port} = containerPort http")
    check(cfg.get("log", {}).get("format") == "json", "log.format = json")
    grace = duration_seconds(cfg.get("server", {}).get("shutdown_grace", "30s"))
    tgp = pod.get("terminationGracePeriodSeconds", 30)
    check(tgp >= grace + 5, f"terminationGracePeriodSeconds {tgp} > server.shutdown_grace {grace:.0f}s (+5 s)")
    check(pvc["spec"]["accessModes"] == ["ReadWriteOnce"], "PVC ReadWriteOnce")

    # Service, ServiceMonitor, NetworkPolicy agree with the pod.
    check(svc["spec"]["selector"].items() <= pod_labels.items(), "Service selects the pod")
    sports = {p["name"]: p for p in svc["spec"]["ports"]}
    check(sports.get("http", {}).get("port") == 8080 and sports["http"].get("targetPort") in ("http", 8080),
          "Service port http 8080 -> container port http")
    check(len(sports) == 1, "Service has one port (SCIM will share it)")
    sel = sm["spec"]["selector"].get("matchLabels", {})
    check(bool(sel) and sel.items() <= svc["metadata"]["labels"].items(), "ServiceMonitor selects the Service")
    for ep in sm["spec"]["endpoints"]:
        check(ep.get("port") in sports and ep.get("path", "/metrics") == "/metrics",
              f"ServiceMonitor scrapes port {ep.get('port')} at /metrics")
    npspec = np_["spec"]
    check(npspec["podSelector"].get("matchLabels", {}).items() <= pod_labels.items(), "NetworkPolicy selects the pod")
    check(set(npspec.get("policyTypes", [])) == {"Ingress", "Egress"}, "NetworkPolicy restricts ingress and egress")
    ing_ports = {p.get("port") for r in npspec.get("ingress", []) for p in r.get("ports", [])}
    check(ing_ports == {8080}, "NetworkPolicy ingress only to 8080")
    ing_from = [f for r in npspec.get("ingress", []) for f in r.get("from", [])]
    check(any(f.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
              == "monitoring" for f in ing_from), "ingress from the monitoring namespace")
    check(any(list(f) == ["podSelector"] for f in ing_from), "ingress from the same namespace")
    eg_ports = {(p.get("protocol", "TCP"), p.get("port")) for r in npspec.get("egress", []) for p in r.get("ports", [])}
    lit_url = urlparse(cfg["litellm"]["url"])
    lit_port = lit_url.port or (443 if lit_url.scheme == "https" else 80)
    for need in [("UDP", 53), ("TCP", 53), ("TCP", lit_port), ("TCP", 389), ("TCP", 636)]:
        check(need in eg_ports, f"egress allows {need[0]} {need[1]}")
    for i, s in enumerate(cfg.get("sources", [])):
        for u in s.get("urls", []):
            pu = urlparse(u)
            port = pu.port or (636 if pu.scheme == "ldaps" else 389)
            check(("TCP", port) in eg_ports, f"egress allows sources[{i}] {u}")

    kimg = {i["name"]: i for i in kust.get("images", [])}
    if dep_image:
        check(dep_image.split(":")[0] in kimg, f"kustomization images: sets {dep_image.split(':')[0]}")

    if binary:
        with tempfile.TemporaryDirectory(prefix="check-deploy-") as tmp:
            p = Path(tmp, "config.toml")
            p.write_text(raw)
            run_binary_check_config(binary, p, cfg, "ConfigMap config.toml")
    else:
        note("ConfigMap config.toml NOT validated by the binary (--no-binary)")
    return finish()


# ------------------------------------------------------------------------------------------------ compose


def ldif_entries(paths: list[Path]) -> dict[str, dict[str, list[str]]]:
    entries: dict[str, dict[str, list[str]]] = {}
    for p in paths:
        text = re.sub(r"\n ", "", p.read_text())  # LDIF line folding
        for block in re.split(r"\n\s*\n", text):
            attrs: dict[str, list[str]] = {}
            for line in block.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                k, v = line.split(":", 1)
                attrs.setdefault(k.strip().lower(), []).append(v.strip())
            if "dn" in attrs:
                entries[attrs["dn"][0].lower()] = attrs
    return entries


def cmd_compose(repo: Path, binary: str | None) -> int:
    cdir = repo / "deploy/compose"
    print(f"Compose stack ({cdir.relative_to(repo)})")
    comp = yaml.safe_load((cdir / "compose.yaml").read_text())
    services = comp.get("services", {})
    core = ["postgres", "litellm", "openldap", "litellm-sync"]
    for name in core:
        check(name in services, f"service {name}")
    if not all(n in services for n in core):
        return finish()
    declared_vols = set((comp.get("volumes") or {}).keys())
    declared_secrets = comp.get("secrets") or {}
    for name, s in services.items():
        img = s.get("image", "")
        if "build" in s:
            ctx = (cdir / s["build"].get("context", ".")).resolve()
            dfile = ctx / s["build"].get("dockerfile", "Dockerfile")
            check(ctx == repo.resolve() and dfile.exists(), f"{name}: built from the repository's Dockerfile")
            continue
        tag = img.rsplit(":", 1)[1] if ":" in img.split("/")[-1] else ""
        check(bool(tag) and "latest" not in tag and tag not in ("main-stable", "stable", "main"),
              f"{name}: image pinned ({img})", f"{name}: image not pinned to a release: {img!r}")
        for dep in (s.get("depends_on") or {}):
            check(dep in services, f"{name}: depends_on {dep} exists")
    lit_img = services["litellm"].get("image", "")
    check(re.fullmatch(r"ghcr\.io/berriai/litellm:(main-)?v1\.106\.\d+(-stable)?", lit_img) is not None,
          f"litellm: a 1.106.x release image ({lit_img})")
    check("1.107.0" not in lit_img, "litellm: not 1.107.0 (compromised release)")
    check(re.match(r"postgres:15(\.|-|$)", services["postgres"].get("image", "")) is not None, "postgres: 15")
    for name, s in services.items():
        for port in s.get("ports", []) or []:
            check(str(port).startswith("127.0.0.1:"), f"{name}: port {port} published on loopback only")
        for v in s.get("volumes", []) or []:
            src = v.split(":")[0]
            if src.startswith((".", "/")):
                check((cdir / src).exists(), f"{name}: bind mount source {src} exists")
            else:
                check(src in declared_vols, f"{name}: named volume {src} declared")
        for sname in s.get("secrets", []) or []:
            sname = sname if isinstance(sname, str) else sname.get("source")
            check(sname in declared_secrets, f"{name}: secret {sname} declared")
    for sname, sdef in declared_secrets.items():
        check((cdir / sdef.get("file", "")).is_file(), f"secret {sname}: file {sdef.get('file')} exists")

    # config.toml against the services.
    cfg_path = cdir / "config.toml"
    cfg = tomllib.loads(cfg_path.read_text())
    ok("config.toml parses (tomllib)")
    check_config_structure(cfg, "compose config.toml")
    sync = services["litellm-sync"]
    vols = {v.split(":")[1]: v for v in sync.get("volumes", [])}
    check(vols.get("/etc/litellm-sync/config.toml", "").startswith("./config.toml:"),
          "litellm-sync mounts ./config.toml at /etc/litellm-sync/config.toml")
    check(vols.get("/etc/litellm-sync/config.toml", "").endswith(":ro"), "config mounted read-only")
    env = sync.get("environment") or {}
    check(env.get("LITELLM_SYNC_CONFIG", "/etc/litellm-sync/config.toml") == "/etc/litellm-sync/config.toml",
          "LITELLM_SYNC_CONFIG = /etc/litellm-sync/config.toml")
    store_dir = os.path.dirname(cfg["store"]["path"])
    check(store_dir in vols and vols[store_dir].split(":")[0] in declared_vols,
          f"store.path's directory {store_dir} is a named volume")
    check(sync.get("read_only") is True and "/tmp" in (sync.get("tmpfs") or []), "read-only root with a /tmp tmpfs")
    check(str(sync.get("user", "")).split(":")[0] == "65532", "runs as 65532")
    listen_port = int(cfg["server"]["listen"].rsplit(":", 1)[1])
    published = [str(p).rsplit(":", 1)[-1] for p in sync.get("ports", [])]
    check(str(listen_port) in published, f"server.listen port {listen_port} is published")
    grace = duration_seconds(cfg["server"].get("shutdown_grace", "30s"))
    check(duration_seconds(sync.get("stop_grace_period", "10s")) >= grace + 5,
          f"stop_grace_period > server.shutdown_grace ({grace:.0f}s)")
    attached = {(x if isinstance(x, str) else x.get("source")): (x if isinstance(x, str) else x.get("target", x["source"]))
                for x in sync.get("secrets", [])}
    secret_files = {f"/run/secrets/{t}": n for n, t in attached.items()}

    def secret_value(path: str) -> str | None:
        n = secret_files.get(path)
        if n is None:
            return None
        return (cdir / declared_secrets[n]["file"]).read_text().rstrip("\r\n")

    key = secret_value(cfg["litellm"].get("api_key_file", ""))
    check(key is not None, f"litellm.api_key_file {cfg['litellm'].get('api_key_file')} is an attached secret")
    lit = services["litellm"]
    lenv = lit.get("environment") or {}
    check(key == lenv.get("LITELLM_MASTER_KEY"), "the api key secret = LITELLM_MASTER_KEY of service litellm")
    check(str(lenv.get("LITELLM_MASTER_KEY", "")).startswith("sk-"), "LiteLLM master key starts with sk-")
    u = urlparse(cfg["litellm"]["url"])
    cmd = lit.get("command", [])
    lport = int(cmd[cmd.index("--port") + 1]) if "--port" in cmd else 4000
    check(u.hostname == "litellm" and (u.port or 80) == lport, f"litellm.url {cfg['litellm']['url']} = service:port")
    db = urlparse(lenv.get("DATABASE_URL", ""))
    penv = services["postgres"].get("environment") or {}
    check(db.hostname == "postgres" and db.username == penv.get("POSTGRES_USER")
          and db.password == penv.get("POSTGRES_PASSWORD") and db.path.lstrip("/") == penv.get("POSTGRES_DB"),
          "DATABASE_URL = service postgres, its user, password and database")
    deps = sync.get("depends_on") or {}
    for d in ["litellm", "openldap"]:
        check(deps.get(d, {}).get("condition") == "service_healthy", f"litellm-sync waits for {d} to be healthy")
        check(bool(services[d].get("healthcheck")), f"{d} has a healthcheck")

    # LDAP source against the seed.
    ldap = services["openldap"]
    ldifs = sorted((cdir / "ldap").glob("*.ldif"))
    entries = ldif_entries(ldifs)
    check(bool(entries), f"ldap/*.ldif: {len(entries)} entries in {len(ldifs)} file(s)")
    lenv2 = ldap.get("environment") or {}
    base = ",".join(f"dc={p}" for p in str(lenv2.get("LDAP_DOMAIN", "")).split("."))
    check(any(v.endswith("/container/service/slapd/assets/config/bootstrap/ldif/custom:ro")
              and v.startswith("./ldap:") for v in ldap.get("volumes", [])), "openldap seeds from ./ldap")
    check("--copy-service" in (ldap.get("command") or []), "openldap --copy-service (seed mounted read-only)")
    for i, s in enumerate(cfg.get("sources", [])):
        if s.get("type") != "ldap":
            continue
        for url in s.get("urls", []):
            pu = urlparse(url)
            check(pu.hostname in services and (pu.port or 389) == 389, f"sources[{i}] url {url} = service openldap")
        bind = s["bind_dn"].lower()
        acct = entries.get(bind)
        pw = secret_value(s.get("bind_password_file", ""))
        check(acct is not None, f"bind_dn {s['bind_dn']} is in the seed")
        check(acct is not None and acct.get("userpassword") == [pw],
              "its userPassword = the ldap-bind-password secret")
        acl = "\n".join(p.read_text() for p in ldifs if "olcAccess" in p.read_text())
        check(f'by dn="{s["bind_dn"].replace(",dc=example,dc=org", ",{{ LDAP_BASE_DN }}")}" read' in acl
              or f'by dn="{s["bind_dn"]}" read' in acl, "the seed's ACL lets the bind account read")
        for k in ["user_base", "group_base"]:
            dn = s[k].lower()
            check(dn in entries or dn == base, f"{k} {s[k]} is in the seed")
            check(dn.endswith(base), f"{k} is under the image's base DN {base}")
        users = {dn: e for dn, e in entries.items() if "inetOrgPerson" in e.get("objectclass", [])}
        groups = {dn: e for dn, e in entries.items() if "groupOfNames" in e.get("objectclass", [])}
        check({"alice", "bob", "carol", "dave"} <= {e["uid"][0] for e in users.values()},
              "users alice, bob, carol, dave")
        check({"llm-admins", "engineering", "all-staff"} <= {e["cn"][0] for e in groups.values()},
              "groups llm-admins, engineering, all-staff")
        df = s.get("disabled_filter")
        if df:
            m = re.fullmatch(r"\((\w+)=([^)*]+)\)", df)
            if m:
                hit = [e["uid"][0] for e in users.values() if m.group(2) in e.get(m.group(1).lower(), [])]
                check(bool(hit), f"disabled_filter {df} matches {hit} in the seed")
        for g in groups.values():
            for mem in g.get("member", []):
                check(mem.lower() in entries, f"group {g['cn'][0]}: member {mem} exists",
                      f"group {g['cn'][0]}: member {mem} is not in the seed")
        names = {e["cn"][0].lower() for e in groups.values()} | set(groups)
        for r in cfg.get("rules", []):
            for g in r.get("match", {}).get("groups", []):
                check(g.lower() in names, f"rule {r.get('name')}: group {g} exists in the seed")
    hc = " ".join(ldap.get("healthcheck", {}).get("test", []))
    check("/run/secrets/ldap-bind-password" in hc and "ldap-bind-password" in (ldap.get("secrets") or []),
          "openldap healthcheck binds as the service account with the same secret")
    for dirty in [p for p in ldifs if "olcAccess" not in p.read_text()]:
        check("changetype" not in dirty.read_text().lower(),
              f"{dirty.name} has no 'changetype' (the image would use ldapmodify instead of ldapadd)")

    # Monitoring profile.
    prom = services.get("prometheus")
    if prom:
        pcfg = yaml.safe_load((cdir / "prometheus/prometheus.yml").read_text())
        targets = [t for sc in pcfg.get("scrape_configs", []) for st in sc.get("static_configs", [])
                   for t in st.get("targets", [])]
        check(f"litellm-sync:{listen_port}" in targets, f"prometheus scrapes litellm-sync:{listen_port}")
        mounts = {v.split(":")[1]: v.split(":")[0] for v in prom.get("volumes", [])}
        for rf in pcfg.get("rule_files", []):
            check(rf in mounts and (cdir / mounts[rf]).is_file(), f"prometheus rule file {rf} is mounted")
    graf = services.get("grafana")
    if graf:
        mounts = {v.split(":")[1]: v.split(":")[0] for v in graf.get("volumes", [])}
        prov = yaml.safe_load((cdir / "grafana/provisioning/dashboards/litellm-sync.yaml").read_text())
        path = prov["providers"][0]["options"]["path"]
        check(path in mounts and (cdir / mounts[path] / "litellm-sync.json").is_file(),
              f"grafana loads deploy/grafana/litellm-sync.json from {path}")
        home = (graf.get("environment") or {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", "")
        check(home == f"{path}/litellm-sync.json", "grafana home dashboard is litellm-sync")
        ds = yaml.safe_load((cdir / "grafana/provisioning/datasources/prometheus.yaml").read_text())
        check(urlparse(ds["datasources"][0]["url"]).hostname == "prometheus", "grafana datasource = service prometheus")

    if binary:
        run_binary_check_config(binary, cfg_path, cfg, "compose config.toml")
    else:
        note("compose config.toml NOT validated by the binary (--no-binary)")
    return finish()


# ------------------------------------------------------------------------------------------------ rules, dashboard


def cmd_rules(repo: Path, out: Path) -> int:
    print("PrometheusRule vs deploy/prometheus/litellm-sync.rules.yaml")
    pr = next(d for d in load_yaml_docs(repo / "deploy/kubernetes/prometheusrule.yaml") if d["kind"] == "PrometheusRule")
    plain = yaml.safe_load((repo / "deploy/prometheus/litellm-sync.rules.yaml").read_text())
    check(pr["spec"]["groups"] == plain["groups"], "both files hold the same rule groups",
          "deploy/kubernetes/prometheusrule.yaml spec.groups differs from deploy/prometheus/litellm-sync.rules.yaml "
          "(edit the latter, then `deploy/tools/check_deploy.py sync-rules .`)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "prometheusrule-groups.yaml").write_text(yaml.safe_dump({"groups": pr["spec"]["groups"]}, sort_keys=False))
    ok(f"extracted spec.groups to {out / 'prometheusrule-groups.yaml'}")
    names = [r["alert"] for g in pr["spec"]["groups"] for r in g["rules"] if "alert" in r]
    check(len(names) == len(set(names)), f"{len(names)} alerts, unique names")
    for g in pr["spec"]["groups"]:
        for r in g["rules"]:
            if "alert" in r:
                check(r.get("labels", {}).get("severity") in ("critical", "warning", "info")
                      and bool(r.get("annotations", {}).get("summary"))
                      and bool(r.get("annotations", {}).get("description")),
                      f"{r['alert']}: severity, summary, description")
    tests = yaml.safe_load((repo / "deploy/prometheus/litellm-sync.rules.test.yaml").read_text())
    tested = {t["alertname"] for tc in tests["tests"] for t in tc.get("alert_rule_test", []) if t.get("exp_alerts")}
    untested = sorted(set(names) - tested - {"LitellmSyncRunsSkipped", "LitellmSyncLiteLLMClientErrors"})
    check(not untested, "every alert (but two info/ratio ones) has a firing unit test", f"no firing test: {untested}")
    return finish()


def dashboard_exprs(dash: dict) -> list[tuple[str, str]]:
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    return out


def cmd_dashboard(repo: Path, out: Path) -> int:
    path = repo / "deploy/grafana/litellm-sync.json"
    print(f"Grafana dashboard ({path.relative_to(repo)})")
    try:
        dash = json.loads(path.read_text())
        ok("valid JSON")
    except json.JSONDecodeError as e:
        problem(f"not JSON: {e}")
        return finish()
    check(bool(dash.get("uid")) and bool(dash.get("title")), f"uid {dash.get('uid')!r}, title {dash.get('title')!r}")
    check("id" not in dash or dash["id"] is None, "no instance-specific dashboard id")
    vars_ = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    check(vars_.get("datasource", {}).get("type") == "datasource", "a datasource variable (portable)")
    panels = []

    def walk(ps):
        for p in ps:
            panels.append(p)
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    ids = [p.get("id") for p in panels]
    check(len(ids) == len(set(ids)) and None not in ids, f"{len(panels)} panels, unique ids")
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p.get("gridPos", {})
        if not check(g.get("x", 0) + g.get("w", 0) <= 24 and g.get("w", 0) > 0 and g.get("h", 0) > 0,
                     f"panel {p.get('title')!r}: fits the 24-column grid"):
            continue
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problem(f"panel {p.get('title')!r} overlaps {cells[(x, y)]!r}")
                    break
                cells[(x, y)] = p.get("title")
        if p.get("type") != "row":
            check(p.get("datasource", {}).get("uid") == "${datasource}", f"panel {p.get('title')!r}: uses $datasource")
            check(bool(p.get("targets")), f"panel {p.get('title')!r}: has queries")
    exprs = dashboard_exprs(dash)
    subst = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$namespace": ".*", "$source": ".*"}
    rules = []
    for i, (title, e) in enumerate(exprs):
        for k, v in subst.items():
            e = e.replace(k, v)
        if "$" in e:
            problem(f"panel {title!r}: unknown variable in {e}")
        rules.append({"record": f"dashboard:query_{i}", "expr": e})
    out.mkdir(parents=True, exist_ok=True)
    (out / "dashboard-queries.rules.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    ok(f"{len(rules)} queries written to {out / 'dashboard-queries.rules.yaml'} for promtool's PromQL parser")
    joined = json.dumps(dash)
    check("scim" not in joined.lower(), "no SCIM panel (the SCIM source has no metrics yet)")
    return finish()


# ------------------------------------------------------------------------------------------------ metric names

SUFFIXES = ("_bucket", "_sum", "_count")


def exported_from_file(path: Path) -> dict[str, str | None]:
    """One name per line (optionally `name type`), or a Prometheus text exposition (a /metrics scrape)."""
    names: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = re.match(r"#\s*(HELP|TYPE)\s+(\S+)(?:\s+(\S+))?", line)
            if m:
                names.setdefault(m.group(2), None)
                if m.group(1) == "TYPE":
                    names[m.group(2)] = m.group(3)
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\s+(counter|gauge|histogram|summary|untyped))?", line)
        if m:
            names.setdefault(m.group(1), m.group(2))
            if m.group(2):
                names[m.group(1)] = m.group(2)
    # Sample lines of a histogram (x_bucket ...) name its base too.
    for n in list(names):
        for s in SUFFIXES:
            if n.endswith(s) and names.get(n[: -len(s)]) == "histogram":
                names.pop(n, None)
    return names


def exported_from_source(repo: Path) -> dict[str, str | None]:
    text = (repo / "src/telemetry/metrics.rs").read_text()
    names: dict[str, str | None] = {}
    kinds = {"counter(": "counter", "gauge(": "gauge", "histogram(": "histogram", "IntGauge::new(": "gauge",
             "IntCounter::new(": "counter", "Histogram::with_opts(": "histogram"}
    for m in re.finditer(r'"(litellm_sync_[a-z0-9_]+)"', text):
        before = text[max(0, m.start() - 200): m.start()]
        best = max(((before.rfind(k), v) for k, v in kinds.items()), default=(-1, None))
        names[m.group(1)] = best[1] if best[0] >= 0 else None
    return names


def cmd_metric_names(repo: Path, names_file: str | None) -> int:
    if names_file:
        exported = exported_from_file(Path(names_file))
        print(f"Metric names: against {names_file} ({len(exported)} names)")
    else:
        exported = exported_from_source(repo)
        print(f"Metric names: against src/telemetry/metrics.rs ({len(exported)} names; pass a scrape of a live "
              "daemon, --metric-names FILE, for the real check)")
    exported = {k: v for k, v in exported.items() if k.startswith("litellm_sync_")}
    check(bool(exported), f"{len(exported)} exported litellm_sync_* names")
    sources = {
        "deploy/prometheus/litellm-sync.rules.yaml": (repo / "deploy/prometheus/litellm-sync.rules.yaml").read_text(),
        "deploy/kubernetes/prometheusrule.yaml": (repo / "deploy/kubernetes/prometheusrule.yaml").read_text(),
        "deploy/grafana/litellm-sync.json": (repo / "deploy/grafana/litellm-sync.json").read_text(),
    }
    used: set[str] = set()
    for where, text in sources.items():
        refs = sorted(set(re.findall(r"\blitellm_sync_[a-z0-9_]+", text)))
        for name in refs:
            base = name
            if name not in exported:
                for s in SUFFIXES:
                    if name.endswith(s) and name[: -len(s)] in exported:
                        base = name[: -len(s)]
                        if exported[base] not in (None, "histogram"):
                            problem(f"{where}: {name}: {base} is a {exported[base]}, not a histogram")
                        break
            if base in exported:
                used.add(base)
            else:
                problem(f"{where}: {name} is not exported by the daemon")
        ok(f"{where}: {len(refs)} distinct litellm_sync_* references checked")
        # rate()/increase() only over counters and histogram series; histogram_quantile over _bucket.
        for m in re.finditer(r"\b(rate|irate|increase)\(\s*(litellm_sync_[a-z0-9_]+)", text):
            name = m.group(2)
            t = exported.get(name)
            if name.endswith(SUFFIXES) and name not in exported:
                continue
            if t not in (None, "counter"):
                problem(f"{where}: {m.group(1)}() over {name}, a {t}")
        for m in re.finditer(r"histogram_quantile\(", text):
            inner = re.search(r"litellm_sync_[a-z0-9_]+", text[m.end(): m.end() + 400])
            if inner and not inner.group(0).endswith("_bucket"):
                problem(f"{where}: histogram_quantile over {inner.group(0)} (needs _bucket)")
    unused = sorted(set(exported) - used)
    if unused:
        note(f"exported but used by neither the dashboard nor the alerts: {', '.join(unused)}")
    else:
        ok("every exported metric is on the dashboard or in an alert")
    return finish()


def cmd_sync_rules(repo: Path) -> int:
    """deploy/prometheus/litellm-sync.rules.yaml (the source, with comments) -> the PrometheusRule's spec."""
    plain = (repo / "deploy/prometheus/litellm-sync.rules.yaml").read_text()
    body = plain[plain.index("groups:"):]
    target = repo / "deploy/kubernetes/prometheusrule.yaml"
    head = target.read_text()
    head = head[: head.index("spec:\n") + len("spec:\n")]
    target.write_text(head + "".join(("  " + ln if ln.strip() else ln) for ln in body.splitlines(True)))
    print(f"rewrote {target.relative_to(repo)} spec from deploy/prometheus/litellm-sync.rules.yaml")
    return 0


def cmd_prom_config(repo: Path, out: Path) -> int:
    print("Compose prometheus.yml (for promtool check config)")
    cfg = yaml.safe_load((repo / "deploy/compose/prometheus/prometheus.yml").read_text())
    local = str(repo / "deploy/prometheus/litellm-sync.rules.yaml")
    check(cfg.get("rule_files") == ["/etc/prometheus/rules/litellm-sync.rules.yaml"], "rule file path as mounted")
    cfg["rule_files"] = [local]
    out.mkdir(parents=True, exist_ok=True)
    (out / "prometheus.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    ok(f"wrote {out / 'prometheus.yml'} with the rule file at its repository path")
    return finish()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["dockerfile", "kubernetes", "compose", "rules", "dashboard", "metric-names",
                                        "prom-config", "sync-rules"])
    ap.add_argument("repo", type=Path)
    ap.add_argument("arg", nargs="?")
    ap.add_argument("--binary")
    a = ap.parse_args()
    repo = a.repo.resolve()
    if a.binary:
        a.binary = str(Path(a.binary).resolve())
    if a.command == "dockerfile":
        return cmd_dockerfile(repo)
    if a.command == "kubernetes":
        return cmd_kubernetes(repo, a.binary)
    if a.command == "compose":
        return cmd_compose(repo, a.binary)
    if a.command == "rules":
        return cmd_rules(repo, Path(a.arg))
    if a.command == "dashboard":
        return cmd_dashboard(repo, Path(a.arg))
    if a.command == "prom-config":
        return cmd_prom_config(repo, Path(a.arg))
    if a.command == "sync-rules":
        return cmd_sync_rules(repo)
    return cmd_metric_names(repo, a.arg)


if __name__ == "__main__":
    sys.exit(main())
