"""Per-user upstream OAuth: each identity's own token for ``per_user_oauth`` MCP clients.

- ``identity``: which identity a call acts as (user > virtual key > /mcp session, no fallback);
- ``tokens``: the encrypted token rows, upserted per (MCP client, identity);
- ``handoffs``: single-use connection links and browser-bound upstream login attempts;
- ``callback``: completing a login at the shared ``/api/oauth/callback``;
- ``credentials``: the ``per_user_oauth`` credential resolver (refresh, lazy auth);
- ``connections``: services an identity may use, and connection links (for the consent pages);
- ``grants``, ``api``, ``portal``, ``pages``: listing and revoking grants (admin API, user page);
- ``sweep``: the sweeper's job.

Wiring (``heimdall/app.py``)::

    mcp.credentials.register("per_user_oauth", PerUserCredentials(gateway))
    callback_handlers(api).insert(0, per_user_callback)
    sweeper.add_job("upstream_logins", sweep_upstream_logins)
    # and heimdall/api/routes.py: router.include_router(per_user_routes.router)
"""

from heimdall.oauth.per_user.callback import per_user_callback
from heimdall.oauth.per_user.connections import ServiceView, connect_link, services_for
from heimdall.oauth.per_user.credentials import PerUserCredentials
from heimdall.oauth.per_user.sweep import sweep_upstream_logins

__all__ = [
    "PerUserCredentials",
    "ServiceView",
    "connect_link",
    "per_user_callback",
    "services_for",
    "sweep_upstream_logins",
]
