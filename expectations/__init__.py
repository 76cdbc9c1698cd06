"""Great Expectations suites, one JSON file per dataset contract."""

from __future__ import annotations

from pathlib import Path

__all__ = ["SUITES_DIR", "suite_path"]

SUITES_DIR = Path(__file__).resolve().parent


def suite_path(contract: str) -> Path:
    """The JSON suite file for ``contract`` (which may not exist)."""
    return SUITES_DIR / f"{contract}.json"
