"""What handlers may ask for, by parameter name (Litestar dependencies).

Every collaborator comes from the composition root (application/bootstrap.py):
the sync half at startup, the read side once the lifespan has opened it.
Handlers name what they need (`projector: NamedDependency[Projector]`); none of
them reaches into app.state.

The hot routes (usage views and exports, ingest) take one bundle each
(`billing`, `metering`): Litestar resolves two or more dependencies of a
handler in an anyio task group, which cost a fifth of a cached usage answer's
throughput in bench/query.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar.di import Provide

from application.audit.writer import AuditWriter
from application.bootstrap import ReadSide, Services
from application.metering.corrections import Corrections
from application.metering.ingestor import Ingestor
from application.serving.anomalies import AnomalyService
from application.serving.audit import AuditReader
from application.serving.exports import ExportService
from application.serving.forecast import ForecastService
from application.serving.usage import UsageService
from interfaces.http.observability import Metrics


@dataclass(frozen=True, slots=True)
class Billing:
    """What the billing admin's routes use."""

    usage: UsageService
    exports: ExportService
    forecast: ForecastService
    anomalies: AnomalyService
    audit_reader: AuditReader
    metrics: Metrics


@dataclass(frozen=True, slots=True)
class Metering:
    """What the producers' and ops' metering routes use."""

    ingestor: Ingestor
    corrections: Corrections
    audit_writer: AuditWriter
    metrics: Metrics


def _value(get: Callable[[], Any]) -> Provide:
    return Provide(get, sync_to_thread=False)


def dependencies(
    services: Services, read_side: Callable[[], ReadSide], metrics: Metrics
) -> dict[str, Provide]:
    """Providers for every collaborator a handler may name."""
    ws = services.write_side
    metering = Metering(
        services.ingestor, services.corrections, services.audit, metrics
    )

    def billing() -> Billing:
        rs = read_side()
        return Billing(
            rs.usage, rs.exports, rs.forecast, rs.anomalies, rs.audit_reader, metrics
        )

    return {
        "billing": _value(billing),
        "metering": _value(lambda: metering),
        "settings": _value(lambda: services.settings),
        "clock": _value(lambda: services.clock),
        "audit_writer": _value(lambda: services.audit),
        "tenants": _value(lambda: ws.tenants),
        "price_book": _value(lambda: ws.price_book),
        "reviews": _value(lambda: ws.reviews),
        "projector": _value(lambda: ws.projector),
        "webhooks": _value(lambda: services.webhooks),
        "metrics": _value(lambda: metrics),
        "read_side": _value(read_side),
        "audit_reader": _value(lambda: read_side().audit_reader),
        "explainer": _value(lambda: read_side().explain),
        "replay": _value(lambda: read_side().replay),
    }
