"""Public routes of the authorization server for ``/mcp`` (no admin auth: W14 — only these exact paths).

Discovery (RFC 9728, RFC 8414), registration (RFC 7591), authorization, token and revocation
(RFC 6749, RFC 7009) endpoints, and the consent pages and forms (reference.md §2.1–§2.3). They
answer ``404 Not found`` (text/plain) while no MCP client uses ``per_user_oauth``. Token,
registration and revocation responses are never cached; their errors are RFC 6749 §5.2 JSON.
The logic lives in ``heimdall.oauth.server``; these handlers only parse and answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from heimdall.api.deps import GatewayDep
from heimdall.errors import GatewayError
from heimdall.gateway import Gateway
from heimdall.oauth.server import authorize, clients, consent, metadata, pages, tokens, urls, views
from heimdall.oauth.server.errors import OAuthError, json_response
from heimdall.store.per_user_models import ASPendingFlowRow

log = logging.getLogger(__name__)

router = APIRouter(tags=["per-user OAuth (authorization server)"])

MAX_FORM_BYTES = 16 * 1024
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, MCP-Protocol-Version",
    "Access-Control-Max-Age": "600",
}


class _TooLarge(Exception):
    pass


def _not_found() -> Response:
    return PlainTextResponse("Not found", status_code=404)


def _cors(response: Response) -> Response:
    response.headers.update(CORS_HEADERS)
    return response


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_form(request: Request) -> tuple[dict[str, str], set[str]]:
    """A form-encoded body: values by name, and the names sent more than once.

    Raises:
        _TooLarge: over ``MAX_FORM_BYTES``.
        ValueError: not valid UTF-8.
    """
    body = await _read_body(request, MAX_FORM_BYTES)
    values: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
        if name in values:
            repeated.add(name)
        values[name] = value
    return values, repeated


async def _preflight() -> Response:
    return Response(status_code=204, headers=CORS_HEADERS)


# --- discovery ----------------------------------------------------------------------------------


@router.get(urls.PRM_PATH, summary="Protected resource metadata of /mcp (RFC 9728)")
@router.get(urls.PRM_PATH + "/mcp", summary="Protected resource metadata of /mcp, path form (RFC 9728 §3.1)")
async def protected_resource_metadata(gateway: GatewayDep) -> Response:
    if not metadata.available(gateway):
        return _not_found()
    return _cors(json_response(metadata.protected_resource_metadata(gateway)))


@router.get(urls.AS_METADATA_PATH, summary="Authorization server metadata (RFC 8414)")
async def authorization_server_metadata(gateway: GatewayDep) -> Response:
    if not metadata.available(gateway):
        return _not_found()
    return _cors(json_response(metadata.authorization_server_metadata(gateway)))


for _path in (
    urls.PRM_PATH,
    urls.PRM_PATH + "/mcp",
    urls.AS_METADATA_PATH,
    urls.REGISTER_PATH,
    urls.TOKEN_PATH,
    urls.REVOKE_PATH,
):
    router.add_api_route(_path, _preflight, methods=["OPTIONS"], include_in_schema=False)


# --- registration, token, revocation -----------------------------------------------------------


async def _oauth_endpoint(gateway: Gateway, failure: str, work: Callable[[], Awaitable[Response]]) -> Response:
    """The availability gate, CORS, and RFC 6749 §5.2 errors shared by registration, token and revocation."""
    if not metadata.available(gateway):
        return _not_found()
    try:
        return _cors(await work())
    except OAuthError as exc:
        return _cors(exc.response())
    except Exception:
        log.exception("%s", failure)
        return _cors(OAuthError("server_error", failure, 500).response())


async def _form(request: Request) -> tuple[dict[str, str], set[str]]:
    try:
        return await _read_form(request)
    except (_TooLarge, ValueError):
        raise OAuthError("invalid_request", "the request body is too large or not valid UTF-8") from None


@router.post(urls.REGISTER_PATH, summary="Register an MCP client (RFC 7591)", status_code=201)
async def register_client(request: Request, gateway: GatewayDep) -> Response:
    async def work() -> Response:
        try:
            body = await _read_body(request, clients.MAX_REGISTRATION_BYTES)
        except _TooLarge:
            raise OAuthError("invalid_client_metadata", "the registration request is larger than 16 KiB") from None
        return json_response(await clients.register(gateway, body), status_code=201)

    return await _oauth_endpoint(gateway, "registration failed", work)


@router.post(urls.TOKEN_PATH, summary="Token endpoint: authorization_code and refresh_token grants (RFC 6749)")
async def token(request: Request, gateway: GatewayDep) -> Response:
    async def work() -> Response:
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
        params, repeated = await _form(request)
        if repeated:
            raise OAuthError("invalid_request", f"parameters sent more than once: {', '.join(sorted(repeated))}")
        if any("\x00" in value for value in params.values()):
            raise OAuthError("invalid_request", "parameters must not contain NUL characters")
        grant_type = params.get("grant_type")
        if grant_type == "authorization_code":
            issued = await tokens.exchange_code(gateway, params)
        elif grant_type == "refresh_token":
            issued = await tokens.refresh(gateway, params)
        elif not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        else:
            raise OAuthError("unsupported_grant_type", "Only authorization_code and refresh_token grants are supported")
        return json_response(issued.response())

    return await _oauth_endpoint(gateway, "the token request failed", work)


@router.post(urls.REVOKE_PATH, summary="Revoke an access or refresh token (RFC 7009)")
async def revoke(request: Request, gateway: GatewayDep) -> Response:
    async def work() -> Response:
        params, _repeated = await _form(request)
        value = params.get("token", "")
        if not value:
            raise OAuthError("invalid_request", "token is required")
        if "\x00" not in value:
            await tokens.revoke(gateway, value, params.get("client_id") or None)
        return Response(status_code=200, headers={"Cache-Control": "no-store"})

    return await _oauth_endpoint(gateway, "the revocation failed", work)


# --- authorization ------------------------------------------------------------------------------


@router.get(urls.AUTHORIZE_PATH, summary="Authorization endpoint (RFC 6749 §4.1, PKCE S256): opens the consent pages")
async def authorize_endpoint(request: Request, gateway: GatewayDep) -> Response:
    if not metadata.available(gateway):
        return _not_found()
    try:
        started = await authorize.start(gateway, list(request.query_params.multi_items()))
    except authorize.AuthorizePageError as exc:
        return pages.error_page(
            400,
            exc.message,
            title="This authorization request is invalid",
            hint="Nothing was sent to the application. Check the application's settings, "
            "or start the connection again.",
        )
    except authorize.AuthorizeRedirectError as exc:
        return pages.protect(RedirectResponse(exc.location, status_code=302))
    response = RedirectResponse(consent.identity_page(started.flow_id), status_code=302)
    response.set_cookie(
        consent.FLOW_COOKIE,
        started.browser_secret,
        max_age=started.max_age,
        path="/",
        secure=urls.is_https(gateway),
        httponly=True,
        samesite="lax",
    )
    return pages.protect(response)


# --- consent pages ------------------------------------------------------------------------------


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _consent_error(request: Request, error: consent.ConsentError) -> Response:
    """Browsers get a page; other callers the gateway's JSON error envelope (reference.md §2.3)."""
    if _wants_html(request):
        titles = {409: "Setup already finished", 410: "This setup page has expired", 403: "Request refused"}
        hint = None if error.status_code == 409 else pages.RESTART_HINT
        return pages.error_page(
            error.status_code, error.message, title=titles.get(error.status_code, "Setup failed"), hint=hint
        )
    envelope = GatewayError(error.message, status_code=error.status_code)
    envelope.from_gateway = False
    response = Response(envelope.body(), status_code=error.status_code, media_type="application/json")
    return pages.protect(response)


