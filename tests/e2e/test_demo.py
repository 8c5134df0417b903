"""`billing demo` (what `make demo` runs) serves; Ctrl-C or kill stops all of it."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import httpx
import pytest

from application.settings import Settings
from tests.e2e.conftest import free_port
from tests.support import Process, env_for


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
    settings: Settings, stop: Callable[[int], None]
) -> None:
    env = env_for(settings)
    tiny = ("--tenants", "1", "--workspaces", "1", "--product-areas", "2")
    tiny += ("--days", "3")
    seed = Process(["seed", *tiny], env)
    assert seed.wait(timeout=120) == 0, seed.output()

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
        assert demo.wait(timeout=60) == 0, demo.output()
        assert "stopping the API and the worker" in demo.output()
        assert "Traceback" not in demo.output()
        assert not _group_alive(demo.proc.pid), "a child outlived the demo"
    finally:
        demo.stop(kill=True)
