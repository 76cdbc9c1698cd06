"""The Helm values use only keys the charts read, with the types the charts' schemas demand.

The charts (prefect-server, prefect-worker of PrefectHQ/prefect-helm, the versions named in
infra/README.md) refuse at `helm install` any key they do not know under `server`,
`backgroundServices`, `worker`, `worker.config`, ...: a misspelt key fails the install, and a
key of another mode (e.g. a self-hosted *Cloud* setting) is silently ignored. Below is every
key path our files may set, each checked against the chart; free-form maps (labels, env,
resources) end the path."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from infra_render import INFRA

# Where the chart takes any keys below: the path stops there.
FREE_FORM = {"podLabels", "env", "requests", "limits", "capabilities", "seccompProfile"}

CHART_KEYS: dict[str, set[str]] = {
    "prefect-server": {
        "global.prefect.image.repository",
        "global.prefect.image.prefectTag",
        "server.replicaCount",
        "server.uiConfig.prefectUiApiUrl",
        "server.env",
        "server.podSecurityContext.runAsNonRoot",
        "server.podSecurityContext.runAsUser",
        "server.podSecurityContext.fsGroup",
        "server.podSecurityContext.seccompProfile",
        "server.containerSecurityContext.runAsNonRoot",
        "server.containerSecurityContext.runAsUser",
        "server.containerSecurityContext.readOnlyRootFilesystem",
        "server.containerSecurityContext.allowPrivilegeEscalation",
        "server.containerSecurityContext.capabilities",
        "server.resources.requests",
        "server.resources.limits",
        "backgroundServices.runAsSeparateDeployment",
        "backgroundServices.messaging.broker",
        "backgroundServices.messaging.cache",
        "backgroundServices.messaging.redis.host",
        "backgroundServices.messaging.redis.port",
        "backgroundServices.containerSecurityContext.runAsNonRoot",
        "backgroundServices.containerSecurityContext.runAsUser",
        "backgroundServices.containerSecurityContext.readOnlyRootFilesystem",
        "backgroundServices.containerSecurityContext.allowPrivilegeEscalation",
        "backgroundServices.containerSecurityContext.capabilities",
        "backgroundServices.resources.requests",
        "backgroundServices.resources.limits",
        "postgresql.enabled",
        "secret.create",
        "secret.name",
        "redis.enabled",
        "redis.architecture",
        "redis.auth.enabled",
        "ingress.enabled",
    },
    "prefect-worker": {
        "fullnameOverride",
        "worker.apiConfig",
        "worker.serverApiConfig.apiUrl",
        "worker.config.workPool",
        "worker.config.type",
        "worker.config.limit",
        "worker.config.baseJobTemplate.configuration",
        "worker.config.baseJobTemplate.existingConfigMapName",
        "worker.image.repository",
        "worker.image.prefectTag",
        "worker.podLabels",
        "worker.podSecurityContext.runAsNonRoot",
        "worker.podSecurityContext.runAsUser",
        "worker.podSecurityContext.fsGroup",
        "worker.podSecurityContext.seccompProfile",
        "worker.containerSecurityContext.runAsNonRoot",
        "worker.containerSecurityContext.runAsUser",
        "worker.containerSecurityContext.readOnlyRootFilesystem",
        "worker.containerSecurityContext.allowPrivilegeEscalation",
        "worker.containerSecurityContext.capabilities",
        "worker.resources.requests",
        "worker.resources.limits",
    },
}
FILES = {
    "prefect-server-values.yaml": "prefect-server",
    "prefect-worker-values.yaml": "prefect-worker",
    "prefect-worker-gpu-values.yaml": "prefect-worker",
}


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((INFRA / "helm" / name).read_text())  # type: ignore[no-any-return]


def _paths(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key not in FREE_FORM:
            yield from _paths(value, f"{path}.")
        else:
            yield path


def _helm_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Values files as Helm coalesces them: maps merge, null deletes the key, the rest replaces."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _helm_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_key_is_one_the_chart_reads(name: str) -> None:
    unknown = sorted(set(_paths(_load(name))) - CHART_KEYS[FILES[name]])
    assert not unknown, f"{name}: keys the chart does not read: {unknown}"


@pytest.mark.parametrize("name", sorted(FILES))
def test_values_have_the_types_the_schema_demands(name: str) -> None:
    values = _load(name)
    for part in ("server", "backgroundServices", "worker"):
        section = values.get(part, {})
        for kind in ("requests", "limits"):  # the schemas type cpu and memory as strings
            for key, quantity in section.get("resources", {}).get(kind, {}).items():
                assert isinstance(quantity, str), f"{name}: {part}.resources.{kind}.{key}"
        seccomp = section.get("podSecurityContext", {}).get("seccompProfile")
        if seccomp is not None:
            assert seccomp == {"type": "RuntimeDefault"}, name
    config = values.get("worker", {}).get("config", {})
    if "limit" in config:
        assert isinstance(config["limit"], int) and config["limit"] > 0, name


def test_the_worker_talks_to_our_server_as_a_self_hosted_open_source_server() -> None:
    worker = _helm_merge(
        _load("prefect-worker-values.yaml"), _load("prefect-worker-gpu-values.yaml")
    )["worker"]
    # `server` reads serverApiConfig.apiUrl into PREFECT_API_URL; any other mode reads other keys.
    assert worker["apiConfig"] == "server"
    url = worker["serverApiConfig"]["apiUrl"]
    server = _load("prefect-server-values.yaml")
    # The server chart's Service is `prefect-server` on 4200 unless the values rename it.
    assert "fullnameOverride" not in server and "service" not in server
    assert re.fullmatch(r"http://prefect-server:4200/api", url)


def test_the_gpu_overlay_merged_as_helm_does_syncs_the_gpu_template_only() -> None:
    cpu = _load("prefect-worker-values.yaml")
    merged = _helm_merge(cpu, _load("prefect-worker-gpu-values.yaml"))
    template = merged["worker"]["config"]["baseJobTemplate"]
    # The chart makes its own template ConfigMap only when `configuration` is set.
    assert "configuration" not in template
    assert template["existingConfigMapName"] == "retrain-k8s-gpu-template"
    assert merged["worker"]["config"]["workPool"] == "retrain-k8s-gpu"
    assert merged["fullnameOverride"] != cpu.get("fullnameOverride", "prefect-worker")
    # Everything else (API, image, security, labels) is the CPU worker's.
    for key in ("apiConfig", "serverApiConfig", "image", "podLabels", "containerSecurityContext"):
        assert merged["worker"][key] == cpu["worker"][key], key
