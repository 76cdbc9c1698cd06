"""Config that travels: the compose file and the Kubernetes manifests, rendered as the operator
renders them (secrets from ``infra/make-secrets.sh``), give every process every address it
needs through the same ``RETRAIN_*`` settings, each address names a service that exists, and
no container runs as root or without limits."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra_render import (
    BROWSER_FACING,
    INFRA,
    NEEDS,
    Container,
    MissingVariable,
    compose,
    compose_containers,
    generated_env_file,
    generated_secrets,
    manifests,
    network_urls,
    role,
)
from mlflow.server.security_utils import is_allowed_host_header

from retrain.alerts.prom_rules import JOBS
from retrain.config.settings import Settings
from retrain.config.wiring import build_metrics_source, serving_url
from tasks.release.metric_sources import PrometheusSource


def _settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in env.items():
        if key.startswith("RETRAIN_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(INFRA)  # no retrain.toml here: the environment alone
    return Settings()


def test_compose_refuses_to_start_without_the_generated_secrets() -> None:
    with pytest.raises(MissingVariable, match=r"run infra/make-secrets\.sh compose"):
        compose({})


def test_each_compose_process_gets_every_address_it_needs(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    roles = {c.name: c for c in compose_containers(services) if role(c)}
    assert set(roles) == {"prefect-worker", "model-server", "alert-receiver", "blob-server"}
    for container in roles.values():
        missing = NEEDS[role(container) or ""] - set(container.env)
        assert not missing, f"{container.owner} lacks {sorted(missing)}"
    worker = _settings(roles["prefect-worker"].env, monkeypatch)
    assert serving_url(worker) == "http://model-server:8080"
    # Several replicas: the canary reads Prometheus, never one server's own view.
    assert isinstance(build_metrics_source(worker), PrometheusSource)
    assert worker.prometheus_url == "http://prometheus:9090"


def test_each_kubernetes_process_and_flow_run_gets_every_address_it_needs(
    kube: tuple[list[dict[str, Any]], list[Container]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, containers = kube
    owners = {c.owner: c for c in containers if role(c)}
    assert {
        "pool/retrain-k8s",
        "pool/retrain-k8s-gpu",
        "Deployment/model-server",
        "Deployment/alert-receiver",
        "Deployment/blob-server",
    } <= set(owners)
    for container in owners.values():
        missing = NEEDS[role(container) or ""] - set(container.env)
        assert not missing, f"{container.owner} lacks {sorted(missing)}"
    flow_run = _settings(owners["pool/retrain-k8s"].env, monkeypatch)
    assert serving_url(flow_run) == "http://model-server:8080"
    assert isinstance(build_metrics_source(flow_run), PrometheusSource)
    model_server = owners["Deployment/model-server"]
    assert model_server.pod["containers"][0]["args"][:2] == ["retrain", "serve"]


def test_every_retrain_setting_named_is_a_real_setting(
    services: dict[str, Any], kube: tuple[list[dict[str, Any]], list[Container]]
) -> None:
    known = {f"RETRAIN_{name.upper()}" for name in Settings.model_fields} | {"RETRAIN_CODE_DIR"}
    for container in compose_containers(services) + kube[1]:
        typos = {k for k in container.env if k.startswith("RETRAIN_")} - known
        assert not typos, f"{container.owner}: {sorted(typos)} are not settings"


def _compose_ports(service: dict[str, Any]) -> tuple[set[int], set[int]]:
    """(ports the container listens on, ports published on the host)."""
    inside = {int(p) for p in service.get("expose", [])}
    published = set()
    for mapping in service.get("ports", []):
        host, _, container = str(mapping).rpartition(":")
        inside.add(int(container))
        published.add(int(host or container))
    return inside, published


def test_every_compose_address_names_a_service_and_its_port(services: dict[str, Any]) -> None:
    listening = {name: _compose_ports(s)[0] for name, s in services.items()}
    published = set().union(*(_compose_ports(s)[1] for s in services.values()))
    for container in compose_containers(services):
        for key, (host, port) in network_urls(container.env).items():
            if key in BROWSER_FACING:
                assert host == "localhost" and port in published, (container.owner, key)
            else:
                assert port in listening.get(host, set()), f"{container.owner} {key}: {host}:{port}"
    prometheus = (INFRA / "prometheus" / "prometheus.yml").read_text()
    alertmanager = (INFRA / "prometheus" / "alertmanager.yml").read_text()
    targets = re.findall(r'"([a-z-]+):(\d+)"', prometheus)
    targets += re.findall(r"http://([a-z-]+):(\d+)/", alertmanager)
    assert {host for host, _ in targets} == {"model-server", "alert-receiver", "alertmanager"}
    for host, port in targets:
        assert int(port) in listening[host], f"{host}:{port}"


def _service_ports(objects: list[dict[str, Any]]) -> dict[str, set[int]]:
    ports = {
        o["metadata"]["name"]: {p["port"] for p in o["spec"]["ports"]}
        for o in objects
        if o["kind"] == "Service"
    }
    ports["prefect-server"] = {4200}  # the prefect-server chart's Service (fullnameOverride)
    return ports


def _service_name(host: str, namespace: str = "retrain") -> str:
    """``name``, ``name.ns``, ``name.ns.svc`` or ``name.ns.svc.cluster.local`` -> name."""
    name, _, rest = host.partition(".")
    assert rest in ("", namespace, f"{namespace}.svc", f"{namespace}.svc.cluster.local"), host
    return name


def test_every_kubernetes_address_names_a_service_and_its_port(
    kube: tuple[list[dict[str, Any]], list[Container]],
) -> None:
    objects, containers = kube
    ports = _service_ports(objects)
    for container in containers:
        for key, (host, port) in network_urls(container.env).items():
            if key in BROWSER_FACING:  # reached through `kubectl port-forward svc/NAME PORT`
                assert host == "localhost" and any(port in p for p in ports.values()), key
            else:
                name = _service_name(host)
                assert port in ports.get(name, set()), f"{container.owner} {key}: {host}:{port}"


def _mlflow_args(command: str | list[str]) -> dict[str, str]:
    words = command.split() if isinstance(command, str) else command
    return {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}


@pytest.mark.parametrize("where", ["compose", "kubernetes"])
def test_mlflow_answers_the_service_name_and_keeps_artifacts_in_s3(
    where: str, services: dict[str, Any], kube: tuple[list[dict[str, Any]], list[Container]]
) -> None:
    if where == "compose":
        mlflow = next(c for c in compose_containers(services) if c.name == "mlflow")
        args, clients = _mlflow_args(mlflow.spec["command"]), compose_containers(services)
        buckets = services["minio-buckets"]["command"][0]
    else:
        mlflow = next(c for c in kube[1] if c.owner == "Deployment/mlflow")
        args, clients = _mlflow_args(mlflow.spec["args"]), kube[1]
        job = next(c for c in kube[1] if c.owner == "Job/minio-buckets")
        buckets = job.spec["args"][0]
    allowed = args["--allowed-hosts"].split(",")
    uris = {
        c.env["RETRAIN_MLFLOW_TRACKING_URI"]
        for c in clients
        if "RETRAIN_MLFLOW_TRACKING_URI" in c.env
    }
    assert uris
    for uri in uris:  # the Host header a client sends is the URI's host:port
        host = uri.split("//", 1)[1].rstrip("/")
        assert is_allowed_host_header(allowed, host), f"MLflow answers 403 to {host}"
    assert not is_allowed_host_header(allowed, "attacker.example:5000")
    destination = args["--artifacts-destination"]
    assert destination.startswith("s3://") and f"local/{destination[5:]}" in buckets
    assert mlflow.env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql")
    assert mlflow.env["MLFLOW_S3_ENDPOINT_URL"].startswith("http://minio:")


def test_nothing_ships_a_password_or_a_placeholder_secret() -> None:
    texts = {p: p.read_text() for p in INFRA.rglob("*") if p.is_file() and p.suffix != ".md"}
    assert texts and not [p for p, t in texts.items() if re.search("change-?me", t, re.I)]
    assert not [o for o in manifests() if o["kind"] == "Secret"]  # made by make-secrets.sh


def test_make_secrets_keeps_what_exists_and_its_secrets_agree(tmp_path: Path) -> None:
    first = generated_env_file(tmp_path)
    assert generated_env_file(tmp_path) == first  # a second run keeps the passwords in use
    assert all(re.fullmatch(r"[0-9a-f]{48,}", v) for v in first.values())
    secrets = {s["metadata"]["name"]: s["stringData"] for s in generated_secrets()}
    postgres, app = secrets["postgres-credentials"], secrets["retrain-secrets"]
    assert f":{postgres['REGISTRY_DB_PASSWORD']}@" in app["RETRAIN_DATABASE_URL"]
    assert (
        f":{postgres['MLFLOW_DB_PASSWORD']}@"
        in secrets["mlflow-secrets"]["MLFLOW_BACKEND_STORE_URI"]
    )
    assert f":{postgres['PREFECT_DB_PASSWORD']}@" in secrets["prefect-db"]["connection-string"]
    assert app["AWS_SECRET_ACCESS_KEY"] == secrets["minio-credentials"]["S3_SECRET_KEY"]
    token = secrets["alertmanager-retrain-token"]["retrain-alerts-token"]
    assert token == app["RETRAIN_ALERTS_TOKEN"]  # Alertmanager signs in as the receiver expects


def test_prometheus_in_kubernetes_scrapes_every_replica_the_rules_watch(
    kube: tuple[list[dict[str, Any]], list[Container]], tmp_path: Path
) -> None:
    objects = kube[0]
    services = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Service"}
    config = yaml.safe_load((INFRA / "prometheus" / "prometheus-kubernetes.yml").read_text())
    assert sorted(job["job_name"] for job in config["scrape_configs"]) == sorted(JOBS)
    for job in config["scrape_configs"]:  # endpoints of a Service: one target per pod
        assert [sd["role"] for sd in job["kubernetes_sd_configs"]] == ["endpoints"]
        keep = next(r for r in job["relabel_configs"] if r["action"] == "keep")["regex"]
        name, port_name = keep.split(";")
        assert port_name in {p["name"] for p in services[name]["ports"]}, keep
    assert config["rule_files"] == ["retrain-rules.yml"]
    ports = _service_ports(objects)
    alertmanager = (INFRA / "prometheus" / "alertmanager.yml").read_text()
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    for host, port in [t.split(":") for t in targets] + re.findall(
        r"http://([a-z-]+):(\d+)/", alertmanager
    ):
        assert int(port) in ports[host], f"{host}:{port}"
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    shutil.copy(INFRA / "prometheus" / "retrain-rules.yml", tmp_path)
    shutil.copy(INFRA / "prometheus" / "prometheus-kubernetes.yml", tmp_path / "prometheus.yml")
    done = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "field kubernetes_sd_configs not found" in done.stdout + done.stderr:
        pytest.skip("promtool built without Kubernetes discovery (Debian's; upstream's has it)")
    assert done.returncode == 0, done.stdout + done.stderr
