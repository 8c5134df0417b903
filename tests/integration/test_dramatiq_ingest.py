"""The ingest queue end to end: a real `billing worker` process and Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import dramatiq
import psycopg
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from application.settings import Settings
from application.tokens import issue_token
from tests.support import Process, env_for, event

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def worker(settings: Settings) -> Iterator[Process]:
    from application.bootstrap import initialise_database

    initialise_database(settings)
    process = Process(
        ["worker", "--processes", "1", "--threads", "2"], env_for(settings)
    )
    try:
        process.wait_for_output("Worker process is ready for action")
        yield process
    finally:
        process.stop()


@pytest.fixture
def broker(settings: Settings) -> Iterator[RedisBroker]:
    producer = RedisBroker(url=settings.redis_url, namespace=settings.redis_namespace)
    yield producer
    producer.close()


def send(broker: RedisBroker, *args: Any) -> dramatiq.Message[Any]:
    """What a producer does: enqueue a message for the `ingest_events` actor."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="ingest",
        actor_name="ingest_events",
        args=args,
        kwargs={},
        options={},
    )
    return broker.enqueue(message)


def wait_for_events(settings: Settings, expected: int, timeout: float = 60) -> int:
    """Block on the event table's NOTIFY until `expected` events are stored."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        conn.execute("LISTEN metering_events")
        while True:
            row = conn.execute("SELECT count(*) FROM metering_events").fetchone()
            count = int(row[0]) if row else 0
            remaining = deadline - time.monotonic()
            if count >= expected or remaining <= 0:
                return count
            for _ in conn.notifies(timeout=remaining, stop_after=1):
                pass


def test_a_queued_batch_is_recorded_with_the_same_semantics(
    settings: Settings, worker: Process, broker: RedisBroker, write_side: Any
) -> None:
    token = issue_token(
        settings, tenant_id="t_queue", roles=["metering"], subject="producer"
    )
    body = [
        event("q1", quantity="1.5"),
        event("q2"),
        event("q1", quantity="1.5"),
        event("bad", quantity="-1"),
    ]

    send(broker, token, body)

    assert wait_for_events(settings, 2) == 2
    assert write_side.metering.get_record("t_queue", "q1").quantity == Decimal("1.5")
    with pytest.raises(LookupError):
        write_side.metering.get_record("t_queue", "bad")


def wait_for_dead_letter(
    settings: Settings, pubsub: Any, timeout: float = 60
) -> dict[str, Any]:
    """Block on the dead-letter announcement (subscribe before sending)."""
    client = redis.Redis.from_url(settings.redis_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=deadline - time.monotonic())
            if message and message["type"] == "message":
                reason = client.hget(
                    f"{settings.redis_namespace}:dead-letter-reasons", message["data"]
                )
                assert reason is not None
                return {"message_id": message["data"].decode()} | json.loads(reason)
    finally:
        pubsub.close()
    raise TimeoutError("no dead letter announced")


@pytest.mark.parametrize(
    ("token_kwargs", "body", "reason"),
    [
        (
            {"roles": ["metering"], "ttl_seconds": -5},
            [event("x")],
            "token: token expired",
        ),
        ({"roles": ["admin"]}, [event("x")], "token: the 'metering' role is required"),
        (
            {"roles": ["metering"]},
            {"not": "a list"},
            "body: must be a JSON array of events",
        ),
    ],
)
def test_an_unprocessable_message_is_dead_lettered_with_its_reason(
    settings: Settings,
    worker: Process,
    broker: RedisBroker,
    token_kwargs: dict[str, Any],
    body: Any,
    reason: str,
) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    token = issue_token(
        settings, tenant_id="t_queue", subject="producer", **token_kwargs
    )
    dead_letters = client.pubsub()
    dead_letters.subscribe(f"{settings.redis_namespace}:dead-letters")

    message = send(broker, token, body)
    record = wait_for_dead_letter(settings, dead_letters)

    assert record["message_id"] == message.message_id
    assert record["reason"] == f"UnprocessableMessage: {reason}"
    assert (
        client.zscore(
            f"{settings.redis_namespace}:ingest.XQ", message.options["redis_message_id"]
        )
        is not None
    )
    with psycopg.connect(settings.conninfo()) as conn:
        row = conn.execute("SELECT count(*) FROM metering_events").fetchone()
    assert row == (0,)
