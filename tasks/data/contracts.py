"""Where a data contract's suite comes from: a file the spec names, a folder on the suite
search path, or the registry, by digest.

A spec's ``dataset.contract`` is either a path to a GX suite file (``.json``, or anything with a
folder in it; relative paths are read from the spec's own folder) or a bare name looked up as
``<name>.json`` in the folders of ``Settings.expectations_path`` and, last, in the suites
shipped with the platform. ``pipelines register`` stores the suite content-hashed (its
canonical JSON, so two files that mean the same suite have one digest) as a ``contract``
artifact beside the spec; a run reads it back by that digest, so a worker on another machine
needs no files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.errors import BlobNotFoundError, ConfigError
from registry.hashing import digest_bytes

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = [
    "CONTRACT_ARTIFACT_KIND",
    "SHIPPED_SUITES_DIR",
    "SuiteFile",
    "find_suite_file",
    "is_suite_path",
    "read_suite_file",
    "remembered_suite",
    "store_suite",
    "stored_suite",
    "suite_bytes",
    "suite_from_text",
]

CONTRACT_ARTIFACT_KIND = "contract"
# Found beside the installed packages, never by importing a package named ``expectations``:
# a user's own ``expectations/`` folder (the usual GX layout) would shadow it.
SHIPPED_SUITES_DIR = Path(__file__).resolve().parents[2] / "expectations"
_READ: dict[str, SuiteFile] = {}


@dataclass(frozen=True)
class SuiteFile:
    """A suite as read: where from, its content, and the digest it is stored under."""

    origin: str
    suite: Mapping[str, Any]

    @property
    def content(self) -> bytes:
        """The canonical JSON bytes that are stored."""
        return suite_bytes(self.suite)

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of :attr:`content`."""
        return digest_bytes(self.content)


def is_suite_path(contract: str) -> bool:
    """Whether ``contract`` names a file (a ``.json`` name or a path) rather than a suite name."""
    return contract.endswith(".json") or "/" in contract or "\\" in contract


def find_suite_file(
    contract: str, *, base_dir: Path | None = None, folders: Sequence[Path] = ()
) -> Path:
    """The suite file ``contract`` names: a path (relative to ``base_dir``, default the working
    folder) or ``<contract>.json`` in ``folders`` then the shipped suites.

    Raises ``ConfigError`` naming what was tried and what to do.
    """
    if is_suite_path(contract):
        path = Path(contract).expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        if not path.is_file():
            raise ConfigError(
                f"no expectation suite file at {path} (a relative path is read from the spec's "
                "folder); fix the path, or write a starter suite with "
                "`retrain pipelines init DATA --target COL`"
            )
        return path
    searched = [*folders, SHIPPED_SUITES_DIR]
    for folder in searched:
        candidate = Path(folder).expanduser() / f"{contract}.json"
        if candidate.is_file():
            return candidate
    where = ", ".join(str(f) for f in searched)
    raise ConfigError(
        f"no expectation suite named {contract!r} ({contract}.json) in {where}; give the suite's "
        "path (relative to the spec) or add its folder to expectations_path "
        "(RETRAIN_EXPECTATIONS_PATH or retrain.toml)"
    )


def read_suite_file(path: Path) -> SuiteFile:
    """Read and shape-check the suite at ``path`` (GX itself checks it at register); it is
    remembered by digest for this process (see ``remembered_suite``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"expectation suite {path} is not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise ConfigError(f"expectation suite {path} cannot be read ({exc.strerror})") from exc
    suite = SuiteFile(str(path), suite_from_text(text, origin=str(path), name=path.stem))
    _READ[suite.digest] = suite
    return suite


def remembered_suite(digest: str | None) -> SuiteFile | None:
    """The suite with ``digest`` read from a file by this process, if any: a spec loaded from a
    file runs (``retrain train SPEC``) and registers with the suite it was loaded with. Kept by
    content address, so whatever is found is exactly that suite."""
    return None if digest is None else _READ.get(digest)


def suite_from_text(text: str | bytes, *, origin: str, name: str | None = None) -> dict[str, Any]:
    """A suite document parsed from JSON ``text``; its ``name`` defaults to ``name``."""
    try:
        suite = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"expectation suite {origin} is not valid JSON: {exc}") from exc
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise ConfigError(
            f"expectation suite {origin} needs an 'expectations' list (a GX 1.x suite as JSON)"
        )
    if name is not None:
        suite.setdefault("name", name)
    if not isinstance(suite.get("name"), str) or not suite["name"]:
        raise ConfigError(f"expectation suite {origin} needs a 'name'")
    return suite


def suite_bytes(suite: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a suite (sorted keys, no spaces, UTF-8)."""
    return json.dumps(suite, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def store_suite(registry: Registry, suite: SuiteFile, *, pipeline: str, label: str) -> str:
    """Store ``suite`` as the ``contract`` artifact of ``pipeline`` (once per content);
    ``label`` is the contract as the spec wrote it. Returns its digest."""
    digest = registry.put_bytes(suite.content, media_type="application/json")
    latest = registry.catalog.latest_artifact(CONTRACT_ARTIFACT_KIND, pipeline)
    if latest is None or latest.digest != digest:
        meta = {
            "contract": label,
            "suite": str(suite.suite["name"]),
            "expectations": len(suite.suite["expectations"]),
            "origin": suite.origin,
        }
        registry.catalog.register_artifact(CONTRACT_ARTIFACT_KIND, pipeline, digest, meta=meta)
    return digest


def stored_suite(registry: Registry, digest: str, *, model: str) -> dict[str, Any]:
    """The suite stored under ``digest``; ``ConfigError`` says how to store it if it is not."""
    try:
        data = registry.get_bytes(digest)
    except BlobNotFoundError:
        raise ConfigError(
            f"{model}: its data contract {digest} is not in the registry; register the "
            "pipeline again with `retrain pipelines register SPEC`"
        ) from None
    return suite_from_text(data, origin=digest)
