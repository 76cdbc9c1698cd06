"""Hostile and mistaken input at the front door: one ``error:`` line, a non-zero exit, no
traceback, no secret echoed back. Most cases go through ``retrain.cli.main`` under Typer's
CliRunner (the same error handling a user meets); a few run ``python -m retrain`` for real."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrain.testing_cli import run_cli as run

SECRET = "hunter2-do-not-echo-9f8e7d"


def one_error_line(text: str) -> str:
    """The single ``error:`` line of ``text``; fails on a traceback or on more than one."""
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, text
    assert "error:" not in text.replace(lines[0], "", 1), text
    return lines[0]


def run_process(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``python -m retrain ARGS`` as a user would; (exit code, stdout + stderr)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAIN_")}
    full_env |= {"RETRAIN_HOME": str(cwd / "home"), "COLUMNS": "200", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "retrain", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def here(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh home, the working directory (where ``retrain.toml`` is read) a temp folder."""
    for name in [k for k in os.environ if k.startswith("RETRAIN_") and k != "RETRAIN_HOME"]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- settings: RETRAIN_* and retrain.toml ------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("RETRAIN_SERVE_PORT", "abc", "error: setting RETRAIN_SERVE_PORT: input should be"),
        ("RETRAIN_MLFLOW_STRICT", "maybe", "error: setting RETRAIN_MLFLOW_STRICT: input should"),
        ("RETRAIN_ALERTS_PORT", "", "error: setting RETRAIN_ALERTS_PORT:"),
    ],
)
def test_a_bad_environment_setting_is_one_line_naming_it(
    here: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    code, output = run("models", "ls")
    assert code == 2
    assert one_error_line(output).startswith(expected)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('serve_port = "x"\n', "error: setting serve_port in retrain.toml: input should be"),
        ("serve_prot = 8080\n", "error: setting 'serve_prot' in retrain.toml: no such setting;"),
        ("[serve]\nport = 1\n", "error: setting 'serve' in retrain.toml: no such setting;"),
        ("serve_port = \n", "error: retrain.toml is not valid TOML"),
        ("home = 'a'\nhome = 'b'\n", "error: retrain.toml is not valid TOML"),
    ],
)
def test_a_bad_retrain_toml_is_one_line(here: Path, toml: str, expected: str) -> None:
    (here / "retrain.toml").write_text(toml)
    code, output = run("models", "ls")
    assert code == 2
    assert one_error_line(output).startswith(expected)


def test_a_binary_retrain_toml_is_one_line(here: Path) -> None:
    (here / "retrain.toml").write_bytes(b"\xff\xfe\x00home = 1")
    code, output = run("models", "ls")
    assert code == 2
    assert one_error_line(output) == "error: retrain.toml is not UTF-8 text: fix it or remove it"


@pytest.mark.parametrize(
    "toml",
    [
        f'alerts_token = ["{SECRET}"]\n',
        f'alerts_hmac_secret = {{ value = "{SECRET}" }}\n',
        f'alerts_tokn = "{SECRET}"\n',  # a misspelt secret is still a secret
        f'serve_token = ["{SECRET}"]\n',
        f'serve_port = "x"\nalerts_token = ["{SECRET}"]\n',
    ],
)
def test_a_secret_setting_is_never_echoed(here: Path, toml: str) -> None:
    (here / "retrain.toml").write_text(toml)
    code, output = run("models", "ls")
    assert code == 2
    assert one_error_line(output).startswith("error: setting ")
    assert SECRET not in output


def test_a_secret_is_never_echoed_by_the_real_command(tmp_path: Path) -> None:
    (tmp_path / "retrain.toml").write_text(f'alerts_hmac_secret = ["{SECRET}"]\n')
    code, output = run_process("models", "ls", cwd=tmp_path, env={"RETRAIN_ALERTS_TOKEN": "x"})
    assert code == 2
    line = one_error_line(output)
    assert line.startswith("error: setting alerts_hmac_secret in retrain.toml: input should be")
    assert SECRET not in output


# -- rich markup in names ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["[red]x", "[/]", "x[/]y", "[bold]a[/bold]", "\\[x"])
@pytest.mark.parametrize("command", ["aliases", "history"])
def test_markup_in_a_model_name_is_printed_literally(here: Path, command: str, name: str) -> None:
    code, output = run("models", command, name)
    assert code == 2
    assert one_error_line(output) == f"error: no model named {name!r}: see `retrain models ls`"


def test_markup_in_a_dataset_name_is_printed_as_typed(here: Path) -> None:
    name = "[red]x:smile:[/]"
    code, output = run("snapshot", name, "simulator://loans?rows=5")
    assert code == 0, output
    assert output.startswith(f"{name} sha256:")


def test_markup_in_a_name_does_not_crash_the_real_command(tmp_path: Path) -> None:
    code, output = run_process("models", "history", "[/]", cwd=tmp_path)
    assert code == 2
    assert one_error_line(output) == "error: no model named '[/]': see `retrain models ls`"


# -- files to write and files to read ----------------------------------------------------------


def test_drift_report_into_a_missing_folder_is_one_line(here: Path) -> None:
    source = "simulator://loans?rows=50"
    code, output = run("drift", source, source, "--report", "missing/report.html")
    assert code == 2
    assert one_error_line(output) == (
        "error: --report missing/report.html: folder missing does not exist; create it first"
    )
    assert not (here / "missing").exists()


