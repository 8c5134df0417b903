"""The dashboard page: static HTML and ES modules (static/) that call the API
with the admin's token. Everything it loads comes from this app."""

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
                # Scripts, styles and fetches from this origin only: no CDN,
                # no inline code.
                "Content-Security-Policy": (
                    "default-src 'self'; style-src 'self'; object-src 'none';"
                    " base-uri 'none'; frame-ancestors 'none'"
                ),
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )
