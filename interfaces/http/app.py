"""The Litestar application: one create_app(), composed from Settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router
from psycopg import AsyncConnection, IsolationLevel
from psycopg_pool import AsyncConnectionPool

from application.audit.group_commit import AsyncAuditWriter
from application.audit.writer import AuditWriter
from application.bootstrap import bootstrap
from application.clock import utc_now
from application.metering.corrections import Corrections
from application.metering.ingestor import Ingestor
from application.projecting.progress import PositionWatcher, progress_channel
from application.serving.audit import AuditReader
from application.serving.cache import UsageCache
from application.serving.usage import UsageService
from application.settings import Settings
from application.store.database import ensure_database
from application.tokens import TokenVerifier
from interfaces.http.audit import AuditController
from interfaces.http.auth import BearerTokenMiddleware
from interfaces.http.billing import BillingController
from interfaces.http.bodies import JsonRequest
from interfaces.http.dashboard import DashboardController
from interfaces.http.errors import EXCEPTION_HANDLERS
from interfaces.http.limits import HeaderLimitMiddleware
from interfaces.http.metering import MeteringController
from interfaces.http.observability import Metrics, RequestContextMiddleware
from interfaces.http.ops import OpsController
from interfaces.http.platform import PlatformController
from interfaces.http.services import ApiServices
from interfaces.http.system import SystemController
from projections.usage_daily.reader import UsageReader

STATIC_DIR = Path(__file__).parent / "static"
ROUTES: list[Any] = [
    MeteringController,
    BillingController,
    AuditController,
    OpsController,
    PlatformController,
    SystemController,
    DashboardController,
]


def build_services(settings: Settings) -> ApiServices:
    """The synchronous half: event-sourced applications and their helpers."""
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
            write_side.metering,
            write_side.ledger,
            write_side.projector,
            audit,
            clock=utc_now,
        ),
        verifier=TokenVerifier(settings),
        metrics=Metrics(),
        redis=aioredis.Redis.from_url(
            settings.redis_url, socket_timeout=0.25, socket_connect_timeout=0.25
        ),
    )


async def _read_only_snapshots(conn: AsyncConnection[Any]) -> None:
    """Single statements run on their own (no BEGIN/COMMIT round trips); explicit
    transactions are REPEATABLE READ and read only."""
    await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
    await conn.set_read_only(True)
    await conn.set_autocommit(True)


async def start_read_side(services: ApiServices) -> None:
    """The asynchronous half, inside the server's event loop."""
    settings = services.settings
    # No per-checkout ping: a connection broken by a database restart fails
    # its request (503) and the pool replaces it.
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        settings.conninfo(application_name="billing-api-read"),
        min_size=1,
        max_size=settings.db_pool_size,
        open=False,
        configure=_read_only_snapshots,
    )
    write_pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        settings.conninfo(application_name="billing-api-audit"),
        min_size=1,
        max_size=2,
        open=False,
    )
    await pool.open(wait=True, timeout=10)
    await write_pool.open(wait=True, timeout=10)
    services.write_pool = write_pool
    services.async_audit = AsyncAuditWriter(
        services.write_side.audit, write_pool, utc_now
    )
    watcher = PositionWatcher(settings.conninfo(), progress_channel(settings.db_schema))
    await watcher.start()
    services.read_pool, services.watcher = pool, watcher
    services.usage = UsageService(
        pool,
        UsageReader(services.write_side.metering.events_table),
        UsageCache(
            services.redis,
            settings.redis_namespace,
            local_bytes=settings.local_cache_bytes,
        ),
        services.async_audit,
        watcher,
        clock=utc_now,
        export_dir=settings.export_dir,
        max_wait_seconds=settings.max_read_wait_seconds,
    )
    services.audit_reader = AuditReader(pool)


async def stop(services: ApiServices) -> None:
    if services.watcher:
        await services.watcher.stop()
    for pool in (services.read_pool, services.write_pool):
        if pool:
            await pool.close()
    services.audit.close()
    await services.redis.aclose()
    services.write_side.close()


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await start_read_side(services)
        try:
            yield
        finally:
            await stop(services)

    async def provide_services() -> ApiServices:
        return services

    return Litestar(
        route_handlers=[
            *ROUTES,
            create_static_files_router(
                path="/static",
                directories=[STATIC_DIR],
                opt={"exclude_from_auth": True},
                include_in_schema=False,
            ),
        ],
        dependencies={"services": Provide(provide_services)},
        middleware=[
            RequestContextMiddleware(services.metrics),
            HeaderLimitMiddleware(settings.max_header_bytes),
            DefineMiddleware(BearerTokenMiddleware, exclude=["^/schema"]),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        state=State(
            {
                "verifier": services.verifier,
                "audit_writer": services.audit,
                "settings": settings,
                "services": services,
            }
        ),
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
        ),
        logging_config=None,  # keep our JSON logging (application/logs.py)
        debug=False,
    )
