"""deploy/ parses, its names match the code, and validators agree (skipped when absent:
systemd-analyze from Debian's systemd, promtool from Debian's prometheus; make test
installs promtool and sets REQUIRE_PROMTOOL, which turns its skip into a failure)."""

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from config.settings import FIELDS, load_settings
from metrics.definitions import RESTART_REASONS, PoolMetrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S, PROM = DEPLOY / "kubernetes", DEPLOY / "prometheus"
UNIT = DEPLOY / "systemd" / "offload.service"
DASHBOARD = DEPLOY / "grafana" / "offload-dashboard.json"
# On SIGTERM gunicorn drains the HTTP workers, then on_exit waits for the pool (+10 s).
STOP_S = 2 * FIELDS["graceful_timeout_s"].default + 10

# Metric name -> its labels (DESIGN.md, "Metrics"); histograms expose _bucket/_sum/_count.
METRICS = {
    "offload_tasks_submitted_total": {"kind"}, "offload_tasks_finished_total": {"kind", "outcome"},
    "offload_task_failures_total": {"kind", "reason"}, "offload_task_retries_total": {"kind"},
    "offload_queue_depth": {"status"}, "offload_queue_oldest_due_seconds": set(),
    "offload_executors": {"state"}, "offload_executor_slots": {"state"},
    "offload_executor_restarts_total": {"reason"}, "offload_pool_up": set(),
    "offload_http_requests_total": {"method", "route", "status"},
    "offload_schedule_runs_total": {"schedule"},
    "offload_schedule_skipped_total": {"schedule", "reason"},
}
HISTOGRAMS = {"offload_task_duration_seconds": {"kind"}, "offload_task_queue_seconds": {"kind"},
              "offload_http_request_duration_seconds": {"method", "route"},
              "offload_schedule_lag_seconds": {"schedule"}}
SERIES = METRICS | {n + s: ls | ({"le"} if s == "_bucket" else set())
                    for n, ls in HISTOGRAMS.items() for s in ("_bucket", "_sum", "_count")}
LABEL_VALUES = {
    ("offload_tasks_finished_total", "outcome"): {"succeeded", "failed", "cancelled"},
    ("offload_task_failures_total", "reason"): {"error", "crash", "timeout", "memory", "lost"},
    ("offload_executors", "state"): {"idle", "busy", "starting", "stopping"},
    ("offload_executor_slots", "state"): {"busy", "free"},
    ("offload_executor_restarts_total", "reason"): set(RESTART_REASONS),
}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset"}


def yaml_docs(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s(kind: str) -> dict:
    return next(d for p in sorted(K8S.glob("*.yaml")) for d in yaml_docs(p) if d["kind"] == kind)


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (functions, labels, keywords dropped)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    found = re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", e)
    return {m.group() for m in found
            if not e[m.end():].lstrip().startswith("(") and m.group() not in KEYWORDS}


def check_expr(expr: str) -> None:
    assert metric_names(expr) <= set(SERIES) | {"up"}, expr
    for name, matchers in re.findall(r"(offload_\w+)\{([^}]*)\}", expr):
        for key, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers):
            assert key in SERIES[name] | {"instance", "job"}, f"{name} has no label {key}: {expr}"
            allowed = LABEL_VALUES.get((name.removesuffix("_bucket"), key))
            if allowed and op in ("=", "=~") and "$" not in value:
                assert set(value.split("|")) <= allowed, expr


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    panels = [q for p in dash["panels"] for q in [p, *p.get("panels", [])]]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def alert_rules() -> list[dict]:
    return [r for g in yaml_docs(PROM / "alerts.yml")[0]["groups"] for r in g["rules"]]


def test_files_parse_and_name_only_real_settings():
    known = {"OFFLOAD_CONFIG", "OFFLOAD_EXAMPLE_OUTBOX", "OFFLOAD_EXAMPLE_HEARTBEAT_LOG"} | {
        f"OFFLOAD_{n.upper()}" for n in FIELDS}
    for path in (p for p in DEPLOY.rglob("*") if p.is_file()):
        used = set(re.findall(r"\bOFFLOAD_[A-Z_]+[A-Z]\b", path.read_text()))
        assert used <= known, (path, used - known)
        assert path.suffix not in (".yml", ".yaml") or yaml_docs(path), path


def test_metrics_match_the_code():
    declared = {m.name + "_total" * (m.type == "counter"): m.type
                for m in PoolMetrics().registry.collect()}
    assert declared == {n: "histogram" for n in HISTOGRAMS} | {
        n: "counter" if n.endswith("_total") else "gauge" for n in METRICS}


