"""Who may see a page and send a form: the signed-in admin, with a valid CSRF token on every POST.

``AdminPage`` (a FastAPI dependency) sends a browser without a session to the sign-in page and back.
``AdminForm`` also reads the form, refuses a cross-origin ``Origin`` and checks the CSRF token; a
refused form changes nothing and gets a 403 page that says how to recover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, FastAPI, Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from heimdall.crypto import csrf_ok
from heimdall.gateway import Gateway
from heimdall.oauth.server.pages import error_page
from heimdall.ui.session import AdminSession, read_session

#: Bounds on what one form may hold (Starlette parses the body before we see it).
MAX_FORM_FIELDS = 400
MAX_FIELD_BYTES = 64 * 1024


class SignInRequired(Exception):
    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class FormRejected(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def safe_next(path: str | None) -> str:
    """A same-site path to return to after sign-in (never another host: ``//host`` or a scheme)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path or len(path) > 512:
        return "/"
    return path


def same_origin(request: Request, gateway: Gateway) -> bool:
    """The ``Origin`` of a form post, when the browser sends one, must be this gateway."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    allowed = {_origin(gateway.settings.base_url), f"{request.url.scheme}://{request.headers.get('host', '')}"}
    return origin in allowed


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def admin_page(request: Request) -> AdminSession:
    admin = await read_session(gateway_of(request), request)
    if admin is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target if request.method == "GET" else "/")
    return admin


@dataclass(frozen=True)
class SubmittedForm:
    """A checked form post: the session it came from and its fields (stripped of surrounding spaces)."""

    admin: AdminSession
    data: FormData

    def text(self, name: str, default: str = "") -> str:
        value = self.data.get(name)
        return value.strip() if isinstance(value, str) else default

    def texts(self, name: str) -> list[str]:
        return [value.strip() for value in self.data.getlist(name) if isinstance(value, str)]

    def flag(self, name: str) -> bool:
        return self.text(name) in {"on", "true", "1", "yes"}


async def admin_form(request: Request, admin: Annotated[AdminSession, Depends(admin_page)]) -> SubmittedForm:
    if not same_origin(request, gateway_of(request)):
        raise FormRejected("This form was sent from another site, so nothing was changed.")
    data = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES)
    submitted = data.get("csrf_token")
    if not csrf_ok(admin.csrf_token, submitted if isinstance(submitted, str) else None):
        raise FormRejected("This form has expired. Reload the page and try again; nothing was changed.")
    return SubmittedForm(admin=admin, data=data)


AdminPage = Annotated[AdminSession, Depends(admin_page)]
AdminFormDep = Annotated[SubmittedForm, Depends(admin_form)]


def install(app: FastAPI) -> None:
    async def to_sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        return RedirectResponse(f"/sign-in?next={quote(safe_next(exc.next_path), safe='/')}", status_code=303)

    async def rejected(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FormRejected)
        return error_page(403, exc.message, title="Form not accepted", hint=None)

    app.add_exception_handler(SignInRequired, to_sign_in)
    app.add_exception_handler(FormRejected, rejected)
