"""Request ids, one access-log line per request, and Prometheus metrics.

With several HTTP processes (`billing serve --workers N`) the metrics are kept
in prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, which
`serve` sets up), so any process's /metrics answers for all of them.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

access_log = logging.getLogger("billing.access")
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class Metrics:
    """The service's Prometheus metrics, in their own registry."""

    # generate_latest() writes the classic text format (names escaped to
    # underscores), which is version 0.0.4.
    content_type = CONTENT_TYPE_PLAIN_0_0_4

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "billing_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route", "status"],
            registry=r,
            buckets=(
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                10,
            ),
        )
        self.request_errors = Counter(
            "billing_http_request_errors_total",
            "HTTP responses with status >= 500 by route",
            ["method", "route", "status"],
            registry=r,
        )
        self.ingested = Counter(
            "billing_ingest_events_total",
            "Metering events received, by result",
            ["result", "path"],
            registry=r,
        )
        self.cache = Counter(
            "billing_usage_cache_total", "Usage cache lookups", ["result"], registry=r
        )
        self.projection_position = Gauge(
            "billing_projection_position",
            "Notification position a projection has processed",
            ["projection", "upstream"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.projection_head = Gauge(
            "billing_projection_head",
            "Newest notification position of an upstream",
            ["projection", "upstream"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.projection_lag_events = Gauge(
            "billing_projection_lag_events",
            "Events a projection has yet to process",
            ["projection", "upstream"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.projection_lag_seconds = Gauge(
            "billing_projection_lag_seconds",
            "Age of the oldest event a projection has yet to process",
            ["projection", "upstream"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.projection_stalled = Gauge(
            "billing_projection_stalled",
            "1 while a read model fails at the same record again and again",
            ["projection"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.projection_failures = Gauge(
            "billing_projection_consecutive_failures",
            "Failures in a row of a read model's live copy (0 when it advances)",
            ["projection"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.projection_rebuild_failed = Gauge(
            "billing_projection_rebuild_failed",
            "1 while the last rebuild of a read model failed and none replaced it",
            ["projection"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.queue_depth = Gauge(
            "billing_queue_depth",
            "Messages waiting in a Dramatiq queue",
            ["queue"],
            registry=r,
            multiprocess_mode="mostrecent",
        )

    def exposition(self) -> bytes:
        """The text format: this process's registry, or every HTTP process's."""
        if os.environ.get(MULTIPROCESS_DIR):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_metrics(*, processes: int) -> Iterator[None]:
    """With several HTTP processes, a fresh directory where they all keep their
    metrics (prometheus_client's multiprocess mode), removed afterwards; a
    directory already given in PROMETHEUS_MULTIPROC_DIR is used as it is."""
    if processes < 2 or os.environ.get(MULTIPROCESS_DIR):
        yield
        return
    directory = tempfile.mkdtemp(prefix="billing-metrics-")
    os.environ[MULTIPROCESS_DIR] = directory
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_DIR]
        shutil.rmtree(directory, ignore_errors=True)


class RequestContextMiddleware(ASGIMiddleware):
    """Gives each request an id (X-Request-ID, echoed), logs it and measures it."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp
    ) -> None:
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id  # type: ignore[typeddict-unknown-key]
        started = time.perf_counter()
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await next_app(scope, receive, send_with_id)
        except Exception as exc:
            # Raised before any response (an authentication failure, say): the
            # app's exception handler answers outside this middleware, so the
            # status is the exception's and the request id travels on it.
            if status is None and isinstance(exc, HTTPException):
                status = exc.status_code
                exc.headers = {**(exc.headers or {}), "X-Request-ID": request_id}
            raise
        finally:
            elapsed = time.perf_counter() - started
            self._record(scope, status or 500, elapsed, request_id)

    def _record(
        self, scope: Scope, status: int, seconds: float, request_id: str
    ) -> None:
        route = scope.get("path_template") or "unmatched"  # type: ignore[call-overload]
        method = scope.get("method", "")  # type: ignore[call-overload]
        labels = (method, route, str(status))
        self.metrics.request_seconds.labels(*labels).observe(seconds)
        if status >= 500:
            self.metrics.request_errors.labels(*labels).inc()
        user: Any = scope.get("user")  # type: ignore[call-overload]
        access_log.info(
            "%s %s %d",
            method,
            route,
            status,
            extra={
                "request_id": request_id,
                "tenant_id": getattr(user, "tenant_id", None),
                "actor_id": getattr(user, "subject", None),
                "method": method,
                "route": route,
                "path": scope.get("path"),  # type: ignore[call-overload]
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
            },
        )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):  # type: ignore[call-overload]
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _SAFE_REQUEST_ID.fullmatch(candidate):
                return str(candidate)
            break
    return uuid.uuid4().hex
