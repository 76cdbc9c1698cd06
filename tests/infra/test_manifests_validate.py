"""Manifests that a cluster accepts: every object is valid for a pinned Kubernetes version
(schemas shipped offline by kubernetes-validate), the work pools' job templates pass the
Prefect API's and the Kubernetes worker's checks, the Helm values avoid what the charts refuse,
and every ConfigMap a pod mounts exists or is made by a documented command."""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Callable
from typing import Any

import jsonpatch
import pytest
import yaml
from infra_render import (
    INFRA,
    ROOT,
    generated_secrets,
    manifests,
    render_job_manifest,
    worker_job_templates,
)

KUBERNETES = "1.32.0"  # the oldest minor still supported upstream when this was pinned
# The operator's commands, each on one line (shell line continuations joined).
README = re.sub(r"\s*\\\n\s*", " ", (INFRA / "README.md").read_text())
# prefect-kubernetes 0.8.0 (``_get_base_job_manifest``): a job manifest must hold these
# paths, with these values; ``parallelism`` and ``completions`` sit in the *pod* spec, where the
# API server drops them, so a rendered Job is validated without them.
WORKER_BASE_MANIFEST: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"annotations": {}, "labels": {}},
    "spec": {
        "template": {
            "spec": {
                "parallelism": 1,
                "completions": 1,
                "restartPolicy": "Never",
                "containers": [{"name": "prefect-job"}],
            }
        }
    },
}


def _validate(obj: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed: pip install -e '.[dev]'",
    )
    try:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{obj['kind']}/{obj['metadata'].get('name')}: {exc.message}")


def test_every_manifest_and_secret_is_valid_for_the_pinned_kubernetes() -> None:
    objects = manifests() + generated_secrets()
    kinds = {o["kind"] for o in objects}
    assert {"ResourceQuota", "LimitRange", "NetworkPolicy", "StatefulSet", "Job"} <= kinds
    for obj in objects:
        _validate(obj)


def _worker_problems(manifest: dict[str, Any]) -> list[str]:
    """The Kubernetes worker's check of a job manifest: missing paths, incompatible values."""
    patch = jsonpatch.make_patch(manifest, WORKER_BASE_MANIFEST)
    return sorted(f"{op['op']} {op['path']}" for op in patch if op["op"] in ("add", "replace"))


@pytest.mark.parametrize("pool", ["retrain-k8s", "retrain-k8s-gpu"])
def test_job_templates_pass_the_prefect_api_the_worker_and_kubernetes(pool: str) -> None:
    from prefect.server.schemas.actions import validate_base_job_template

    template = worker_job_templates()[pool]
    validate_base_job_template(template)  # as `prefect work-pool create/update` would
    manifest = render_job_manifest(template, name="retrain-loan-default")
    assert _worker_problems(manifest) == []
    pod = manifest["spec"]["template"]["spec"]
    del pod["parallelism"], pod["completions"]
    _validate(manifest)
    worker = _real_worker_check()
    if worker is not None:  # the worker's own check too, where prefect-kubernetes is installed
        worker(template)


def _real_worker_check() -> Callable[[dict[str, Any]], Any] | None:
    """prefect-kubernetes' own job configuration check (it is in the image, not the dev env)."""
    try:
        from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration
    except ImportError:
        return None

    def check(template: dict[str, Any]) -> Any:
        return asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(template, {}))

    return check


def test_the_worker_check_refuses_what_prefect_kubernetes_refuses() -> None:
    manifest = render_job_manifest(worker_job_templates()["retrain-k8s"])
    broken = copy.deepcopy(manifest)
    del broken["spec"]["template"]["spec"]["completions"]
    broken["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert _worker_problems(broken) == [
        "add /spec/template/spec/completions",
        "replace /spec/template/spec/restartPolicy",
    ]
    worker = _real_worker_check()
    if worker is not None:
        template = copy.deepcopy(worker_job_templates()["retrain-k8s"])
        pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
        del pod["completions"]
        with pytest.raises(ValueError, match="completions"):
            worker(template)