async def _load(request: Request, gateway: Gateway) -> tuple[ASPendingFlowRow, str] | consent.ConsentError:
    secret = request.cookies.get(consent.FLOW_COOKIE, "")
    try:
        async with gateway.store.read() as session:
            flow = await consent.load_flow(session, gateway.box, request.query_params.get("flow_id"), secret)
    except consent.ConsentError as exc:
        if exc.message == consent.MISSING_FLOW_ID:
            return consent.ConsentError(400, "Missing flow_id")
        return exc
    return flow, secret


@router.get(urls.CONSENT_PATH, summary="Consent, step 1: choose an identity (HTML)")
async def consent_identity(request: Request, gateway: GatewayDep) -> Response:
    loaded = await _load(request, gateway)
    if isinstance(loaded, consent.ConsentError):
        return pages.error_page(loaded.status_code, loaded.message, title="This setup page cannot be used")
    flow, secret = loaded
    return await views.identity_page(gateway, flow, secret, request.query_params.get("error"))


@router.get(urls.SERVICES_PATH, summary="Consent, step 2: connect services (HTML)")
async def consent_services(request: Request, gateway: GatewayDep) -> Response:
    loaded = await _load(request, gateway)
    if isinstance(loaded, consent.ConsentError):
        return pages.error_page(loaded.status_code, loaded.message, title="This setup page cannot be used")
    flow, secret = loaded
    return await views.services_page(gateway, flow, secret)


