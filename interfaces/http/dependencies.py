"""What handlers may ask for, by parameter name (Litestar dependencies).

Every collaborator comes from the composition root (application/bootstrap.py):
the sync half at startup, the read side once the lifespan has opened it.
Handlers name what they need (`usage: NamedDependency[UsageService]`); none of
them reaches into app.state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar.di import Provide

from application.bootstrap import ReadSide, Services
from interfaces.http.observability import Metrics


def _value(get: Callable[[], Any]) -> Provide:
    return Provide(get, sync_to_thread=False)


def dependencies(
    services: Services, read_side: Callable[[], ReadSide], metrics: Metrics
) -> dict[str, Provide]:
    """Providers for every collaborator a handler may name."""
    ws = services.write_side
    return {
        "settings": _value(lambda: services.settings),
        "clock": _value(lambda: services.clock),
        "ingestor": _value(lambda: services.ingestor),
        "corrections": _value(lambda: services.corrections),
        "audit_writer": _value(lambda: services.audit),
        "tenants": _value(lambda: ws.tenants),
        "projector": _value(lambda: ws.projector),
        "metrics": _value(lambda: metrics),
        "read_side": _value(read_side),
        "usage": _value(lambda: read_side().usage),
        "exports": _value(lambda: read_side().exports),
        "audit_reader": _value(lambda: read_side().audit_reader),
    }
