"""`billing demo` (what `make demo` runs) serves; Ctrl-C or kill stops all of it."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from application.settings import Settings
from tests.conftest import DATABASE_URL, REDIS_URL, drop_schema
from tests.e2e.conftest import free_port
from tests.support import Process, env_for


@pytest.fixture
def demo_settings(real_services: None, tmp_path: Path) -> Iterator[Settings]:
    schema = f"e2e_demo_{uuid.uuid4().hex[:8]}"
    settings = Settings(
        database_url=DATABASE_URL,
        redis_url=REDIS_URL,
        db_schema=schema,
        redis_namespace=f"test-{schema}",
        export_dir=tmp_path / "exports",
    )
    try:
        yield settings
    finally:
        drop_schema(settings)
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{settings.redis_namespace}:*"))
        if keys:
            client.delete(*keys)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param(lambda pid: os.killpg(pid, signal.SIGINT), id="ctrl-c"),
        pytest.param(lambda pid: os.kill(pid, signal.SIGTERM), id="kill"),
    ],
)
def test_demo_serves_seeded_usage_and_stops_cleanly(
    demo_settings: Settings, stop: Callable[[int], None]
) -> None:
    env = env_for(demo_settings)
    tiny = ("--tenants", "1", "--workspaces", "1", "--product-areas", "2")
    tiny += ("--days", "3")
    seed = Process(["seed", *tiny], env)
    assert seed.proc.wait(timeout=120) == 0, seed.output()
    seed.stop()

    port = free_port()
    demo = Process(["demo", "--port", str(port)], env)
    try:
        demo.wait_for_output("Uvicorn running on")
        assert "seeding" not in demo.output()  # data existed: not seeded twice
        admin = next(
            line.split()[1] for line in demo.lines if line.strip().startswith("admin ")
        )
        answer = httpx.get(
            f"http://127.0.0.1:{port}/api/billing/usage",
            params={"period": "current"},
            headers={"Authorization": f"Bearer {admin}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["tenant_id"] == "t_acme"

        stop(demo.proc.pid)  # a terminal's Ctrl-C, or `kill` of the demo alone
        assert demo.proc.wait(timeout=60) == 0, demo.output()
        demo._reader.join(timeout=5)
        assert "stopping the API and the worker" in demo.output()
        assert "Traceback" not in demo.output()
        assert not _group_alive(demo.proc.pid), "a child outlived the demo"
    finally:
        demo.stop(kill=True)
