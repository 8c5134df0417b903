"""Bearer tokens: verifying who calls, for which tenant, with which roles.

Shared by the HTTP API and the ingest queue, so both apply the same rules: a
signed JWT with `sub`, `tenant_id`, `roles` and `exp`; the tenant comes from the
token and nowhere else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from application.settings import Settings
from domain.values import InvalidValue, check_identifier, check_storable_text

# What each may do: README, "Using the API". `platform` is the operators of the
# whole service (read models shared by every tenant), not a tenant's role.
ROLES = ("admin", "auditor", "ops", "metering", "platform")
_REQUIRED_CLAIMS = ["exp", "sub", "tenant_id", "roles"]
MAX_SUBJECT_LENGTH = 256
MAX_ROLES = 32
CLOCK_SKEW_SECONDS = 30  # how far ahead of our clock a token's `iat` may be


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller: who, for which tenant, with which roles."""

    subject: str
    tenant_id: str
    roles: frozenset[str]


class InvalidToken(Exception):
    """The token cannot be trusted; the message is safe to show the caller."""


class TokenVerifier:
    """Checks signature, expiry and claims of bearer tokens."""

    def __init__(self, settings: Settings) -> None:
        self.keys: list[tuple[str, Any]] = [("HS256", settings.jwt_secret)]
        if settings.jwt_public_key:
            self.keys.append(("RS256", settings.jwt_public_key))
        self.max_lifetime = settings.max_token_lifetime_seconds

    def verify(self, token: str, *, now: float | None = None) -> Principal:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        key = next((k for alg, k in self.keys if alg == algorithm), None)
        if key is None or not isinstance(algorithm, str):
            raise InvalidToken("unsupported token algorithm")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                # `iat` is checked below, with a small allowance for clock skew.
                options={"require": _REQUIRED_CLAIMS, "verify_iat": False},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.MissingRequiredClaimError as e:
            raise InvalidToken(f"token lacks the {e.claim!r} claim") from None
        except jwt.PyJWTError:
            raise InvalidToken("invalid token") from None
        self._check_lifetime(claims, time.time() if now is None else now)
        return _principal(claims)

    def _check_lifetime(self, claims: dict[str, Any], now: float) -> None:
        """A token lives at most `max_lifetime` seconds, from `iat` (or from now)."""
        issued = claims.get("iat")
        if issued is not None:
            if not isinstance(issued, int | float):
                raise InvalidToken("token 'iat' must be a number")
            if issued > now + CLOCK_SKEW_SECONDS:
                raise InvalidToken("token 'iat' is in the future")
        start = now if issued is None else issued
        if claims["exp"] - start > self.max_lifetime:
            raise InvalidToken(
                f"token lifetime exceeds the maximum of {self.max_lifetime} seconds"
            )


def _principal(claims: dict[str, Any]) -> Principal:
    subject, tenant_id, roles = claims["sub"], claims["tenant_id"], claims["roles"]
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("token 'sub' must be a non-empty string")
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise InvalidToken(
            f"token 'sub' must be at most {MAX_SUBJECT_LENGTH} characters"
        )
    _check_storable("sub", subject)
    if not isinstance(tenant_id, str):
        raise InvalidToken("token 'tenant_id' must be a string")
    try:
        check_identifier(tenant_id)
    except InvalidValue as e:
        raise InvalidToken(f"token 'tenant_id' {e}") from None
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidToken("token 'roles' must be a list of strings")
    if len(roles) > MAX_ROLES or any(len(r) > MAX_SUBJECT_LENGTH for r in roles):
        raise InvalidToken(f"token 'roles' must be at most {MAX_ROLES} short names")
    for role in roles:
        _check_storable("roles", role)
    return Principal(subject, tenant_id, frozenset(roles))


def _check_storable(claim: str, value: str) -> None:
    """Claims end up in audit records: refuse what PostgreSQL cannot store."""
    try:
        check_storable_text(value)
    except InvalidValue as e:
        raise InvalidToken(f"token {claim!r} {e}") from None


def issue_token(  # noqa: PLR0913 - one argument per claim
    settings: Settings,
    *,
    tenant_id: str,
    roles: list[str],
    subject: str,
    ttl_seconds: int = 3600,
    now: float | None = None,
) -> str:
    """A signed HS256 token (development, tests and `billing token`)."""
    issued = int(now if now is not None else time.time())
    claims = {
        "sub": subject,
        "tenant_id": tenant_id,
        "roles": roles,
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
