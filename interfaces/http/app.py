"""The Litestar application: one create_app(), composed from Settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from application.audit import AuditWriter
from application.bootstrap import bootstrap
from application.clock import utc_now
from application.corrections import Corrections
from application.database import ensure_database
from application.recording import Ingestor
from application.settings import Settings
from application.tokens import TokenVerifier
from interfaces.http.auth import BearerTokenMiddleware
from interfaces.http.errors import EXCEPTION_HANDLERS
from interfaces.http.metering import MeteringController
from interfaces.http.observability import Metrics, RequestContextMiddleware
from interfaces.http.ops import OpsController
from interfaces.http.services import ApiServices
from interfaces.http.system import SystemController

ROUTES: list[Any] = [MeteringController, OpsController, SystemController]


def build_services(settings: Settings) -> ApiServices:
    ensure_database(settings)
    write_side = bootstrap(settings, create_tables=True)
    audit = AuditWriter(write_side.audit, clock=utc_now)
    return ApiServices(
        settings=settings,
        write_side=write_side,
        audit=audit,
        ingestor=Ingestor(
            write_side.metering,
            write_side.tenants,
            clock=utc_now,
            max_events=settings.max_batch_events,
        ),
        corrections=Corrections(
            write_side.metering, write_side.tenants, write_side.projector, audit,
            clock=utc_now,
        ),  # fmt: skip
        verifier=TokenVerifier(settings),
        metrics=Metrics(),
        extras={
            "redis": aioredis.Redis.from_url(
                settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
        },
    )


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            services.audit.close()
            await services.extras["redis"].aclose()
            services.write_side.close()

    async def provide_services() -> ApiServices:
        return services

    return Litestar(
        route_handlers=ROUTES,
        dependencies={"services": Provide(provide_services)},
        middleware=[
            RequestContextMiddleware(services.metrics),
            DefineMiddleware(BearerTokenMiddleware, exclude=["^/schema"]),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        state=State({"verifier": services.verifier, "audit_writer": services.audit}),
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Usage-based billing dashboard API",
            version="0.1.0",
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
            security=[{"bearer": []}],
        ),
        debug=False,
    )
