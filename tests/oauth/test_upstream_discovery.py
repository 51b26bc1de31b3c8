"""Discovery (RFC 9728, RFC 8414, OpenID Connect Discovery) and dynamic client registration (RFC 7591)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from heimdall.oauth.upstream.discovery import (
    DiscoveryError,
    auth_server_metadata_urls,
    bearer_challenge,
    discover,
    parse_www_authenticate,
    resource_metadata_urls,
)
from heimdall.oauth.upstream.registration import CLIENT_NAME, RegistrationError, register_client
from tests.oauth.conftest import PUBLIC_URL
from tests.support.oauth_mcp_upstream import SCOPES, OAuthMCPUpstream
from tests.support.servers import ServerThread, serve_in_thread

Doc = Callable[[str], Response]


class DocServer:
    """A tiny server whose every path is a test-defined response; ``base`` is its URL, ``hits`` the paths asked."""

    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}
        self.hits: list[str] = []
        self.base = ""

    async def _serve(self, request: Request) -> Response:
        self.hits.append(request.url.path)
        doc = self.docs.get(request.url.path)
        return doc(self.base) if doc else Response(status_code=404)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._serve, methods=["GET", "POST", "DELETE"])])

    def json(
        self, path: str, make: Callable[[str], Any], status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self.docs[path] = lambda base: JSONResponse(make(base), status_code=status, headers=headers)

    def challenge(self, header: Callable[[str], str]) -> None:
        self.docs["/mcp"] = lambda base: Response(status_code=401, headers={"WWW-Authenticate": header(base)})


@pytest.fixture
def docs() -> Iterator[DocServer]:
    server = DocServer()
    thread: ServerThread = serve_in_thread(server.app())
    server.base = thread.url
    yield server
    thread.stop()


def as_metadata(issuer: str, **extra: Any) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "code_challenge_methods_supported": ["S256"],
        "response_types_supported": ["code"],
        **extra,
    }


def prm(base: str, issuer: str, **extra: Any) -> dict[str, Any]:
    return {"resource": f"{base}/mcp", "authorization_servers": [issuer], **extra}


# --- WWW-Authenticate -------------------------------------------------------------------------


def test_parses_several_challenges_and_quoted_strings() -> None:
    header = (
        'Basic realm="x", Bearer realm="a \\"quoted\\" realm", error="invalid_token", '
        'resource_metadata="https://rs.example/.well-known/oauth-protected-resource/mcp", scope="read  write"'
    )
    parsed = parse_www_authenticate(header)
    assert parsed["basic"] == {"realm": "x"}
    assert parsed["bearer"]["realm"] == 'a "quoted" realm'
    challenge = bearer_challenge(header)
    assert challenge is not None
    assert challenge.resource_metadata == "https://rs.example/.well-known/oauth-protected-resource/mcp"
    assert challenge.scopes == ("read", "write")
    assert challenge.error == "invalid_token"
    assert bearer_challenge('Basic realm="x"') is None
    assert bearer_challenge("Bearer") is not None


def test_candidate_urls_follow_the_mcp_spec_order() -> None:
    assert resource_metadata_urls("https://rs.example/api/mcp", "https://rs.example/prm") == [
        "https://rs.example/prm",
        "https://rs.example/.well-known/oauth-protected-resource/api/mcp",
        "https://rs.example/.well-known/oauth-protected-resource",
    ]
    assert auth_server_metadata_urls("https://as.example/tenant1") == [
        "https://as.example/.well-known/oauth-authorization-server/tenant1",
        "https://as.example/.well-known/openid-configuration/tenant1",
        "https://as.example/tenant1/.well-known/openid-configuration",
    ]
    assert auth_server_metadata_urls("https://as.example") == [
        "https://as.example/.well-known/oauth-authorization-server",
        "https://as.example/.well-known/openid-configuration",
    ]


# --- against the real upstream ----------------------------------------------------------------


async def test_discovers_the_upstream_from_its_401_challenge(upstream: OAuthMCPUpstream) -> None:
    found = await discover(upstream.mcp_url)
    assert found.challenge is not None and found.challenge.error == "invalid_token"
    assert found.resource_metadata is not None
    assert found.resource_metadata.url == f"{upstream.url}/.well-known/oauth-protected-resource/mcp"
    assert found.resource == upstream.mcp_url
    metadata = found.auth_server
    assert metadata.issuer == upstream.issuer
    assert metadata.authorization_endpoint == f"{upstream.url}/authorize"
    assert metadata.token_endpoint == f"{upstream.url}/token"
    assert metadata.registration_endpoint == f"{upstream.url}/register"
    assert metadata.revocation_endpoint == f"{upstream.url}/revoke"
    assert found.scopes == tuple(SCOPES)  # no scope in the challenge: the resource's scopes_supported
    assert upstream.counters.unauthorized_mcp_requests == 1  # the probe was a real MCP request


async def test_scope_precedence(upstream_factory: Callable[..., OAuthMCPUpstream]) -> None:
    upstream = upstream_factory(challenge_scope="notes:read")
    assert (await discover(upstream.mcp_url)).scopes == ("notes:read",)
    assert (await discover(upstream.mcp_url, scopes=["admin"])).scopes == ("admin",)


# --- variants -----------------------------------------------------------------------------------


async def test_path_based_resource_metadata_when_the_challenge_names_none(docs: DocServer) -> None:
    docs.challenge(lambda base: "Bearer")
    docs.json("/.well-known/oauth-protected-resource/mcp", lambda base: prm(base, base, scopes_supported=["s1"]))
    docs.json("/.well-known/oauth-authorization-server", lambda base: as_metadata(base))
    found = await discover(f"{docs.base}/mcp")
    assert found.resource_metadata is not None
    assert found.resource_metadata.url.endswith("/.well-known/oauth-protected-resource/mcp")
    assert found.scopes == ("s1",)
    assert docs.hits[:2] == ["/mcp", "/.well-known/oauth-protected-resource/mcp"]


async def test_root_resource_metadata_as_the_last_candidate(docs: DocServer) -> None:
    docs.challenge(lambda base: f'Bearer resource_metadata="{base}/nowhere"')
    docs.json("/.well-known/oauth-protected-resource", lambda base: prm(base, base))
    docs.json("/.well-known/oauth-authorization-server", lambda base: as_metadata(base))
    found = await discover(f"{docs.base}/mcp")
    assert found.resource_metadata is not None
    assert found.resource_metadata.url == f"{docs.base}/.well-known/oauth-protected-resource"
    assert found.scopes == ()  # nothing anywhere: no scope parameter at all
    assert docs.hits[:4] == [
        "/mcp",
        "/nowhere",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ]


async def test_without_resource_metadata_the_origin_is_the_authorization_server(docs: DocServer) -> None:
    docs.challenge(lambda base: "Bearer")
    docs.json("/.well-known/oauth-authorization-server", lambda base: as_metadata(base))
    found = await discover(f"{docs.base}/mcp")
    assert found.resource_metadata is None
    assert found.resource == f"{docs.base}/mcp"
    assert found.auth_server.issuer == docs.base


@pytest.mark.parametrize(
    "metadata_path",
    [
        "/.well-known/oauth-authorization-server/tenant1",
        "/.well-known/openid-configuration/tenant1",
        "/tenant1/.well-known/openid-configuration",
    ],
)
async def test_authorization_server_with_a_path(docs: DocServer, metadata_path: str) -> None:
    docs.challenge(lambda base: f'Bearer resource_metadata="{base}/prm"')
    docs.json("/prm", lambda base: prm(base, f"{base}/tenant1"))
    docs.json(metadata_path, lambda base: as_metadata(f"{base}/tenant1"))
    found = await discover(f"{docs.base}/mcp")
    assert found.auth_server.url == docs.base + metadata_path
    assert found.auth_server.token_endpoint == f"{docs.base}/tenant1/token"


async def test_openid_configuration_fallback_for_a_root_issuer(docs: DocServer) -> None:
    docs.challenge(lambda base: f'Bearer resource_metadata="{base}/prm"')
    docs.json("/prm", lambda base: prm(base, base + "/"))  # a trailing slash names the same root issuer
    docs.json("/.well-known/openid-configuration", lambda base: as_metadata(base))
    found = await discover(f"{docs.base}/mcp")
    assert found.auth_server.url == f"{docs.base}/.well-known/openid-configuration"


async def test_metadata_naming_another_issuer_is_rejected(docs: DocServer) -> None:
    docs.challenge(lambda base: f'Bearer resource_metadata="{base}/prm"')
    docs.json("/prm", lambda base: prm(base, base))
    docs.json("/.well-known/oauth-authorization-server", lambda base: as_metadata("https://evil.example"))
    with pytest.raises(DiscoveryError, match="does not match issuer"):
        await discover(f"{docs.base}/mcp")


async def test_resource_metadata_for_another_resource_is_rejected(docs: DocServer) -> None:
    docs.challenge(lambda base: f'Bearer resource_metadata="{base}/prm"')
    docs.json("/prm", lambda base: {"resource": "https://elsewhere.example/mcp", "authorization_servers": [base]})
    with pytest.raises(DiscoveryError, match="which is not"):
        await discover(f"{docs.base}/mcp")


async def test_metadata_without_pkce_s256_is_refused(docs: DocServer) -> None:
    docs.challenge(lambda base: "Bearer")
    docs.json(
        "/.well-known/oauth-authorization-server",
        lambda base: {k: v for k, v in as_metadata(base).items() if k != "code_challenge_methods_supported"},
    )
    with pytest.raises(DiscoveryError, match="PKCE S256"):
        await discover(f"{docs.base}/mcp")


async def test_only_http_urls_are_followed(docs: DocServer) -> None:
    with pytest.raises(DiscoveryError, match="http"):
        await discover("file:///etc/passwd")
    docs.challenge(lambda base: 'Bearer resource_metadata="file:///etc/passwd"')
    with pytest.raises(DiscoveryError, match="resource_metadata must be an absolute http"):
        await discover(f"{docs.base}/mcp")
    docs.challenge(lambda base: f'Bearer resource_metadata="{base}/prm"')
    docs.json("/prm", lambda base: prm(base, "gopher://as.example"))
    with pytest.raises(DiscoveryError, match="authorization server must be an absolute http"):
        await discover(f"{docs.base}/mcp")


async def test_oversized_documents_are_refused(docs: DocServer) -> None:
    docs.challenge(lambda base: f'Bearer resource_metadata="{base}/prm"')
    docs.json("/prm", lambda base: {**prm(base, base), "padding": "x" * 300_000})
    with pytest.raises(DiscoveryError, match="larger than"):
        await discover(f"{docs.base}/mcp")


async def test_slow_servers_time_out() -> None:
    async def slow(request: Request) -> Response:
        await asyncio.sleep(0.5)
        return Response(status_code=401)

    app = Starlette(routes=[Route("/mcp", slow, methods=["POST"])])
    server = serve_in_thread(app)
    try:
        async with httpx.AsyncClient(timeout=0.1) as client:
            with pytest.raises(DiscoveryError, match="Timeout"):
                await discover(f"{server.url}/mcp", http=client)
    finally:
        server.stop()


async def test_a_server_error_stops_metadata_discovery(docs: DocServer) -> None:
    docs.challenge(lambda base: "Bearer")
    docs.json("/.well-known/oauth-authorization-server", lambda base: {"error": "boom"}, status=500)
    with pytest.raises(DiscoveryError, match="HTTP 500"):
        await discover(f"{docs.base}/mcp")


# --- dynamic client registration ----------------------------------------------------------------


async def test_registers_a_public_client_when_the_server_allows_it(upstream: OAuthMCPUpstream) -> None:
    found = await discover(upstream.mcp_url)
    assert found.auth_server.registration_endpoint is not None
    registered = await register_client(
        found.auth_server.registration_endpoint,
        redirect_uri=f"{PUBLIC_URL}/api/oauth/callback",
        scopes=found.scopes,
        auth_methods_supported=found.auth_server.token_endpoint_auth_methods_supported,
    )
    assert registered.token_endpoint_auth_method == "none"
    assert registered.client_secret is None
    assert registered.client_id in upstream.provider.clients
    assert upstream.counters.registrations == [
        {
            "client_name": CLIENT_NAME,
            "redirect_uris": [f"{PUBLIC_URL}/api/oauth/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": "notes:read notes:write",
        }
    ]


async def test_registers_a_confidential_client_when_only_secrets_are_accepted(
    upstream_factory: Callable[..., OAuthMCPUpstream],
) -> None:
    upstream = upstream_factory(require_client_secret_basic=True)
    found = await discover(upstream.mcp_url)
    assert found.auth_server.registration_endpoint is not None
    registered = await register_client(
        found.auth_server.registration_endpoint,
        redirect_uri=f"{PUBLIC_URL}/api/oauth/callback",
        auth_methods_supported=found.auth_server.token_endpoint_auth_methods_supported,
    )
    assert registered.token_endpoint_auth_method == "client_secret_basic"
    assert registered.client_secret
    assert registered.client_secret not in repr(registered)


async def test_a_refused_registration_says_why(docs: DocServer) -> None:
    docs.json(
        "/register",
        lambda base: {"error": "invalid_redirect_uri", "error_description": "not allowed"},
        status=400,
    )
    with pytest.raises(RegistrationError, match="invalid_redirect_uri"):
        await register_client(f"{docs.base}/register", redirect_uri=f"{PUBLIC_URL}/api/oauth/callback")
    docs.json("/register", lambda base: {"client_id": "c1", "token_endpoint_auth_method": "private_key_jwt"}, 201)
    with pytest.raises(RegistrationError, match="private_key_jwt"):
        await register_client(f"{docs.base}/register", redirect_uri=f"{PUBLIC_URL}/api/oauth/callback")
