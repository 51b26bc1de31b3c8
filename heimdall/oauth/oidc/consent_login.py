"""The consent page's "Sign in with …": an OIDC sign-in that sets the flow's identity to the user.

::

    GET /oauth/consent/oidc/start?flow_id=…   the flow must be live and this browser's
        (``__bifrost_flow_secret``), else 400/403  ──▶ begin_login(flow_id) ──302──▶ provider
    GET /oauth/consent/oidc/callback          finish_login ──▶ the flow (still live, still this
        browser's) gets identity_kind="user", identity=<user id>, identity_chosen ──302──▶
        /oauth/consent/mcps?flow_id=…
"""

from __future__ import annotations

from heimdall.gateway import Gateway
from heimdall.oauth.oidc import login
from heimdall.oauth.oidc.errors import OIDCError
from heimdall.oauth.oidc.provider import ProviderCache
from heimdall.oauth.server import consent


async def start(
    gateway: Gateway, cache: ProviderCache, flow_id: str | None, flow_secret: str | None
) -> login.LoginStart:
    """Check the flow and begin the sign-in.

    Raises:
        consent.ConsentError: 400 missing, unknown or expired flow; 403 another browser's flow.
        OIDCError: 404 not configured; 502 provider discovery failed.
    """
    async with gateway.store.read() as session:
        flow = await consent.load_flow(session, gateway.box, flow_id, flow_secret)
    return await login.begin_login(gateway, cache, flow_id=flow.id)


async def complete(gateway: Gateway, result: login.LoginResult, flow_secret: str | None) -> str:
    """Record the signed-in user on the flow; returns the services page to go to.

    Raises:
        OIDCError: the flow expired, was finished meanwhile, or is not this browser's.
    """
    assert result.flow_id is not None
    async with gateway.store.transaction() as session:
        try:
            flow = await consent.load_flow(session, gateway.box, result.flow_id, flow_secret)
        except consent.ConsentError as exc:
            raise OIDCError(exc.message, flow_id=None) from None
        await consent.set_identity(session, flow, "user", result.user.user_id)
        return consent.services_page(flow.id)
