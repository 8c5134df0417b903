"""The ASGI entry point uvicorn loads (`billing serve`)."""

from __future__ import annotations

from litestar import Litestar

from application.logs import configure_logging
from application.settings import Settings
from interfaces.http.app import create_app


def create() -> Litestar:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    return create_app(settings)
