"""Liveness, readiness and Prometheus metrics (no token needed)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST

from interfaces.http.services import ApiServices

log = logging.getLogger(__name__)


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = {}


class SystemController(Controller):
    tags = ["system"]
    opt = {"exclude_from_auth": True}

    @get("/healthz", summary="Liveness: the process answers")
    async def healthz(self) -> Health:
        return Health("ok")

    @get("/readyz", summary="Readiness: PostgreSQL (required) and Redis (cache)")
    async def readyz(self, services: NamedDependency[ApiServices]) -> Response[Health]:
        """503 without PostgreSQL. Without Redis the API still answers correctly
        (uncached), so it stays ready and says `degraded`."""
        checks = {
            "postgres": await _check(
                anyio.to_thread.run_sync(_ping_postgres, services)
            ),
            "redis": await _check(services.redis.ping()),
        }
        if checks["postgres"] != "ok":
            return Response(Health("unavailable", checks), status_code=503)
        status = "ok" if checks["redis"] == "ok" else "degraded"
        return Response(Health(status, checks), status_code=200)

    @get("/metrics", summary="Prometheus metrics", media_type="text/plain")
    async def metrics(self, services: NamedDependency[ApiServices]) -> Response[bytes]:
        await _refresh_projection_gauges(services)
        body = services.metrics.exposition()
        return Response(body, media_type=CONTENT_TYPE_LATEST)


async def _check(awaitable: Any) -> str:
    try:
        await asyncio.wait_for(awaitable, timeout=2.0)
    except Exception as e:  # noqa: BLE001 - any failure means "not ready"
        return f"unavailable: {type(e).__name__}"
    return "ok"


def _ping_postgres(services: ApiServices) -> None:
    with services.write_side.projector.datastore.get_connection() as conn:
        conn.execute("SELECT 1")


async def _refresh_projection_gauges(services: ApiServices) -> None:
    m = services.metrics
    try:
        statuses = await anyio.to_thread.run_sync(services.write_side.projector.status)
    except Exception as e:  # noqa: BLE001 - metrics must answer even when the DB is down
        log.warning("projection status unavailable for metrics: %s", type(e).__name__)
        return
    for s in statuses:
        for u in s.upstreams:
            labels = (s.name, u.upstream)
            m.projection_position.labels(*labels).set(u.position)
            m.projection_head.labels(*labels).set(u.head)
            m.projection_lag_events.labels(*labels).set(u.lag_events)
            m.projection_lag_seconds.labels(*labels).set(u.lag_seconds)
    redis = services.redis
    for queue in ("ingest", "projections"):
        try:
            depth = await redis.llen(f"{services.settings.redis_namespace}:{queue}")
        except Exception:  # noqa: BLE001, S112 - Redis down: leave the gauge as it was
            continue
        m.queue_depth.labels(queue).set(depth)
