"""Registry documents over HTTP, read-only: what Prefect artifacts link to.

``GET /blobs/sha256/<hex>`` answers a catalogued document blob (drift reports, model cards,
JSON records) with its recorded media type; ``GET /blobs/sha256/<hex>/<name>`` does the same
and names the file, so a browser shows ``drift-report.html`` as a page. A markdown blob asked
for as ``<name>.html`` (``model-card.html``) is rendered to HTML, raw HTML in it escaped.

Safe to open from a browser: only digests the catalog knows, and only document types (never
datasets or model bundles); nothing is read from a path a request names; ``nosniff`` on every
answer; HTML runs sandboxed with a strict Content-Security-Policy (its own opaque origin,
nothing fetched from the network, scripts only for reports that draw their own charts).
Blobs are content-addressed, so the ETag is the digest and answers may be cached for good.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from registry.errors import BlobNotFoundError, CorruptBlobError, StoreUnavailableError

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["DOCUMENT_TYPES", "create_blob_app", "render_markdown_page"]

DOCUMENT_TYPES = frozenset(
    {"text/html", "text/markdown", "application/json", "text/plain", "text/csv"}
)
_HEX = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_EXTENSIONS = {
    ".html": "text/html",
    ".htm": "text/html",
    ".md": "text/markdown",
    ".json": "application/json",
    ".txt": "text/plain",
    ".csv": "text/csv",
}
# Reports draw their charts with inline scripts; they run in an opaque origin and may fetch
# nothing. A rendered card needs no script at all.
_REPORT_CSP = (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:"
)
_PAGE_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_OTHER_CSP = "sandbox; default-src 'none'"
_IMMUTABLE = "public, max-age=31536000, immutable"


class _Refused(Exception):
    """A request this endpoint answers with an error status and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_blob_app(registry: Registry) -> Starlette:
    """The read-only blob app over ``registry`` (GET and HEAD; ``/healthz`` for readiness)."""

    async def blob(request: Request) -> Response:
        try:
            response = await _answer(registry, request)
        except _Refused as refused:
            response = PlainTextResponse(str(refused) + "\n", status_code=refused.status)
            response.headers["X-Content-Type-Options"] = "nosniff"
        if request.method == "HEAD":  # the same headers, Content-Length included; no body
            return Response(status_code=response.status_code, headers=dict(response.headers))
        return response

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok\n")

    routes = [
        Route("/blobs/sha256/{hex}", blob, methods=["GET", "HEAD"]),
        Route("/blobs/sha256/{hex}/{name}", blob, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
    ]
    return Starlette(routes=routes)


async def _answer(registry: Registry, request: Request) -> Response:
    hex_digest = str(request.path_params["hex"])
    name = request.path_params.get("name")
    if not _HEX.fullmatch(hex_digest):
        raise _Refused(400, "not a digest: use /blobs/sha256/<64 lowercase hex digits>")
    wanted = None if name is None else _wanted_type(str(name))
    digest = f"sha256:{hex_digest}"
    record = await run_in_threadpool(registry.catalog.get_blob, digest)
    if record is None:
        raise _Refused(404, f"no blob {digest} in the registry")
    stored = record.media_type.split(";")[0].strip().lower()
    if stored not in DOCUMENT_TYPES:
        raise _Refused(403, f"{digest} is {stored}: only documents are served here")
    render = stored == "text/markdown" and wanted == "text/html"
    etag = f'"{digest}{"+html" if render else ""}"'
    headers = {"ETag": etag, "Cache-Control": _IMMUTABLE, "X-Content-Type-Options": "nosniff"}
    if name is not None:
        headers["Content-Disposition"] = f'inline; filename="{name}"'
    if etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    body = await _read(registry, digest)
    if render:
        body = render_markdown_page(body.decode("utf-8", "replace"), title=str(name)).encode()
        stored = "text/html"
    headers["Content-Security-Policy"] = (
        (_PAGE_CSP if render else _REPORT_CSP) if stored == "text/html" else _OTHER_CSP
    )
    charset = "; charset=utf-8" if stored.startswith("text/") else ""
    return Response(body, media_type=f"{stored}{charset}", headers=headers)


def _wanted_type(name: str) -> str:
    """The type a file name asks for; a name that is not a plain file name is refused."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise _Refused(400, f"{name!r} is not a file name: use letters, digits, '.', '-', '_'")
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    if suffix not in _EXTENSIONS:
        shown = ", ".join(sorted(_EXTENSIONS))
        raise _Refused(400, f"{name!r} has no known extension: use one of {shown}")
    return _EXTENSIONS[suffix]


def _etags(header: str) -> set[str]:
    return {part.strip().removeprefix("W/") for part in header.split(",") if part.strip()}


async def _read(registry: Registry, digest: str) -> bytes:
    """The verified bytes; a catalogued blob the store lost is a 404, a store down a 503, and
    bytes that no longer match their digest are never sent (a 500 naming the check to run)."""
    try:
        return await run_in_threadpool(registry.get_bytes, digest)
    except BlobNotFoundError:
        raise _Refused(404, f"{digest} is catalogued but missing from the store") from None
    except CorruptBlobError:
        raise _Refused(
            500, f"{digest} is corrupt in the store: see `retrain registry verify`"
        ) from None
    except StoreUnavailableError as exc:
        raise _Refused(503, str(exc).splitlines()[0]) from None


def render_markdown_page(markdown: str, *, title: str) -> str:
    """``markdown`` (a model card) as a small self-contained HTML page; raw HTML is escaped."""
    from html import escape

    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    style = (
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
        "line-height:1.45}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:.25rem .5rem}code,pre{background:#f4f4f4}"
    )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{style}</style></head><body>{body}</body></html>"
    )
