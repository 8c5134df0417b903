"""Helpers tests share: tokens, events, and waiting on real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from application.settings import Settings
from application.tokens import issue_token

NOW = datetime.now(UTC)


def auth(
    settings: Settings, tenant: str = "t_acme", *roles: str, sub: str = "tester"
) -> dict[str, str]:
    """Authorization header of a valid token."""
    token = issue_token(settings, tenant_id=tenant, roles=list(roles), subject=sub)
    return {"Authorization": f"Bearer {token}"}


def event(
    event_id: str,
    *,
    workspace: str = "ws_a",
    area: str = "compute",
    quantity: str = "1",
    unit: str = "vcpu_hour",
    at: datetime | None = None,
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A valid metering event as a producer would send it."""
    return {
        "id": event_id,
        "workspace_id": workspace,
        "product_area": area,
        "quantity": quantity,
        "unit": unit,
        "timestamp": (at or NOW - timedelta(minutes=5)).isoformat(),
        "properties": properties or {},
    }


def events(prefix: str, n: int, **kwargs: Any) -> list[dict[str, Any]]:
    return [event(f"{prefix}{i}", **kwargs) for i in range(n)]


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that points `billing` processes at a test's schema."""
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "BILLING_DB_SCHEMA": settings.db_schema,
            "BILLING_REDIS_NAMESPACE": settings.redis_namespace,
            "BILLING_JWT_SECRET": settings.jwt_secret,
            "BILLING_EXPORT_DIR": str(settings.export_dir),
            "BILLING_PROJECTION_TICK_SECONDS": str(settings.projection_tick_seconds),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class Process:
    """A `billing` subprocess whose output is watched line by line."""

    def __init__(self, args: Iterable[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "interfaces.cli", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: we can stop all of it
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_output(
        self, text: str, *, count: int = 1, timeout: float = 60.0
    ) -> None:
        """Block until `text` has appeared `count` times in the output."""

        def seen() -> bool:
            return (
                sum(text in line for line in self.lines) >= count
                or self.proc.poll() is not None
            )

        with self._changed:
            if not self._changed.wait_for(seen, timeout=timeout):
                raise TimeoutError(
                    f"{text!r} not seen in {timeout} s:\n{self.output()}"
                )
        if sum(text in line for line in self.lines) < count:
            raise RuntimeError(f"process exited before {text!r}:\n{self.output()}")

    def output(self) -> str:
        return "".join(self.lines[-80:])

    def wait(self, timeout: float) -> int:
        """The exit status once the process has ended and all its output is read."""
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return self.proc.returncode

    def stop(self, *, kill: bool = False) -> int:
        """SIGTERM (or SIGKILL) the whole process group, e.g. dramatiq's children."""
        if self.proc.poll() is None:
            self._signal_group(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=10)
        if kill:
            self._signal_group(signal.SIGKILL)  # children the parent left behind
        self._reader.join(timeout=5)
        return self.proc.returncode

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)


def caught_up(write_side: Any, timeout: float = 30.0) -> None:
    """Block (on NOTIFY, not sleep) until every projection has every upstream's head."""
    projector = write_side.projector
    for name, projection in projector.projections.items():
        for upstream in projection.upstreams:
            head = projector.upstreams[upstream].head_position()
            if not projector.wait_for(name, upstream, head, timeout):
                raise TimeoutError(f"{name} did not reach {upstream} position {head}")
