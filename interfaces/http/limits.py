"""Request header size limit: 431 before anything reads an oversized header."""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send


class HeaderTooLarge(HTTPException):
    status_code = 431


class HeaderLimitMiddleware(ASGIMiddleware):
    """Refuses requests whose headers add up to more than `max_bytes` (431)."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp
    ) -> None:
        size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if size > self.max_bytes:
            raise HeaderTooLarge(
                detail=f"request headers: must be at most {self.max_bytes} bytes"
                f" in all, got {size}"
            )
        await next_app(scope, receive, send)
