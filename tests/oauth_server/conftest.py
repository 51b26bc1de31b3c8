"""Fixtures for the authorization-server tests: an upstream MCP server and gateways with a per-user client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.oauth_server.helpers import ASClient, gateway_config, wait_for_notes
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.mcp_servers import UpstreamServer


@pytest.fixture(scope="module")
def notes() -> Iterator[UpstreamServer]:
    with UpstreamServer("http") as server:
        yield server


@pytest.fixture(scope="module")
def gateway(notes: UpstreamServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """A SQLite gateway shared by a module's tests: one per-user client, the notes upstream, three keys."""
    running = start_gateway(tmp_path_factory.mktemp("asgw"), config=gateway_config(notes.url))
    try:
        wait_for_notes(running)
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(gateway: RunningGateway) -> Iterator[ASClient]:
    with ASClient(gateway.url) as as_client:
        yield as_client
