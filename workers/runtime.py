"""Per-process state of a worker: the write side, built after Dramatiq forks."""

from __future__ import annotations

import threading

from application.bootstrap import WriteSide, bootstrap
from application.clock import utc_now
from application.metering.ingestor import Ingestor
from application.tokens import TokenVerifier
from workers.broker import settings

_lock = threading.Lock()
_state: dict[str, object] = {}


def write_side() -> WriteSide:
    with _lock:
        if "write_side" not in _state:
            _state["write_side"] = bootstrap(settings, create_tables=True)
    return _state["write_side"]  # type: ignore[return-value]


def ingestor() -> Ingestor:
    ws = write_side()
    with _lock:
        if "ingestor" not in _state:
            _state["ingestor"] = Ingestor(
                ws.metering,
                ws.tenants,
                clock=utc_now,
                max_events=settings.max_batch_events,
            )
    return _state["ingestor"]  # type: ignore[return-value]


def verifier() -> TokenVerifier:
    with _lock:
        if "verifier" not in _state:
            _state["verifier"] = TokenVerifier(settings)
    return _state["verifier"]  # type: ignore[return-value]
