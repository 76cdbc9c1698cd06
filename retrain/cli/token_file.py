"""The alert receiver's bearer token when none is configured: ``<home>/alerts-token``, owner-only.

Created with mode 0600 in one step (never a moment readable by others); an existing file that
group or others may open is refused with the ``chmod`` that fixes it, rather than trusted.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from registry.errors import ConfigError

__all__ = ["local_token"]


def local_token(home: Path) -> tuple[Path, str]:
    """The bearer token kept in ``home/alerts-token`` (owner-only), made on first use; a file
    that others may read is refused rather than trusted."""
    import secrets

    path = home / "alerts-token"
    token = secrets.token_urlsafe(32)
    try:
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path, _read_token(path)
    except OSError as exc:
        raise ConfigError(f"cannot create the alert token file {path} ({exc.strerror})") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return path, token


def _read_token(path: Path) -> str:
    """The token in an existing token file, once its permissions are owner-only."""
    if path.is_symlink():
        raise ConfigError(f"alert token file {path} is a symbolic link: replace it with a file")
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"alert token file {path} is not a file: remove it")
        if mode & 0o077:
            raise ConfigError(
                f"alert token file {path} is open to group or others "
                f"(mode {stat.S_IMODE(mode):o}): run `chmod 600 {path}` and try again"
            )
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"alert token file {path} cannot be read ({reason})") from None
    if not token:
        raise ConfigError(f"alert token file {path} is empty: delete it to make a new token")
    return token
