"""Webhooks delivered by a real `billing worker` (Dramatiq, Redis) to a receiver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from application.bootstrap import initialise_database
from application.notifying.endpoints import WebhookEndpoints
from application.notifying.store import WebhookStore
from application.settings import Settings
from interfaces.http.app import create_app
from tests.integration.test_price_book import BOOK
from tests.integration.webhook_support import (
    attempts,
    fast,
    record_notice,
    rows,
    verified_payload,
    wait_until_finished,
)
from tests.receiver import Receiver, running_receiver
from tests.support import Process, auth, env_for, event

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def receiver(settings: Settings) -> Iterator[Receiver]:
    initialise_database(settings)
    with running_receiver() as r:
        yield r


def set_endpoint(settings: Settings, url: str) -> str:
    store = WebhookStore(settings)
    try:
        endpoints = WebhookEndpoints(store, allow_private=True)
        return endpoints.set("t_acme", url, actor_id="admin_1").secret
    finally:
        store.close()


def start_worker(settings: Settings) -> Process:
    env = env_for(
        settings,
        BILLING_WEBHOOK_ALLOW_PRIVATE="true",
        BILLING_WEBHOOK_TIMEOUT_SECONDS="3",
        BILLING_WEBHOOK_BACKOFF_SECONDS="0.05",
        BILLING_WEBHOOK_MAX_BACKOFF_SECONDS="0.2",
        BILLING_WEBHOOK_RECOVER_AFTER_SECONDS="1",
    )
    worker = Process(["worker", "--processes", "1", "--threads", "2"], env)
    try:
        worker.wait_for_output("Worker process is ready for action")
    except BaseException:
        worker.stop(kill=True)
        raise
    return worker


def test_the_worker_delivers_a_signed_notice_and_retries_after_a_500(
    settings: Settings, receiver: Receiver
) -> None:
    secret = set_endpoint(settings, receiver.url)
    receiver.answer_with(500)
    worker = start_worker(settings)
    try:
        record_notice(settings, "budget.threshold_crossed/t_acme/2026-11-01/75")

        first, second = receiver.wait_for(2)
        row = wait_until_finished(
            settings, "budget.threshold_crossed/t_acme/2026-11-01/75"
        )
    finally:
        worker.stop()

    assert first.webhook_id == second.webhook_id == row["id"]
    assert verified_payload(secret, first) == verified_payload(secret, second)
    assert verified_payload(secret, second)["type"] == "anomaly.opened"
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    assert [a["status_code"] for a in attempts(settings, row["id"])] == [500, 204]
    assert len(receiver.requests) == 2


def test_a_delivery_cut_off_by_a_killed_worker_is_completed_once_after_restart(
    settings: Settings, receiver: Receiver
) -> None:
    secret = set_endpoint(settings, receiver.url)
    receiver.hold_next()  # the first attempt gets no answer...
    worker = start_worker(settings)
    try:
        record_notice(settings, "anomaly.opened/t_acme/an_7")
        receiver.wait_for(1)
    finally:
        worker.stop(kill=True)  # ...because the worker dies waiting for it
    receiver.release()
    interrupted = rows(settings, "billing_webhook_deliveries")
    assert [(r["status"], r["attempts"]) for r in interrupted] == [("pending", 1)]

    restarted = start_worker(settings)
    try:
        row = wait_until_finished(settings, "anomaly.opened/t_acme/an_7")
    finally:
        restarted.stop()

    assert (row["status"], row["attempts"]) == ("delivered", 2)
    ids = [r.webhook_id for r in receiver.requests]
    assert ids == ["anomaly.opened/t_acme/an_7"] * 2  # the receiver dedupes on it
    assert len({r.body for r in receiver.requests}) == 1
    for received in receiver.requests:
        verified_payload(secret, received)
    logged = attempts(settings, row["id"])
    assert [(a["attempt"], a["status_code"]) for a in logged] == [(1, None), (2, 204)]
    assert len(rows(settings, "billing_webhook_deliveries")) == 1


def test_usage_over_budget_reaches_the_endpoint_through_the_real_read_models(
    settings: Settings, receiver: Receiver
) -> None:
    """Ingest -> forecast -> notices -> dispatch -> signed deliveries, end to end."""
    admin, ops = auth(settings, "t_acme", "admin"), auth(settings, "t_acme", "ops")
    worker = start_worker(settings)
    try:
        with TestClient(app=create_app(fast(settings))) as client:
            client.put("/api/ops/price-book", json=BOOK, headers=ops)
            client.put("/api/billing/budget", json={"amount": "10.00"}, headers=admin)
            hook = client.put(
                "/api/billing/webhooks", json={"url": receiver.url}, headers=admin
            )
            client.post(  # 300 vCPU hours at 0.045: 13.50 EUR, over the budget
                "/api/metering/events",
                json=[event("e1", quantity="300")],
                headers=auth(settings, "t_acme", "metering"),
            )

            received = receiver.wait_for(4)
            ids = [r.webhook_id for r in received]
            finished = [wait_until_finished(settings, i) for i in ids]
            log: Any = client.get(
                "/api/billing/webhooks/deliveries", headers=admin
            ).json()
    finally:
        worker.stop()

    secret = hook.json()["secret"]
    payloads = [verified_payload(secret, r) for r in received]
    crossed = sorted(
        p["data"]["threshold_percent"]
        for p in payloads
        if p["type"] == "budget.threshold_crossed"
    )
    assert crossed == [50, 75, 100]
    assert [p["type"] for p in payloads].count("budget.projected_breach") == 1
    assert len(set(ids)) == 4
    assert {row["status"] for row in finished} == {"delivered"}
    assert sorted(d["id"] for d in log["deliveries"]) == sorted(ids)
