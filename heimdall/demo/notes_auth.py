"""The notes service's own OAuth 2.1 authorization server: the MCP SDK's provider protocol, kept in memory.

``/authorize`` (the SDK's handler) stores the request and sends the browser to the service's
``/login`` page; approving there mints a code bound to the chosen user, who becomes the ``subject``
of every token of that grant. Codes are single use; a refresh token revoked (RFC 7009 §2.1) takes
the whole grant with it.

``NotesKnobs`` holds the protocol variations the server can be switched to while it runs (token
lifetimes, rotation, metadata, challenges, step-up scopes), so that an OAuth client can be checked
against each of them.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    TokenError,
    construct_redirect_uri,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

__all__ = ["SCOPES", "NotesAuthServer", "NotesKnobs"]

SCOPES = ["notes:read", "notes:write"]
CODE_TTL_SECONDS = 300


@dataclass
class NotesKnobs:
    """Behaviour switches; they may be changed while the server runs."""

    #: Access token lifetime in seconds.
    access_ttl: int = 3600
    #: Leave ``expires_in`` out of token responses (the token still expires after ``access_ttl``).
    omit_expires_in: bool = False
    #: Issue a new refresh token on every refresh (and invalidate the old one).
    rotate_refresh_tokens: bool = True
    issue_refresh_tokens: bool = True
    #: Advertise only client_secret_basic in the metadata (DCR clients then get a secret and must use Basic).
    require_client_secret_basic: bool = False
    #: Advertised token_endpoint_auth_methods_supported (overrides the default and the switch above).
    token_auth_methods: list[str] | None = None
    #: Query string already present in the advertised authorization_endpoint (e.g. "tenant=acme").
    authorize_query: str | None = None
    #: ``scope`` parameter of the 401 challenge on /mcp.
    challenge_scope: str | None = None
    #: Add RFC 9207 ``iss`` to the authorization response.
    send_iss: bool = True
    #: Tool name → the scope its ``tools/call`` needs; a token without it gets 403 ``insufficient_scope``
    #: with ``scope="<that scope>"`` (MCP step-up authorization, RFC 6750 §3.1).
    tool_scopes: dict[str, str] = field(default_factory=dict)
    #: Grant exactly these space-separated scopes at login, whatever was asked for.
    grant_scope: str | None = None


class NotesAuthServer(OAuthAuthorizationServerProvider[AuthorizationCode, RefreshToken, AccessToken]):
    """Clients, pending logins, codes and tokens in dicts (one grant per login)."""

    def __init__(self, knobs: NotesKnobs) -> None:
        self.knobs = knobs
        #: The service's base URL, set once it listens; ``/login`` and ``iss`` derive from it.
        self.issuer = ""
        self.lock = threading.Lock()
        self.clients: dict[str, OAuthClientInformationFull] = {}
        #: login request id → (client id, the authorization request waiting for the user)
        self.pending: dict[str, tuple[str, AuthorizationParams]] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        #: token → grant id, so that revoking a refresh token revokes the whole grant (RFC 7009 §2.1)
        self.grant_of: dict[str, str] = {}

    # -- clients --

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        assert client_info.client_id is not None
        self.clients[client_info.client_id] = client_info

    # -- authorization --

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        key = secrets.token_urlsafe(16)
        assert client.client_id is not None
        self.pending[key] = (client.client_id, params)
        return f"{self.issuer}/login?req={key}"

    def approve(self, key: str, user: str) -> str | None:
        """Mint a code for ``user``; the redirect back to the client, or None for an unknown request."""
        pending = self.pending.pop(key, None)
        if pending is None:
            return None
        client_id, params = pending
        client = self.clients[client_id]
        code = AuthorizationCode(
            code=secrets.token_urlsafe(24),
            scopes=(
                self.knobs.grant_scope.split()
                if self.knobs.grant_scope is not None
                else params.scopes or (client.scope or "").split()
            ),
            expires_at=time.time() + CODE_TTL_SECONDS,
            client_id=client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
            subject=user,
        )
        self.codes[code.code] = code
        iss = self.issuer if self.knobs.send_iss else None
        return construct_redirect_uri(str(params.redirect_uri), code=code.code, state=params.state, iss=iss)

    def deny(self, key: str) -> str | None:
        """RFC 6749 §4.1.2.1 ``access_denied`` back to the client, or None for an unknown request."""
        pending = self.pending.pop(key, None)
        if pending is None:
            return None
        _, params = pending
        return construct_redirect_uri(
            str(params.redirect_uri), error="access_denied", error_description="the user said no", state=params.state
        )

    async def load_authorization_code(self, client: OAuthClientInformationFull, code: str) -> AuthorizationCode | None:
        return self.codes.get(code)

    def _mint(
        self, client_id: str, scopes: list[str], resource: str | None, subject: str | None, grant: str
    ) -> OAuthToken:
        knobs = self.knobs
        access = AccessToken(
            token=f"at-{subject}-{secrets.token_urlsafe(24)}",
            client_id=client_id,
            scopes=scopes,
            expires_at=int(time.time()) + knobs.access_ttl,
            resource=resource,
            subject=subject,
        )
        with self.lock:
            self.access_tokens[access.token] = access
            self.grant_of[access.token] = grant
        refresh_value = None
        if knobs.issue_refresh_tokens:
            refresh = RefreshToken(
                token=f"rt-{secrets.token_urlsafe(24)}",
                client_id=client_id,
                scopes=scopes,
                resource=resource,
                subject=subject,
            )
            with self.lock:
                self.refresh_tokens[refresh.token] = refresh
                self.grant_of[refresh.token] = grant
            refresh_value = refresh.token
        return OAuthToken(
            access_token=access.token,
            expires_in=None if knobs.omit_expires_in else knobs.access_ttl,
            scope=" ".join(scopes),
            refresh_token=refresh_value,
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        if self.codes.pop(authorization_code.code, None) is None:
            raise TokenError("invalid_grant", "authorization code already used")
        assert client.client_id is not None
        grant = secrets.token_hex(8)
        return self._mint(
            client.client_id, authorization_code.scopes, authorization_code.resource, authorization_code.subject, grant
        )

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> RefreshToken | None:
        return self.refresh_tokens.get(refresh_token)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        grant = self.grant_of.get(refresh_token.token, secrets.token_hex(8))
        rotate = self.knobs.rotate_refresh_tokens
        if rotate:
            with self.lock:
                self.refresh_tokens.pop(refresh_token.token, None)
        assert client.client_id is not None
        issued = self._mint(client.client_id, scopes, refresh_token.resource, refresh_token.subject, grant)
        if not rotate:
            with self.lock:
                if issued.refresh_token is not None:
                    self.refresh_tokens.pop(issued.refresh_token, None)
            issued = issued.model_copy(update={"refresh_token": None})
        return issued

    async def load_access_token(self, token: str) -> AccessToken | None:
        access = self.access_tokens.get(token)
        if access is None or (access.expires_at is not None and access.expires_at < time.time()):
            return None
        return access

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        with self.lock:
            grant = self.grant_of.get(token.token)
            doomed = [value for value, owner in self.grant_of.items() if owner == grant] if grant else [token.token]
            for value in doomed:
                self.access_tokens.pop(value, None)
                self.refresh_tokens.pop(value, None)

    # -- inspection and control from another thread --

    def invalidate_access_tokens(self) -> None:
        """Forget every access token (refresh tokens still work): as if the service had signed everyone out."""
        with self.lock:
            self.access_tokens.clear()

    def live_tokens(self) -> set[str]:
        with self.lock:
            return set(self.access_tokens) | set(self.refresh_tokens)
