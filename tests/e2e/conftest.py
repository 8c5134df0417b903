"""End-to-end fixtures: the real `billing serve` and `billing worker` processes."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from application.bootstrap import initialise_database
from application.settings import Settings
from tests.conftest import DATABASE_URL, REDIS_URL, drop_schema
from tests.support import Process, env_for


@dataclass
class Service:
    settings: Settings
    base_url: str
    server: Process
    worker: Process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service(
    real_services: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """API and worker as an operator runs them, on a schema of their own."""
    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    settings = Settings(
        database_url=DATABASE_URL,
        redis_url=REDIS_URL,
        db_schema=schema,
        redis_namespace=f"test-{schema}",
        export_dir=Path(tmp_path_factory.mktemp("exports")),
        projection_tick_seconds=1.0,
    )
    initialise_database(settings)
    port = free_port()
    env = env_for(settings)
    server = Process(["serve", "--host", "127.0.0.1", "--port", str(port)], env)
    worker = Process(["worker", "--processes", "1", "--threads", "2"], env)
    try:
        server.wait_for_output("Uvicorn running on")
        worker.wait_for_output("Worker process is ready for action")
        yield Service(settings, f"http://127.0.0.1:{port}", server, worker)
    finally:
        server.stop()
        worker.stop()
        drop_schema(settings)
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{settings.redis_namespace}:*"))
        if keys:
            client.delete(*keys)
