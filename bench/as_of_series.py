"""As-of forecast and anomaly answers against the live read of the same answer.

    BILLING_DB_SCHEMA=demo .venv/bin/python bench/as_of_series.py \
        [--tenant t_acme] [--calls 20] [--period current]

Reads a database already seeded and projected (`billing seed`, then the
worker or `billing projections` catching up): for one tenant's whole period,
the live read (snapshot and rows in one transaction, shaped and encoded as
the service does, no cache) and the as-of answers derived from the histories
(forecast_at, anomalies_at) at the live read model's own positions, and at an
instant. Prints p50/p95 over --calls calls each, and whether the bytes match.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg

from application.serving.anomalies import anomalies_out
from application.serving.forecast import forecast_out
from application.settings import Settings
from projections.anomalies.as_of import anomalies_at
from projections.anomalies.postgres import AnomalyProjection
from projections.anomalies.reader import AnomalyReader
from projections.forecast.as_of import forecast_at
from projections.forecast.postgres import ForecastProjection
from projections.forecast.reader import ForecastReader
from projections.history import Cut

encode = msgspec.json.Encoder().encode
Conn = psycopg.AsyncConnection[Any]


async def live_forecast(conn: Conn, tenant: str, period: str, now: datetime) -> Any:
    reader = ForecastReader()
    async with conn.transaction():
        snapshot = await reader.snapshot(conn, tenant, period, now)
        row, lines = await reader.answer(conn, tenant, snapshot.period.start, None)
    return snapshot, encode(forecast_out(tenant, None, snapshot, row, lines))


async def live_anomalies(conn: Conn, tenant: str, period: str, now: datetime) -> Any:
    reader = AnomalyReader()
    async with conn.transaction():
        snapshot = await reader.snapshot(conn, tenant, period, now)
        flags, unjudged = await reader.flags(
            conn, tenant, snapshot.period.start, None, None
        )
    return snapshot, encode(anomalies_out(tenant, snapshot, flags, unjudged))


async def timed(calls: int, run: Callable[[], Awaitable[bytes]]) -> tuple[str, bytes]:
    times, body = [], b""
    for _ in range(calls):
        started = time.perf_counter()
        body = await run()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return f"p50 {statistics.median(times):7.1f} ms  p95 {p95:7.1f} ms", body


async def main(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    tenant, period, now = args.tenant, args.period, datetime.now(UTC)
    async with await Conn.connect(settings.conninfo(), autocommit=True) as conn:
        for name, live, derive, upstreams in (
            ("forecast", live_forecast, _forecast, ForecastProjection.upstreams),
            ("anomalies", live_anomalies, _anomalies, AnomalyProjection.upstreams),
        ):
            snapshot, _ = await live(conn, tenant, period, now)
            cut = Cut({u: snapshot.positions.get(u, 0) for u in upstreams})

            async def live_read(live: Any = live) -> bytes:
                body: bytes = (await live(conn, tenant, period, now))[1]
                return body

            figures, served = await timed(args.calls, live_read)
            print(f"{name:9} live read            {figures}")
            for label, at in (("positions", cut), ("instant  ", Cut(at=now))):

                async def as_of(at: Cut = at, derive: Any = derive) -> bytes:
                    async with conn.transaction():
                        body: bytes = await derive(conn, tenant, period, at, now)
                    return body

                figures, body = await timed(args.calls, as_of)
                same = "same bytes" if body == served else "DIFFERENT bytes"
                print(f"{name:9} as of {label}      {figures}  ({same})")


async def _forecast(
    conn: Conn, tenant: str, period: str, cut: Cut, now: datetime
) -> bytes:
    snapshot, row, lines = await forecast_at(conn, tenant, period, None, cut, now)
    return encode(forecast_out(tenant, None, snapshot, row, lines))


async def _anomalies(
    conn: Conn, tenant: str, period: str, cut: Cut, now: datetime
) -> bytes:
    snapshot, flags, unjudged = await anomalies_at(
        conn, tenant, period, None, None, cut, now
    )
    return encode(anomalies_out(tenant, snapshot, flags, unjudged))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenant", default="t_acme")
    parser.add_argument("--period", default="current")
    parser.add_argument("--calls", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
