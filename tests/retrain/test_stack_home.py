"""One home: `retrain up` leaves a card (stack.json) while it runs, and other commands find
the stack's Prefect API from it without PREFECT_API_URL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrain.config.specs import DEFAULT_SPECS_DIR
from retrain.local.stack_state import StackState, published, read_live_state, state_path

LGD = DEFAULT_SPECS_DIR / "loss-given-default.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _card(home: Path, api: str, pid: int) -> StackState:
    return StackState(pid=pid, home=str(home), prefect_api_url=api, prefect_ui_url=api[:-4])


def test_the_card_lives_exactly_as_long_as_the_stack(tmp_path: Path) -> None:
    home = tmp_path / "home"
    card = _card(home, "http://127.0.0.1:4200/api", os.getpid())
    with published(home, card):
        written = json.loads(state_path(home).read_text())
        assert written["prefect_api_url"] == "http://127.0.0.1:4200/api"
        assert written["pid"] == os.getpid()
        assert read_live_state(home) == card
    assert not state_path(home).exists()
    with pytest.raises(RuntimeError), published(home, card):  # a crash removes it too
        raise RuntimeError("boom")
    assert not state_path(home).exists()


def test_a_stale_or_unreadable_card_is_ignored(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    state_path(home).write_text(_card(home, "http://x/api", _dead_pid()).to_json())
    assert read_live_state(home) is None
    state_path(home).write_text("{not json")
    assert read_live_state(home) is None
    state_path(home).write_text(json.dumps({"pid": "1", "prefect_api_url": 3}))
    assert read_live_state(home) is None


def test_a_newer_stacks_card_is_not_removed_by_an_older_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with published(home, _card(home, "http://old/api", os.getpid())):
        newer = _card(home, "http://new/api", os.getppid())
        state_path(home).write_text(newer.to_json())
    assert read_live_state(home) == newer


_UP_WITH_LIGHT_SERVICES = """
import sys
import retrain.local.stack as stack
from retrain.local.stack import Service, module_argv

port = sys.argv[1]
url = f"http://127.0.0.1:{port}"
web = module_argv("http.server", port, "--bind", "127.0.0.1")
stack.stack_services = lambda cfg, **_: [Service("prefect-server", web, url=url, ready_url=url)]
from retrain.cli import main
main(["up"])
"""


def _env(home: Path) -> dict[str, str]:
    """The environment of a user with no PREFECT_API_URL and no Prefect profile of theirs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {"RETRAIN_HOME": str(home), "PREFECT_HOME": str(home.parent / "user-prefect")}
    return env


def test_retrain_up_writes_its_card_once_ready_and_removes_it_on_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = _free_port()
    up = subprocess.Popen(
        [sys.executable, "-c", _UP_WITH_LIGHT_SERVICES, str(port)],
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while read_live_state(home) is None and up.poll() is None:
            assert time.monotonic() < deadline, "no stack.json after 60 s"
            time.sleep(0.1)
        card = read_live_state(home)
        assert card is not None and card.pid == up.pid
        assert card.prefect_api_url == f"http://127.0.0.1:{port}/api"
        assert card.model_server_url is None  # not started: not advertised
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.kill()
    assert not state_path(home).exists()


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retrain", *args],
        env=_env(home) | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.usefixtures("prefect_harness")
def test_register_finds_the_running_stacks_api_by_itself(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    api = get_current_settings().api.url
    assert api
    home = tmp_path / "home"
    # This test process plays the running `retrain up`: its pid is alive.
    with published(home, _card(home, api, os.getpid())):
        done = _cli(home, "pipelines", "register", str(LGD))
    assert done.returncode == 0, done.stderr
    assert f"Deployments on {api}" in done.stdout
    assert f"(pid {os.getpid()}) serves them within seconds" in done.stdout
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("retrain-model/retrain-loss-given-default")
    assert deployment.name == "retrain-loss-given-default"


def test_without_a_live_stack_the_cli_says_so_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    state_path(home).write_text(_card(home, "http://127.0.0.1:9/api", _dead_pid()).to_json())
    registered = _cli(home, "pipelines", "register", str(LGD))
    assert registered.returncode == 0, registered.stderr  # the spec is stored all the same
    assert "registered pipeline loss-given-default" in registered.stdout
    assert (
        f"no Prefect API: PREFECT_API_URL is not set and no `retrain up` runs on {home.resolve()}"
        in registered.stdout
    )
    ran = _cli(home, "pipelines", "run", "loss-given-default")
    assert ran.returncode == 2
    assert ran.stderr.startswith("error: no Prefect API: PREFECT_API_URL is not set")
    assert len(ran.stderr.strip().splitlines()) == 1


def test_the_demo_starts_afresh_in_the_home_and_erases_only_what_the_platform_wrote(
    tmp_path: Path,
) -> None:
    from retrain.config.settings import Settings
    from retrain.local.demo_home import MARKER, prepare_demo_home

    home = tmp_path / "home"
    for folder in ("blobs", "prefect", "window", "logs"):
        (home / folder).mkdir(parents=True)
    (home / "prefect" / "prefect.db").write_text("old runs")
    (home / "alerts-token").write_text("secret\n")
    (home / "notes.txt").write_text("mine")
    assert prepare_demo_home(Settings(home=home)) == home.resolve()
    assert sorted(p.name for p in home.iterdir()) == sorted(
        [MARKER, "alerts-token", "logs", "notes.txt"]
    )


def test_the_demo_refuses_a_home_with_a_running_stack_or_someone_elses_models(
    tmp_path: Path,
) -> None:
    from registry.errors import ConfigError
    from retrain.config.settings import Settings
    from retrain.config.spec_store import register_spec
    from retrain.config.specs import load_spec
    from retrain.config.wiring import build_registry
    from retrain.local.demo_home import prepare_demo_home

    home = tmp_path / "home"
    settings = Settings(home=home)
    running = _card(home, "http://127.0.0.1:4200/api", os.getpid())
    refused = pytest.raises(ConfigError, match=r"`retrain up` \(pid \d+\) is running on .*stop it")
    with published(home, running), refused:
        prepare_demo_home(settings)
    mine = load_spec(LGD).model_copy(update={"name": "churn"})
    with build_registry(settings) as registry:
        register_spec(registry, mine)
    with pytest.raises(ConfigError, match=r"models the demo did not make \(churn\)"):
        prepare_demo_home(settings)
    assert (home / "registry.db").is_file()  # nothing erased
