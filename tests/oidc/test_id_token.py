"""ID token checks (OpenID Connect Core §3.1.3.7) on tokens signed here with real keys."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from heimdall.oauth.oidc.id_token import IDTokenError, UnknownSigningKey, validate

ISSUER = "https://idp.example"
CLIENT_ID = "heimdall"
NONCE = "n-0123456789abcdef0123456789abcdef0123456789"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def key_set(*, with_alg: bool = True) -> jwt.PyJWKSet:
    rsa_jwk: dict[str, Any] = {**RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), "kid": "r1", "use": "sig"}
    ec_jwk: dict[str, Any] = {**ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True), "kid": "e1", "use": "sig"}
    if with_alg:
        rsa_jwk["alg"], ec_jwk["alg"] = "RS256", "ES256"
    return jwt.PyJWKSet.from_dict({"keys": [rsa_jwk, ec_jwk]})


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"iss": ISSUER, "aud": CLIENT_ID, "sub": "u1", "iat": now, "exp": now + 300, "nonce": NONCE}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def sign(body: dict[str, Any], *, alg: str = "RS256", kid: str | None = "r1") -> str:
    key: Any = EC_KEY if alg == "ES256" else RSA_KEY
    headers = {"kid": kid} if kid else {}
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def check(token: str, keys: jwt.PyJWKSet | None = None) -> dict[str, Any]:
    return validate(token, keys=keys or key_set(), issuer=ISSUER, client_id=CLIENT_ID, nonce=NONCE)


def test_valid_rs256_and_es256_tokens() -> None:
    assert check(sign(claims()))["sub"] == "u1"
    assert check(sign(claims(), alg="ES256", kid="e1"))["sub"] == "u1"
    assert check(sign(claims(), kid=None), key_set(with_alg=False))["sub"] == "u1"  # no kid: try the matching keys


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (claims(iss="https://other.example"), "another issuer"),
        (claims(aud="someone-else"), "another client"),
        (claims(aud=[CLIENT_ID, "other"]), "another client"),  # several audiences need azp
        (claims(aud=[CLIENT_ID, "other"], azp="other"), "another client"),
        (claims(azp="other"), "another client"),
        (claims(exp=int(time.time()) - 120), "expired"),
        (claims(iat=int(time.time()) + 600), "not valid yet"),
        (claims(nonce="other"), "nonce"),
        (claims(nonce=None), "nonce"),
        (claims(sub=None), "'sub'"),
        (claims(exp=None), "'exp'"),
    ],
)
def test_failed_checks(body: dict[str, Any], message: str) -> None:
    with pytest.raises(IDTokenError, match=message):
        check(sign(body))


def test_several_audiences_with_our_azp_are_accepted() -> None:
    assert check(sign(claims(aud=[CLIENT_ID, "other"], azp=CLIENT_ID)))["sub"] == "u1"


def test_signatures_and_algorithms() -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims(), other, algorithm="RS256", headers={"kid": "r1"})
    with pytest.raises(IDTokenError, match="signature"):
        check(forged)
    with pytest.raises(IDTokenError, match="unsupported algorithm"):
        check(jwt.encode(claims(), "a-shared-secret-of-at-least-32-bytes!!", algorithm="HS256"))
    unsigned = jwt.encode(claims(), None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(IDTokenError, match="unsupported algorithm"):
        check(unsigned)
    with pytest.raises(UnknownSigningKey):
        check(sign(claims(), kid="rotated"))
    with pytest.raises(UnknownSigningKey):  # an RSA key id with an EC algorithm matches nothing
        check(sign(claims(), alg="ES256", kid="r1"))
    with pytest.raises(IDTokenError, match="malformed"):
        check("not-a-jwt")
    with pytest.raises(IDTokenError, match="too large"):
        check("a" * 20_000)