async def _form_input(request: Request, value_field: str | None) -> consent.FormInput:
    try:
        values, _repeated = await _read_form(request)
    except (_TooLarge, ValueError):
        raise consent.ConsentError(400, "The form is too large or not valid UTF-8") from None
    return consent.FormInput(
        flow_id=values.get("flow_id"),
        csrf_token=values.get("csrf_token"),
        browser_secret=request.cookies.get(consent.FLOW_COOKIE),
        value=values.get(value_field) if value_field else None,
    )


async def _consent_action(request: Request, gateway: Gateway, action: str) -> Response:
    try:
        if action == "vk":
            location = await consent.choose_virtual_key(gateway, await _form_input(request, "vk"))
        elif action == "user":
            location = await consent.choose_user_id(gateway, await _form_input(request, "user_id"))
        elif action == "skip":
            location = await consent.choose_skip(gateway, await _form_input(request, None))
        else:
            form = await _form_input(request, None)
            location = await consent.finish(gateway, form)
            if not location.startswith(urls.CONSENT_PATH):
                response = RedirectResponse(location, status_code=302)
                response.delete_cookie(
                    consent.FLOW_COOKIE, path="/", secure=urls.is_https(gateway), httponly=True, samesite="lax"
                )
                return pages.protect(response)
    except consent.ConsentError as exc:
        return _consent_error(request, exc)
    return pages.protect(RedirectResponse(location, status_code=302))


@router.post(urls.CONSENT_VK_PATH, summary="Consent: identify with a virtual key (form)")
async def consent_vk(request: Request, gateway: GatewayDep) -> Response:
    return await _consent_action(request, gateway, "vk")


@router.post(urls.CONSENT_USER_ID_PATH, summary="Consent: type a user id (only when self-declared ids are allowed)")
async def consent_user_id(request: Request, gateway: GatewayDep) -> Response:
    return await _consent_action(request, gateway, "user")


@router.post(urls.CONSENT_SKIP_PATH, summary="Consent: continue without an identity (form)")
async def consent_skip(request: Request, gateway: GatewayDep) -> Response:
    return await _consent_action(request, gateway, "skip")


@router.post(urls.CONSENT_SUBMIT_PATH, summary="Consent: Finish Setup; redirects to the client with code, state, iss")
async def consent_submit(request: Request, gateway: GatewayDep) -> Response:
    return await _consent_action(request, gateway, "submit")
