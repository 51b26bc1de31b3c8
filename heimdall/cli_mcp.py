"""``heimdall mcp verify NAME``: the admin's test login for an MCP server declared in config.json.

Servers with ``auth_type`` ``oauth`` or ``per_user_oauth`` that come from config.json wait in
``pending_verification`` until an admin logs in once. This command asks the running gateway to
start that login, prints the URL to open, waits for the login to finish, and completes the setup
(for per-user servers: checks the server and saves its tool list; the admin's token is discarded).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import httpx

TERMINAL_FAILURES = {"failed", "expired", "revoked", "needs_reauth"}


class VerifyError(Exception):
    pass


def _api(url: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=30, trust_env=False
    )


def _message(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if body.get("message"):
            return str(body["message"])
    return response.text[:300]


def find_client(api: httpx.Client, name: str) -> dict[str, Any]:
    response = api.get("/api/mcp/clients", params={"search": name, "limit": 100})
    if response.status_code != 200:
        raise VerifyError(f"cannot list MCP servers: HTTP {response.status_code}: {_message(response)}")
    for client in response.json().get("clients", []):
        if client.get("config", {}).get("name") == name:
            return dict(client)
    raise VerifyError(f"no MCP server named {name!r} is configured")


def verify(url: str, token: str, name: str, *, timeout: float, poll: float = 1.0) -> str:
    """Run the verification; returns the gateway's final message."""
    with _api(url, token) as api:
        client = find_client(api, name)
        client_id = client["config"].get("client_id") or client.get("id")
        started = api.post(f"/api/mcp/client/{client_id}/initiate-verification")
        if started.status_code not in (200, 201):
            raise VerifyError(f"cannot start the login: HTTP {started.status_code}: {_message(started)}")
        pending = started.json()
        config_id = pending["oauth_config_id"]
        print(f"Open this URL in a browser to verify {name!r}:\n\n  {pending['authorize_url']}\n", flush=True)
        print("Waiting for the login to finish…", flush=True)
        deadline = time.monotonic() + timeout
        while True:
            status = api.get(f"/api/oauth/config/{config_id}/status")
            if status.status_code != 200:
                raise VerifyError(f"cannot read the login status: HTTP {status.status_code}: {_message(status)}")
            state = status.json().get("status")
            if state == "authorized":
                break
            if state in TERMINAL_FAILURES:
                reason = status.json().get("status_reason") or ""
                raise VerifyError(f"the login ended as {state!r}" + (f": {reason}" if reason else ""))
            if time.monotonic() > deadline:
                raise VerifyError(f"the login did not finish within {timeout:g} seconds")
            time.sleep(poll)
        completed = api.post(f"/api/mcp/client/{config_id}/complete-oauth")
        if completed.status_code != 200:
            raise VerifyError(f"verification failed: HTTP {completed.status_code}: {_message(completed)}")
        return str(completed.json().get("message", "verified"))


def cmd_mcp_verify(args: Any) -> int:
    url = args.url or os.environ.get("HEIMDALL_PUBLIC_URL") or "http://127.0.0.1:8080"
    token = args.admin_token or os.environ.get("HEIMDALL_ADMIN_TOKEN")
    if not token:
        print("heimdall: an admin token is required (--admin-token or HEIMDALL_ADMIN_TOKEN)", file=sys.stderr)
        return 2
    try:
        message = verify(url, token, args.name, timeout=args.timeout)
    except VerifyError as exc:
        print(f"heimdall: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"heimdall: cannot reach the gateway at {url}: {exc}", file=sys.stderr)
        return 1
    print(message)
    return 0
