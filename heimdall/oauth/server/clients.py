"""OAuth clients of the authorization server: RFC 7591 registration, and finding a client by id.

A client id is either one we issued at registration (a UUID) or an HTTPS URL naming a Client ID
Metadata Document (``cimd``), fetched when the client first asks for authorization and kept in
``as_clients`` for ``cimd.CACHE_SECONDS`` before it is fetched again.

Registration is open (RFC 7591 §3 allows that), so it is bounded: a 16 KiB body, at most 10
redirect URIs of at most 2 KiB each, a name of at most 255 characters, and redirect URIs that
are HTTPS or loopback HTTP (RFC 8252). Every client is public (``token_endpoint_auth_method``
``none``); a request for another method is answered with ``none`` (RFC 7591 §3.2.1 lets the
server replace requested values). Registering twice simply gives two clients.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from heimdall.gateway import Gateway
from heimdall.oauth.server import cimd
from heimdall.oauth.server.errors import OAuthError
from heimdall.oauth.server.urls import redirect_uri_problem
from heimdall.oauth.upstream.records import as_utc, utcnow
from heimdall.store.per_user_models import ASClientRow

MAX_REGISTRATION_BYTES = 16 * 1024
MAX_REDIRECT_URIS = 10
MAX_URI_LENGTH = 2048
MAX_CLIENT_NAME = 255
MAX_CLIENT_ID = 2048
SUPPORTED_GRANT_TYPES = ("authorization_code", "refresh_token")


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    client_name: str
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    is_metadata_document: bool

    @property
    def display_name(self) -> str:
        return self.client_name or "An application"


def _client(row: ASClientRow) -> Client:
    return Client(
        client_id=row.client_id,
        client_name=row.client_name or "",
        redirect_uris=tuple(row.redirect_uris or ()),
        grant_types=tuple(row.grant_types or ()),
        is_metadata_document=row.is_metadata_document,
    )


# --- registration (RFC 7591) -------------------------------------------------------------------


def _metadata_error(description: str) -> OAuthError:
    return OAuthError("invalid_client_metadata", description)


def _string_list(request: dict[str, Any], key: str, default: list[str]) -> list[str]:
    value = request.get(key)
    if value is None:
        return list(default)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _metadata_error(f"{key} must be an array of strings")
    return list(dict.fromkeys(value))


def _optional_https_url(request: dict[str, Any], key: str) -> str | None:
    value = request.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_URI_LENGTH or redirect_uri_problem(value) is not None:
        raise _metadata_error(f"{key} must be an https URL of at most {MAX_URI_LENGTH} characters")
    if not value.startswith("https://"):
        raise _metadata_error(f"{key} must be an https URL")
    return value


def _redirect_uris(request: dict[str, Any]) -> list[str]:
    value = request.get("redirect_uris")
    if value is None or value == []:
        raise OAuthError("invalid_redirect_uri", "redirect_uris is required")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise OAuthError("invalid_redirect_uri", "redirect_uris must be an array of strings")
    if len(value) > MAX_REDIRECT_URIS:
        raise OAuthError("invalid_redirect_uri", f"at most {MAX_REDIRECT_URIS} redirect URIs may be registered")
    for uri in value:
        if len(uri) > MAX_URI_LENGTH:
            raise OAuthError("invalid_redirect_uri", f"a redirect URI is longer than {MAX_URI_LENGTH} characters")
        problem = redirect_uri_problem(uri)
        if problem:
            raise OAuthError("invalid_redirect_uri", f"redirect URI {uri!r} {problem}")
    return list(dict.fromkeys(value))


def parse_registration(body: bytes, scopes_supported: list[str]) -> ASClientRow:
    """Validate a registration request into a new (unsaved) client row.

    Raises:
        OAuthError: ``invalid_redirect_uri`` or ``invalid_client_metadata`` (RFC 7591 §3.2.2).
    """
    if len(body) > MAX_REGISTRATION_BYTES:
        raise _metadata_error(f"the registration request is larger than {MAX_REGISTRATION_BYTES} bytes")
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _metadata_error("the registration request is not valid JSON") from None
    if not isinstance(request, dict):
        raise _metadata_error("the registration request must be a JSON object")
    redirect_uris = _redirect_uris(request)
    name = request.get("client_name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_CLIENT_NAME or "\x00" in name):
        raise _metadata_error(f"client_name must be a string of at most {MAX_CLIENT_NAME} characters")
    grant_types = _string_list(request, "grant_types", list(SUPPORTED_GRANT_TYPES))
    unsupported = [g for g in grant_types if g not in SUPPORTED_GRANT_TYPES]
    if unsupported or "authorization_code" not in grant_types:
        raise _metadata_error(
            f"grant_types must include authorization_code and may add refresh_token; got {grant_types}"
        )
    response_types = _string_list(request, "response_types", ["code"])
    if response_types != ["code"]:
        raise _metadata_error('response_types must be ["code"]')
    scope = request.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise _metadata_error("scope must be a space-separated string")
    # RFC 7591 §2: the server may replace a requested scope; keep the ones we know.
    known = [s for s in (scope or "").split() if s in scopes_supported]
    return ASClientRow(
        client_id=str(uuid.uuid4()),
        client_name=(name or "").strip(),
        redirect_uris=redirect_uris,
        grant_types=grant_types,
        response_types=response_types,
        token_endpoint_auth_method="none",
        scope=" ".join(dict.fromkeys(known)) or None,
        client_uri=_optional_https_url(request, "client_uri"),
        logo_uri=_optional_https_url(request, "logo_uri"),
        is_metadata_document=False,
    )


def registration_response(row: ASClientRow) -> dict[str, Any]:
    """RFC 7591 §3.2.1 client information response."""
    issued = as_utc(row.created_at) or utcnow()
    response: dict[str, Any] = {
        "client_id": row.client_id,
        "client_id_issued_at": int(issued.timestamp()),
        "redirect_uris": list(row.redirect_uris),
        "grant_types": list(row.grant_types),
        "response_types": list(row.response_types),
        "token_endpoint_auth_method": "none",
    }
    if row.client_name:
        response["client_name"] = row.client_name
    for key in ("scope", "client_uri", "logo_uri"):
        value = getattr(row, key)
        if value:
            response[key] = value
    return response


async def register(gateway: Gateway, body: bytes) -> dict[str, Any]:
    """Register a client and return the client information response."""
    row = parse_registration(body, list(gateway.snapshot.per_user_oauth.scopes_supported))
    row.created_at = utcnow()
    async with gateway.store.transaction() as session:
        session.add(row)
    return registration_response(row)


# --- lookup ------------------------------------------------------------------------------------


def _fresh(row: ASClientRow) -> bool:
    fetched = as_utc(row.metadata_fetched_at)
    return fetched is not None and utcnow() - fetched < timedelta(seconds=cimd.CACHE_SECONDS)


async def _document_client(gateway: Gateway, client_id: str) -> Client:
    allow_private = gateway.snapshot.per_user_oauth.allow_private_cimd_hosts
    cimd.check_client_id_url(client_id, allow_http=allow_private)
    async with gateway.store.read() as session:
        row = await session.get(ASClientRow, client_id)
    if row is not None and row.is_metadata_document and _fresh(row):
        return _client(row)
    document = cimd.parse_document(client_id, await cimd.fetch_document(client_id, allow_private=allow_private))
    now = utcnow()
    values = {
        "client_name": document.client_name,
        "redirect_uris": list(document.redirect_uris),
        "grant_types": list(document.grant_types),
        "response_types": list(document.response_types),
        "token_endpoint_auth_method": "none",
        "scope": document.scope,
        "client_uri": document.client_uri,
        "logo_uri": document.logo_uri,
        "is_metadata_document": True,
        "metadata_fetched_at": now,
    }
    try:
        async with gateway.store.transaction() as session:
            existing = await session.get(ASClientRow, client_id)
            if existing is None:
                session.add(ASClientRow(client_id=client_id, **values))
            elif existing.is_metadata_document:
                for key, value in values.items():
                    setattr(existing, key, value)
    except IntegrityError:
        pass  # another request stored the same document at the same moment
    return Client(
        client_id=client_id,
        client_name=document.client_name,
        redirect_uris=document.redirect_uris,
        grant_types=document.grant_types,
        is_metadata_document=True,
    )


async def load_client(gateway: Gateway, client_id: str) -> Client | None:
    """The client with this id: registered, or described by the metadata document at this URL.

    Raises:
        cimd.CIMDError: a URL client id whose document cannot be used.
    """
    if len(client_id) > MAX_CLIENT_ID or "\x00" in client_id:
        return None
    if cimd.is_url_client_id(client_id):
        return await _document_client(gateway, client_id)
    async with gateway.store.read() as session:
        row = await session.get(ASClientRow, client_id)
    return _client(row) if row is not None and not row.is_metadata_document else None


async def stored_client(session: AsyncSession, client_id: str) -> Client | None:
    """A client as stored (no metadata fetch), e.g. to name it on the consent page."""
    row = await session.get(ASClientRow, client_id)
    return _client(row) if row is not None else None


async def mark_used(gateway: Gateway, client_id: str) -> None:
    async with gateway.store.transaction() as session:
        row = await session.get(ASClientRow, client_id)
        if row is not None:
            row.last_used_at = utcnow()
