"""Fixtures of the deployment-file tests: the compose services and the Kubernetes objects and
containers, rendered once per module with freshly generated secrets."""

from __future__ import annotations

from typing import Any

import pytest
from infra_render import (
    Container,
    compose,
    generated_env_file,
    generated_secrets,
    job_template_containers,
    kube_containers,
    manifests,
)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env = generated_env_file(tmp_path_factory.mktemp("env"))
    return compose(env)["services"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def kube() -> tuple[list[dict[str, Any]], list[Container]]:
    objects, secrets = manifests(), generated_secrets()
    return objects, kube_containers(objects, secrets) + job_template_containers(secrets, objects)
