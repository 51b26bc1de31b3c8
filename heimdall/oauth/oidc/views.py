"""The sign-in error page: what went wrong, and a way back to the consent page when there is one."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlencode

import jinja2
from starlette.responses import HTMLResponse, Response

from heimdall.oauth.oidc.errors import OIDCError
from heimdall.oauth.server import pages, urls

_TEMPLATE = """{% extends "base.html" %}
{% block title %}{{ title }}{% endblock %}
{% block content %}
<section class="card" aria-labelledby="error-title">
  <h1 id="error-title" class="card-title">{{ title }}</h1>
  <div class="alert alert-error" role="alert">{{ message }}</div>
  {% if back_url %}
  <p><a class="btn" href="{{ back_url }}">Back to the sign-in options</a></p>
  {% else %}
  <p class="muted">{{ hint }}</p>
  {% endif %}
</section>
{% endblock %}
"""


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    return pages.environment().from_string(_TEMPLATE)


def error_page(error: OIDCError) -> Response:
    """An HTML error page with the consent pages' security headers (never framed, never cached)."""
    back_url = None
    if error.flow_id is not None:
        back_url = f"{urls.CONSENT_PATH}?{urlencode({'flow_id': error.flow_id})}"
    html = _template().render(title=error.title, message=error.message, back_url=back_url, hint=pages.RESTART_HINT)
    return pages.protect(HTMLResponse(html, status_code=error.status_code))
