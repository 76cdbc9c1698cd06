"""Content-addressed blob store plus SQL catalog: the record of everything the platform makes.

``registry.store.Registry`` is the entry point; nothing here connects at import time.
"""

from __future__ import annotations

__all__: list[str] = []
