"""PostgreSQL unreachable: requests answer 503 with Retry-After within the
configured waits (never hang), and the API recovers by itself when it is back.

These tests stop and start a PostgreSQL server of their own (never the shared
one). They assert no wall-clock durations (the machine is shared): the waits are
configured short, and a request that takes longer than HANG_SECONDS fails the
test as a hang. Durations are logged (`pytest -o log_cli=true`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from litestar.testing import TestClient

from application.settings import Settings
from interfaces.http.app import create_app
from tests.private_postgres import PrivatePostgres
from tests.support import auth, event

log = logging.getLogger(__name__)
HANG_SECONDS = 20.0
RECOVERY_TRIES = 20  # each try waits at most the pool wait (1 s here)
USAGE = "/api/billing/usage?period=current"
INGEST = "/api/metering/events"


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    try:
        server = PrivatePostgres()
    except (RuntimeError, OSError) as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no private PostgreSQL server can be started: {e}")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def running_postgres(private_postgres: PrivatePostgres) -> PrivatePostgres:
    """The private server, started again if an earlier test left it stopped."""
    if not (private_postgres.data / "postmaster.pid").exists():
        private_postgres.start()
    return private_postgres


@pytest.fixture
def outage_settings(settings: Settings, running_postgres: PrivatePostgres) -> Settings:
    """The test's own settings, on the private server, with short waits."""
    return settings.with_changes(
        database_url=running_postgres.url,
        db_connect_timeout_seconds=2,
        db_pool_timeout_seconds=1.0,
        db_statement_timeout_seconds=1.0,
    )


@pytest.fixture
def outage_client(outage_settings: Settings) -> Iterator[TestClient[Any]]:
    with TestClient(app=create_app(outage_settings)) as client:
        yield client


def answered(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    """The response, and how long it took; a request that hangs fails the test."""
    outcome: list[httpx.Response | BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            outcome.append(e)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_SECONDS)
    took = time.monotonic() - started
    if not outcome:
        pytest.fail(f"the request hung: no answer after {HANG_SECONDS:.0f} s")
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result, took


class Calls:
    """The requests the outage test makes, each bounded by `answered`."""

    def __init__(self, client: TestClient[Any], settings: Settings) -> None:
        self.client = client
        self.admin = auth(settings, "t_acme", "admin")
        self.metering = auth(settings, "t_acme", "metering")
        self.sent = 0

    def usage(self) -> tuple[httpx.Response, float]:
        return answered(lambda: self.client.get(USAGE, headers=self.admin))

    def ingest(self) -> tuple[httpx.Response, float]:
        self.sent += 1
        body = [event(f"outage_{self.sent}")]
        return answered(
            lambda: self.client.post(INGEST, json=body, headers=self.metering)
        )

    def readyz(self) -> tuple[httpx.Response, float]:
        return answered(lambda: self.client.get("/readyz"))

    def all(self) -> dict[str, Callable[[], tuple[httpx.Response, float]]]:
        return {"usage": self.usage, "ingest": self.ingest, "readyz": self.readyz}


def assert_unavailable(name: str, response: httpx.Response) -> None:
    assert response.status_code == 503, (name, response.text)
    assert int(response.headers["retry-after"]) > 0
    assert "traceback" not in response.text.lower()
    body = response.json()
    if name == "readyz":
        assert body["status"] == "unavailable"
        assert body["checks"]["postgres"].startswith("unavailable")
    else:
        assert set(body) == {"status_code", "detail"}
        assert body["status_code"] == 503
        assert body["detail"]


def test_while_postgresql_is_down_requests_answer_503_and_recover_by_themselves(
    outage_client: TestClient[Any],
    outage_settings: Settings,
    running_postgres: PrivatePostgres,
) -> None:
    calls = Calls(outage_client, outage_settings)
    for name, call in calls.all().items():
        response, _ = call()
        assert response.status_code == 200, (name, response.text)
    assert calls.ingest()[0].json()["accepted"] == 1

    running_postgres.stop()
    try:
        # Twice each: first on pooled connections that just broke, then
        # waiting on a pool that cannot reconnect.
        for attempt in (1, 2):
            for name, call in calls.all().items():
                response, took = call()
                status = response.status_code
                log.info("down (%d): %s %d in %.2f s", attempt, name, status, took)
                assert_unavailable(name, response)
    finally:
        running_postgres.start()

    # Back without restarting the API (pg_ctl -w returned once it accepts
    # connections): every request succeeds again within a few tries. A pooled
    # connection that broke may still fail a request with 503 first; each try
    # waits at most the pool wait, so no pause is needed between them.
    for name, call in calls.all().items():
        for _ in range(RECOVERY_TRIES):
            response, took = call()
            if response.status_code == 200:
                break
            assert_unavailable(name, response)
        assert response.status_code == 200, f"{name} did not recover"
        log.info("up again: %s (last try %.2f s)", name, took)
    ingested, _ = calls.ingest()
    assert ingested.status_code == 200
    assert ingested.json()["accepted"] == 1


def test_a_statement_past_the_statement_timeout_answers_503(
    outage_client: TestClient[Any], outage_settings: Settings
) -> None:
    admin = auth(outage_settings, "t_acme", "admin")
    assert outage_client.get(USAGE, headers=admin).status_code == 200

    # Usage reads block behind this lock for longer than the statement timeout.
    with psycopg.connect(outage_settings.conninfo()) as blocker:
        blocker.execute("LOCK TABLE metering_events IN ACCESS EXCLUSIVE MODE")
        response, took = answered(lambda: outage_client.get(USAGE, headers=admin))
        log.info("statement timeout: %d in %.2f s", response.status_code, took)

    assert_unavailable("usage", response)
    assert outage_client.get(USAGE, headers=admin).status_code == 200
