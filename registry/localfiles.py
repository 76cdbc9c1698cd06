"""File I/O under the local blob store: durable folder entries, hashed writes and reads, and
the staged files that ``get_to_file`` writes a blob's bytes into before they are verified.

``registry.localstore`` decides where blobs go and when a write is committed; these helpers
only move bytes, hashing them on the way in one pass.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import secrets
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from registry.errors import ConfigError
from registry.hashing import CHUNK_SIZE

__all__ = ["HashingWriter", "StagedFile", "fsync_dir", "read_hashing", "staged_file", "write_all"]

_OUTPUT_PREFIX = ".retrain-get-"


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


class StagedFile:
    """Bytes on their way to ``path``, invisible until ``commit``: an unnamed file (Linux
    ``O_TMPFILE``) in ``path``'s folder, so a process killed mid-write, by any signal, leaves
    nothing at or beside ``path``: the kernel frees the file. Where the filesystem cannot make
    one, a temp file unlinked as soon as it is opened stands in (as invisible, also freed by
    the kernel); it is copied to a hidden name beside ``path`` at commit and renamed over it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temp: Path | None = None  # a named copy between link and rename, if any
        flags = getattr(os, "O_TMPFILE", 0)
        try:
            if not flags:
                raise OSError(errno.EOPNOTSUPP, "no O_TMPFILE on this system")
            self.fd = os.open(path.parent, flags | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            fd, name = tempfile.mkstemp(prefix=_OUTPUT_PREFIX, dir=path.parent)
            os.unlink(name)
            self.fd = fd

    def commit(self) -> None:
        """Put the (verified) bytes at ``path``, replacing what was there, in one step."""
        try:
            if self.temp is None:
                self.temp = self._link_unnamed()
                if self.temp is None:
                    return
            os.replace(self.temp, self.path)
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path}: {exc.strerror}") from exc
        self.temp = None

    def _link_unnamed(self) -> Path | None:
        # linkat() gives the unnamed file a name; it cannot replace an existing file, so then
        # it gets a hidden name first and is renamed over ``path`` (verified bytes only).
        folder = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        source = f"/proc/self/fd/{self.fd}"
        names = [self.path.name, *(_OUTPUT_PREFIX + secrets.token_hex(8) for _ in range(3))]
        try:
            for name in names:
                with contextlib.suppress(FileExistsError):
                    os.link(source, name, dst_dir_fd=folder, follow_symlinks=True)
                    return None if name == self.path.name else self.path.with_name(name)
        except OSError:  # not an O_TMPFILE, or no /proc to name it by: copy it out instead
            return self._copy_out()
        finally:
            os.close(folder)
        raise FileExistsError(errno.EEXIST, "no free temporary name", str(self.path.parent))

    def _copy_out(self) -> Path:
        fd, name = tempfile.mkstemp(prefix=_OUTPUT_PREFIX, dir=self.path.parent)
        self.temp = Path(name)  # removed by close() should the copy fail
        try:
            offset = 0
            while chunk := os.pread(self.fd, CHUNK_SIZE, offset):
                write_all(fd, memoryview(chunk))
                offset += len(chunk)
        finally:
            os.close(fd)
        return self.temp

    def close(self) -> None:
        """Close the file (unnamed, it is gone) and remove any named copy not yet renamed."""
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if self.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                self.temp.unlink()


@contextlib.contextmanager
def staged_file(path: Path) -> Iterator[StagedFile]:
    """A ``StagedFile`` for ``path``; closed (and any uncommitted bytes dropped) on exit. A
    folder named by ``path`` or one that cannot be written is a ``ConfigError``."""
    if path.is_dir():
        raise ConfigError(f"{path} is a folder: name the file to write, e.g. {path / 'blob.bin'}")
    try:
        staged = StagedFile(path)
    except OSError as exc:
        raise ConfigError(f"cannot write into {path.parent}: {exc.strerror}") from exc
    try:
        yield staged
    finally:
        staged.close()
