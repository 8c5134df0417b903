"""Liveness, readiness and Prometheus metrics (no token needed)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency

from application.bootstrap import ReadSide
from application.projecting.projector import Projector
from application.settings import Settings
from interfaces.http.errors import DATABASE_RETRY_AFTER
from interfaces.http.observability import Metrics

log = logging.getLogger(__name__)


class HealthOut(msgspec.Struct):
    status: str
    checks: dict[str, str] = {}


class SystemController(Controller):
    tags = ["system"]
    opt = {"exclude_from_auth": True}

    @get("/healthz", summary="Liveness: the process answers")
    async def healthz(self) -> HealthOut:
        return HealthOut("ok")

    @get(
        "/readyz",
        summary="Readiness: PostgreSQL (required), Redis (cache), read models",
    )
    async def readyz(
        self,
        read_side: NamedDependency[ReadSide],
        projector: NamedDependency[Projector],
    ) -> Response[HealthOut]:
        """503 without PostgreSQL. Without Redis the API still answers correctly
        (uncached), and with a stalled read model it still serves what that one
        holds: ready either way, and it says `degraded`."""
        checks = {
            "postgres": await _check(_ping_postgres(read_side)),
            "redis": await _check(read_side.redis.ping()),
        }
        if checks["postgres"] != "ok":
            return Response(
                HealthOut("unavailable", checks),
                status_code=503,
                headers={"Retry-After": DATABASE_RETRY_AFTER},
            )
        checks["projections"] = await _projections_check(projector)
        ok = all(check == "ok" for check in checks.values())
        return Response(HealthOut("ok" if ok else "degraded", checks), status_code=200)

    @get("/metrics", summary="Prometheus metrics", media_type="text/plain")
    async def metrics(
        self,
        metrics: NamedDependency[Metrics],
        projector: NamedDependency[Projector],
        read_side: NamedDependency[ReadSide],
        settings: NamedDependency[Settings],
    ) -> Response[bytes]:
        await _refresh_projection_gauges(metrics, projector)
        await _refresh_queue_depths(metrics, read_side, settings.redis_namespace)
        # The exact header: Litestar would add a second charset to a text/
        # media type that already names one.
        return Response(
            metrics.exposition(), headers={"Content-Type": metrics.content_type}
        )


async def _check(awaitable: Any) -> str:
    try:
        await asyncio.wait_for(awaitable, timeout=2.0)
    except Exception as e:  # noqa: BLE001 - any failure means "not ready"
        return f"unavailable: {type(e).__name__}"
    return "ok"


async def _projections_check(projector: Projector) -> str:
    """`ok`, or the stalled read models (why: GET /api/platform/projections)."""
    try:
        stalled = await asyncio.wait_for(
            anyio.to_thread.run_sync(projector.stalled), 2.0
        )
    except Exception as e:  # noqa: BLE001 - unknown is not ok
        return f"unavailable: {type(e).__name__}"
    return f"stalled: {', '.join(stalled)}" if stalled else "ok"


async def _ping_postgres(read_side: ReadSide) -> None:
    """A round trip on the API's own read pool (what requests will use)."""
    async with read_side.read_pool.connection() as conn:
        await conn.execute("SELECT 1")


async def _refresh_projection_gauges(m: Metrics, projector: Projector) -> None:
    try:
        statuses = await anyio.to_thread.run_sync(projector.status)
    except Exception as e:  # noqa: BLE001 - metrics must answer even when the DB is down
        log.warning("projection status unavailable for metrics: %s", type(e).__name__)
        return
    for s in statuses:
        m.projection_stalled.labels(s.name).set(s.state == "stalled")
        m.projection_failures.labels(s.name).set(s.failure.failures if s.failure else 0)
        m.projection_rebuild_failed.labels(s.name).set(s.rebuild_failure is not None)
        for u in s.upstreams:
            labels = (s.name, u.upstream)
            m.projection_position.labels(*labels).set(u.position)
            m.projection_head.labels(*labels).set(u.head)
            m.projection_lag_events.labels(*labels).set(u.lag_events)
            m.projection_lag_seconds.labels(*labels).set(u.lag_seconds)


async def _refresh_queue_depths(
    m: Metrics, read_side: ReadSide, namespace: str
) -> None:
    for queue in ("ingest", "projections"):
        try:
            depth = await read_side.redis.llen(f"{namespace}:{queue}")
        except Exception:  # noqa: BLE001, S112 - Redis down: leave the gauge as it was
            continue
        m.queue_depth.labels(queue).set(depth)