@pytest.mark.parametrize("target", ["missing/rows.csv", "missing/deeper/rows.parquet"])
def test_simulate_into_a_missing_folder_is_one_line_and_creates_nothing(
    here: Path, target: str
) -> None:
    code, output = run("simulate", "-o", target, "--rows", "5")
    assert code == 2
    line = one_error_line(output)
    assert line.startswith(f"error: -o {target}: folder ") and "does not exist" in line
    assert not (here / "missing").exists()


def test_simulate_into_a_folder_is_one_line(here: Path) -> None:
    (here / "out.csv").mkdir()
    code, output = run("simulate", "-o", "out.csv", "--rows", "5")
    assert code == 2
    assert one_error_line(output) == "error: -o out.csv: is a folder; give a file name"


@pytest.mark.parametrize("command", ["validate", "register"])
@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\xff\x00\x01", b"name: a\x00\x01\x02"])
def test_a_binary_spec_file_is_one_line(here: Path, command: str, content: bytes) -> None:
    spec = here / "spec.yaml"
    spec.write_bytes(content)
    code, output = run(
        "pipelines", command, str(spec), *(["--no-deploy"] * (command == "register"))
    )
    assert code == 2
    assert one_error_line(output).startswith("error: spec spec.yaml: ")


# -- ports, servers and URLs -------------------------------------------------------------------


@pytest.mark.parametrize("port", ["99999", "65536", "0", "-1"])
def test_serve_on_a_port_out_of_range_is_one_line(here: Path, port: str) -> None:
    code, output = run("serve", "--port", port)
    assert code == 2
    assert one_error_line(output) == f"error: --port {port} is not a TCP port: use one in 1-65535"


def test_serve_port_setting_out_of_range_is_one_line(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRAIN_SERVE_PORT", "70000")
    code, output = run("serve")
    assert code == 2
    assert one_error_line(output) == (
        "error: RETRAIN_SERVE_PORT=70000 is not a TCP port: use one in 1-65535"
    )


@pytest.mark.parametrize("command", [("serve", "--port", "{port}"), ("alerts", "serve")])
def test_serving_on_a_port_in_use_is_one_line(
    here: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("RETRAIN_ALERTS_PORT", str(port))
        code, output = run(*(part.format(port=port) for part in command))
    assert code == 2
    line = one_error_line(output)
    assert line.startswith(f"error: port {port} on 127.0.0.1 is already in use: stop what holds")


def test_serve_on_port_99999_exits_instead_of_hanging(tmp_path: Path) -> None:
    code, output = run_process("serve", "--port", "99999", cwd=tmp_path)
    assert code == 2
    assert one_error_line(output) == "error: --port 99999 is not a TCP port: use one in 1-65535"


def test_aliases_of_an_unknown_model_is_one_line(here: Path) -> None:
    code, output = run("models", "aliases", "nope")
    assert code == 2
    assert one_error_line(output) == "error: no model named 'nope': see `retrain models ls`"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:{port}", "error: no model server answers at http://127.0.0.1:{port} ("),
        ("http://127.0.0.1:99999", "error: server URL 'http://127.0.0.1:99999': Port out of"),
        ("127.0.0.1:8080", "error: server URL '127.0.0.1:8080': use http://127.0.0.1:PORT"),
    ],
)
def test_traffic_to_a_dead_or_bad_url_is_one_line(here: Path, url: str, expected: str) -> None:
    port = free_port()
    code, output = run("traffic", "loan-default", "--url", url.format(port=port), "--duration", "1")
    assert code == 2
    assert one_error_line(output).startswith(expected.format(port=port))


def test_traffic_to_a_dead_url_fails_for_the_real_command(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    code, output = run_process("traffic", "loan-default", "--url", url, cwd=tmp_path)
    assert code == 2
    line = one_error_line(output)
    assert line.startswith(f"error: no model server answers at {url} (")
    assert line.endswith("start `retrain serve` or pass --url")


# -- the alert token file ----------------------------------------------------------------------


def test_the_alert_token_file_is_created_owner_only(here: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, output = run("alerts", "send", "loan-default", "--url", url)
    assert code == 2  # nothing listens there; the token file is made first
    assert one_error_line(output).startswith(f"error: alert receiver at {url} unreachable")
    token_file = here / "home" / "alerts-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() not in output


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
@pytest.mark.parametrize(
    "command", [("alerts", "send", "m", "--url", "{url}"), ("alerts", "serve")]
)
def test_a_token_file_open_to_others_is_refused(
    here: Path, monkeypatch: pytest.MonkeyPatch, mode: int, command: tuple[str, ...]
) -> None:
    token_file = here / "home" / "alerts-token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text(SECRET + "\n")
    token_file.chmod(mode)
    monkeypatch.setenv("RETRAIN_ALERTS_PORT", str(free_port()))
    code, output = run(*(part.format(url=f"http://127.0.0.1:{free_port()}") for part in command))
    assert code == 2
    assert one_error_line(output) == (
        f"error: alert token file {token_file} is open to group or others (mode {mode:o}): "
        f"run `chmod 600 {token_file}` and try again"
    )
    assert SECRET not in output


@pytest.mark.parametrize("epochs", ["0", "-1"])
def test_train_with_too_few_epochs_is_one_line(here: Path, epochs: str) -> None:
    spec = Path(__file__).resolve().parents[2] / "retrain" / "pipelines" / "loan-default.yaml"
    code, out = run("train", str(spec), "simulator://loans?rows=300", "--epochs", epochs)
    assert code == 2
    assert one_error_line(out) == f"error: --epochs must be at least 1; got {epochs}"
