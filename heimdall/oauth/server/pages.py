"""Server-rendered pages: Jinja2 templates from ``heimdall/ui/templates`` with strict security headers.

Pages work without JavaScript, cannot be framed (``X-Frame-Options``, CSP ``frame-ancestors``),
are never cached and send no ``Referer`` (the URLs carry flow ids). Templates autoescape.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse, Response

import heimdall

TEMPLATES_DIR = Path(heimdall.__file__).parent / "ui" / "templates"
STATIC_DIR = Path(heimdall.__file__).parent / "ui" / "static"
STATIC_PATH = "/static"

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'; default-src 'self'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(("html",)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = lambda name: f"{STATIC_PATH}/{name}"
    return env


def protect(response: Response) -> Response:
    """Add the consent pages' security headers to any response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def render(template: str, status_code: int = 200, **context: Any) -> Response:
    html = environment().get_template(template).render(**context)
    return protect(HTMLResponse(html, status_code=status_code))


RESTART_HINT = "Close this page and start the connection again from your application."


def error_page(
    status_code: int, message: str, title: str = "Something went wrong", hint: str | None = RESTART_HINT
) -> Response:
    return render("oauth/error.html", status_code, title=title, message=message, hint=hint)
