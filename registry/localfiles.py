"""File I/O under the local blob store: durable folder entries, hashed writes and reads.

``registry.localstore`` decides where blobs go and when a write is committed; these helpers
only move bytes, hashing them on the way in one pass.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path
from typing import Any, BinaryIO

from registry.hashing import CHUNK_SIZE

__all__ = ["HashingWriter", "fsync_dir", "read_hashing", "write_all"]


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable: a file's own fsync does not cover
    the folder entry that names it."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class HashingWriter:
    """Writes chunks to a file descriptor while hashing them: one pass over the bytes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes | memoryview) -> None:
        self.hasher.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(self.fd, view) :]
        self.size += len(chunk)


def write_all(fd: int, view: memoryview) -> None:
    """Write all of ``view`` to ``fd`` in ``CHUNK_SIZE`` pieces (``os.write`` may write less)."""
    for start in range(0, len(view), CHUNK_SIZE):
        chunk = view[start : start + CHUNK_SIZE]
        while chunk:
            chunk = chunk[os.write(fd, chunk) :]


def read_hashing(handle: BinaryIO, target: memoryview) -> tuple[hashlib._Hash, int]:
    """Fill ``target`` from ``handle`` while a second thread hashes what has arrived.

    Reading and hashing both release the GIL, so on two cores a verified read costs about one
    hash rather than a read plus a hash. Returns the hasher and the number of bytes read.
    """
    hasher = hashlib.sha256()
    reader: Any = handle  # BinaryIO does not declare readinto; real files have it
    if len(target) <= 2 * CHUNK_SIZE:
        got = reader.readinto(target) or 0
        hasher.update(target[:got])
        return hasher, got
    ready: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()

    def consume() -> None:
        while (chunk := ready.get()) is not None:
            hasher.update(chunk)

    worker = threading.Thread(target=consume, name="blob-hash", daemon=True)
    worker.start()
    offset = 0
    try:
        while offset < len(target):
            got = reader.readinto(target[offset : offset + CHUNK_SIZE])
            if not got:
                break
            ready.put(target[offset : offset + got])
            offset += got
    finally:
        ready.put(None)
        worker.join()
    return hasher, offset
