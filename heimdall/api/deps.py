"""FastAPI dependencies: the running gateway and the admin credential check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from heimdall.errors import Unauthorized
from heimdall.gateway import Gateway
from heimdall.store import repos


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


_CHALLENGE = 'Bearer realm="heimdall-admin"'
GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def require_admin(request: Request, gateway: GatewayDep) -> None:
    """``Authorization: Bearer <admin token>`` (or ``x-admin-token``), compared by keyed hash."""
    token = request.headers.get("x-admin-token")
    auth = request.headers.get("authorization", "")
    if token is None and auth[:7].lower() == "bearer ":
        token = auth[7:].strip()
    if not token:
        raise Unauthorized(
            "admin credential required: send Authorization: Bearer <admin token>",
            headers={"WWW-Authenticate": _CHALLENGE},
        )
    async with gateway.store.read() as session:
        if not await repos.admin_token_matches(session, gateway.box, token):
            raise Unauthorized("invalid admin credential", headers={"WWW-Authenticate": _CHALLENGE})


AdminDep = Depends(require_admin)
