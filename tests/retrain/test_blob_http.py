"""Registry documents over HTTP: what a browser gets when it opens a report from the Prefect UI."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from registry.store import Registry
from retrain.config.settings import Settings
from retrain.config.wiring import build_registry
from retrain.local.blob_http import create_blob_app
from serving.runner import start_server
from tasks.reporting.artifacts import blob_link

REPORT = b"<!doctype html><html><body><script>draw()</script>drift</body></html>"
CARD = (
    b"# Model card: loan-default v2\n\n| check | verdict |\n|---|---|\n| floor | pass |\n\n"
    b"<script>alert(1)</script>\n"
)


@pytest.fixture
def blobs(registry: Registry) -> Iterator[tuple[str, Registry]]:
    server = start_server(create_blob_app(registry))
    try:
        yield server.url, registry
    finally:
        server.stop()


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def test_a_report_opens_as_a_sandboxed_html_page(blobs: tuple[str, Registry]) -> None:
    url, registry = blobs
    digest = registry.put_bytes(REPORT, media_type="text/html")
    response = httpx.get(f"{url}/blobs/sha256/{_hex(digest)}/drift-report.html")
    assert response.status_code == 200
    assert response.content == REPORT
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    csp = response.headers["content-security-policy"]
    assert csp.startswith("sandbox allow-scripts;") and "default-src 'none'" in csp
    assert response.headers["etag"] == f'"{digest}"'
    assert 'filename="drift-report.html"' in response.headers["content-disposition"]
    bare = httpx.get(f"{url}/blobs/sha256/{_hex(digest)}")  # the recorded type without a name
    assert bare.headers["content-type"] == "text/html; charset=utf-8"


def test_a_model_card_is_markdown_or_a_rendered_page_without_scripts(
    blobs: tuple[str, Registry],
) -> None:
    url, registry = blobs
    digest = registry.put_bytes(CARD, media_type="text/markdown")
    raw = httpx.get(f"{url}/blobs/sha256/{_hex(digest)}/model-card.md")
    assert raw.headers["content-type"] == "text/markdown; charset=utf-8"
    assert raw.content == CARD
    page = httpx.get(f"{url}/blobs/sha256/{_hex(digest)}/model-card.html")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>Model card: loan-default v2</h1>" in page.text
    assert "<td>pass</td>" in page.text
    assert "<script>" not in page.text  # raw HTML in a card is escaped, never run
    assert page.headers["content-security-policy"].startswith("sandbox;")
    assert page.headers["etag"] != raw.headers["etag"]


def test_json_is_served_as_json(blobs: tuple[str, Registry]) -> None:
    url, registry = blobs
    digest = registry.put_bytes(b'{"verdict": "pass"}', media_type="application/json")
    response = httpx.get(f"{url}/blobs/sha256/{_hex(digest)}/decision.json")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"verdict": "pass"}


def test_unknown_digests_and_non_documents_are_refused(blobs: tuple[str, Registry]) -> None:
    url, registry = blobs
    missing = httpx.get(f"{url}/blobs/sha256/{'0' * 64}/drift-report.html")
    assert missing.status_code == 404
    assert f"no blob sha256:{'0' * 64} in the registry" in missing.text
    dataset = registry.put_bytes(b"PAR1 rows of applicants", media_type="application/x-parquet")
    refused = httpx.get(f"{url}/blobs/sha256/{_hex(dataset)}/data.txt")
    assert refused.status_code == 403
    assert b"PAR1" not in refused.content
    assert httpx.get(f"{url}/blobs/sha256/{'A' * 64}").status_code == 400
    unknown_ext = httpx.get(f"{url}/blobs/sha256/{_hex(dataset)}/data.exe")
    assert unknown_ext.status_code == 400 and "no known extension" in unknown_ext.text
    written = httpx.post(f"{url}/blobs/sha256/{_hex(dataset)}", content=b"x")
    assert written.status_code == 405


def _raw_get(base_url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` byte for byte (no client-side normalisation of ``..``)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


@pytest.mark.parametrize(
    "suffix",
    [
        "/{hex}/..%2F..%2Fregistry.db",
        "/{hex}/../../registry.db",
        "/..%2F..%2Fregistry.db",
        "/{hex}/..",
        "/{hex}/%2e%2e",
        "/{hex}/.html",
        "/{hex}/report.html%00.txt",
        "/{hex}%2F..%2F..%2Fregistry.db",
    ],
)
def test_path_traversal_is_a_4xx_and_reads_nothing(
    blobs: tuple[str, Registry], settings: Settings, suffix: str
) -> None:
    url, registry = blobs
    digest = registry.put_bytes(REPORT, media_type="text/html")
    assert (settings.home / "registry.db").is_file()
    status, answer = _raw_get(url, "/blobs/sha256" + suffix.format(hex=_hex(digest)))
    assert 400 <= status < 500
    assert b"SQLite format" not in answer and b"draw()" not in answer


def test_head_and_etag_revalidation(blobs: tuple[str, Registry]) -> None:
    url, registry = blobs
    digest = registry.put_bytes(REPORT, media_type="text/html")
    link = f"{url}/blobs/sha256/{_hex(digest)}/drift-report.html"
    head = httpx.head(link)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(REPORT))
    assert head.headers["etag"] == f'"{digest}"'
    assert head.headers["content-type"] == "text/html; charset=utf-8"
    again = httpx.get(link, headers={"If-None-Match": head.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert httpx.head(f"{url}/blobs/sha256/{'1' * 64}").status_code == 404


def test_artifact_links_point_at_the_blob_server_when_one_is_configured(
    settings: Settings, blobs: tuple[str, Registry]
) -> None:
    url, registry = blobs
    digest = registry.put_bytes(REPORT, media_type="text/html")
    assert blob_link(registry, digest, "drift-report.html").startswith("file://")
    linked = settings.model_copy(update={"blob_base_url": url + "/"})
    with build_registry(linked) as through_settings:
        link = blob_link(through_settings, digest, "drift-report.html")
    assert link == f"{url}/blobs/sha256/{_hex(digest)}/drift-report.html"
    opened = httpx.get(link)
    assert opened.status_code == 200 and opened.headers["content-type"].startswith("text/html")