def test_the_gpu_pool_differs_from_the_cpu_pool_only_in_gpu_scheduling() -> None:
    pools = worker_job_templates()
    cpu, gpu = (render_job_manifest(pools[p], name="n") for p in ("retrain-k8s", "retrain-k8s-gpu"))
    pod, container = (
        gpu["spec"]["template"]["spec"],
        gpu["spec"]["template"]["spec"]["containers"][0],
    )
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert re.search(r":\d+\.\d+\.\d+-cu\d+$", container["image"]), "a CUDA build of the image"
    for manifest in (cpu, gpu):  # what is left must be the same Job
        spec = manifest["spec"]["template"]["spec"]
        for key in ("nodeSelector", "tolerations"):
            spec.pop(key, None)
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "dshm"]
        box = spec["containers"][0]
        box.pop("resources"), box.pop("image")
        box["volumeMounts"] = [m for m in box["volumeMounts"] if m["name"] != "dshm"]
    assert cpu == gpu


def _values(name: str) -> dict[str, Any]:
    return yaml.safe_load((INFRA / "helm" / name).read_text())  # type: ignore[no-any-return]


def _unprivileged(context: dict[str, Any]) -> bool:
    return (
        context.get("runAsNonRoot") is True
        and context.get("readOnlyRootFilesystem") is True
        and context.get("allowPrivilegeEscalation") is False
        and context.get("capabilities") == {"drop": ["ALL"]}
    )


def test_the_server_values_pass_the_charts_checks_and_name_what_exists() -> None:
    values = _values("prefect-server-values.yaml")
    for part in ("server", "backgroundServices"):
        assert _unprivileged(values[part]["containerSecurityContext"]), part
        assert {"requests", "limits"} <= set(values[part]["resources"]), part
    tag = values["global"]["prefect"]["image"]["prefectTag"]
    # The chart refuses separate background services unless the tag is X.Y.Z >= 3.1.13.
    assert values["backgroundServices"]["runAsSeparateDeployment"] is True
    version = tuple(int(p) for p in re.match(r"(\d+)\.(\d+)\.(\d+)", tag).groups())  # type: ignore[union-attr]
    assert version >= (3, 1, 13)
    pinned = yaml.safe_load((ROOT / "prefect.yaml").read_text())["prefect-version"]
    assert tag.startswith(f"{pinned}-"), (
        "the server runs the Prefect the deployments were made with"
    )
    # Redis: the chart names its own subchart's Service when the host is left empty.
    assert (
        values["redis"]["enabled"]
        and values["backgroundServices"]["messaging"]["redis"]["host"] == ""
    )
    # The database Secret: the chart makes none; make-secrets.sh makes it, with the key it reads.
    assert values["postgresql"]["enabled"] is False and values["secret"]["create"] is False
    secrets = {s["metadata"]["name"]: s["stringData"] for s in generated_secrets()}
    assert secrets[values["secret"]["name"]]["connection-string"].startswith(
        "postgresql+asyncpg://prefect:"
    )


def test_the_worker_values_poll_the_right_pools_with_an_image_that_can() -> None:
    cpu = _values("prefect-worker-values.yaml")["worker"]
    gpu = _values("prefect-worker-gpu-values.yaml")["worker"]
    assert _unprivileged(cpu["containerSecurityContext"])
    assert cpu["podLabels"] == {
        "retrain.io/egress-prefect": "true",
        "retrain.io/egress-https": "true",
    }
    assert cpu["apiConfig"] == "server"
    assert cpu["serverApiConfig"]["apiUrl"] == "http://prefect-server:4200/api"
    assert (cpu["config"]["workPool"], gpu["config"]["workPool"]) == (
        "retrain-k8s",
        "retrain-k8s-gpu",
    )
    assert cpu["image"]["prefectTag"].endswith("-kubernetes")  # the chart's entrypoint, the worker
    assert gpu["config"]["baseJobTemplate"]["configuration"] is None
    # The GPU pool's template comes from a ConfigMap the operator makes from the JSON file.
    name = gpu["config"]["baseJobTemplate"]["existingConfigMapName"]
    source = "baseJobTemplate.json=infra/work-pools/retrain-k8s-gpu.json"
    assert f"create configmap {name} --from-file={source}" in README


def test_every_configmap_a_pod_reads_is_defined_or_made_by_a_documented_command() -> None:
    objects = manifests()
    defined = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    made = dict(re.findall(r"create configmap ([a-z0-9-]+) ((?:--from-file=\S+ ?)+)", README))
    for name, sources in made.items():
        for source in re.findall(r"--from-file=(\S+)", sources):
            assert (ROOT / source.split("=")[-1]).is_file(), f"{name}: no file {source}"
    for obj in objects:
        if obj["kind"] not in {"Deployment", "StatefulSet", "Job"}:
            continue
        for volume in obj["spec"]["template"]["spec"].get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in defined | set(made), volume
