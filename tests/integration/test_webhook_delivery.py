"""Notices to signed deliveries, against real PostgreSQL and a real HTTP receiver.

The dispatcher and deliverer run in the test's process here (the queue is a
list); tests/integration/test_webhook_worker.py runs them in `billing worker`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.sql import SQL, Identifier
from standardwebhooks import Webhook

from application.bootstrap import (
    Services,
    WebhookDelivery,
    build_services,
    build_webhook_delivery,
)
from application.logs import JsonFormatter
from application.notifying.delivering import Deliverer
from application.notifying.dispatcher import Dispatcher
from application.notifying.endpoints import WebhookEndpoints
from application.settings import Settings
from projections.notices import NOTICES
from tests.integration.webhook_support import (
    Queue,
    attempts,
    delivery,
    fast,
    record_notice,
    rows,
    verified_payload,
)
from tests.receiver import Receiver, running_receiver


@dataclass
class Pipeline:
    """Dispatcher and deliverer over the real tables, with a list for a queue."""

    settings: Settings
    services: Services
    queue: Queue
    delivery: WebhookDelivery

    @property
    def endpoints(self) -> WebhookEndpoints:
        return self.services.webhooks

    def set_endpoint(self, url: str, tenant_id: str = "t_acme") -> str:
        return self.endpoints.set(tenant_id, url, actor_id="admin_1").secret

    def run(self, max_attempts: int = 50) -> list[str | None]:
        """Dispatch, then make every queued attempt (retries included, their
        delays skipped) until nothing is queued; the statuses in order."""
        self.delivery.dispatcher.dispatch()
        outcomes = []
        for _ in range(max_attempts):
            queued = self.queue.take()
            if not queued:
                return outcomes
            outcomes += [self.delivery.deliverer.deliver(i) for i in queued]
        raise AssertionError("still queued after max_attempts attempts")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


def open_pipeline(settings: Settings) -> Pipeline:
    services = build_services(settings)
    queue = Queue()
    return Pipeline(settings, services, queue, build_webhook_delivery(services, queue))


@pytest.fixture
def pipeline(settings: Settings) -> Iterator[Pipeline]:
    p = open_pipeline(fast(settings))
    yield p
    p.services.close()


def test_a_notice_is_delivered_signed_as_standard_webhooks(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    secret = pipeline.set_endpoint(receiver.url)
    notice_id = "anomaly.opened/t_acme/an_1"
    data = {"anomaly_id": "an_1", "observed": "4210", "score": 9.40, "n": 3}
    record_notice(pipeline.settings, notice_id, data=data)

    assert pipeline.run() == ["delivered"]

    (received,) = receiver.requests
    assert received.path == "/hooks/billing?source=test"
    assert received.headers["content-type"] == "application/json"
    assert received.webhook_id == notice_id
    assert received.headers["webhook-timestamp"].isdigit()
    assert received.headers["webhook-signature"].startswith("v1,")
    assert verified_payload(secret, received) == {
        "type": "anomaly.opened",
        "data": data,
    }
    assert Webhook(secret).verify(received.body, received.headers) == {
        "type": "anomaly.opened",
        "data": data,
    }
    row = delivery(pipeline.settings, notice_id)
    assert (row["status"], row["attempts"], row["last_status_code"]) == (
        "delivered",
        1,
        204,
    )
    assert row["delivered_at"] is not None


def test_a_500_is_retried_with_the_same_id_until_delivered_once(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    secret = pipeline.set_endpoint(receiver.url)
    record_notice(pipeline.settings, "n1")
    receiver.answer_with(500, 503, 200)

    assert pipeline.run() == ["pending", "pending", "delivered"]

    assert [r.webhook_id for r in receiver.requests] == ["n1", "n1", "n1"]
    assert len({r.body for r in receiver.requests}) == 1
    for received in receiver.requests:
        verified_payload(secret, received)
    row = delivery(pipeline.settings, "n1")
    assert (row["status"], row["attempts"]) == ("delivered", 3)
    logged = attempts(pipeline.settings, "n1")
    assert [a["status_code"] for a in logged] == [500, 503, 200]
    assert [a["error"] for a in logged] == [
        "answered HTTP 500",
        "answered HTTP 503",
        None,
    ]
    assert all(a["duration_ms"] is not None and a["started_at"] for a in logged)
    assert len(rows(pipeline.settings, "billing_webhook_deliveries")) == 1


def test_429_and_connection_errors_are_retried_too(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    pipeline.set_endpoint(receiver.url)
    record_notice(pipeline.settings, "n1")
    receiver.answer_with(429)

    assert pipeline.run() == ["pending", "delivered"]

    closed = Receiver()  # a port nobody listens on any more
    closed.stop()
    pipeline.set_endpoint(closed.url)  # nothing listens there now
    record_notice(pipeline.settings, "n2")
    assert pipeline.run() == ["pending", "pending", "pending", "dead"]
    assert "ConnectionRefusedError" in delivery(pipeline.settings, "n2")["last_error"]


def test_the_last_failed_try_dead_letters_with_the_last_error(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    pipeline.set_endpoint(receiver.url)
    record_notice(pipeline.settings, "n1")
    receiver.answer_with(500, 500, 500, 502)

    assert pipeline.run() == ["pending", "pending", "pending", "dead"]

    row = delivery(pipeline.settings, "n1")
    assert (row["status"], row["attempts"], row["last_status_code"]) == (
        "dead",
        4,
        502,
    )
    assert row["last_error"] == "answered HTTP 502"
    assert row["finished_at"] is not None
    assert row["delivered_at"] is None
    assert len(receiver.requests) == 4
    assert pipeline.delivery.deliverer.deliver("n1") is None  # nothing more to do
    assert len(receiver.requests) == 4


@pytest.mark.parametrize("status", [400, 401, 404, 410, 301])
def test_another_client_error_is_not_retried(
    pipeline: Pipeline, receiver: Receiver, status: int
) -> None:
    pipeline.set_endpoint(receiver.url)
    record_notice(pipeline.settings, "n1")
    receiver.answer_with(status)

    assert pipeline.run() == ["dead"]

    assert len(receiver.requests) == 1
    assert delivery(pipeline.settings, "n1")["last_status_code"] == status


def test_a_receiver_that_does_not_answer_in_time_is_retried(
    settings: Settings, receiver: Receiver
) -> None:
    pipeline = open_pipeline(fast(settings, webhook_timeout_seconds=1.0))
    try:
        pipeline.set_endpoint(receiver.url)
        record_notice(settings, "n1")
        receiver.hold_next()

        assert pipeline.run() == ["pending", "delivered"]
    finally:
        receiver.release()
        pipeline.services.close()

    first = attempts(settings, "n1")[0]
    assert first["status_code"] is None
    assert first["error"] == "timeout: no answer within 1 s"


def test_suppressed_notices_are_never_delivered(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    pipeline.set_endpoint(receiver.url)
    record_notice(pipeline.settings, "old", suppressed="recorded by a rebuild")
    record_notice(pipeline.settings, "new")

    assert pipeline.run() == ["delivered"]
    assert pipeline.run() == []

    assert [r.webhook_id for r in receiver.requests] == ["new"]
    assert [r["id"] for r in rows(pipeline.settings, "billing_webhook_deliveries")] == [
        "new"
    ]


def test_a_tenants_notices_reach_only_its_own_endpoint(pipeline: Pipeline) -> None:
    with running_receiver() as a, running_receiver() as b:
        pipeline.set_endpoint(a.url, "t_a")
        pipeline.set_endpoint(b.url, "t_b")
        record_notice(pipeline.settings, "for-a-1", "t_a")
        record_notice(pipeline.settings, "for-a-2", "t_a")
        record_notice(pipeline.settings, "for-nobody", "t_c")  # no endpoint

        assert pipeline.run() == ["delivered", "delivered"]

        assert [r.webhook_id for r in a.requests] == ["for-a-1", "for-a-2"]
        assert b.requests == []
    listed = pipeline.endpoints.list_deliveries("t_b", status=None, limit=50)
    assert listed == []


def test_notices_recorded_before_the_endpoint_existed_are_not_sent(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    record_notice(pipeline.settings, "before")
    assert pipeline.run() == []

    pipeline.set_endpoint(receiver.url)
    record_notice(pipeline.settings, "after")

    assert pipeline.run() == ["delivered"]
    assert [r.webhook_id for r in receiver.requests] == ["after"]


def test_a_notice_still_being_recorded_is_not_skipped(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    """Positions come from a sequence: a notice in an open transaction may hold
    a lower position than one committed after it. The cursor must not pass it."""
    pipeline.set_endpoint(receiver.url)
    table = Identifier(pipeline.settings.db_schema, NOTICES)
    with psycopg.connect(pipeline.settings.conninfo()) as slow:
        slow.execute(
            SQL(
                "INSERT INTO {} (id, tenant_id, type, data, occurred_at, source,"
                " version) VALUES ('slow', 't_acme', 'anomaly.opened', '{{}}',"
                " now(), 'test', 1)"
            ).format(table)
        )
        later = record_notice(pipeline.settings, "quick")  # a higher position

        assert pipeline.run() == []  # not until the open transaction ends
        slow.commit()

    assert pipeline.run() == ["delivered", "delivered"]
    assert [r.webhook_id for r in receiver.requests] == ["slow", "quick"]
    assert later > delivery(pipeline.settings, "slow")["notice_position"]


def test_concurrent_dispatchers_create_and_queue_each_delivery_once(
    pipeline: Pipeline,
) -> None:
    pipeline.set_endpoint("http://127.0.0.1:9/hook")
    queues = [Queue() for _ in range(4)]
    dispatchers = [
        Dispatcher(
            pipeline.services.write_side.webhook_store, q, recover_after_seconds=60
        )
        for q in queues
    ]
    stop = threading.Event()

    def dispatch_until_stopped(dispatcher: Dispatcher) -> None:
        while not stop.is_set():
            dispatcher.dispatch()

    threads = [
        threading.Thread(target=dispatch_until_stopped, args=(d,)) for d in dispatchers
    ]
    for t in threads:
        t.start()
    try:
        for n in range(200):
            record_notice(pipeline.settings, f"n{n}")
    finally:
        stop.set()
        for t in threads:
            t.join()
    for d in dispatchers:
        d.dispatch()  # whatever came after the last run of each

    queued = [i for q in queues for i in q.take()]
    assert sorted(queued) == sorted(f"n{n}" for n in range(200))
    assert len(rows(pipeline.settings, "billing_webhook_deliveries")) == 200


def deliverer_with(
    pipeline: Pipeline, *, allow_private: bool, resolve: Any = None
) -> Deliverer:
    base = pipeline.delivery.deliverer
    return Deliverer(
        base.store,
        base.policy,
        pipeline.queue,
        allow_private=allow_private,
        timeout_seconds=2.0,
        **({"resolve": resolve} if resolve else {}),
    )


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1"])
def test_delivery_refuses_a_host_that_now_resolves_to_a_private_address(
    pipeline: Pipeline, receiver: Receiver, address: str
) -> None:
    """Checked when set (public then), and again on the address connected to."""
    answers = {"hooks.test": ["93.184.215.14"]}
    public_only = WebhookEndpoints(
        pipeline.services.write_side.webhook_store,
        allow_private=False,
        resolve=lambda host, _: answers[host],
    )
    public_only.set("t_acme", f"https://hooks.test:{receiver.port}/x", actor_id="a")
    record_notice(pipeline.settings, "n1")
    pipeline.delivery.dispatcher.dispatch()
    answers["hooks.test"] = [address]  # DNS changed
    deliverer = deliverer_with(
        pipeline, allow_private=False, resolve=lambda host, _: answers[host]
    )

    assert deliverer.deliver(pipeline.queue.take()[0]) == "dead"

    row = delivery(pipeline.settings, "n1")
    assert row["last_error"].startswith(f"refused: url: hooks.test ({address}) is a")
    assert receiver.requests == []


def test_a_private_endpoint_is_refused_at_delivery_once_no_longer_allowed(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    pipeline.set_endpoint(receiver.url)  # allowed when it was set
    record_notice(pipeline.settings, "n1")
    pipeline.delivery.dispatcher.dispatch()

    deliverer = deliverer_with(pipeline, allow_private=False)
    assert deliverer.deliver(pipeline.queue.take()[0]) == "dead"

    assert receiver.requests == []
    assert delivery(pipeline.settings, "n1")["last_error"] == (
        "refused: url: must start with https://"
    )


def test_the_connection_goes_to_the_checked_address_with_the_original_host(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    resolve = {"hooks.test": ["127.0.0.1"]}.__getitem__
    WebhookEndpoints(
        pipeline.services.write_side.webhook_store,
        allow_private=True,
        resolve=lambda host, _: resolve(host),
    ).set("t_acme", f"http://hooks.test:{receiver.port}/x", actor_id="a")
    record_notice(pipeline.settings, "n1")
    pipeline.delivery.dispatcher.dispatch()

    deliverer = deliverer_with(
        pipeline, allow_private=True, resolve=lambda host, _: resolve(host)
    )
    assert deliverer.deliver(pipeline.queue.take()[0]) == "delivered"

    assert receiver.requests[0].headers["host"] == f"hooks.test:{receiver.port}"


def test_removing_the_endpoint_cancels_what_was_still_to_be_sent(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    pipeline.set_endpoint(receiver.url)
    record_notice(pipeline.settings, "n1")
    pipeline.delivery.dispatcher.dispatch()

    pipeline.endpoints.remove("t_acme")

    assert [pipeline.delivery.deliverer.deliver(i) for i in pipeline.queue.take()] == [
        None
    ]
    row = delivery(pipeline.settings, "n1")
    assert (row["status"], row["last_error"]) == (
        "cancelled",
        "the webhook endpoint was removed",
    )
    assert receiver.requests == []


def test_a_rotated_secret_signs_the_next_attempt(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    pipeline.set_endpoint(receiver.url)
    record_notice(pipeline.settings, "n1")
    receiver.answer_with(500)
    pipeline.delivery.dispatcher.dispatch()
    (first,) = pipeline.queue.take()
    assert pipeline.delivery.deliverer.deliver(first) == "pending"

    rotated = pipeline.set_endpoint(receiver.url)
    assert [pipeline.delivery.deliverer.deliver(i) for i in pipeline.queue.take()] == [
        "delivered"
    ]

    verified_payload(rotated, receiver.requests[1])


def test_a_lost_message_is_queued_again_once_overdue(settings: Settings) -> None:
    pipeline = open_pipeline(fast(settings, webhook_recover_after_seconds=0.000001))
    try:
        pipeline.set_endpoint("http://127.0.0.1:9/hook")
        record_notice(settings, "n1")
        pipeline.delivery.dispatcher.dispatch()
        assert pipeline.queue.take() == ["n1"]  # and then the message is lost

        assert pipeline.delivery.dispatcher.recover() == 1
        assert pipeline.queue.take() == ["n1"]
    finally:
        pipeline.services.close()


def test_the_secret_never_appears_in_logs(
    pipeline: Pipeline, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = pipeline.set_endpoint(receiver.url)
    record_notice(pipeline.settings, "n1")
    receiver.answer_with(500, 400)

    assert pipeline.run() == ["pending", "dead"]

    lines = [JsonFormatter().format(r) for r in caplog.records]
    assert any('"delivery_id":"n1"' in line for line in lines)
    signatures = [r.headers["webhook-signature"] for r in receiver.requests]
    for line in lines:
        assert secret not in line
        assert secret.removeprefix("whsec_") not in line
        assert not any(s in line for s in signatures)
