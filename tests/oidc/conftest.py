"""Fixtures: a fake OIDC provider and a SQLite gateway signing users in with it, shared by a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.oidc.helpers import Browser, start_oidc_gateway
from tests.support.fake_oidc import FakeOIDCProvider
from tests.support.gateway import RunningGateway


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeOIDCProvider]:
    with FakeOIDCProvider() as provider:
        yield provider


@pytest.fixture(autouse=True)
def _fresh_knobs(request: pytest.FixtureRequest) -> None:
    if "idp" in request.fixturenames:
        request.getfixturevalue("idp").reset()


@pytest.fixture(scope="module")
def gateway(idp: FakeOIDCProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_oidc_gateway(tmp_path_factory.mktemp("oidcgw"), idp)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser(gateway: RunningGateway) -> Iterator[Browser]:
    with Browser(gateway.url) as client:
        yield client
