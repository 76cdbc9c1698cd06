"""``retrain --help`` stays fast: loading the command line imports no heavy library (each
command imports what it needs when it runs)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "lightning", "pandas", "sqlalchemy", "evidently", "great_expectations")


def test_loading_the_cli_imports_no_heavy_library() -> None:
    probe = f"import sys, retrain.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"
