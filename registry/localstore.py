"""Blobs as files in a local folder.

A write goes to a temp file in the final folder, is fsynced, renamed into place and the folder
fsynced, so a crash leaves either the whole blob or nothing under its key (plus, at worst, a
temp file that ``gc`` removes after the grace period). Every read re-hashes the bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from registry.errors import BlobNotFoundError, ConfigError, CorruptBlobError, StoreUnavailableError
from registry.filemodes import FOLDER_MODE
from registry.hashing import CHUNK_SIZE, blob_key, digest_bytes, digest_from_key, digest_of_hash
from registry.localfiles import HashingWriter, fsync_dir, read_hashing, staged_file, write_all
from registry.records import BlobInfo, StoredBlob

__all__ = ["LocalBlobStore"]

_TEMP_PREFIX = ".tmp-"


def _refuse(digest: str, actual: str, where: str) -> CorruptBlobError:
    # One bad read does not prove the file is damaged (a flaky disk or network mount gives
    # the same symptom), so the message sends the reader to verify, which re-reads first.
    return CorruptBlobError(
        f"blob {digest} at {where} read back as {actual}: corrupt, in the stored file or in "
        "this read; run `retrain registry verify`, which re-reads it to tell which",
        actual=actual,
    )


class LocalBlobStore:
    """Blobs as files under a root folder (created on the first write)."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.url = self.root.as_uri()

    def path_of(self, digest: str) -> Path:
        """Where the blob with this digest lives (whether or not it exists)."""
        return self.root / blob_key(digest)

    # -- writing -----------------------------------------------------------------------------
    def put_bytes(self, data: bytes, *, fresh: bool = False) -> StoredBlob:
        """Store ``data``. ``fresh`` says the caller believes these bytes are new (no blob of
        this size is catalogued): big ones are then hashed while they are written."""
        view = memoryview(data).cast("B")
        if fresh and len(view) > 2 * CHUNK_SIZE:
            return self._put_hashing_while_writing(view)
        # Otherwise the bytes are hashed before anything is written, so bytes that are stored
        # already cost one hash and no copy; new bytes are then written once and synced.
        digest = digest_bytes(view)
        final = self.path_of(digest)
        if _holds(final, len(view)):
            return StoredBlob(digest, len(view), written=False)
        with self._temp_in(final.parent) as (fd, temp):
            write_all(fd, view)
            self._commit(fd, temp, final)
        return StoredBlob(digest, len(view), written=True)

    def _put_hashing_while_writing(self, view: memoryview) -> StoredBlob:
        # One thread hashes while this one writes the temp file (both release the GIL), so the
        # put costs about max(hash, write) + fsync. If the bytes were stored after all, the
        # temp file is dropped before it is ever synced.
        hasher = hashlib.sha256()
        hashing = threading.Thread(target=hasher.update, args=(view,), name="blob-hash")
        with self._temp_in(self.root / "sha256") as (fd, temp):
            hashing.start()
            try:
                write_all(fd, view)
            finally:
                hashing.join()
            digest = digest_of_hash(hasher)
            final = self.path_of(digest)
            if _holds(final, len(view)):
                return StoredBlob(digest, len(view), written=False)
            self._mkdir(final.parent)
            self._commit(fd, temp, final)
        return StoredBlob(digest, len(view), written=True)

    def put_file(self, path: Path) -> StoredBlob:
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}; check the path") from exc
        with handle:
            return self.put_stream(handle)

    def put_stream(self, stream: BinaryIO) -> StoredBlob:
        # The digest is unknown until the end, so the bytes are hashed as they are written to a
        # temp file in the shard folder; the rename only happens once the hash is known.
        staging = self.root / "sha256"
        with self._temp_in(staging) as (fd, temp):
            writer = HashingWriter(fd)
            while chunk := stream.read(CHUNK_SIZE):
                writer.write(chunk)
            digest = digest_of_hash(writer.hasher)
            final = self.path_of(digest)
            if _holds(final, writer.size):
                return StoredBlob(digest, writer.size, written=False)
            self._mkdir(final.parent)
            self._commit(fd, temp, final)
        return StoredBlob(digest, writer.size, written=True)

    @contextlib.contextmanager
    def _temp_in(self, folder: Path) -> Iterator[tuple[int, Path]]:
        try:
            self._mkdir(folder)
            fd, name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=folder)
        except OSError as exc:
            raise self._unavailable(exc) from exc
        temp = Path(name)
        try:
            yield fd, temp
        except OSError as exc:
            raise self._unavailable(exc) from exc
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    def _commit(self, fd: int, temp: Path, final: Path) -> None:
        os.fsync(fd)
        os.replace(temp, final)
        fsync_dir(final.parent)

    def _mkdir(self, folder: Path) -> None:
        if folder.is_dir():
            return
        self._mkdir(folder.parent)
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=FOLDER_MODE)  # never world-writable, whatever the umask
            fsync_dir(folder.parent)

    def _unavailable(self, exc: OSError) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"cannot write to the blob folder {self.root}: {exc.strerror}; "
            "check its permissions and free space, or set RETRAIN_BLOB_URL"
        )

    # -- reading -----------------------------------------------------------------------------
    def exists(self, digest: str) -> bool:
        return self.path_of(digest).is_file()

    def stat(self, digest: str) -> BlobInfo | None:
        try:
            st = self.path_of(digest).stat()
        except FileNotFoundError:
            return None
        return BlobInfo(digest, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def _open(self, digest: str) -> BinaryIO:
        path = self.path_of(digest)
        try:
            return path.open("rb")
        except FileNotFoundError as exc:
            raise BlobNotFoundError(
                f"no blob {digest} in {self.root}: check the digest with `retrain registry ls`"
            ) from exc
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot read blob {digest} in {self.root}: {exc.strerror}; check permissions"
            ) from exc

    def get_bytes(self, digest: str) -> bytes:
        with self._open(digest) as handle:
            size = os.fstat(handle.fileno()).st_size
            # Read straight into the buffer of a BytesIO sized to the blob: its getvalue() then
            # hands that buffer out as the bytes object without another copy, and the bytes
            # hashed are exactly the bytes returned.
            buffer = io.BytesIO()
            if size:
                buffer.seek(size - 1)
                buffer.write(b"\0")
            with buffer.getbuffer() as target:
                hasher, got = read_hashing(handle, target)
        actual = digest_of_hash(hasher)
        if actual != digest or got != size:
            raise _refuse(digest, actual, str(self.path_of(digest)))
        return buffer.getvalue()

    def get_to_file(self, digest: str, path: Path) -> None:
        path = path.expanduser().resolve()
        with self._open(digest) as source, staged_file(path) as staged:
            writer = HashingWriter(staged.fd)
            while chunk := source.read(CHUNK_SIZE):
                try:
                    writer.write(chunk)
                except OSError as exc:
                    raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc
            actual = digest_of_hash(writer.hasher)
            if actual != digest:
                raise _refuse(digest, actual, str(self.path_of(digest)))
            staged.commit()  # only verified bytes ever get a name

    def check(self, digest: str) -> int:
        with self._open(digest) as handle:
            actual, size = _hash_handle(handle)
        if actual != digest:
            raise _refuse(digest, actual, str(self.path_of(digest)))
        return size

    def reread(self, digest: str) -> str:
        """The digest of a second read that goes to the disk: the file's cached pages are
        dropped first, so a bad copy in the page cache cannot answer for the disk twice."""
        with self._open(digest) as handle:
            with contextlib.suppress(OSError, AttributeError):  # advice only; not everywhere
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            return _hash_handle(handle)[0]

    def list(self) -> Iterator[BlobInfo]:
        shard_root = self.root / "sha256"
        if not shard_root.is_dir():
            return
        for shard in sorted(shard_root.iterdir()):
            if not shard.is_dir():
                continue
            for entry in sorted(shard.iterdir()):
                digest = digest_from_key(f"sha256/{shard.name}/{entry.name}")
                if digest is None:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat()
                    yield BlobInfo(digest, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    # -- removing ----------------------------------------------------------------------------
    def delete(self, digest: str) -> None:
        path = self.path_of(digest)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            fsync_dir(path.parent)

    def quarantine(self, digest: str) -> None:
        """Move a (corrupt) blob aside into ``quarantine/`` so that a re-put can restore it."""
        path = self.path_of(digest)
        aside = self.root / "quarantine" / f"{path.name}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        try:
            self._mkdir(aside.parent)
            os.replace(path, aside)
            fsync_dir(path.parent)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._unavailable(exc) from exc

    def clean_temp(self, older_than: datetime, *, dry_run: bool) -> int:
        """Remove temp files left by killed writers, if older than ``older_than``."""
        shard_root = self.root / "sha256"
        if not shard_root.is_dir():
            return 0
        cutoff = older_than.timestamp()
        found = 0
        for temp in shard_root.glob(f"**/{_TEMP_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                if temp.stat().st_mtime <= cutoff:
                    found += 1
                    if not dry_run:
                        temp.unlink()
        return found

    def close(self) -> None:
        """Nothing to release for a folder."""


def _holds(final: Path, size: int) -> bool:
    """Whether ``final`` already holds a blob of this size. The bytes are not re-hashed (that
    would make a re-put cost a read); a truncated or overwritten blob of another size is
    replaced, and ``quarantine`` moves a same-size corrupt one aside."""
    try:
        return final.stat().st_size == size
    except FileNotFoundError:
        return False


def _hash_handle(handle: BinaryIO) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    while chunk := handle.read(CHUNK_SIZE):
        hasher.update(chunk)
        size += len(chunk)
    return digest_of_hash(hasher), size
