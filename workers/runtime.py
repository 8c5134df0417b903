"""Per-process state of a worker: the services, built after Dramatiq forks."""

from __future__ import annotations

import threading

from application.bootstrap import Services, WriteSide, build_services
from application.metering.ingestor import Ingestor
from application.tokens import TokenVerifier
from workers.broker import settings

_lock = threading.Lock()
_built: list[Services] = []


def services() -> Services:
    """Built once per worker process, from the composition root."""
    with _lock:
        if not _built:
            _built.append(build_services(settings))
    return _built[0]


def write_side() -> WriteSide:
    return services().write_side


def ingestor() -> Ingestor:
    return services().ingestor


def verifier() -> TokenVerifier:
    return services().verifier
