"""Access tokens on ``/mcp``: verification, the caller they stand for, and the scope each MCP method needs.

A token is valid when it exists, has not expired, its grant is not revoked, and its audience is
``<base>/mcp`` (RFC 8707). A valid token's identity comes from its grant and outranks every
identity header (W13): ``vk`` grants use that virtual key (it must still exist and be active),
``user`` grants the user id, ``session`` grants the anonymous session key (refused once
``enforce_auth_on_inference`` is on, as Skip is then not offered).

Scopes (RFC 6750 §3.1 ``insufficient_scope`` → 403):

=====================  ======================================================================
``mcp:read``           listing: ``tools/list``, ``prompts/list``, ``resources/list``,
                       ``resources/templates/list``
``mcp:write``          using: ``tools/call``, ``prompts/get``, ``resources/read``,
                       ``resources/subscribe``/``unsubscribe``, ``completion/complete`` and any
                       method not named here (fail closed)
no scope               session lifecycle: ``initialize``, ``ping``, ``logging/setLevel``,
                       ``notifications/*``, JSON-RPC responses, and GET (stream) / DELETE
=====================  ======================================================================

``mcp:write`` includes ``mcp:read``: a client that may use tools may also list them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from heimdall.gateway import Gateway
from heimdall.governance.virtual_keys import VirtualKeyRuntime
from heimdall.oauth.server import urls
from heimdall.oauth.server.cache import AccessGrant, cache_for
from heimdall.oauth.server.metadata import scopes_supported
from heimdall.oauth.server.tokens import MAX_SECRET_LENGTH, load_access_token
from heimdall.oauth.upstream.records import utcnow
from heimdall.state import Snapshot
from heimdall.store.repos import VIRTUAL_KEY_PREFIX

SCOPE_READ = "mcp:read"
SCOPE_WRITE = "mcp:write"
READ_METHODS = frozenset({"tools/list", "prompts/list", "resources/list", "resources/templates/list"})
LIFECYCLE_METHODS = frozenset({"initialize", "ping", "logging/setLevel"})
AUTHENTICATION_REQUIRED = "oauth authentication required for mcp access"


class BearerRejected(Exception):
    """The request's credentials are refused: answer ``status_code`` with this ``WWW-Authenticate``."""

    def __init__(self, status_code: int, message: str, www_authenticate: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.www_authenticate = www_authenticate


@dataclass(frozen=True, slots=True)
class BearerIdentity:
    """Who a valid access token acts for."""

    grant: AccessGrant
    vk: VirtualKeyRuntime | None
    user_id: str | None
    session_key: str | None

    @property
    def owner(self) -> str:
        """The owner of MCP sessions opened with this token."""
        return f"grant:{self.grant.grant_id}"


def bearer_token(headers: dict[bytes, bytes]) -> str | None:
    """The ``Authorization: Bearer`` token, unless it is a virtual key (``sk-bf-…``)."""
    auth = headers.get(b"authorization")
    if not auth or auth[:7].lower() != b"bearer ":
        return None
    token = auth[7:].strip().decode("latin-1")
    if not token or token.startswith(VIRTUAL_KEY_PREFIX):
        return None
    return token


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "").replace('"', "'") + '"'


def challenge(
    gateway: Gateway, *, error: str | None = None, description: str | None = None, scope: str | None = None
) -> str:
    """An RFC 6750 §3 ``WWW-Authenticate`` value pointing at our RFC 9728 metadata (RFC 9728 §5.1)."""
    params: list[str] = []
    if error:
        params.append(f"error={_quoted(error)}")
    if description:
        params.append(f"error_description={_quoted(description)}")
    params.append(f"resource_metadata={_quoted(urls.resource_metadata_url(gateway))}")
    params.append(f"scope={_quoted(scope or ' '.join(scopes_supported(gateway)))}")
    return "Bearer " + ", ".join(params)


def authentication_required(gateway: Gateway) -> BearerRejected:
    """No credentials while per-user OAuth is on (reference.md §2.5 step 3)."""
    return BearerRejected(401, AUTHENTICATION_REQUIRED, challenge(gateway))


