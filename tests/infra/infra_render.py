"""The shipped deployment files as an operator's tools would read them: the compose file with
its ``${VAR}`` interpolation done, the Kubernetes manifests with the Secrets that
``infra/make-secrets.sh`` makes, and each container's resulting environment."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
KUBE = INFRA / "kubernetes"
PLATFORM_IMAGE = "ghcr.io/retrain-platform/retrain"
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}

STORES = {
    "RETRAIN_DATABASE_URL",
    "RETRAIN_BLOB_URL",
    "RETRAIN_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}
# The settings a platform process uses, by what it does.
NEEDS = {
    "flow runs": STORES
    | {
        "RETRAIN_MLFLOW_TRACKING_URI",
        "RETRAIN_SERVE_HOST",
        "RETRAIN_SERVE_PORT",
        "RETRAIN_SERVE_TOKEN",
        "RETRAIN_PROMETHEUS_URL",
        "RETRAIN_BLOB_BASE_URL",
        "PREFECT_API_URL",
        "RETRAIN_CODE_DIR",
    },
    "model-server": STORES | {"RETRAIN_SERVE_TOKEN"},
    "alert-receiver": STORES | {"RETRAIN_ALERTS_TOKEN", "PREFECT_API_URL"},
    "blob-server": STORES,
}
# Addresses a person's browser uses, not a process: they name a published or forwarded port.
BROWSER_FACING = {"RETRAIN_BLOB_BASE_URL", "PREFECT_UI_API_URL"}

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}|\$([A-Za-z_]\w*)")


class MissingVariable(LookupError):
    """A required ``${VAR:?message}`` with no value, as compose refuses it."""


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's interpolation over a parsed document: ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?err}``, ``${VAR?err}``, ``$VAR`` and ``$$`` (a literal ``$``)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(5)
        colon, op, arg = match.group(2), match.group(3), match.group(4)
        present = name in env and (env[name] != "" or not colon)
        if present:
            return env[name]
        if op == "-":
            return arg or ""
        if op == "?":
            raise MissingVariable(f"{name}: {arg}")
        return ""

    return _VAR.sub(one, value)


def generated_env_file(tmp: Path) -> dict[str, str]:
    """The variables ``infra/make-secrets.sh compose FILE`` writes, as compose reads them."""
    path = tmp / "compose.env"
    subprocess.run([str(INFRA / "make-secrets.sh"), "compose", str(path)], check=True, timeout=30)
    pairs = (line.split("=", 1) for line in path.read_text().splitlines())
    return {k: v for k, v in (p for p in pairs if len(p) == 2) if not k.startswith("#")}


def compose(env: Mapping[str, str]) -> dict[str, Any]:
    """``infra/compose.yaml`` as ``docker compose config`` would resolve it with ``env``."""
    document = yaml.safe_load((INFRA / "compose.yaml").read_text())
    return {k: v for k, v in interpolate(document, env).items() if not k.startswith("x-")}


def dockerfile_env() -> dict[str, str]:
    """The ``ENV`` of the platform image: every container running it starts with these."""
    env: dict[str, str] = {}
    for line in (INFRA / "Dockerfile").read_text().splitlines():
        if line.startswith("ENV "):
            env.update(pair.partition("=")[::2] for pair in line[4:].split() if "=" in pair)
    return env


def manifests() -> list[dict[str, Any]]:
    """Every object of ``infra/kubernetes/*.yaml``, as ``kubectl apply -f infra/kubernetes/``
    reads them."""
    objects: list[dict[str, Any]] = []
    for path in sorted(KUBE.glob("*.yaml")):
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def generated_secrets() -> list[dict[str, Any]]:
    """The Secrets ``infra/make-secrets.sh kubernetes`` creates (its ``--print`` output)."""
    done = subprocess.run(
        [str(INFRA / "make-secrets.sh"), "kubernetes", "--print"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def worker_job_templates() -> dict[str, dict[str, Any]]:
    """The base job template of each Kubernetes work pool, by pool name."""
    values = yaml.safe_load((INFRA / "helm" / "prefect-worker-values.yaml").read_text())
    config = values["worker"]["config"]
    gpu = json.loads((INFRA / "work-pools" / "retrain-k8s-gpu.json").read_text())
    return {
        config["workPool"]: json.loads(config["baseJobTemplate"]["configuration"]),
        "retrain-k8s-gpu": gpu,
    }


@dataclass
class Container:
    """One container of a workload, with the environment it starts with."""

    owner: str  # "Deployment/model-server", "compose/prefect-worker", "pool/retrain-k8s"
    name: str
    image: str
    spec: dict[str, Any]
    pod: dict[str, Any]
    pod_labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def used_urls(self) -> dict[str, tuple[str, int]]:
        """The network addresses this process uses: of a platform process, those among the
        settings its role needs (it is handed the whole shared set); of others, all."""
        urls = network_urls(self.env)
        kind = role(self)
        return {k: v for k, v in urls.items() if kind is None or k in NEEDS[kind]}


def role(container: Container) -> str | None:
    """What a platform container does (a key of ``NEEDS``), or None for another program."""
    if container.owner == "compose/prefect-worker" or container.owner.startswith("pool/"):
        return "flow runs"
    name = container.owner.split("/", 1)[1]
    return name if name in NEEDS else None


def _env_sources(
    objects: list[dict[str, Any]], secrets: list[dict[str, Any]]
) -> dict[tuple[str, str], dict[str, str]]:
    """The data of every ConfigMap and Secret, by (kind, name), as env references find them."""
    data = {
        ("ConfigMap", o["metadata"]["name"]): o.get("data", {})
        for o in objects
        if o["kind"] == "ConfigMap"
    }
    data |= {("Secret", s["metadata"]["name"]): s["stringData"] for s in secrets}
    return data


def kube_containers(
    objects: list[dict[str, Any]], secrets: list[dict[str, Any]]
) -> list[Container]:
    """Each container of the manifests' workloads, its env resolved from ConfigMaps and Secrets."""
    data = _env_sources(objects, secrets)
    out = []
    for obj in objects:
        if obj["kind"] not in WORKLOADS:
            continue
        template = obj["spec"]["template"]
        out += list(_pod_containers(f"{obj['kind']}/{obj['metadata']['name']}", template, data))
    return out


def job_template_containers(
    secrets: list[dict[str, Any]], objects: list[dict[str, Any]]
) -> list[Container]:
    """The flow-run container of each work pool's job template, env resolved as in a Job."""
    data = _env_sources(objects, secrets)
    out = []
    for pool, template in worker_job_templates().items():
        job = template["job_configuration"]["job_manifest"]
        out += list(_pod_containers(f"pool/{pool}", job["spec"]["template"], data))
    return out


def _pod_containers(
    owner: str, template: dict[str, Any], data: dict[tuple[str, str], dict[str, str]]
) -> Iterator[Container]:
    pod = template["spec"]
    labels = template.get("metadata", {}).get("labels", {})
    for spec in [*pod.get("initContainers", []), *pod["containers"]]:
        image = spec["image"]
        env = dockerfile_env() if image.startswith(PLATFORM_IMAGE) or "{{" in image else {}
        for source in spec.get("envFrom", []):
            kind, ref = (
                ("ConfigMap", source["configMapRef"])
                if "configMapRef" in source
                else ("Secret", source["secretRef"])
            )
            env |= data[(kind, ref["name"])]  # KeyError: a source nobody creates
        for item in spec.get("env", []) if isinstance(spec.get("env"), list) else []:
            env[item["name"]] = _env_value(item, data)
        yield Container(owner, spec["name"], image, spec, pod, labels, env)


def _env_value(item: dict[str, Any], data: dict[tuple[str, str], dict[str, str]]) -> str:
    if "value" in item:
        return str(item["value"])
    source = item["valueFrom"]
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        return data[("ConfigMap", ref["name"])][ref["key"]]
    ref = source["secretKeyRef"]
    return data[("Secret", ref["name"])][ref["key"]]


def compose_containers(services: dict[str, Any]) -> list[Container]:
    """Each compose service as a container, with the platform image's ENV under its own."""
    out = []
    for name, service in services.items():
        env = dockerfile_env() if service["image"].startswith(PLATFORM_IMAGE) else {}
        env |= {k: str(v) for k, v in (service.get("environment") or {}).items()}
        out.append(Container(f"compose/{name}", name, service["image"], service, service, {}, env))
    return out


def network_urls(env: Mapping[str, str]) -> dict[str, tuple[str, int]]:
    """Every setting in ``env`` that is a network address, as (host, port): the URLs, and the
    model server's ``RETRAIN_SERVE_HOST``/``RETRAIN_SERVE_PORT``."""
    defaults = {"http": 80, "https": 443, "postgresql": 5432}
    out = {}
    if "RETRAIN_SERVE_HOST" in env:
        out["RETRAIN_SERVE_HOST"] = (
            env["RETRAIN_SERVE_HOST"],
            int(env.get("RETRAIN_SERVE_PORT", 8080)),
        )
    for key, value in env.items():
        parts = urlsplit(value)
        scheme = parts.scheme.split("+")[0]
        if scheme in defaults and parts.hostname:
            out[key] = (parts.hostname, parts.port or defaults[scheme])
    return out


def render_job_manifest(template: dict[str, Any], **values: Any) -> dict[str, Any]:
    """The job manifest a worker submits: variables' defaults and ``values`` filled in."""
    from prefect.utilities.templating import apply_values

    props = template["variables"]["properties"]
    variables = {k: v["default"] for k, v in props.items() if "default" in v} | values
    variables |= {"env": {"PREFECT__FLOW_RUN_ID": "0"}, "labels": {}, "annotations": {}}
    config = apply_values(copy.deepcopy(template["job_configuration"]), variables)
    manifest: dict[str, Any] = config["job_manifest"]
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": k, "value": v} for k, v in container["env"].items()]
    container["args"] = ["prefect", "flow-run", "execute"]
    manifest["metadata"]["name"] = manifest["metadata"].pop("generateName") + "x"
    return manifest
