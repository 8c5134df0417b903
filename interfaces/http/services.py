"""What the HTTP handlers use, built once per process from Settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from application.audit.group_commit import AsyncAuditWriter
from application.audit.writer import AuditWriter
from application.bootstrap import WriteSide
from application.metering.corrections import Corrections
from application.metering.ingestor import Ingestor
from application.projecting.progress import PositionWatcher
from application.serving.audit import AuditReader
from application.serving.usage import UsageService
from application.settings import Settings
from application.tokens import TokenVerifier
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