def _invalid(gateway: Gateway, description: str) -> BearerRejected:
    return BearerRejected(401, description, challenge(gateway, error="invalid_token", description=description))


_vk_index: tuple[Snapshot, dict[str, VirtualKeyRuntime]] | None = None


def virtual_key_by_id(gateway: Gateway, vk_id: str) -> VirtualKeyRuntime | None:
    """The virtual key with this id in the current snapshot (indexed once per snapshot)."""
    global _vk_index
    snapshot = gateway.snapshot
    if _vk_index is None or _vk_index[0] is not snapshot:
        _vk_index = (snapshot, {vk.id: vk for vk in snapshot.virtual_keys_by_hash.values()})
    return _vk_index[1].get(vk_id)


async def verify(gateway: Gateway, token: str) -> AccessGrant:
    """Check an access token (cached for a few seconds; see ``cache``).

    Raises:
        BearerRejected: 401 ``invalid_token``.
    """
    if len(token) > MAX_SECRET_LENGTH:
        raise _invalid(gateway, "The access token is invalid")
    token_hash = gateway.box.lookup_hash(token)
    cache = cache_for(gateway)
    grant = cache.get(token_hash)
    if grant is None:
        found = await load_access_token(gateway.store, token_hash)
        if found is None:
            raise _invalid(gateway, "The access token is invalid")
        grant, revoked = found
        if revoked:
            raise _invalid(gateway, "The access token has been revoked")
        cache.put(grant)
    if grant.expires_at is not None and grant.expires_at <= utcnow():
        cache.drop_token(token_hash)
        raise _invalid(gateway, "The access token has expired")
    if not urls.same_resource(grant.audience, urls.resource_url(gateway)):
        raise _invalid(gateway, "The access token is not meant for this resource")
    return grant


async def authenticate(gateway: Gateway, token: str) -> BearerIdentity:
    """The identity an access token stands for.

    Raises:
        BearerRejected: 401 ``invalid_token`` (also when its virtual key is gone or inactive).
    """
    grant = await verify(gateway, token)
    if grant.identity_kind == "vk":
        vk = virtual_key_by_id(gateway, grant.identity)
        if vk is None or not vk.is_active:
            raise _invalid(gateway, "The virtual key of this authorization is no longer active")
        return BearerIdentity(grant=grant, vk=vk, user_id=None, session_key=None)
    if grant.identity_kind == "user":
        return BearerIdentity(grant=grant, vk=None, user_id=grant.identity, session_key=None)
    if gateway.snapshot.client.enforce_auth_on_inference:
        raise _invalid(gateway, "An identity is required; authorize again with a virtual key or user id")
    return BearerIdentity(grant=grant, vk=None, user_id=None, session_key=grant.identity)


def required_scopes(body: bytes) -> set[str]:
    """The scopes the JSON-RPC message (or batch) in a POST body needs; unparsable bodies need none
    here (the MCP server rejects them)."""
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return set()
    messages = parsed if isinstance(parsed, list) else [parsed]
    needed: set[str] = set()
    for message in messages:
        method = message.get("method") if isinstance(message, dict) else None
        if not isinstance(method, str) or method in LIFECYCLE_METHODS or method.startswith("notifications/"):
            continue
        needed.add(SCOPE_READ if method in READ_METHODS else SCOPE_WRITE)
    return needed


def check_scopes(gateway: Gateway, identity: BearerIdentity, body: bytes) -> None:
    """Raises BearerRejected(403 ``insufficient_scope``) when the token lacks a scope the request needs."""
    held = set(identity.grant.scopes)
    if SCOPE_WRITE in held:
        held.add(SCOPE_READ)  # using includes seeing what can be used
    missing = required_scopes(body) - held
    if not missing:
        return
    wanted = [s for s in scopes_supported(gateway) if s in identity.grant.scopes | missing]
    description = f"This request needs the scope {' '.join(sorted(missing))}"
    raise BearerRejected(
        403,
        description,
        challenge(gateway, error="insufficient_scope", description=description, scope=" ".join(wanted)),
    )
