"""`billing demo` where no PostgreSQL or Redis answers: embedded ones from the
`embedded` extra, said so, their data kept for the next demo, gone when it stops.

Needs no services (and uses none of the real ones): the configured addresses
are closed ports, and everything the demo keeps lives in a temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port
from tests.support import Process


@pytest.fixture
def home() -> Iterator[Path]:
    """The demo's var/. Not under pytest's tmp_path: run as root, the servers
    run as another user, who must be able to reach it (tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="billing-embedded-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for pid_file, marker in (
            ("pg/postmaster.pid", str(path)),
            ("redis/redis.pid", "redis-server"),
        ):
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = _pid(path / "var" / "embedded" / pid_file)
                if marker in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGKILL)  # only if the test failed midway
        shutil.rmtree(path, ignore_errors=True)


def _clean_env(home: Path) -> dict[str, str]:
    """This machine's environment without any service setting, pointed at
    addresses where nothing answers."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("BILLING_", "PG"))
        and name not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        {
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/billing",
            "REDIS_URL": "redis://127.0.0.1:2/0",
            "BILLING_EMBEDDED_DIR": str(home / "var" / "embedded"),
            "BILLING_EXPORT_DIR": str(home / "var" / "exports"),
            "BILLING_PROJECTION_TICK_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _token(demo: Process, role: str) -> str:
    return next(
        line.split()[1] for line in demo.lines if line.strip().startswith(f"{role} ")
    )


def _pid(path: Path) -> int:
    return int(path.read_text().split()[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _run_demo(home: Path, *, first: bool) -> str:
    """One demo: serves the dashboard and the API on the embedded servers,
    then stops on `kill`, and its servers with it. Returns its output."""
    env = _clean_env(home)
    embedded = home / "var" / "embedded"
    port = free_port()
    demo = Process(["demo", "--port", str(port), "--days", "3"], env)
    try:
        demo.wait_for_output("Uvicorn running on", timeout=120)
        # Reads while the worker boots can deadlock with its re-pointing of
        # the read models' views (a known race of a fresh start, not ours).
        demo.wait_for_output("Worker process is ready for action", timeout=60)
        output = "".join(demo.lines)
        assert (
            "PostgreSQL not answering on 127.0.0.1:1: using an embedded PostgreSQL 16"
            in output
        ), output
        assert "Redis not answering on 127.0.0.1:2: using an embedded Redis" in output
        assert ("seeding" in output) is first, output  # the second finds the data
        base = f"http://127.0.0.1:{port}"
        assert f"{base}/dashboard" in output

        page = httpx.get(f"{base}/dashboard", timeout=10)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        usage = httpx.get(
            f"{base}/api/billing/usage",
            params={"period": "current"},
            headers={"Authorization": f"Bearer {_token(demo, 'admin')}"},
            timeout=10,
        )
        assert usage.status_code == 200, f"{usage.text}\n{demo.output()}"
        assert usage.json()["tenant_id"] == "t_acme"

        postgres = _pid(embedded / "pg" / "postmaster.pid")
        redis_server = _pid(embedded / "redis" / "redis.pid")
        ports = [
            int(line.rsplit("(port ", 1)[1].rstrip(")\n"))
            for line in demo.lines
            if "using an embedded" in line
        ]
        assert len(ports) == 2
        assert all(_answers(p) for p in ports)

        os.kill(demo.proc.pid, signal.SIGTERM)  # `kill` of the demo alone
        assert demo.wait(timeout=90) == 0, demo.output()
        output = "".join(demo.lines)
        assert "Traceback" not in output, output
        assert "stopped the embedded Redis" in output
        assert "stopped the embedded PostgreSQL" in output
        # Stopped cleanly (PostgreSQL removes its pid file on a clean shutdown).
        assert not _alive(postgres), "the embedded PostgreSQL outlived the demo"
        assert not _alive(redis_server), "the embedded Redis outlived the demo"
        assert not (embedded / "pg" / "postmaster.pid").exists()
        assert not any(_answers(p) for p in ports)
        return output
    finally:
        demo.stop(kill=True)


def test_demo_runs_on_embedded_services_and_keeps_their_data(home: Path) -> None:
    _run_demo(home, first=True)
    _run_demo(home, first=False)
