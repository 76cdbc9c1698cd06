"""Guardrails as code: no container runs as root, privileged or unlimited; egress is denied
except to what each pod is configured to reach; and the whole fleet, with a CPU and a GPU
retrain running, fits the namespace's quota."""

from __future__ import annotations

from typing import Any

from infra_render import (
    Container,
    generated_secrets,
    job_template_containers,
    kube_containers,
    manifests,
    render_job_manifest,
    worker_job_templates,
)


def _hardened(container: Container) -> list[str]:
    """What keeps ``container`` from meeting the platform's baseline; empty when it does."""
    pod_ctx, ctx = (
        container.pod.get("securityContext", {}),
        container.spec.get("securityContext", {}),
    )
    merged = pod_ctx | ctx
    resources = container.spec.get("resources", {})
    problems = [
        f"no {kind} {what}"
        for kind in ("requests", "limits")
        for what in ("cpu", "memory")
        if what not in resources.get(kind, {})
    ]
    if merged.get("runAsNonRoot") is not True or merged.get("runAsUser", 1) == 0:
        problems.append("may run as root")
    if ctx.get("allowPrivilegeEscalation") is not False:
        problems.append("may escalate privileges")
    if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
        problems.append("keeps capabilities")
    if ctx.get("readOnlyRootFilesystem") is not True:
        problems.append("writable root filesystem")
    if merged.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("no seccomp profile")
    return problems


def test_every_kubernetes_container_is_limited_and_unprivileged(
    kube: tuple[list[dict[str, Any]], list[Container]],
) -> None:
    found = {c.owner: _hardened(c) for c in kube[1]}
    assert {owner.split("/")[1] for owner in found} == {
        "postgres",
        "minio",
        "minio-buckets",
        "mlflow",
        "model-server",
        "alert-receiver",
        "blob-server",
        "prometheus",
        "alertmanager",
        "retrain-k8s",
        "retrain-k8s-gpu",
    }
    assert {owner: p for owner, p in found.items() if p} == {}


def test_every_compose_container_is_limited_and_unprivileged(services: dict[str, Any]) -> None:
    problems = {}
    for name, service in services.items():
        resources = service.get("deploy", {}).get("resources", {})
        issues = [k for k in ("limits", "reservations") if not resources.get(k)]
        if service.get("cap_drop") != ["ALL"] or "no-new-privileges:true" not in service.get(
            "security_opt", []
        ):
            issues.append("keeps capabilities")
        if service.get("read_only") is not True:
            issues.append("writable root filesystem")
        # MinIO alone keeps its image's root user: Docker makes its data volume root-owned.
        if name != "minio" and str(service.get("user", "0")).split(":")[0] in ("0", "root"):
            issues.append("runs as root")
        if issues:
            problems[name] = issues
    assert problems == {}


def _allowed(
    policies: list[dict[str, Any]], source: dict[str, str], target: dict[str, str], port: int
) -> bool:
    for policy in policies:
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if not selector.items() <= source.items():
            continue
        for rule in policy["spec"].get("egress", []):
            to_pod = any(
                peer.get("podSelector", {}).get("matchLabels", {}).items() <= target.items()
                and "namespaceSelector" not in peer
                for peer in rule["to"]
            )
            if to_pod and any(p["port"] == port for p in rule["ports"]):
                return True
    return False


def test_egress_is_denied_except_to_what_each_pod_is_configured_to_reach() -> None:
    objects, secrets = manifests(), generated_secrets()
    containers = kube_containers(objects, secrets) + job_template_containers(secrets, objects)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    deny = next(p for p in policies if p["metadata"]["name"] == "default-deny-egress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Egress"]}
    services = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Service"}
    services["prefect-server"] = {
        "selector": {
            "app.kubernetes.io/name": "prefect-server",
            "app.kubernetes.io/component": "server",
        },
        "ports": [{"port": 4200, "targetPort": 4200}],
    }
    pods = [
        (c.pod_labels, {p.get("name"): p["containerPort"] for p in c.spec.get("ports", [])})
        for c in containers
    ]
    checked = 0
    for container in containers:
        for key, (host, port) in container.used_urls().items():
            if host == "localhost":
                continue
            service = services[host.split(".")[0]]
            target_port = next(p["targetPort"] for p in service["ports"] if p["port"] == port)
            labels = service["selector"]
            if isinstance(target_port, str):  # a named port of the selected pods
                target_port = next(
                    ports[target_port]
                    for pl, ports in pods
                    if labels.items() <= pl.items() and target_port in ports
                )
            assert _allowed(policies, container.pod_labels, labels, target_port), (
                f"{container.owner} cannot reach {key} ({host}:{port})"
            )
            checked += 1
    assert checked >= 21  # every address of every process above
    # A pod that opted in to nothing reaches nothing but DNS.
    assert not _allowed(
        policies, {"app.kubernetes.io/name": "stray"}, {"app.kubernetes.io/name": "postgres"}, 5432
    )


def _quantity(value: str | int) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    text = str(value)
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def test_the_fleet_fits_its_quota_with_a_gpu_retrain_and_a_cpu_retrain_running() -> None:
    objects = manifests()
    quota = next(o for o in objects if o["kind"] == "ResourceQuota")["spec"]["hard"]
    assert {
        "pods",
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
        "requests.nvidia.com/gpu",
    } <= set(quota)
    limits = next(o for o in objects if o["kind"] == "LimitRange")["spec"]["limits"][0]
    assert {"default", "defaultRequest", "max"} <= set(limits) and "nvidia.com/gpu" in limits["max"]
    used: dict[str, float] = {}
    pools = worker_job_templates()
    jobs = [(1, render_job_manifest(pools[p])["spec"]["template"]) for p in pools]
    workloads = [
        (o["spec"].get("replicas", 1), o["spec"]["template"])
        for o in objects
        if o["kind"] in {"Deployment", "StatefulSet"}
    ]
    for replicas, template in workloads + jobs:
        for container in template["spec"]["containers"]:
            for kind in ("requests", "limits"):
                for what, value in container["resources"][kind].items():
                    key = f"{kind}.{what}"
                    used[key] = used.get(key, 0.0) + replicas * _quantity(value)
    for key, value in used.items():
        if key in quota:
            assert value <= _quantity(quota[key]), f"{key}: {value} over the quota {quota[key]}"
    assert used["requests.nvidia.com/gpu"] == 1
