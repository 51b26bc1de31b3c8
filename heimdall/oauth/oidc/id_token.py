"""ID token validation for the authorization code flow (OpenID Connect Core 1.0 §3.1.3.7).

Checked, in order: a JWS signed with an allowed asymmetric algorithm (never ``none`` or an HMAC:
the client secret is not a signing key here) by a key of the provider's JWKS; ``iss`` equal to the
discovered issuer; ``aud`` containing our ``client_id`` and, when there are several audiences or an
``azp``, ``azp`` equal to it; ``exp`` in the future and ``iat`` not in the future (60 s leeway);
``sub`` present; ``nonce`` equal to the one we sent (§3.1.2.1, compared in constant time).
"""

from __future__ import annotations

import hmac
from typing import Any

import jwt

#: RS256 is the default every provider supports (Core §15.1); ES256 is the common alternative.
ALLOWED_ALGORITHMS = ("RS256", "ES256")
LEEWAY_SECONDS = 60
MAX_ID_TOKEN_BYTES = 16 * 1024


class IDTokenError(Exception):
    """The ID token is not acceptable; the message names the check, never the token."""


class UnknownSigningKey(IDTokenError):
    """No key of the cached JWKS matches the token's ``kid``: refetch the JWKS once and retry."""


def _candidates(keys: jwt.PyJWKSet, alg: str, kid: str | None) -> list[jwt.PyJWK]:
    found: list[jwt.PyJWK] = []
    for key in keys.keys:
        if kid is not None and key.key_id != kid:
            continue
        if key.public_key_use not in (None, "sig") or key.algorithm_name != alg:
            continue
        found.append(key)
    return found


def _audience_ok(claims: dict[str, Any], client_id: str) -> bool:
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if client_id not in audiences:
        return False
    azp = claims.get("azp")
    if azp is not None or len(audiences) > 1:
        return isinstance(azp, str) and hmac.compare_digest(azp.encode(), client_id.encode())
    return True


def _decode(token: str, key: jwt.PyJWK, alg: str, issuer: str, client_id: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key.key,
        algorithms=[alg],
        audience=client_id,
        issuer=issuer,
        leeway=LEEWAY_SECONDS,
        options={"require": ["iss", "sub", "aud", "exp", "iat"]},
    )
    return claims


def validate(token: str, *, keys: jwt.PyJWKSet, issuer: str, client_id: str, nonce: str) -> dict[str, Any]:
    """The claims of a valid ID token.

    Raises:
        UnknownSigningKey: the token names a key id the key set does not have.
        IDTokenError: any other failed check.
    """
    if len(token) > MAX_ID_TOKEN_BYTES:
        raise IDTokenError("the ID token is too large")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise IDTokenError("the ID token is malformed") from None
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise IDTokenError(f"the ID token is signed with an unsupported algorithm ({str(alg)[:16]!r})")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise IDTokenError("the ID token header is malformed")
    candidates = _candidates(keys, alg, kid)
    if not candidates:
        raise UnknownSigningKey("the ID token is signed with an unknown key")
    claims: dict[str, Any] | None = None
    for key in candidates:
        try:
            claims = _decode(token, key, alg, issuer, client_id)
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            raise IDTokenError("the ID token has expired") from None
        except jwt.InvalidIssuerError:
            raise IDTokenError("the ID token was issued by another issuer") from None
        except jwt.InvalidAudienceError:
            raise IDTokenError("the ID token is meant for another client (aud)") from None
        except jwt.ImmatureSignatureError:
            raise IDTokenError("the ID token is not valid yet (iat/nbf in the future)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise IDTokenError(f"the ID token has no {exc.claim!r} claim") from None
        except jwt.PyJWTError:
            raise IDTokenError("the ID token is invalid") from None
    if claims is None:
        raise IDTokenError("the ID token signature is invalid")
    if not _audience_ok(claims, client_id):
        raise IDTokenError("the ID token is meant for another client (aud/azp)")
    sent = claims.get("nonce")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
        raise IDTokenError("the ID token's nonce does not match this sign-in")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise IDTokenError("the ID token has no subject")
    return claims