def test_toml_examples_are_valid_settings(tmp_path):
    configmap = tmp_path / "configmap-offload.toml"
    configmap.write_text(k8s("ConfigMap")["data"]["offload.toml"])
    for path in (configmap, DEPLOY / "systemd" / "offload.toml"):
        assert set(tomllib.loads(path.read_text())) <= set(FIELDS), path
        settings = load_settings(path, environ={})  # types, ranges and store_url too
        # The documented installs have no extras: only the default worker class
        # is there (uvicorn's comes with offload[uvicorn], which tests install).
        assert settings.worker_class == "asgi", path
        assert settings.memory_limit_mb > 0, f"{path}: a runaway task must not OOM the host"
    assert settings.sqlite_path == "/var/lib/offload/offload.db"  # systemd's StateDirectory


def test_kubernetes_manifests():
    kust = yaml_docs(K8S / "kustomization.yaml")[0]
    assert sorted(kust["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    dep, svc, mon = k8s("Deployment"), k8s("Service"), k8s("ServiceMonitor")
    # Two or more replicas share one queue in PostgreSQL; rolling updates are safe.
    assert dep["spec"]["replicas"] >= 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = dep["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert ctr["startupProbe"]["httpGet"]["path"] == "/healthz"
    # exec: offload check --ready sends the token from the environment
    assert ctr["readinessProbe"]["exec"]["command"][:3] == ["offload", "check", "--ready"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["terminationGracePeriodSeconds"] >= STOP_S
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in ctr["volumeMounts"]}
    assert "emptyDir" in mounts["/tmp"]
    assert not any("persistentVolumeClaim" in v for v in volumes.values())  # no SQLite file
    pdb = k8s("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] >= 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= (
        dep["spec"]["template"]["metadata"]["labels"].items())
    env = {e["name"]: e for e in ctr["env"]}
    # the store URL (and its password) from a Secret, never from the manifest
    assert env["OFFLOAD_STORE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "url"
    cfg_dir, cfg_key = env["OFFLOAD_CONFIG"]["value"].rsplit("/", 1)
    assert mounts[cfg_dir]["configMap"]["name"] == k8s("ConfigMap")["metadata"]["name"]
    assert cfg_key in k8s("ConfigMap")["data"]
    meta = dep["spec"]["template"]["metadata"]
    assert meta["annotations"]["prometheus.io/scrape"] == "true"
    assert meta["annotations"]["prometheus.io/path"] == "/metrics"
    assert svc["spec"]["selector"].items() <= meta["labels"].items()
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= {p["name"] for p in ctr["ports"]}
    assert mon["apiVersion"] == "monitoring.coreos.com/v1"
    assert mon["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (endpoint,) = mon["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["port"] in {
        p["name"] for p in svc["spec"]["ports"]}


def test_compose_and_dockerfile():
    compose = yaml_docs(DEPLOY / "docker" / "compose.yaml")[0]
    services = compose["services"]
    assert {"offload", "offload-2", "postgres", "redis", "prometheus"} <= set(services)
    replicas = [services["offload"], services["offload-2"]]
    offload = replicas[0]
    context = (DEPLOY / "docker" / offload["build"]["context"]).resolve()
    assert context == ROOT and (context / offload["build"]["dockerfile"]).is_file()
    for replica in replicas:  # two replicas, one queue: the same PostgreSQL store
        env = replica["environment"]
        assert "redis" not in json.dumps(env)  # not used today
        assert env["OFFLOAD_STORE_URL"].startswith("postgresql://")
        assert env["OFFLOAD_STORE_URL"].endswith("@postgres:5432/offload")
        assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert int(replica["stop_grace_period"].rstrip("s")) >= STOP_S
    assert replicas[0]["environment"] == replicas[1]["environment"]
    # no token by default: published on this host's loopback only
    assert [r["ports"] for r in replicas] == [["127.0.0.1:8000:8000"], ["127.0.0.1:8001:8000"]]
    postgres = services["postgres"]
    assert "ports" not in postgres  # reachable inside the compose network only
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert all("healthcheck" in service for service in services.values())
    prom = yaml_docs(PROM / "prometheus.yml")[0]
    targets = {t for job in prom["scrape_configs"] if job["job_name"] == "offload"
               for c in job["static_configs"] for t in c["targets"]}
    assert targets == {"offload:8000", "offload-2:8000"}
    mounted = [v.split(":")[0] for v in services["prometheus"]["volumes"] if v.startswith(".")]
    assert mounted and all((DEPLOY / "docker" / m).is_file() for m in mounted), mounted
    docker = (DEPLOY / "docker" / "Dockerfile").read_text()
    ops = dict(re.findall(r"^([A-Z]+)\s+(.*)$", docker.replace("\\\n", " "), re.M))
    assert ops["FROM"] == "python:3.11-slim"
    assert ops["USER"].split(":")[0] not in ("root", "0")
    assert "offload check" in ops["HEALTHCHECK"] and "--ready" not in ops["HEALTHCHECK"]
    assert services["offload"]["healthcheck"]["test"][:3] == ["CMD", "offload", "check"]
    assert ops["EXPOSE"] == "8000" and ops["STOPSIGNAL"] == "SIGTERM"
    assert json.loads(ops["CMD"]) == ["gunicorn", "-c", "config/gunicorn.conf.py"]
    assert "OFFLOAD_BIND=0.0.0.0:8000" in docker


def test_systemd_unit():
    lines = [ln.strip() for ln in UNIT.read_text().splitlines()]
    entries = [ln.split("=", 1) for ln in lines if "=" in ln and not ln.startswith("#")]
    unit = dict(entries)
    env = [v for k, v in entries if k == "Environment"]
    assert unit["Type"] == "simple"
    assert unit["ExecStart"].endswith("/gunicorn -c config/gunicorn.conf.py")
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["KillSignal"] == "SIGTERM" and unit["KillMode"] == "mixed"
    assert float(unit["TimeoutStopSec"]) >= STOP_S
    assert {"OFFLOAD_CONFIG=/etc/offload/offload.toml", "OFFLOAD_RUN_DIR=/run/offload"} <= set(env)
    hardening = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes", "RestrictNamespaces": "yes", "LockPersonality": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "SystemCallArchitectures": "native", "CapabilityBoundingSet": "", "UMask": "0077",
        "StateDirectory": "offload", "RuntimeDirectory": "offload", "Restart": "on-failure",
        "User": "offload", "Group": "offload", "ReadWritePaths": "/var/lib/offload",
    }
    assert {k: unit.get(k) for k in hardening} == hardening


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path):
    # /opt/offload is not installed here: point ExecStart at an executable that
    # exists, since verify fails on a missing one. Unknown keys and bad values
    # only print warnings (exit status 0), so stderr must say nothing about us.
    copy = tmp_path / "offload.service"
    copy.write_text(UNIT.read_text().replace("/opt/offload/.venv/bin/gunicorn", "/bin/true"))
    run = subprocess.run(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no",
                          str(copy)], capture_output=True, text=True, cwd=tmp_path)
    ours = [ln for ln in (run.stdout + run.stderr).splitlines() if "offload.service" in ln]
    assert run.returncode == 0 and not ours, run.stdout + run.stderr
    sec = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(copy)],
                         capture_output=True, text=True, cwd=tmp_path)
    level = re.search(r"Overall exposure level for offload.service: ([\d.]+)", sec.stdout)
    if level:  # --offline needs systemd >= 250
        assert float(level.group(1)) < 3.0, sec.stdout


