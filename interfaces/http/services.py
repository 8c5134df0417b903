"""What the HTTP handlers use, built once per process from Settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from application.audit import AuditWriter
from application.audit_async import AsyncAuditWriter
from application.audit_queries import AuditReader
from application.bootstrap import WriteSide
from application.corrections import Corrections
from application.positions import PositionWatcher
from application.recording import Ingestor
from application.settings import Settings
from application.tokens import TokenVerifier
from application.usage_service import UsageService
from interfaces.http.observability import Metrics


@dataclass
class ApiServices:
    """Built in two steps: the sync parts at import, the async ones at startup."""

    settings: Settings
    write_side: WriteSide
    audit: AuditWriter
    ingestor: Ingestor
    corrections: Corrections
    verifier: TokenVerifier
    metrics: Metrics
    redis: Any
    read_pool: AsyncConnectionPool[Any] | None = None
    write_pool: AsyncConnectionPool[Any] | None = None
    watcher: PositionWatcher | None = None
    async_audit: AsyncAuditWriter = field(init=False)
    usage: UsageService = field(init=False)
    audit_reader: AuditReader = field(init=False)
