"""The Litestar application: one create_app(), composed from Settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router

from application.bootstrap import ReadSide, build_services, open_read_side
from application.settings import Settings
from interfaces.http.anomalies import AnomaliesController
from interfaces.http.audit import AuditController
from interfaces.http.audit_history import AuditHistoryController
from interfaces.http.auth import BearerTokenMiddleware
from interfaces.http.billing import BillingController
from interfaces.http.bodies import JsonRequest
from interfaces.http.budget import BudgetController
from interfaces.http.dashboard import DashboardController
from interfaces.http.dependencies import dependencies
from interfaces.http.errors import EXCEPTION_HANDLERS
from interfaces.http.forecast import ForecastController
from interfaces.http.limits import HeaderLimitMiddleware
from interfaces.http.metering import MeteringController
from interfaces.http.observability import Metrics, RequestContextMiddleware
from interfaces.http.ops import OpsController
from interfaces.http.platform import PlatformController
from interfaces.http.price_book import PriceBookAdminController, PriceBookOpsController
from interfaces.http.schema_viewer import swagger_ui, swagger_ui_assets
from interfaces.http.system import SystemController
from interfaces.http.webhooks import WebhooksController

STATIC_DIR = Path(__file__).parent / "static"
ROUTES: list[Any] = [
    MeteringController,
    BillingController,
    AuditController,
    AuditHistoryController,
    OpsController,
    PlatformController,
    PriceBookOpsController,
    PriceBookAdminController,
    BudgetController,
    ForecastController,
    AnomaliesController,
    WebhooksController,
    SystemController,
    DashboardController,
]


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    services = build_services(settings)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.read_side = await open_read_side(services)
        try:
            yield
        finally:
            await app.state.read_side.close()
            services.close()

    def read_side() -> ReadSide:
        return app.state.read_side  # type: ignore[no-any-return]

    app = Litestar(
        route_handlers=[
            *ROUTES,
            create_static_files_router(
                path="/static",
                directories=[STATIC_DIR],
                opt={"exclude_from_auth": True},
                include_in_schema=False,
            ),
            swagger_ui_assets(),
        ],
        dependencies=dependencies(services, read_side, metrics),
        middleware=[
            RequestContextMiddleware(metrics),
            HeaderLimitMiddleware(settings.max_header_bytes),
            DefineMiddleware(
                BearerTokenMiddleware, verifier=services.verifier, exclude=["^/schema"]
            ),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        # For guards (they cannot take dependencies) and tests: set once.
        state=State({"settings": settings, "services": services}),
        request_class=JsonRequest,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Usage-based billing dashboard API",
            version="0.1.0",
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http", scheme="bearer", bearer_format="JWT"
                    )
                }
            ),
            security=[{"bearer": []}],
            render_plugins=[swagger_ui()],
        ),
        logging_config=None,  # keep our JSON logging (application/logs.py)
        debug=False,
    )
    return app
