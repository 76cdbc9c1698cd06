"""The production topology as separate processes (``topology_stack``), for the module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from topology_stack import Topology, base_env, databases, start_all


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """Every part of the production topology running, each in its own process."""
    tmp = tmp_path_factory.mktemp("topology")
    with databases(("registry", "mlflow", "prefect")) as urls:
        top = Topology(tmp, base_env(tmp), database_urls=urls)
        try:
            start_all(top)
            yield top
        finally:
            top.stop()
