"""The production topology on one machine, each part its own process, started the way the
operator docs (infra/README.md) start them:

- PostgreSQL (the server on 127.0.0.1:5432): one database each for the registry, MLflow and
  Prefect, made for the session and dropped after it;
- S3: ``moto_server`` over HTTP, buckets ``retrain-blobs`` (registry), ``mlflow-artifacts``
  and ``retrain-data`` (where production data lands);
- MLflow: ``mlflow server`` on PostgreSQL, artifacts proxied to S3, allowed hosts named;
- Prefect: ``prefect server start`` on PostgreSQL (asyncpg);
- the ``retrain-local`` process pool and two ``prefect worker start`` processes, each in a
  folder of its own (never the checkout), with their own ``RETRAIN_HOME``;
- the model server (``retrain serve``) and the alert receiver (``retrain alerts serve``).

Every process gets the same ``RETRAIN_*`` settings; nothing is shared through files. The test
skips, saying why, when PostgreSQL does not answer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POOL = "retrain-local"
ALERTS_TOKEN = "topology-alerts-token"
BUCKETS = ("retrain-blobs", "mlflow-artifacts", "retrain-data")
_POSTGRES_URLS = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "postgresql+psycopg://root@127.0.0.1:5432/postgres",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Topology:
    """The running parts: their URLs, the shared environment, and their logs."""

    tmp: Path
    env: dict[str, str]
    urls: dict[str, str] = field(default_factory=dict)
    database_urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_s: dict[str, float] = field(default_factory=dict)

    def start(
        self, name: str, argv: list[str], *, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a folder of its own (``tmp/<name>``), logging to ``tmp/<name>.log``."""
        folder = self.tmp / name
        folder.mkdir(exist_ok=True)
        log = (self.tmp / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv,
            cwd=folder,
            env={**self.env, "RETRAIN_HOME": str(folder / "home"), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        self.started_s[name] = time.monotonic()
        return process

    def wait_http(self, name: str, url: str, timeout_s: float = 120.0) -> float:
        """Wait until ``url`` answers 2xx; seconds since ``name`` started."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                pytest.fail(
                    f"{name} exited with {self.processes[name].returncode}:\n{self.tail(name)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2.0).is_success:
                    return time.monotonic() - self.started_s[name]
            time.sleep(0.3)
        pytest.fail(f"{name} did not answer on {url} in {timeout_s:.0f} s:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.tmp / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def cli(self, *args: str, timeout_s: float = 180.0) -> subprocess.CompletedProcess[str]:
        """An operator command (``retrain ...`` or ``prefect ...``) run from a folder of its own
        with the shared settings."""
        folder = self.tmp / "operator"
        folder.mkdir(exist_ok=True)
        return subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            cwd=folder,
            env={**self.env, "RETRAIN_HOME": str(folder / "home")},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def s3(self) -> Any:
        """A boto3 S3 client on the topology's S3 server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.urls["s3"],
            region_name="us-east-1",
            aws_access_key_id="topology",
            aws_secret_access_key="topology",
        )

    def stop(self) -> None:
        """SIGTERM every process group, newest first; SIGKILL what is left after 10 s."""
        for process in reversed(list(self.processes.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def _postgres_admin() -> Any:
    """An AUTOCOMMIT engine on the local PostgreSQL server, or a skip saying why not."""
    from sqlalchemy import create_engine

    candidates = (
        [os.environ["RETRAIN_TEST_POSTGRES_URL"]]
        if "RETRAIN_TEST_POSTGRES_URL" in os.environ
        else list(_POSTGRES_URLS)
    )
    reasons = []
    for url in candidates:
        engine = create_engine(
            url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        try:
            with engine.connect():
                return engine
        except Exception as exc:  # any failure to connect means "no usable server"
            reasons.append(f"{url}: {str(exc).splitlines()[0]}")
            engine.dispose()
    pytest.skip("PostgreSQL at 127.0.0.1:5432 is not answering: " + "; ".join(reasons))


@contextlib.contextmanager
def databases(names: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """One fresh database per name on the local server (psycopg URLs), dropped afterwards."""
    from sqlalchemy import text

    admin = _postgres_admin()
    prefix = f"topology_{uuid.uuid4().hex[:10]}"
    made = {name: f"{prefix}_{name}" for name in names}
    with admin.connect() as conn:
        for database in made.values():
            conn.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        yield {
            name: admin.url.set(database=db).render_as_string(hide_password=False)
            for name, db in made.items()
        }
    finally:
        with admin.connect() as conn:
            for database in made.values():
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def base_env(tmp: Path) -> dict[str, str]:
    """The machine's environment without any retrain, Prefect, MLflow or AWS settings."""
    own = ("RETRAIN_", "PREFECT_", "MLFLOW_", "AWS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    return {
        **env,
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
        "AWS_ACCESS_KEY_ID": "topology",
        "AWS_SECRET_ACCESS_KEY": "topology",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }


def start_all(top: Topology) -> None:
    """Start every part, in the order an operator would, each waited for until it answers."""
    ports = {name: free_port() for name in ("s3", "mlflow", "prefect", "serve", "alerts")}
    top.urls.update({name: f"http://127.0.0.1:{port}" for name, port in ports.items()})
    top.urls["prefect"] += "/api"
    pg = top.database_urls
    top.env.update(
        PREFECT_API_URL=top.urls["prefect"],
        RETRAIN_DATABASE_URL=pg["registry"],
        RETRAIN_BLOB_URL="s3://retrain-blobs/registry",
        RETRAIN_S3_ENDPOINT_URL=top.urls["s3"],
        RETRAIN_S3_REGION="us-east-1",
        RETRAIN_MLFLOW_TRACKING_URI=top.urls["mlflow"],
        RETRAIN_SERVE_HOST="127.0.0.1",
        RETRAIN_SERVE_PORT=str(ports["serve"]),
        RETRAIN_ALERTS_HOST="127.0.0.1",
        RETRAIN_ALERTS_PORT=str(ports["alerts"]),
        RETRAIN_ALERTS_TOKEN=ALERTS_TOKEN,
    )
    top.start("s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(ports["s3"])])
    asyncpg = pg["prefect"].replace("postgresql+psycopg://", "postgresql+asyncpg://")
    server = f"server start --host 127.0.0.1 --port {ports['prefect']} --no-ui"
    top.start(
        "prefect-server",
        [str(BIN / "prefect"), *server.split()],
        env={"PREFECT_API_DATABASE_CONNECTION_URL": asyncpg},
    )
    top.wait_http("s3", top.urls["s3"])
    for bucket in BUCKETS:
        top.s3().create_bucket(Bucket=bucket)
    port = ports["mlflow"]
    mlflow = (
        f"server --host 127.0.0.1 --port {port} --workers 1 --backend-store-uri {pg['mlflow']} "
        f"--artifacts-destination s3://mlflow-artifacts/ "
        f"--allowed-hosts 127.0.0.1:{port},localhost:{port}"
    )
    top.start(
        "mlflow",
        [str(BIN / "mlflow"), *mlflow.split()],
        env={"MLFLOW_S3_ENDPOINT_URL": top.urls["s3"]},
    )
    top.wait_http("prefect-server", f"{top.urls['prefect']}/health")
    made = top.cli("prefect", "work-pool", "create", POOL, "--type", "process")
    assert made.returncode == 0, made.stdout + made.stderr
    # Workers poll every 2 s (Prefect's default is 10 s): the test waits less, nothing else.
    for n in (1, 2):
        worker = f"worker start --pool {POOL} --type process --name topology-worker-{n}"
        top.start(
            f"worker-{n}",
            [str(BIN / "prefect"), *worker.split()],
            env={"PREFECT_WORKER_QUERY_SECONDS": "2"},
        )
    top.start("model-server", [str(BIN / "retrain"), "serve", "--poll-interval", "0.5"])
    top.start("alert-receiver", [str(BIN / "retrain"), "alerts", "serve"])
    top.wait_http("mlflow", f"{top.urls['mlflow']}/health")
    top.wait_http("model-server", f"{top.urls['serve']}/healthz")
    top.wait_http("alert-receiver", f"{top.urls['alerts']}/healthz")
