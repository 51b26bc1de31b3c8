"""The notes service's own sign-in page (the upstream's page, not Heimdall's): pick a demo user, or deny."""

from __future__ import annotations

from html import escape

__all__ = ["DEMO_USERS", "login_page", "unknown_request_page"]

#: The service's accounts; each has its own notes.
DEMO_USERS = ("alice", "bob")

_STYLE = """
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;
  font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#fdf6e3;color:#3b3024}
main{width:min(26rem,92vw);background:#fff;border-radius:14px;padding:2rem 2rem 1.5rem;
  box-shadow:0 10px 30px rgba(80,60,20,.15)}
.brand{display:flex;align-items:center;gap:.6rem;font-weight:700;font-size:1.35rem;margin-bottom:1.2rem}
.logo{display:inline-flex;width:2.1rem;height:2.1rem;border-radius:8px;background:#f2b705;color:#3b3024;
  align-items:center;justify-content:center;font-size:1.2rem}
h1{font-size:1.05rem;font-weight:600;margin:0 0 .4rem}
p{margin:.3rem 0 1rem;color:#6b5d4a;font-size:.93rem;line-height:1.4}
.scopes{font-size:.85rem;color:#6b5d4a;margin:-.4rem 0 1.2rem}
code{background:#f6efdc;border-radius:4px;padding:.05rem .3rem}
button{display:flex;align-items:center;gap:.8rem;width:100%;padding:.75rem 1rem;margin:.5rem 0;
  border:1px solid #e5d9bd;border-radius:10px;background:#fffdf7;font:inherit;cursor:pointer;text-align:left}
button:hover{border-color:#f2b705;background:#fff8e1}
.avatar{width:2rem;height:2rem;border-radius:50%;color:#fff;font-weight:700;display:inline-flex;
  align-items:center;justify-content:center}
.who{display:flex;flex-direction:column}.who small{color:#8a7b63}
button.deny{justify-content:center;background:none;border:none;color:#8a7b63;margin-top:.8rem}
footer{margin-top:1rem;font-size:.75rem;color:#a0917a;text-align:center}
"""
_AVATAR_COLOURS = ("#c2410c", "#1d4ed8", "#047857", "#7c3aed")


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<style>{_STYLE}</style></head><body><main>"
        "<div class='brand'><span class='logo'>N</span>Notes</div>"
        f"{body}<footer>Demo service: no passwords, every account is a demo account.</footer></main></body></html>"
    )


def login_page(request_id: str, client_name: str, scopes: list[str]) -> str:
    """The sign-in form for one pending authorization request."""
    users = "".join(
        f"<button type='submit' name='user' value='{escape(user)}'>"
        f"<span class='avatar' style='background:{_AVATAR_COLOURS[index % len(_AVATAR_COLOURS)]}'>"
        f"{escape(user[:1].upper())}</span>"
        f"<span class='who'><strong>Sign in as {escape(user)}</strong><small>{escape(user)}@notes.demo</small></span>"
        "</button>"
        for index, user in enumerate(DEMO_USERS)
    )
    scope_list = ", ".join(f"<code>{escape(scope)}</code>" for scope in scopes) or "<code>none</code>"
    body = (
        "<h1>Sign in to Notes</h1>"
        f"<p><strong>{escape(client_name)}</strong> wants to read and add notes as the account you pick.</p>"
        f"<div class='scopes'>Access asked for: {scope_list}</div>"
        "<form method='post' action='/login'>"
        f"<input type='hidden' name='req' value='{escape(request_id)}'>"
        f"{users}<button class='deny' type='submit' name='deny' value='1'>Deny access</button></form>"
    )
    return _page("Sign in to Notes", body)


def unknown_request_page() -> str:
    body = "<h1>Unknown or expired login request</h1><p>Start again from the application that sent you here.</p>"
    return _page("Notes: unknown request", body)
