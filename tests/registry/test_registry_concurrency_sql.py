"""Many processes at once on each catalog database: numbering, puts, alias races, migrations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.hashing import digest_bytes
from registry.localstore import LocalBlobStore
from registry.store import Registry

RunTogether = Callable[[list[list[str]]], list[dict[str, Any]]]

WRITERS = 8
PER_WRITER = 15


def test_eight_writers_get_gap_free_versions(
    reg: Registry, database_url: str, blob_url: str, run_together: RunTogether
) -> None:
    digest = reg.put_bytes(b"shared bundle")
    results = run_together(
        [["register", database_url, blob_url, "loan-default", digest, str(PER_WRITER)]] * WRITERS
    )
    errors = [e for r in results for e in r["errors"]]
    assert errors == []  # in particular no "database is locked" reaches a caller
    versions = sorted(v for r in results for v in r["versions"])
    assert versions == list(range(1, WRITERS * PER_WRITER + 1))
    stored = [r.version for r in reg.catalog.list_model_versions("loan-default")]
    assert stored == versions
    assert len(reg.catalog.events("loan-default", kinds=["model.registered"])) == len(versions)


def test_32_concurrent_puts_of_the_same_bytes_make_one_blob_one_row(
    reg: Registry, database_url: str, blob_url: str, run_together: RunTogether, tmp_path: Path
) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"the same bytes " * 50_000)
    results = run_together([["put", database_url, blob_url, str(payload), "4"]] * 8)
    assert [e for r in results for e in r["errors"]] == []
    digests = {d for r in results for d in r["digests"]}
    assert digests == {digest_bytes(payload.read_bytes())}
    assert sum(len(r["digests"]) for r in results) == 32
    assert [b.digest for b in reg.catalog.list_blobs()] == list(digests)
    assert [b.digest for b in reg.blobs.list()] == list(digests)
    assert isinstance(reg.blobs, LocalBlobStore)
    assert list(reg.blobs.root.glob("sha256/**/.tmp-*")) == []


def test_two_racing_promotions_one_wins_one_conflicts(
    reg: Registry, database_url: str, blob_url: str, run_together: RunTogether
) -> None:
    digest = reg.put_bytes(b"bundle")
    for _ in range(3):
        reg.catalog.register_model_version("m", digest, metrics={}, lineage={})
    reg.catalog.set_alias("m", "champion", 1, expected=None, reason="seed", actor="test")
    results = run_together(
        [
            ["promote", database_url, blob_url, "m", "1", "2"],
            ["promote", database_url, blob_url, "m", "1", "3"],
        ]
    )
    outcomes = sorted(r["outcome"] for r in results)
    assert outcomes == ["conflict", "won"]
    winner = 2 if results[0]["outcome"] == "won" else 3
    assert reg.catalog.get_alias("m", "champion") == winner
    loser = next(r for r in results if r["outcome"] == "conflict")
    assert f"points at {winner}, not 1" in loser["message"]
    sets = reg.catalog.events("m", kinds=["alias.set"])
    assert [e.versions for e in sets] == [[1], [winner]]


def test_processes_opening_a_new_database_at_once_all_succeed(
    database_url: str, blob_url: str, run_together: RunTogether
) -> None:
    results = run_together([["open_new", database_url, blob_url, f"worker-{i}"] for i in range(6)])
    assert sorted(r["version"] for r in results) == list(range(1, 7))
