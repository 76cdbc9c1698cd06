"""``retrain registry`` and ``retrain models`` as a user types them."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from registry.errors import ConfigError
from registry.localstore import LocalBlobStore
from registry.store import Registry
from retrain.config.settings import Settings
from retrain.config.wiring import build_registry


def _retrain(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RETRAIN_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "retrain", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_put_get_ls_verify_gc_round_trip(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "report.html"
    source.write_text("<h1>drift</h1>")
    put = _retrain(home, "registry", "put", str(source), "--media-type", "text/html")
    assert put.returncode == 0, put.stderr
    digest = put.stdout.strip()
    assert digest.startswith("sha256:") and len(digest) == 71

    out = tmp_path / "back.html"
    got = _retrain(home, "registry", "get", digest, "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert out.read_text() == "<h1>drift</h1>"

    listed = _retrain(home, "registry", "ls")
    assert digest[:19] in listed.stdout and "text/html" in listed.stdout  # sha256: + 12 hex
    wide = _retrain(home, "registry", "ls", "--wide")
    assert digest not in listed.stdout and digest in wide.stdout

    verified = _retrain(home, "registry", "verify")
    assert verified.returncode == 0 and "0 problem(s)" in verified.stdout

    gc = _retrain(home, "registry", "gc", "--grace", "0s")
    assert gc.returncode == 0 and "dry run" in gc.stdout


def test_verify_exits_non_zero_and_names_the_corrupt_blob(home: Path) -> None:
    with build_registry(Settings(home=home)) as reg:
        digest = reg.put_bytes(b"weights")
        assert isinstance(reg.blobs, LocalBlobStore)
        reg.blobs.path_of(digest).write_bytes(b"weightz")
    result = _retrain(home, "registry", "verify")
    assert result.returncode == 1
    assert digest in result.stdout and "corrupt" in result.stdout
    assert "proven: two reads agreed" in result.stdout and "--quarantine" in result.stdout
    moved = _retrain(home, "registry", "verify", "--quarantine")
    assert moved.returncode == 1 and "moved 1 proven-corrupt blob(s) aside" in moved.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("registry", "get", "sha256:nothex", "-o", "x"), "64 hex digits"),
        (("registry", "get", "sha256:" + "0" * 64, "-o", "x"), "no blob"),
        (("registry", "put", "/no/such/file"), "not a readable file"),
        (("registry", "gc", "--grace", "soon"), "not a duration"),
        (("registry", "gc", "--grace", "99999999999999w"), "too long a duration"),
        (("registry", "get", "sha256:" + "0" * 64, "-o", "."), "is a folder"),
        (("models", "history", "nobody"), "no model named"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    home: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = _retrain(home, *args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()


def test_unreachable_database_is_one_line(home: Path) -> None:
    env_url = "postgresql+psycopg://nobody:Pa55-w0rd@127.0.0.1:9/none"
    result = subprocess.run(
        [sys.executable, "-m", "retrain", "registry", "ls"],
        capture_output=True,
        text=True,
        env={**os.environ, "RETRAIN_HOME": str(home), "RETRAIN_DATABASE_URL": env_url},
        timeout=120,
    )
    assert result.returncode == 2
    assert "cannot use the registry database" in result.stderr
    assert "RETRAIN_DATABASE_URL" in result.stderr and "Traceback" not in result.stderr
    assert "Pa55-w0rd" not in result.stderr and "nobody:***@127.0.0.1:9" in result.stderr


def test_models_ls_history_and_aliases(home: Path) -> None:
    reg: Registry
    with build_registry(Settings(home=home)) as reg:
        digest = reg.put_bytes(b"bundle")
        reg.catalog.register_model_version("loan-default", digest, metrics={}, lineage={})
        reg.catalog.register_model_version("loan-default", digest, metrics={}, lineage={})
        reg.catalog.set_alias(
            "loan-default", "champion", 2, expected=None, reason="passed gate", actor="canary"
        )
    listed = _retrain(home, "models", "ls")
    assert listed.returncode == 0
    # model, versions, latest, latest status, champion, canary
    assert _row(listed.stdout, "loan-default") == ["loan-default", "2", "2", "candidate", "2", "-"]
    history = _retrain(home, "models", "history", "loan-default")
    assert history.returncode == 0
    assert history.stdout.count("model.registered") == 2
    assert "alias.set" in history.stdout and "passed gate" in history.stdout
    aliases = _retrain(home, "models", "aliases", "loan-default")
    assert aliases.returncode == 0
    assert _row(aliases.stdout, "champion") == ["champion", "2", "candidate"]


def _row(table: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first``."""
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{table}")


def test_gc_deletes_old_orphans_only_when_told(home: Path) -> None:
    with build_registry(Settings(home=home)) as reg:
        kept = reg.put_bytes(b"catalogued")
        assert isinstance(reg.blobs, LocalBlobStore)
        orphan = reg.blobs.put_bytes(b"no row").digest
        for digest in (kept, orphan):
            os.utime(reg.blobs.path_of(digest), (1_000_000_000, 1_000_000_000))  # in 2001
        orphan_path = reg.blobs.path_of(orphan)
    dry = _retrain(home, "registry", "gc", "--grace", "1h")
    assert dry.returncode == 0 and orphan in dry.stdout and "would delete 1 blob" in dry.stdout
    assert orphan_path.exists()
    done = _retrain(home, "registry", "gc", "--grace", "1h", "--delete")
    assert done.returncode == 0 and "deleted 1 blob" in done.stdout
    assert not orphan_path.exists()
    with build_registry(Settings(home=home)) as reg:
        assert reg.get_bytes(kept) == b"catalogued"


def test_get_replaces_an_existing_file_and_a_huge_grace_is_refused(
    home: Path, tmp_path: Path
) -> None:
    with build_registry(Settings(home=home)) as reg:
        digest = reg.put_bytes(b"new bytes")
        with pytest.raises(ConfigError, match="100 years"):
            reg.gc(timedelta(days=999_999_999))
    target = tmp_path / "model.bin"
    target.write_bytes(b"old bytes, longer than the new ones")
    got = _retrain(home, "registry", "get", digest, "-o", str(target))
    assert got.returncode == 0, got.stderr
    assert target.read_bytes() == b"new bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "model.bin"]


def _get_stuck_mid_blob(home: Path, out: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A ``registry get`` of a 24 MiB blob into ``out``, stopped after 12 MiB: the blob's file
    is swapped for a FIFO that this test feeds. The process and the FIFO's writing end."""
    data = os.urandom(24 * 1024 * 1024)
    with build_registry(Settings(home=home)) as reg:
        digest = reg.put_bytes(data)
        assert isinstance(reg.blobs, LocalBlobStore)
        blob = reg.blobs.path_of(digest)
    blob.unlink()
    os.mkfifo(blob)
    proc = subprocess.Popen(
        [sys.executable, "-m", "retrain", "registry", "get", digest, "-o", str(out / "m.bin")],
        env={**os.environ, "RETRAIN_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while True:  # opening a FIFO's writing end fails (ENXIO) until its reader has opened it
        try:
            fd = os.open(blob, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO or proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(proc.communicate()[1][-2000:]) from exc
            time.sleep(0.02)
    os.set_blocking(fd, True)
    os.write(fd, data[: 12 * 1024 * 1024])  # returns once the reader has taken nearly all
    deadline = time.monotonic() + 30
    while not _writes_into(proc.pid, out) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _writes_into(proc.pid, out), "the get should be writing into the folder by now"
    return proc, fd


def _writes_into(pid: int, folder: Path) -> bool:
    """Whether process ``pid`` holds a file open in ``folder`` (named or not)."""
    fds = Path(f"/proc/{pid}/fd")
    links = []
    for entry in fds.iterdir():
        try:
            links.append(os.readlink(entry))
        except FileNotFoundError:
            continue
    return any(link.startswith(f"{folder}/") for link in links)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_killed_get_leaves_nothing_at_or_beside_the_destination(
    home: Path, tmp_path: Path, how: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc, fd = _get_stuck_mid_blob(home, out)
    try:
        proc.send_signal(getattr(signal, how))
        proc.communicate(timeout=60)
    finally:
        os.close(fd)
    assert proc.returncode == -getattr(signal, how)
    assert list(out.iterdir()) == []  # the unverified bytes were in an unnamed file
