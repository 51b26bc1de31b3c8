"""OpenID Connect sign-in: how a User ID becomes authenticated (README "Identity"; W2, W13, W21).

The admin configures one provider (``per_user_oauth.oidc``). Heimdall is a confidential (or,
without a secret, public) relying party using the authorization code flow with PKCE and a nonce
(OpenID Connect Core 1.0 §3.1). Modules:

* ``provider`` — discovery (OIDC Discovery 1.0 §4) and the JWKS, cached per process;
* ``id_token`` — ID token validation (Core §3.1.3.7);
* ``client`` — authorization URL, code exchange (RFC 6749 §4.1.3), userinfo (Core §5.3) and the
  user id they yield;
* ``attempts`` — the ``oidc_login_attempts`` rows (state, nonce, PKCE, browser binding);
* ``login`` — ``begin_login`` / ``finish_login``, the reusable sign-in (consent flow or ``next=``);
* ``consent_login`` — the consent page's "Sign in with …" step;
* ``routes`` — the HTTP endpoints (``views``: the error page); ``sealing`` — the client secret at rest.

This package's ``__init__`` imports nothing: ``heimdall.state`` imports ``sealing`` early.
"""