def test_dashboard():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["schemaVersion"] >= 36 and dash["uid"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables["datasource"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(t["refId"] and t["expr"] for t in panel["targets"]), panel["title"]
    shown = set().union(*(metric_names(e) for e in dashboard_exprs()))
    assert {n + "_bucket" for n in HISTOGRAMS} | set(METRICS) <= shown  # every metric drawn
    assert set(re.findall(r"label_values\((\w+)", json.dumps(variables))) <= set(SERIES)


def test_alert_rules():
    rules = {r["alert"]: r for r in alert_rules()}
    assert set(rules) == {"OffloadTaskFailureRatioHigh", "OffloadQueueLagging",
                          "OffloadExecutorRestartsHigh", "OffloadPoolDown"}
    for rule in rules.values():
        assert rule["for"] and rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert "rate(offload_tasks_finished_total" in rules["OffloadTaskFailureRatioHigh"]["expr"]
    for expr in dashboard_exprs() + [r["expr"] for r in alert_rules()]:
        check_expr(expr)  # only declared metrics, labels and label values


def test_promtool(tmp_path):
    if not shutil.which("promtool"):
        # make test installs it and sets REQUIRE_PROMTOOL: a skip there would
        # hide that the alert rules went unchecked (it did on fresh machines).
        if os.environ.get("REQUIRE_PROMTOOL"):
            pytest.fail("promtool is not on PATH but REQUIRE_PROMTOOL is set (make test): "
                        "install Debian's prometheus package (make promtool, as root)")
        pytest.skip("promtool not installed (make test installs it: make promtool)")
    # The dashboard's queries, Grafana's variables filled in, as recording rules.
    rules = [{"record": f"dashboard:q{i}", "expr": e.replace("$__rate_interval", "5m")
              .replace("$instance", ".*").replace("$kind", ".*")}
             for i, e in enumerate(dashboard_exprs())]
    dash_rules = tmp_path / "dashboard-rules.yml"
    dash_rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    for args in (("check", "config", PROM / "prometheus.yml"),
                 ("check", "rules", PROM / "alerts.yml", dash_rules),
                 ("test", "rules", PROM / "alerts_test.yml")):
        run = subprocess.run(["promtool", *map(str, args)], capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr
