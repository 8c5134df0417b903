"""The composition root: every service is built here, from Settings.

HTTP (interfaces/http/app.py), the workers (workers/runtime.py), the CLI and the
tests all call it. Two halves: `build_services` (write side, ingest,
corrections, tokens; no event loop needed) and `open_read_side` (the async
pools, cache and waiters the API serves from, opened inside its event loop).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from psycopg import AsyncConnection, IsolationLevel
from psycopg_pool import AsyncConnectionPool

from application.anomaly_reviews import AnomalyReviewsApp
from application.audit.group_commit import AsyncAuditWriter, append_function_ddl
from application.audit.writer import AuditApp, AuditWriter
from application.clock import Clock, utc_now
from application.metering.app import MeteringApp
from application.metering.corrections import Corrections
from application.metering.ingestor import Ingestor
from application.notifying.delivering import Deliverer, RetryPolicy
from application.notifying.dispatcher import Dispatcher, DispatchLoop, Enqueue
from application.notifying.endpoints import WebhookEndpoints
from application.notifying.store import WebhookStore
from application.price_book import PriceBookApp
from application.projecting.progress import PositionWatcher, progress_channel
from application.projecting.projector import Projector
from application.serving.anomalies import AnomalyService
from application.serving.audit import AuditReader
from application.serving.cache import UsageCache
from application.serving.explain import ExplainService
from application.serving.exports import ExportService
from application.serving.forecast import ForecastService
from application.serving.replay import ReplayService
from application.serving.usage import UsageService
from application.settings import Settings
from application.store.database import connect, ensure_database
from application.store.waits import RECONNECT_GIVE_UP_SECONDS, bound_pool
from application.tenants import TenantSettingsApp
from application.time_passing import ClockApp
from application.tokens import TokenVerifier
from projections.anomalies.postgres import AnomalyProjection
from projections.audit_log.postgres import AuditLogProjection
from projections.base import Projection
from projections.forecast.postgres import ForecastProjection
from projections.usage_daily.ledger import LedgerReader
from projections.usage_daily.postgres import UsageDailyProjection
from projections.usage_daily.reader import UsageReader
from projections.usage_exports.postgres import UsageExportsProjection

PROJECTIONS: dict[str, Projection] = {
    p.name: p
    for p in (
        UsageDailyProjection(),
        UsageExportsProjection(),
        AuditLogProjection(),
        ForecastProjection(),
        AnomalyProjection(),
    )
}


@dataclass
class WriteSide:
    """The event-sourced applications and the projection runtime over them."""

    settings: Settings
    metering: MeteringApp
    tenants: TenantSettingsApp
    price_book: PriceBookApp
    audit: AuditApp
    clock: ClockApp
    reviews: AnomalyReviewsApp
    projector: Projector
    webhook_store: WebhookStore

    @property
    def ledger(self) -> LedgerReader:
        """The usage ledger as corrections read it (a connection per call)."""
        return LedgerReader(partial(connect, self.settings))

    def close(self) -> None:
        self.projector.close()
        self.webhook_store.close()
        for app in (
            self.metering,
            self.tenants,
            self.price_book,
            self.audit,
            self.clock,
            self.reviews,
        ):
            app.close()


def initialise_database(settings: Settings) -> None:
    """`billing db init`: database, schema, event tables, read models (idempotent)."""
    ensure_database(settings)
    write_side = bootstrap(settings, create_tables=True)
    write_side.close()


def bootstrap(settings: Settings, *, create_tables: bool = False) -> WriteSide:
    """Build the write side; with `create_tables`, also create what is missing."""
    with _schema_lock(settings) if create_tables else nullcontext():
        metering = MeteringApp(settings, create_table=create_tables)
        tenants = TenantSettingsApp(settings, create_table=create_tables)
        price_book = PriceBookApp(settings, create_table=create_tables)
        audit = AuditApp(settings, create_table=create_tables)
        clock = ClockApp(settings, create_table=create_tables)
        reviews = AnomalyReviewsApp(settings, create_table=create_tables)
        apps = (metering, tenants, audit, price_book, clock, reviews)
        upstreams = {app.name: app for app in apps}
        projector = Projector(settings, PROJECTIONS, upstreams)
        webhook_store = WebhookStore(settings)
        if create_tables:
            projector.ensure_tables()
            webhook_store.ensure_tables()
            with connect(settings, autocommit=True) as conn:
                conn.execute(
                    append_function_ddl(settings.db_schema, audit.events_table)
                )
    return WriteSide(
        settings,
        metering,
        tenants,
        price_book,
        audit,
        clock,
        reviews,
        projector,
        webhook_store,
    )


@contextmanager
def _schema_lock(settings: Settings) -> Iterator[None]:
    """Serialise DDL: PostgreSQL refuses concurrent CREATE ... IF NOT EXISTS of the
    same objects ("tuple concurrently updated") when api and worker start together."""
    key = f"{settings.db_schema}/bootstrap"
    with connect(settings, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))


@dataclass(frozen=True)
class Services:
    """What every entry point shares: the write side and the services over it."""

    settings: Settings
    write_side: WriteSide
    audit: AuditWriter
    ingestor: Ingestor
    corrections: Corrections
    verifier: TokenVerifier
    clock: Clock
    webhooks: WebhookEndpoints

    def close(self) -> None:
        self.audit.close()
        self.write_side.close()


def build_services(
    settings: Settings,
    *,
    write_side: WriteSide | None = None,
    clock: Clock = utc_now,
) -> Services:
    """Build the services (and the write side, with its tables, unless given)."""
    if write_side is None:
        ensure_database(settings)
        write_side = bootstrap(settings, create_tables=True)
    audit = AuditWriter(write_side.audit, clock=clock)
    return Services(
        settings=settings,
        write_side=write_side,
        audit=audit,
        ingestor=Ingestor(
            write_side.metering,
            write_side.tenants,
            clock=clock,
            max_events=settings.max_batch_events,
        ),
        corrections=Corrections(
            write_side.metering,
            write_side.ledger,
            write_side.projector.wait_for,
            audit,
            clock=clock,
        ),
        verifier=TokenVerifier(settings),
        clock=clock,
        webhooks=WebhookEndpoints(
            write_side.webhook_store, allow_private=settings.webhook_allow_private
        ),
    )


@dataclass(frozen=True)
class WebhookDelivery:
    """What a worker runs to deliver webhooks: the dispatch loop and the deliverer."""

    dispatcher: Dispatcher
    loop: DispatchLoop
    deliverer: Deliverer


def build_webhook_delivery(services: Services, enqueue: Enqueue) -> WebhookDelivery:
    """Dispatcher and deliverer; `enqueue` queues an attempt (the worker's actor)."""
    settings, store = services.settings, services.write_side.webhook_store
    dispatcher = Dispatcher(
        store, enqueue, recover_after_seconds=settings.webhook_recover_after_seconds
    )
    policy = RetryPolicy(
        max_attempts=settings.webhook_max_attempts,
        backoff_seconds=settings.webhook_backoff_seconds,
        max_backoff_seconds=settings.webhook_max_backoff_seconds,
    )
    return WebhookDelivery(
        dispatcher,
        DispatchLoop(
            dispatcher,
            wake_channel=progress_channel(settings.db_schema),
            tick_seconds=settings.projection_tick_seconds,
        ),
        Deliverer(
            store,
            policy,
            enqueue,
            allow_private=settings.webhook_allow_private,
            timeout_seconds=settings.webhook_timeout_seconds,
        ),
    )


@dataclass(frozen=True)
class ReadSide:
    """What the API serves reads from, opened inside its event loop."""

    read_pool: AsyncConnectionPool[Any]
    write_pool: AsyncConnectionPool[Any]
    redis: aioredis.Redis
    watcher: PositionWatcher
    async_audit: AsyncAuditWriter
    usage: UsageService
    exports: ExportService
    forecast: ForecastService
    anomalies: AnomalyService
    audit_reader: AuditReader
    explain: ExplainService
    replay: ReplayService

    async def close(self) -> None:
        await self.watcher.stop()
        for pool in (self.read_pool, self.write_pool):
            await pool.close()
        await self.redis.aclose()


def redis_client(settings: Settings) -> aioredis.Redis:
    """Short timeouts: without Redis the API answers uncached, never slowly."""
    return aioredis.Redis.from_url(
        settings.redis_url, socket_timeout=0.25, socket_connect_timeout=0.25
    )


async def open_read_side(services: Services) -> ReadSide:
    """Pools, cache, audit group commit and position watcher, then the services."""
    settings, clock = services.settings, services.clock
    # Requests (status, freshness, rebuild requests) wait no longer on the
    # projection runtime's pool than on the API's own; workers keep its defaults.
    bound_pool(services.write_side.projector.runtime.datastore.pool, settings)
    # No per-checkout ping: a connection broken by a database restart fails
    # its request (503) and the pool replaces it.
    read_pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        settings.conninfo(application_name="billing-api-read", statement_timeout=True),
        min_size=1,
        max_size=settings.db_pool_size,
        open=False,
        configure=_read_only_snapshots,
        timeout=settings.db_pool_timeout_seconds,  # bounded waits (store/waits.py)
        reconnect_timeout=RECONNECT_GIVE_UP_SECONDS,
    )
    write_pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        settings.conninfo(application_name="billing-api-audit", statement_timeout=True),
        min_size=1,
        max_size=2,
        open=False,
        timeout=settings.db_pool_timeout_seconds,  # bounded waits (store/waits.py)
        reconnect_timeout=RECONNECT_GIVE_UP_SECONDS,
    )
    await read_pool.open(wait=True, timeout=10)
    await write_pool.open(wait=True, timeout=10)
    watcher = PositionWatcher(settings.conninfo(), progress_channel(settings.db_schema))
    await watcher.start()
    redis = redis_client(settings)
    async_audit = AsyncAuditWriter(services.write_side.audit, write_pool, clock)
    cache = UsageCache(
        redis, settings.redis_namespace, local_bytes=settings.local_cache_bytes
    )
    usage = UsageService(
        read_pool,
        UsageReader(services.write_side.metering.events_table),
        cache,
        async_audit,
        watcher,
        clock=clock,
        max_wait_seconds=settings.max_read_wait_seconds,
    )
    forecast = ForecastService(
        read_pool,
        cache,
        async_audit,
        watcher,
        clock=clock,
        max_wait_seconds=settings.max_read_wait_seconds,
    )
    anomalies = AnomalyService(
        read_pool,
        cache,
        async_audit,
        watcher,
        clock=clock,
        max_wait_seconds=settings.max_read_wait_seconds,
    )
    exports = ExportService(usage, settings.export_dir)
    audit_reader = AuditReader(read_pool)
    replay = ReplayService(
        read_pool, audit_reader, async_audit, usage, exports, forecast, anomalies
    )
    return ReadSide(
        read_pool,
        write_pool,
        redis,
        watcher,
        async_audit,
        usage,
        exports,
        forecast,
        anomalies,
        audit_reader,
        ExplainService(
            read_pool,
            async_audit,
            services.write_side.metering.mapper,
            services.write_side.metering.events_table,
        ),
        replay,
    )


async def _read_only_snapshots(conn: AsyncConnection[Any]) -> None:
    """Single statements run on their own (no BEGIN/COMMIT round trips); explicit
    transactions are REPEATABLE READ and read only."""
    await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
    await conn.set_read_only(True)
    await conn.set_autocommit(True)
