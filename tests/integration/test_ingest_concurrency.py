"""Concurrent overlapping batches: every id stored once, every caller told the truth."""

from __future__ import annotations

import multiprocessing
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
import psycopg

from application.bootstrap import WriteSide, bootstrap
from application.clock import utc_now
from application.metering.batch import IngestOut
from application.metering.ingestor import Ingestor
from application.settings import Settings
from tests.support import event

IDS = [f"e{i}" for i in range(400)]


def overlapping_batches(callers: int, seed: int) -> list[bytes]:
    """Each caller sends a random 60% of the same ids, in its own order."""
    rng = random.Random(seed)
    batches = []
    for _ in range(callers):
        chosen = rng.sample(IDS, k=int(len(IDS) * 0.6))
        batches.append(msgspec.json.encode([event(i) for i in chosen]))
    return batches


def ingest(write_side: WriteSide, body: bytes) -> IngestOut:
    ingestor = Ingestor(
        write_side.metering, write_side.tenants, clock=utc_now, max_events=10_000
    )
    return ingestor.ingest("t_acme", body)


def assert_each_id_stored_once_and_reported_truthfully(
    settings: Settings, responses: list[dict[str, Any]], batches: list[bytes]
) -> None:
    sent = {e["id"] for body in batches for e in msgspec.json.decode(body)}
    accepted = Counter(
        r["id"]
        for resp in responses
        for r in resp["results"]
        if r["status"] == "accepted"
    )
    statuses = {r["status"] for resp in responses for r in resp["results"]}
    with psycopg.connect(settings.conninfo()) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT originator_id) FROM metering_events"
        ).fetchone()
    assert row == (len(sent), len(sent))  # no loss, nothing twice
    assert set(accepted) == sent
    assert set(accepted.values()) == {1}
    assert statuses <= {"accepted", "duplicate"}  # the others were told "duplicate"


def test_concurrent_threads_with_overlapping_ids(
    settings: Settings, write_side: WriteSide
) -> None:
    batches = overlapping_batches(callers=8, seed=1)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda body: ingest(write_side, body), batches))

    assert_each_id_stored_once_and_reported_truthfully(
        settings, [msgspec.to_builtins(r) for r in responses], batches
    )


def _ingest_in_process(settings: Settings, body: bytes, results: Any) -> None:
    write_side = bootstrap(settings)
    try:
        results.put(msgspec.json.encode(ingest(write_side, body)))
    finally:
        write_side.close()


def test_concurrent_processes_with_overlapping_ids(
    settings: Settings, write_side: WriteSide
) -> None:
    batches = overlapping_batches(callers=4, seed=2)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()

    processes = [
        context.Process(target=_ingest_in_process, args=(settings, body, results))
        for body in batches
    ]
    for p in processes:
        p.start()
    responses = [msgspec.json.decode(results.get(timeout=120)) for _ in processes]
    for p in processes:
        p.join(timeout=60)

    assert all(p.exitcode == 0 for p in processes)
    assert_each_id_stored_once_and_reported_truthfully(settings, responses, batches)


def test_concurrent_conflicting_payloads_keep_exactly_one_original(
    settings: Settings, write_side: WriteSide
) -> None:
    bodies = [
        msgspec.json.encode([event("same", quantity=str(q))]) for q in range(1, 9)
    ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda body: ingest(write_side, body), bodies))

    statuses = Counter(r.results[0].status for r in responses)
    assert statuses == {"accepted": 1, "conflict": 7}
    winner = next(
        i for i, r in enumerate(responses) if r.results[0].status == "accepted"
    )
    stored = write_side.metering.get_record("t_acme", "same")
    assert str(stored.quantity) == str(winner + 1)
