"""The authorization endpoint: invalid client or redirect URI → error page (no redirect); other errors →
redirect back with error, state and iss (RFC 6749 §4.1.2.1, RFC 9207); success → consent flow + cookie."""

from __future__ import annotations

import pytest

from tests.oauth_server.helpers import REDIRECT, ASClient, query_of


def assert_error_page(response: object, text: str) -> None:
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "location" not in response.headers  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("text/html")  # type: ignore[attr-defined]
    assert response.headers["x-frame-options"] == "DENY"  # type: ignore[attr-defined]
    assert text in response.text  # type: ignore[attr-defined]


def test_unknown_client_is_an_error_page(client: ASClient) -> None:
    assert_error_page(client.authorize("no-such-client"), "Unknown client_id")


def test_unregistered_redirect_is_an_error_page(client: ASClient) -> None:
    client_id = client.register()
    for uri in (
        "http://127.0.0.1:53682/callback/",  # not exact
        "http://127.0.0.1:53682/callback?x=1",
        "http://127.0.0.1:53683/callback",  # another port: exact matching
        "https://evil.example/callback",
    ):
        assert_error_page(client.authorize(client_id, uri), "redirect_uri not registered for this client")


def test_missing_client_or_redirect_is_an_error_page(client: ASClient) -> None:
    client_id = client.register()
    assert_error_page(client.authorize(client_id, redirect_uri=None), "client_id and redirect_uri are required")  # type: ignore[arg-type]
    assert_error_page(client.authorize(None), "client_id and redirect_uri are required")  # type: ignore[arg-type]
    twice = client.http.get(
        "/api/oauth/per-user/authorize",
        params=[("client_id", client_id), ("client_id", client_id), ("redirect_uri", REDIRECT)],
    )
    assert_error_page(twice, "must each be sent once")


@pytest.mark.parametrize(
    ("overrides", "error", "text"),
    [
        ({"response_type": "token"}, "unsupported_response_type", "response_type must be 'code'"),
        ({"response_type": None}, "unsupported_response_type", "response_type must be 'code'"),
        ({"code_challenge": None}, "invalid_request", "PKCE is required"),
        ({"code_challenge_method": None}, "invalid_request", "PKCE is required"),
        ({"code_challenge_method": "plain"}, "invalid_request", "S256"),
        ({"code_challenge": "short"}, "invalid_request", "43 to 128"),
        ({"code_challenge": "a" * 42 + "!"}, "invalid_request", "43 to 128"),
        ({"code_challenge": "a" * 129}, "invalid_request", "43 to 128"),
        ({"scope": "mcp:read admin"}, "invalid_scope", "mcp:read mcp:write"),
        ({"resource": "https://other.example/mcp"}, "invalid_target", "/mcp"),
    ],
)
def test_other_errors_redirect_back_with_state_and_iss(
    client: ASClient, overrides: dict[str, str | None], error: str, text: str
) -> None:
    client_id = client.register()
    response = client.authorize(client_id, REDIRECT, **overrides)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    params = query_of(location)
    assert params["error"] == error
    assert text in params["error_description"]
    assert params["state"] == "state-123"
    assert params["iss"] == client.base_url
    assert "set-cookie" not in response.headers


def test_error_redirect_keeps_the_redirect_uris_query(client: ASClient) -> None:
    redirect = "https://app.example/cb?tenant=acme"
    client_id = client.register([redirect])
    response = client.authorize(client_id, redirect, response_type="token")
    params = query_of(response.headers["location"])
    assert params["tenant"] == "acme" and params["error"] == "unsupported_response_type"


def test_success_opens_a_consent_flow_bound_to_the_browser(client: ASClient) -> None:
    client_id = client.register()
    response = client.authorize(client_id)
    assert response.status_code == 302
    assert response.headers["location"].startswith("/oauth/consent?flow_id=")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__bifrost_flow_secret=")
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "path=/", "max-age=900", "samesite=lax"} <= attributes
    assert "secure" not in attributes  # the public URL is http here
    secret = cookie.split(";")[0].split("=", 1)[1]
    assert len(secret) == 43  # base64url of 32 random bytes


def test_scope_defaults_to_all_supported_and_resource_is_optional(client: ASClient) -> None:
    client_id = client.register()
    started = client.start(client_id, scope=None, resource=None)
    page = client.identity_page(started.flow_id)
    assert "mcp:read" in page.text and "mcp:write" in page.text


def test_narrower_scope_is_kept(client: ASClient) -> None:
    client_id = client.register()
    started = client.start(client_id, scope="mcp:read")
    page = client.identity_page(started.flow_id)
    assert "<code>mcp:read</code>" in page.text and "<code>mcp:write</code>" not in page.text
