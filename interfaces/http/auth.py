"""Who is calling over HTTP: bearer-token middleware and role guards (DESIGN 6).

401 when there is no valid token (missing, malformed, wrongly signed, expired,
missing claims); 403 when the token is valid but lacks the role. The tenant is
taken from the token and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp

from application.tokens import InvalidToken, Principal, TokenVerifier
from domain.audit import AuditRecord

log = logging.getLogger(__name__)


class BearerTokenMiddleware(AbstractAuthenticationMiddleware):
    """Authenticates every route not marked `exclude_from_auth`."""

    def __init__(self, app: ASGIApp, *, verifier: TokenVerifier, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.verifier = verifier

    async def authenticate_request(
        self, connection: ASGIConnection
    ) -> AuthenticationResult:  # type: ignore[type-arg]
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException(
                "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            principal = self.verifier.verify(token.strip())
        except InvalidToken as e:
            raise NotAuthorizedException(
                str(e), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            ) from None
        return AuthenticationResult(user=principal, auth=None)


Guard = Callable[[ASGIConnection, BaseRouteHandler], Awaitable[None]]  # type: ignore[type-arg]


def requires_role(role: str) -> Guard:
    """A guard: 403 unless the caller holds `role`; denials are audited."""

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
        principal: Principal = connection.user
        if role in principal.roles:
            return
        await _audit_denial(connection, principal, role)
        raise PermissionDeniedException(f"the {role!r} role is required")

    guard.__name__ = f"requires_{role}"
    return guard


async def _audit_denial(
    connection: ASGIConnection,  # type: ignore[type-arg]
    principal: Principal,
    role: str,
) -> None:
    # Guards take no dependencies: the read side the lifespan opened, read once.
    writer = connection.app.state.read_side.async_audit
    try:
        await writer.write(
            AuditRecord.AccessDenied,
            tenant_id=principal.tenant_id,
            actor_id=principal.subject,
            request_id=connection.scope.get("state", {}).get("request_id", ""),
            method=connection.scope.get("method", ""),
            path=connection.url.path,
            required_role=role,
            roles=sorted(principal.roles),
        )
    except Exception as e:  # noqa: BLE001 - a denial stays a denial even unaudited
        log.error("could not audit an access denial: %s", e)
