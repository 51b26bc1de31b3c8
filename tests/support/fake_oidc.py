"""A real OpenID Connect provider on 127.0.0.1 for tests (Starlette under ``serve_in_thread``).

Endpoints: discovery (``/.well-known/openid-configuration``), JWKS (``/jwks``), ``/authorize``
(headless approval with ``&user=alice@example.com``, or a small HTML form without it), ``/token``
(authorization_code with PKCE S256; ``client_secret_basic`` for a confidential client, ``client_id``
alone for a public one) issuing an access token and an RS256 (or ES256) ID token, and ``/userinfo``.

Knobs (``provider.knobs``) break one thing at a time: the ID token's issuer, audience, expiry,
signature or nonce, the discovery document's issuer, the authorization response (``error``,
a wrong ``iss``), or leave out the ID token or the email claim.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.support.servers import ServerThread, serve_in_thread

RSA_KID = "rsa-1"
EC_KID = "ec-1"


@dataclass
class Knobs:
    """What the provider gets wrong; all off by default."""

    wrong_issuer: bool = False
    wrong_audience: bool = False
    expired: bool = False
    bad_signature: bool = False
    nonce_mismatch: bool = False
    omit_id_token: bool = False
    omit_email: bool = False
    email_verified: bool = True
    #: Sign ID tokens with ES256 (P-256) instead of RS256.
    es256: bool = False
    #: ``issuer`` in the discovery document (None: the real one).
    discovery_issuer: str | None = None
    #: Answer the authorization request with this ``error`` instead of a code.
    authorize_error: str | None = None
    #: Put this ``iss`` on the authorization response (None: the real issuer).
    response_iss: str | None = None


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    user: str
    scope: str
    used: bool = False


@dataclass
class TokenRequest:
    """What the token endpoint saw (for asserting the client authentication method)."""

    form: dict[str, str]
    authorization: str | None
    accepted: bool


@dataclass
class FakeOIDCProvider:
    client_id: str = "heimdall-test"
    #: None: a public client (no authentication at the token endpoint, PKCE only).
    client_secret: str | None = "oidc-client-secret-literal-value-123"
    redirect_uris: set[str] = field(default_factory=set)
    knobs: Knobs = field(default_factory=Knobs)
    token_requests: list[TokenRequest] = field(default_factory=list)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_kid = RSA_KID
        self._other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._ec = ec.generate_private_key(ec.SECP256R1())
        self._codes: dict[str, _Code] = {}
        self._access_tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server: ServerThread | None = None

    # --- lifecycle ---

    def start(self) -> Self:
        self._server = serve_in_thread(self.app())
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def issuer(self) -> str:
        assert self._server is not None, "the provider is not running"
        return self._server.url

    def rotate_keys(self) -> None:
        """Replace the RSA signing key by a new one under a new key id (the old one leaves the JWKS)."""
        self._rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_kid = f"rsa-{secrets.token_hex(4)}"

    def reset(self) -> None:
        self.knobs = Knobs()
        self.token_requests.clear()
        self.authorize_requests.clear()

    # --- claims and keys ---

    @staticmethod
    def subject_of(user: str) -> str:
        return "sub-" + hashlib.sha256(user.encode()).hexdigest()[:16]

    def user_claims(self, user: str) -> dict[str, Any]:
        claims: dict[str, Any] = {"sub": self.subject_of(user), "name": user.split("@")[0].title()}
        if not self.knobs.omit_email:
            claims["email"] = user
            claims["email_verified"] = self.knobs.email_verified
        return claims

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = RSAAlgorithm.to_jwk(self._rsa.public_key(), as_dict=True)
        ec_jwk = ECAlgorithm.to_jwk(self._ec.public_key(), as_dict=True)
        return {
            "keys": [
                {**rsa_jwk, "kid": self.rsa_kid, "use": "sig", "alg": "RS256"},
                {**ec_jwk, "kid": EC_KID, "use": "sig", "alg": "ES256"},
            ]
        }

    def sign(self, claims: dict[str, Any]) -> str:
        if self.knobs.es256:
            return jwt.encode(claims, self._ec, algorithm="ES256", headers={"kid": EC_KID})
        key = self._other_rsa if self.knobs.bad_signature else self._rsa
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.rsa_kid})

    def id_token(self, code: _Code) -> str:
        now = int(time.time())
        iat, exp = (now - 7200, now - 3600) if self.knobs.expired else (now, now + 600)
        claims: dict[str, Any] = {
            "iss": "https://evil.example" if self.knobs.wrong_issuer else self.issuer,
            "aud": "someone-else" if self.knobs.wrong_audience else code.client_id,
            "iat": iat,
            "exp": exp,
            **self.user_claims(code.user),
        }
        if code.nonce is not None:
            claims["nonce"] = "not-the-nonce" if self.knobs.nonce_mismatch else code.nonce
        return self.sign(claims)

    # --- endpoints ---

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
                Route("/authorize", self._authorize),
                Route("/token", self._token, methods=["POST"]),
                Route("/userinfo", self._userinfo),
            ]
        )

    async def _discovery(self, request: Request) -> Response:
        base = self.issuer
        return JSONResponse(
            {
                "issuer": self.knobs.discovery_issuer or base,
                # a query of its own, which the relying party must keep
                "authorization_endpoint": f"{base}/authorize?tenant=test",
                "token_endpoint": f"{base}/token",
                "userinfo_endpoint": f"{base}/userinfo",
                "jwks_uri": f"{base}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
                "scopes_supported": ["openid", "email", "profile"],
                "authorization_response_iss_parameter_supported": True,
            }
        )

    async def _jwks(self, request: Request) -> Response:
        return JSONResponse(self.jwks())

    async def _authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.authorize_requests.append(params)
        problems = []
        if params.get("client_id") != self.client_id:
            problems.append("unknown client_id")
        if params.get("redirect_uri") not in self.redirect_uris:
            problems.append("unregistered redirect_uri")
        if params.get("response_type") != "code":
            problems.append("response_type must be code")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            problems.append("PKCE S256 required")
        if "openid" not in params.get("scope", "").split():
            problems.append("openid scope required")
        if params.get("tenant") != "test":
            problems.append("the endpoint's own query was dropped")
        if problems:
            return HTMLResponse(f"<p>bad request: {html.escape(', '.join(problems))}</p>", status_code=400)
        redirect_uri = params["redirect_uri"]
        user = params.get("user")
        if self.knobs.authorize_error:
            return self._back(redirect_uri, {"error": self.knobs.authorize_error, "state": params.get("state")})
        if not user:
            return HTMLResponse(self._form(params))
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Code(
                client_id=params["client_id"],
                redirect_uri=redirect_uri,
                code_challenge=params["code_challenge"],
                nonce=params.get("nonce"),
                user=user,
                scope=params.get("scope", ""),
            )
        iss = self.knobs.response_iss or self.issuer
        return self._back(redirect_uri, {"code": code, "state": params.get("state"), "iss": iss})

    @staticmethod
    def _form(params: dict[str, str]) -> str:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
            for name, value in params.items()
        )
        return (
            '<form method="get" action="/authorize">'
            f'{hidden}<label>User <input name="user"></label><button type="submit">Approve</button></form>'
        )

    @staticmethod
    def _back(redirect_uri: str, params: dict[str, str | None]) -> Response:
        parts = urlsplit(redirect_uri)
        query = parse_qsl(parts.query) + [(k, v) for k, v in params.items() if v is not None]
        return RedirectResponse(urlunsplit(parts._replace(query=urlencode(query))), status_code=302)

    def _client_ok(self, form: dict[str, str], authorization: str | None) -> bool:
        if self.client_secret is None:
            return authorization is None and form.get("client_id") == self.client_id
        if not authorization or not authorization.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(authorization[6:]).decode()
        except ValueError:
            return False
        client_id, _, secret = decoded.partition(":")
        return client_id == self.client_id and secret == self.client_secret

    @staticmethod
    def _error(error: str, status: int = 400) -> Response:
        return JSONResponse({"error": error}, status_code=status, headers={"Cache-Control": "no-store"})

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        authorization = request.headers.get("authorization")
        record = TokenRequest(form=form, authorization=authorization, accepted=False)
        self.token_requests.append(record)
        if not self._client_ok(form, authorization):
            return self._error("invalid_client", 401)
        if form.get("grant_type") != "authorization_code":
            return self._error("unsupported_grant_type")
        with self._lock:
            code = self._codes.get(form.get("code", ""))
            if code is None or code.used:
                return self._error("invalid_grant")
            code.used = True
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != code.code_challenge or form.get("redirect_uri") != code.redirect_uri:
            return self._error("invalid_grant")
        access = secrets.token_urlsafe(24)
        self._access_tokens[access] = code.user
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": 3600}
        if not self.knobs.omit_id_token:
            body["id_token"] = self.id_token(code)
        record.accepted = True
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def _userinfo(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        user = self._access_tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        if user is None:
            return self._error("invalid_token", 401)
        return JSONResponse(self.user_claims(user))
