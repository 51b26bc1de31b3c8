"""Client ID Metadata Documents: the SSRF fence (https only, no private addresses, no redirects, 5 s,
64 KiB), document checks, and a full authorization with a URL client id when private hosts are allowed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from heimdall.oauth.server import cimd
from tests.oauth_server.helpers import REDIRECT, VK_ALL, ASClient, gateway_config, query_of
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.servers import ServerThread, serve_in_thread


class DocumentServer:
    """Serves client metadata documents (and misbehaving variants) on 127.0.0.1, counting fetches."""

    def __init__(self) -> None:
        self.fetches: dict[str, int] = {}
        self.thread: ServerThread | None = None

    def document(self, path: str, **overrides: Any) -> dict[str, Any]:
        return {
            "client_id": f"{self.url}{path}",
            "client_name": "Document Client",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            **overrides,
        }

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        self.fetches[path] = self.fetches.get(path, 0) + 1
        if path == "/redirect/client.json":
            return RedirectResponse("/client.json", status_code=302)
        if path == "/big/client.json":
            return JSONResponse(self.document(path, client_name="b", padding="p" * 70_000))
        if path == "/slow/client.json":
            await asyncio.sleep(2)
            return JSONResponse(self.document(path))
        if path == "/text/client.json":
            return PlainTextResponse("hello")
        if path == "/mismatch/client.json":
            return JSONResponse(self.document(path, client_id="https://elsewhere.example/client.json"))
        if path == "/secret/client.json":
            return JSONResponse(self.document(path, token_endpoint_auth_method="client_secret_post"))
        if path == "/missing/client.json":
            return PlainTextResponse("no", status_code=404)
        return JSONResponse(self.document(path))

    @property
    def url(self) -> str:
        assert self.thread is not None
        return self.thread.url


@pytest.fixture(scope="module")
def documents() -> Iterator[DocumentServer]:
    server = DocumentServer()
    app = Starlette(routes=[Route("/{path:path}", server.handle)])
    server.thread = serve_in_thread(app)
    yield server
    server.thread.stop()


# --- the fetch, directly ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allow_http", "reason"),
    [
        ("http://app.example/client.json", False, "https"),
        ("https://app.example", False, "path"),
        ("https://app.example/", False, "path"),
        ("https://user@app.example/client.json", False, "user information"),
        ("https://app.example/client.json#x", False, "fragment"),
        ("https://app.example/a/../client.json", False, "dot segments"),
        ("https://app.example/" + "a" * 2100, False, "too long"),
        ("ftp://app.example/client.json", True, "https"),
    ],
)
def test_client_id_url_shape(url: str, allow_http: bool, reason: str) -> None:
    with pytest.raises(cimd.CIMDError, match=reason):
        cimd.check_client_id_url(url, allow_http=allow_http)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:9/client.json",
        "https://localhost:9/client.json",  # resolved first, then refused
        "https://[::1]:9/client.json",
        "https://10.1.2.3/client.json",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:127.0.0.1]/client.json",
        "https://224.0.0.1/client.json",
    ],
)
async def test_private_addresses_are_refused_by_default(url: str) -> None:
    with pytest.raises(cimd.CIMDError, match="non-public address"):
        await cimd.fetch_document(url, allow_private=False)


async def test_plain_http_is_refused_by_default(documents: DocumentServer) -> None:
    with pytest.raises(cimd.CIMDError, match="https"):
        await cimd.fetch_document(f"{documents.url}/client.json", allow_private=False)


async def test_fetch_when_private_hosts_are_allowed(documents: DocumentServer) -> None:
    url = f"{documents.url}/client.json"
    document = await cimd.fetch_document(url, allow_private=True)
    parsed = cimd.parse_document(url, document)
    assert parsed.client_name == "Document Client" and parsed.redirect_uris == (REDIRECT,)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/redirect/client.json", "redirects are not followed"),
        ("/big/client.json", "larger than 65536 bytes"),
        ("/text/client.json", "not valid JSON"),
        ("/missing/client.json", "HTTP 404"),
    ],
)
async def test_bad_responses_are_refused(documents: DocumentServer, path: str, reason: str) -> None:
    with pytest.raises(cimd.CIMDError, match=reason):
        await cimd.fetch_document(f"{documents.url}{path}", allow_private=True)


async def test_slow_documents_time_out(documents: DocumentServer) -> None:
    with pytest.raises(cimd.CIMDError, match="longer than 0.3s"):
        await cimd.fetch_document(f"{documents.url}/slow/client.json", allow_private=True, time_limit=0.3)
    assert cimd.FETCH_TIMEOUT <= 5 and cimd.MAX_DOCUMENT_BYTES <= 64 * 1024


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"client_id": "https://elsewhere.example/c.json"}, "does not equal its URL"),
        ({"token_endpoint_auth_method": "client_secret_basic"}, "public clients"),
        ({"client_secret": "s3cret"}, "client secret"),
        ({"redirect_uris": []}, "1 to 10"),
        ({"redirect_uris": ["http://app.example/cb"]}, "loopback"),
        ({"redirect_uris": "https://app.example/cb"}, "array of strings"),
        ({"grant_types": ["refresh_token"]}, "authorization_code"),
        ({"client_name": "n" * 300}, "client_name"),
        ({"logo_uri": "http://app.example/logo.png"}, "https URL"),
    ],
)
def test_document_checks(overrides: dict[str, Any], reason: str) -> None:
    url = "https://app.example/client.json"
    document = {"client_id": url, "redirect_uris": ["https://app.example/cb"], **overrides}
    with pytest.raises(cimd.CIMDError, match=reason):
        cimd.parse_document(url, document)


# --- through the gateway ------------------------------------------------------------------------------------


def test_a_private_cimd_url_is_an_error_page_by_default(client: ASClient, documents: DocumentServer) -> None:
    port = documents.url.rsplit(":", 1)[1]
    for client_id, reason in (
        (f"https://127.0.0.1:{port}/default/client.json", "non-public address"),
        (f"{documents.url}/default/client.json", "must use https"),
    ):
        response = client.authorize(client_id)
        assert response.status_code == 400
        assert "location" not in response.headers
        assert reason in response.text
    assert "/default/client.json" not in documents.fetches  # nothing was fetched


@pytest.fixture(scope="module")
def private_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = gateway_config(per_user_oauth={"allow_private_cimd_hosts": True})
    running = start_gateway(tmp_path_factory.mktemp("cimd"), config=config)
    yield running
    running.stop()


def test_authorization_with_a_metadata_document(private_gateway: RunningGateway, documents: DocumentServer) -> None:
    client_id = f"{documents.url}/full/client.json"
    with ASClient(private_gateway.url) as client:
        started = client.start(client_id)
        page = client.identity_page(started.flow_id).text
        assert "Document Client wants to connect to Heimdall" in page
        assert f"published at <strong>{documents.url.removeprefix('http://')}</strong>" in page
        again = client.start(client_id)  # served from the stored copy
        assert documents.fetches["/full/client.json"] == 1
        assert client.choose_vk(again.flow_id, VK_ALL).status_code == 302
        done = client.finish(again.flow_id)
        code = query_of(done.headers["location"])["code"]
        tokens = client.exchange(code, again.verifier, client_id)
        assert tokens.status_code == 200, tokens.text
        refreshed = client.refresh(tokens.json()["refresh_token"], client_id)
        assert refreshed.status_code == 200
        # The redirect URI must be one the document lists.
        wrong = client.authorize(client_id, "http://127.0.0.1:9999/other")
        assert wrong.status_code == 400 and "redirect_uri not registered" in wrong.text


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/mismatch/client.json", "does not equal its URL"),
        ("/secret/client.json", "public clients"),
        ("/redirect/client.json", "redirects are not followed"),
    ],
)
def test_unusable_documents_are_error_pages(
    private_gateway: RunningGateway, documents: DocumentServer, path: str, reason: str
) -> None:
    with ASClient(private_gateway.url) as client:
        response = client.authorize(f"{documents.url}{path}")
        assert response.status_code == 400 and "location" not in response.headers
        assert reason in response.text
