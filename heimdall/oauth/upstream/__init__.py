"""Heimdall as an OAuth 2.1 client of upstream MCP servers (MCP authorization spec 2025-11-25).

- ``discovery``: RFC 9728 protected resource and RFC 8414 / OpenID authorization server metadata;
- ``registration``: RFC 7591 dynamic client registration;
- ``flow``: the authorization-code flow with PKCE (start a login, complete it at the callback);
- ``tokens``: valid access tokens, refresh under a cross-process lock, the ``oauth`` credential resolver;
- ``revoke``: RFC 7009 revocation and dropping stored tokens.

The same pieces serve server-level ``oauth`` clients and ``per_user_oauth`` templates.
"""

from heimdall.oauth.upstream.discovery import Discovery, DiscoveryError, discover
from heimdall.oauth.upstream.flow import (
    AuthorizationFailed,
    OAuthConfigNotFound,
    OAuthSetupError,
    PendingLogin,
    UnknownState,
    UpstreamOAuthError,
    begin_authorization,
    callback_url,
    complete_authorization,
    fail_authorization,
    start_oauth_for_client,
    take_pending_client,
)
from heimdall.oauth.upstream.revoke import discard_token, revoke_stored_token
from heimdall.oauth.upstream.tokens import (
    BackgroundRefresher,
    ServerTokenCredentials,
    TokenRefreshError,
    TokenUnavailable,
    UpstreamTokens,
)

__all__ = [
    "AuthorizationFailed",
    "BackgroundRefresher",
    "Discovery",
    "DiscoveryError",
    "OAuthConfigNotFound",
    "OAuthSetupError",
    "PendingLogin",
    "ServerTokenCredentials",
    "TokenRefreshError",
    "TokenUnavailable",
    "UnknownState",
    "UpstreamOAuthError",
    "UpstreamTokens",
    "begin_authorization",
    "callback_url",
    "complete_authorization",
    "discard_token",
    "discover",
    "fail_authorization",
    "revoke_stored_token",
    "start_oauth_for_client",
    "take_pending_client",
]
