"""Who may read and write the files the registry makes.

The SQLite catalog (with its ``-wal``/``-shm`` files and the migration lock) holds the event log
and lineage, so it is the owner's alone: created 0600 whatever the umask says. SQLite gives
its ``-wal``, ``-shm`` and ``-journal`` files the mode of the database file, so creating that
one private covers them. Blob folders need not be secret but are never world-writable.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = ["FOLDER_MODE", "PRIVATE_MODE", "open_private", "private_file"]

PRIVATE_MODE = 0o600
FOLDER_MODE = 0o775  # masked by the umask as usual, but "other" can never write
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def open_private(path: Path, flags: int = os.O_RDWR) -> int:
    """Open ``path`` (creating it 0600 if missing); a file that exists loses any access
    granted to "other" (group access, if someone granted it, is left alone)."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, PRIVATE_MODE)
    try:
        _drop_other_access(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_file(database: Path) -> None:
    """Make sure the SQLite database file exists with mode 0600 before SQLite creates it with
    the umask's mode, and take "other" access away from it and its side files if they exist
    (catalogs made before this rule was kept were 0644)."""
    os.close(open_private(database, os.O_RDONLY))
    for suffix in _SQLITE_SIDE_FILES:
        side = database.with_name(database.name + suffix)
        with contextlib.suppress(OSError):  # missing, or not ours to read: SQLite will say
            fd = os.open(side, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _drop_other_access(fd)
            finally:
                os.close(fd)


def _drop_other_access(fd: int) -> None:
    info = os.fstat(fd)
    # Only our own files, and only when needed: someone else's file is not ours to change.
    if info.st_uid == os.geteuid() and info.st_mode & stat.S_IRWXO:
        os.fchmod(fd, stat.S_IMODE(info.st_mode) & ~stat.S_IRWXO)
