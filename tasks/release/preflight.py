"""Before a canary's first step: is the model server there, and is it the right one?

A canary is judged on what one model server reports. Whatever answers on the configured port
is not trusted blindly: ``check_server`` asks ``GET /v1/models/<name>`` and refuses to start
when nobody answers, when the server does not serve the model, when it follows another
registry (its champion is not this registry's: "two homes"), when it cannot read its registry,
or when it already reports that it cannot load the version. Each refusal is one line that
says what to do; the release then ends ``not_released`` and the candidate stays a candidate
(it is not at fault).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from registry.catalog import Catalog

__all__ = ["ServerProbe", "check_server"]


class ServerProbe:
    """Asks one model server (``base_url``) what it serves; ``token`` is its bearer token
    (``RETRAIN_SERVE_TOKEN``) when it requires one."""

    def __init__(self, base_url: str, *, timeout_s: float = 5.0, token: str | None = None) -> None:
        self.url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s, headers=headers)

    def get(self, path: str) -> httpx.Response:
        """``GET path``; httpx's errors (refused, timed out) are the caller's to read."""
        return self._client.get(path)

    def close(self) -> None:
        self._client.close()


def check_server(
    probe: ServerProbe, catalog: Catalog, model: str, version: int, champion: int
) -> str | None:
    """Why ``model`` v``version`` cannot be released through ``probe``'s server, or None.

    ``champion`` is this registry's champion of ``model``; the server must be following it.
    """
    again = f"then `retrain release {model} {version}`"
    url = probe.url
    try:
        response = probe.get(f"/v1/models/{model}")
    except httpx.HTTPError as exc:
        return (
            f"no model server answers at {url} ({_why(exc)}): start one with `retrain serve` "
            f"or `retrain up`, {again}"
        )
    if response.status_code in (401, 403):
        return (
            f"the model server at {url} refused the release's credentials (HTTP "
            f"{response.status_code}): set RETRAIN_SERVE_TOKEN to the server's token, {again}"
        )
    if response.status_code == 404:
        return (
            f"the model server at {url} does not serve {model}{_serves(probe)}: serve it from "
            f"this registry (`retrain serve --model {model}`), {again}"
        )
    try:
        response.raise_for_status()
        status: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"the model server at {url} gave no usable status of {model} ({exc}): see its log"
    return _check_status(status, url, catalog, model, version, champion, again)


def _check_status(
    status: dict[str, Any],
    url: str,
    catalog: Catalog,
    model: str,
    version: int,
    champion: int,
    again: str,
) -> str | None:
    """The refusals read from a server's status of ``model`` (see ``AliasFollower.status``)."""
    if status.get("poll_error"):
        return (
            f"the model server at {url} cannot read its registry ({status['poll_error']}): fix "
            f"its database settings, {again}"
        )
    theirs = _their_champion(status)
    ours = catalog.get_model_version(model, champion).bundle_digest
    if theirs is not None and (theirs[0] != champion or theirs[1] not in (None, ours)):
        return (
            f"the model server at {url} follows another registry: its champion of {model} is "
            f"{_describe(theirs)}, this registry's is v{champion} ({ours[:19]}): point both at "
            f"one registry (the same RETRAIN_HOME or RETRAIN_DATABASE_URL), {again}"
        )
    load_error = (status.get("load_errors") or {}).get(str(version))
    if load_error:
        return f"the model server at {url} cannot load {model} v{version}: {load_error}"
    return None


def _their_champion(status: dict[str, Any]) -> tuple[int | None, str | None] | None:
    """(champion version, bundle digest or None) the server names, None if it names none yet.

    The server's registry says which version it is told to serve; the loaded champion says
    which bundle it holds under that number (two registries can both have a "v1")."""
    loaded = status.get("champion") or {}
    desired = (status.get("registry") or {}).get("champion", loaded.get("version"))
    if desired is None and not status.get("registry"):
        return None
    digest = loaded.get("digest") if loaded.get("version") == desired else None
    return desired, digest


def _describe(theirs: tuple[int | None, str | None]) -> str:
    version, digest = theirs
    if version is None:
        return "none"
    return f"v{version}" + (f" ({digest[:19]})" if digest else "")


def _serves(probe: ServerProbe) -> str:
    """`` (it serves: a, b)`` when the server will say, else nothing."""
    try:
        names = [m["name"] for m in probe.get("/v1/models").json()["models"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return ""
    return f" (it serves: {', '.join(names) or 'nothing'})"


def _why(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    return type(exc).__name__
