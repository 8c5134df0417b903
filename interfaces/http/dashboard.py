"""The dashboard page: static HTML that calls the API with the admin's token."""

from __future__ import annotations

from pathlib import Path

from litestar import Controller, Response, get

PAGE = Path(__file__).parent / "static" / "dashboard.html"


class DashboardController(Controller):
    opt = {"exclude_from_auth": True}
    include_in_schema = False

    @get(["/", "/dashboard"], media_type="text/html")
    async def dashboard(self) -> Response[bytes]:
        return Response(
            PAGE.read_bytes(),
            media_type="text/html; charset=utf-8",
            headers={
                "Content-Security-Policy": "default-src 'self'; style-src 'self'",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )
