"""What the HTTP handlers use, built once per process from Settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from application.audit import AuditWriter
from application.bootstrap import WriteSide
from application.corrections import Corrections
from application.recording import Ingestor
from application.settings import Settings
from application.tokens import TokenVerifier
from interfaces.http.observability import Metrics


@dataclass
class ApiServices:
    settings: Settings
    write_side: WriteSide
    audit: AuditWriter
    ingestor: Ingestor
    corrections: Corrections
    verifier: TokenVerifier
    metrics: Metrics
    extras: dict[str, Any]
