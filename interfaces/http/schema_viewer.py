"""/schema: the OpenAPI document in Swagger UI, whose files this app serves
(swagger_ui/, vendored from npm): no CDN, so the page works offline."""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

ASSETS_DIR = Path(__file__).parent / "swagger_ui"
ASSETS_PATH = "/schema/assets"
FAVICON = "favicon-32x32.png"


def swagger_ui() -> SwaggerRenderPlugin:
    """Swagger UI at /schema (and /schema/swagger), from our own files."""
    return SwaggerRenderPlugin(
        path=["/", "/swagger"],
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        # Litestar's default favicon comes from a CDN too.
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/{FAVICON}'>",
    )


def swagger_ui_assets() -> Router:
    """The viewer's files (public, like the document they show)."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[ASSETS_DIR],
        opt={"exclude_from_auth": True},
        include_in_schema=False,
    )
