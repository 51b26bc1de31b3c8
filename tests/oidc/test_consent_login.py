"""The consent page's OIDC sign-in against a running gateway and a real (fake) provider on 127.0.0.1."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update

from heimdall.oauth.upstream.pkce import s256_challenge
from heimdall.oauth.upstream.records import utcnow
from heimdall.store.oidc_models import OIDCLoginAttemptRow
from heimdall.store.per_user_models import ASGrantRow
from tests.oauth_server.helpers import open_store
from tests.oidc.helpers import (
    ALICE,
    CALLBACK_PATH,
    Browser,
    assert_protected,
    attempts_for,
    flow_row,
    oidc_gateway_config,
    query_of,
    reserve_port,
    start_oidc_gateway,
)
from tests.support.fake_oidc import FakeOIDCProvider
from tests.support.gateway import RunningGateway

BACK_LINK = 'href="/oauth/consent?flow_id={}"'


def assert_refused(response: Any, flow_id: str | None, message: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert_protected(response)
    assert message in response.text, response.text
    if flow_id is not None:
        assert BACK_LINK.format(flow_id) in response.text
    else:
        assert "/oauth/consent?flow_id=" not in response.text


def assert_no_identity(gateway: RunningGateway, flow_id: str) -> None:
    row = flow_row(gateway, flow_id)
    assert row is not None and not row.identity_chosen and row.identity is None


async def _stored_settings(gateway: RunningGateway, db_url: str | None) -> str:
    store = open_store(gateway.app_dir, db_url)
    try:
        async with store.read() as session:
            rows = (await session.execute(text("SELECT key, value FROM gateway_settings"))).all()
            return "\n".join(f"{key}={value}" for key, value in rows)
    finally:
        await store.engine.dispose()


async def _grant(gateway: RunningGateway, db_url: str | None) -> ASGrantRow:
    store = open_store(gateway.app_dir, db_url)
    try:
        async with store.read() as session:
            return (await session.scalars(select(ASGrantRow))).one()
    finally:
        await store.engine.dispose()


# --- the whole identity step ---------------------------------------------------------------------


def test_sign_in_sets_the_user_identity_end_to_end(db_url: str, gateway_factory: Any, tmp_path: Path) -> None:
    with FakeOIDCProvider() as idp:
        port = reserve_port(idp)
        gateway: RunningGateway = gateway_factory(oidc_gateway_config(idp), db_url=db_url, port=port)
        with Browser(gateway.url) as browser:
            client_id = browser.register(name="Claude Code")
            started = browser.start(client_id)
            flow_id = started.flow_id

            authorize_url = browser.to_provider(flow_id)
            assert authorize_url.startswith(f"{idp.issuer}/authorize?")
            params = query_of(authorize_url)
            assert params["tenant"] == "test"  # the endpoint's own query is kept
            assert params["response_type"] == "code"
            assert params["client_id"] == idp.client_id
            assert params["redirect_uri"] == f"{gateway.url}{CALLBACK_PATH}"
            assert params["scope"] == "openid email profile"
            assert params["code_challenge_method"] == "S256"
            assert len(params["state"]) >= 43 and len(params["nonce"]) >= 43 and len(params["code_challenge"]) == 43
            binding = [c for c in browser.http.cookies.jar if c.name.startswith("__heimdall_oidc_")]
            assert len(binding) == 1 and binding[0].path == CALLBACK_PATH

            # the approval page without a user is a form (a person would type there)
            form = browser.http.get(authorize_url)
            assert form.status_code == 200 and 'name="user"' in form.text

            done = browser.callback(browser.approve(authorize_url))
            assert done.status_code == 302, done.text
            assert_protected(done)
            assert done.headers["location"] == f"/oauth/consent/mcps?flow_id={flow_id}"
            assert not [c for c in browser.http.cookies.jar if c.name.startswith("__heimdall_oidc_")]

            services = browser.http.get(done.headers["location"])
            assert services.status_code == 200, services.text
            assert f"User {ALICE}" in services.text
            row = flow_row(gateway, flow_id, db_url)
            assert row is not None
            assert (row.identity_kind, row.identity, row.identity_chosen) == ("user", ALICE, True)

            # the confidential client authenticated with client_secret_basic, and sent its PKCE verifier
            (token_request,) = idp.token_requests
            assert token_request.accepted and token_request.authorization
            assert token_request.authorization.startswith("Basic ")
            assert "client_secret" not in token_request.form and token_request.form["code_verifier"]
            assert s256_challenge(token_request.form["code_verifier"]) == params["code_challenge"]

            # Finish: the grant is the user's
            finished = browser.finish(flow_id)
            assert finished.status_code == 302, finished.text
            code = query_of(finished.headers["location"])["code"]
            tokens = browser.exchange(code, started.verifier, client_id)
            assert tokens.status_code == 200, tokens.text
            grant = asyncio.run(_grant(gateway, db_url))
            assert (grant.identity_kind, grant.identity) == ("user", ALICE)

        # the literal client secret is stored only encrypted
        assert idp.client_secret is not None
        stored = asyncio.run(_stored_settings(gateway, db_url))
        assert "client_secret_encrypted" in stored
        assert idp.client_secret not in stored
        if db_url.startswith("sqlite"):
            for path in gateway.app_dir.parent.rglob("heimdall.db*"):
                assert idp.client_secret.encode() not in path.read_bytes()
        attempts = attempts_for(gateway, flow_id, db_url)
        assert len(attempts) == 1 and attempts[0].used
        assert params["state"] not in attempts[0].state_hash and params["nonce"] not in attempts[0].nonce_encrypted


def test_consent_page_links_to_the_sign_in(browser: Browser) -> None:
    flow_id = browser.new_flow()
    page = browser.identity_page(flow_id)
    assert "Sign in with Example SSO" in page.text
    assert f'href="/oauth/consent/oidc/start?flow_id={flow_id}"' in page.text


def test_es256_id_tokens_are_accepted(browser: Browser, gateway: RunningGateway, idp: FakeOIDCProvider) -> None:
    idp.knobs.es256 = True
    flow_id = browser.new_flow()
    done = browser.sign_in(flow_id, "carol@example.com")
    assert done.status_code == 302, done.text
    row = flow_row(gateway, flow_id)
    assert row is not None and row.identity == "carol@example.com"


def test_rotated_signing_keys_are_fetched_again(
    browser: Browser, gateway: RunningGateway, idp: FakeOIDCProvider
) -> None:
    assert browser.sign_in(browser.new_flow()).status_code == 302  # the key set is cached now
    idp.rotate_keys()
    flow_id = browser.new_flow()
    done = browser.sign_in(flow_id, "dave@example.com")
    assert done.status_code == 302, done.text
    row = flow_row(gateway, flow_id)
    assert row is not None and row.identity == "dave@example.com"


def test_userinfo_is_used_without_an_id_token(browser: Browser, gateway: RunningGateway, idp: FakeOIDCProvider) -> None:
    idp.knobs.omit_id_token = True
    flow_id = browser.new_flow()
    done = browser.sign_in(flow_id, "bob@example.com")
    assert done.status_code == 302, done.text
    row = flow_row(gateway, flow_id)
    assert row is not None and (row.identity_kind, row.identity) == ("user", "bob@example.com")


def test_the_subject_is_the_user_id_when_the_claim_is_missing(
    browser: Browser, gateway: RunningGateway, idp: FakeOIDCProvider
) -> None:
    idp.knobs.omit_email = True
    flow_id = browser.new_flow()
    done = browser.sign_in(flow_id)
    assert done.status_code == 302, done.text
    row = flow_row(gateway, flow_id)
    assert row is not None and row.identity == FakeOIDCProvider.subject_of(ALICE)


def test_an_unverified_email_is_refused(browser: Browser, gateway: RunningGateway, idp: FakeOIDCProvider) -> None:
    idp.knobs.email_verified = False
    flow_id = browser.new_flow()
    assert_refused(browser.sign_in(flow_id), flow_id, "Your email address is not verified")
    assert_no_identity(gateway, flow_id)


# --- the ID token's checks ------------------------------------------------------------------------


@pytest.mark.parametrize("knob", ["wrong_issuer", "wrong_audience", "expired", "bad_signature", "nonce_mismatch"])
def test_a_bad_id_token_is_refused(browser: Browser, gateway: RunningGateway, idp: FakeOIDCProvider, knob: str) -> None:
    setattr(idp.knobs, knob, True)
    flow_id = browser.new_flow()
    response = browser.sign_in(flow_id)
    assert_refused(response, flow_id, "The sign-in could not be verified")
    assert ALICE not in response.text
    assert_no_identity(gateway, flow_id)
    # the way back works: the identity page still offers the sign-in
    back = browser.identity_page(flow_id)
    assert back.status_code == 200 and "Sign in with" in back.text


# --- state, browser binding, provider errors --------------------------------------------------------


def test_a_callback_works_once(browser: Browser, gateway: RunningGateway) -> None:
    flow_id = browser.new_flow()
    callback_url = browser.approve(browser.to_provider(flow_id))
    binding = {c.name: c.value or "" for c in browser.http.cookies.jar if c.name.startswith("__heimdall_oidc_")}
    assert browser.callback(callback_url).status_code == 302
    for name, value in binding.items():  # even with the binding cookie put back
        browser.http.cookies.set(name, value, path=CALLBACK_PATH)
    assert_refused(browser.callback(callback_url), flow_id, "already completed or cancelled")


def test_a_callback_in_another_browser_is_refused_and_changes_nothing(
    browser: Browser, gateway: RunningGateway
) -> None:
    flow_id = browser.new_flow()
    callback_url = browser.approve(browser.to_provider(flow_id))
    binding = next(c for c in browser.http.cookies.jar if c.name.startswith("__heimdall_oidc_"))
    with Browser(gateway.url) as other:
        assert_refused(other.callback(callback_url), flow_id, "started in another browser")
        other.http.cookies.set(binding.name, "x" * 43, path=CALLBACK_PATH)
        assert_refused(other.callback(callback_url), flow_id, "started in another browser")
        # the victim's flow cookie alone is not enough either
        other.http.cookies.set("__bifrost_flow_secret", browser.http.cookies["__bifrost_flow_secret"])
        assert_refused(other.callback(callback_url), flow_id, "started in another browser")
    assert_no_identity(gateway, flow_id)
    # the browser that started it can still finish
    assert browser.callback(callback_url).status_code == 302
    row = flow_row(gateway, flow_id)
    assert row is not None and row.identity == ALICE


def test_the_flow_cookie_is_checked_again_at_the_callback(browser: Browser, gateway: RunningGateway) -> None:
    flow_id = browser.new_flow()
    callback_url = browser.approve(browser.to_provider(flow_id))
    browser.http.cookies.delete("__bifrost_flow_secret")
    response = browser.callback(callback_url)
    assert_refused(response, None, "Flow does not belong to this browser session")
    assert_no_identity(gateway, flow_id)


def test_start_needs_the_flow_and_its_browser(browser: Browser, gateway: RunningGateway) -> None:
    flow_id = browser.new_flow()
    with Browser(gateway.url) as other:
        no_cookie = other.oidc_start(flow_id)
        assert_refused(no_cookie, None, "Flow does not belong to this browser session", status=403)
        other.http.cookies.set("__bifrost_flow_secret", "forged-secret-forged-secret-forged-secret")
        assert_refused(other.oidc_start(flow_id), None, "Flow does not belong to this browser session", status=403)
    assert_refused(browser.oidc_start("no-such-flow"), None, "Invalid or expired consent flow")
    missing = browser.http.get("/oauth/consent/oidc/start")
    assert_refused(missing, None, "flow_id is required")
    assert attempts_for(gateway, flow_id) == []


def test_a_provider_error_is_shown_and_ends_the_attempt(
    browser: Browser, gateway: RunningGateway, idp: FakeOIDCProvider
) -> None:
    idp.knobs.authorize_error = "access_denied"
    flow_id = browser.new_flow()
    callback_url = browser.approve(browser.to_provider(flow_id))
    assert "error=access_denied" in callback_url
    assert_refused(browser.callback(callback_url), flow_id, "did not sign you in (access_denied)")
    assert_refused(browser.callback(callback_url), flow_id, "already completed or cancelled")
    assert idp.token_requests == []
    assert_no_identity(gateway, flow_id)


def test_an_unknown_or_repeated_state_is_refused(browser: Browser, gateway: RunningGateway) -> None:
    flow_id = browser.new_flow()
    callback_url = browser.approve(browser.to_provider(flow_id))
    base = f"{gateway.url}{CALLBACK_PATH}"
    assert_refused(browser.http.get(base, params={"code": "c", "state": "s" * 43}), None, "not valid or has expired")
    assert_refused(browser.http.get(base), None, "not valid or has expired")
    assert_refused(browser.http.get(f"{callback_url}&state=again"), None, "not valid or has expired")
    assert browser.callback(callback_url).status_code == 302  # the real one was not consumed


def test_an_unexpected_iss_on_the_response_is_refused(
    browser: Browser, gateway: RunningGateway, idp: FakeOIDCProvider
) -> None:
    idp.knobs.response_iss = "https://evil.example"
    flow_id = browser.new_flow()
    assert_refused(browser.sign_in(flow_id), flow_id, "unexpected issuer")
    assert idp.token_requests == []  # RFC 9207: refused before the code is redeemed


def test_an_expired_attempt_is_refused(browser: Browser, gateway: RunningGateway) -> None:
    flow_id = browser.new_flow()
    callback_url = browser.approve(browser.to_provider(flow_id))

    async def expire() -> None:
        store = open_store(gateway.app_dir)
        try:
            async with store.transaction() as session:
                await session.execute(
                    update(OIDCLoginAttemptRow)
                    .where(OIDCLoginAttemptRow.flow_id == flow_id)
                    .values(expires_at=utcnow() - timedelta(seconds=1))
                )
        finally:
            await store.engine.dispose()

    asyncio.run(expire())
    assert_refused(browser.callback(callback_url), flow_id, "has expired")
    assert_no_identity(gateway, flow_id)


def test_a_finished_flow_cannot_be_signed_into(browser: Browser, gateway: RunningGateway) -> None:
    flow_id = browser.new_flow()
    callback_url = browser.approve(browser.to_provider(flow_id))
    browser.skip(flow_id)
    assert browser.finish(flow_id).status_code == 302
    assert_refused(browser.callback(callback_url), None, "Invalid or expired consent flow")


# --- configurations ---------------------------------------------------------------------------------


def test_a_public_client_uses_pkce_without_a_secret(tmp_path: Path) -> None:
    with FakeOIDCProvider(client_secret=None) as idp:
        gateway = start_oidc_gateway(tmp_path / "gw", idp)
        try:
            with Browser(gateway.url) as browser:
                flow_id = browser.new_flow()
                assert browser.sign_in(flow_id).status_code == 302
                (request,) = idp.token_requests
                assert request.accepted and request.authorization is None
                assert request.form["client_id"] == idp.client_id and request.form["code_verifier"]
        finally:
            gateway.stop()


def test_an_env_secret_is_read_from_the_environment_and_stored_as_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOIDCProvider() as idp:
        assert idp.client_secret is not None
        monkeypatch.setenv("HEIMDALL_TEST_OIDC_SECRET", idp.client_secret)
        gateway = start_oidc_gateway(tmp_path / "gw", idp, client_secret="env.HEIMDALL_TEST_OIDC_SECRET")
        try:
            with Browser(gateway.url) as browser:
                assert browser.sign_in(browser.new_flow()).status_code == 302
            stored = asyncio.run(_stored_settings(gateway, None))
            assert "env.HEIMDALL_TEST_OIDC_SECRET" in stored and idp.client_secret not in stored
            monkeypatch.delenv("HEIMDALL_TEST_OIDC_SECRET")
            with Browser(gateway.url) as browser:
                flow_id = browser.new_flow()
                callback_url = browser.approve(browser.to_provider(flow_id))
                assert_refused(browser.callback(callback_url), flow_id, "could not be reached", status=502)
        finally:
            gateway.stop()


def test_a_discovery_document_for_another_issuer_is_refused(tmp_path: Path) -> None:
    with FakeOIDCProvider() as idp:
        idp.knobs.discovery_issuer = "https://evil.example"
        gateway = start_oidc_gateway(tmp_path / "gw", idp)
        try:
            with Browser(gateway.url) as browser:
                flow_id = browser.new_flow()
                response = browser.oidc_start(flow_id)
                assert_refused(response, flow_id, "could not be reached", status=502)
                assert attempts_for(gateway, flow_id) == []
        finally:
            gateway.stop()


def test_without_an_oidc_login_there_is_no_sign_in(tmp_path: Path) -> None:
    gateway = start_oidc_gateway(tmp_path / "gw", None)
    try:
        with Browser(gateway.url) as browser:
            flow_id = browser.new_flow()
            assert "Sign in with" not in browser.identity_page(flow_id).text
            assert_refused(browser.oidc_start(flow_id), flow_id, "not set up on this gateway", status=404)
            login = browser.http.get("/oauth/oidc/login", params={"next": "/oauth/connections"})
            assert_refused(login, None, "not available", status=404)
    finally:
        gateway.stop()
