"""A read model that keeps failing on one record stops loudly, and alone.

The audit log here fails on records whose actor is POISON while `armed` (a
stand-in for any record a projection cannot process); tests drive `advance`
themselves, with retries due at once, so nothing waits on a clock.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from application.audit.writer import new_record
from application.bootstrap import WriteSide
from application.projecting.daemon import ProjectionDaemon
from application.projecting.failing import ProjectionFailed
from application.projecting.failures import RetryPolicy
from application.projecting.progress import progress_channel
from application.projecting.projector import Projector
from application.settings import Settings
from domain.audit import AuditRecord
from projections.audit_log.postgres import AuditLogProjection
from projections.base import Notified
from tests.harness import harness_for
from tests.support import auth, event

AUDIT = "billing_audit_log"
POISON = "poison"
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


class PoisonRecord(ValueError):
    pass


class PoisonedAuditLog(AuditLogProjection):
    """The audit log, unable to process POISON's records while armed."""

    def __init__(self, *, times: int | None = None) -> None:
        self.armed = True
        self.times = times  # fail this often, then heal (None: until disarmed)

    def changes(self, batch: Sequence[Notified]) -> Any:
        rows = super().changes(batch)
        if self.armed and any(row[3] == POISON for row in rows):
            if self.times is not None:
                self.times -= 1
                self.armed = self.times > 0
            raise PoisonRecord("cannot store this record")
        return rows


def poison(projector: Projector, *, times: int | None = None) -> PoisonedAuditLog:
    """Put the poisoned audit log first in line, retried as soon as asked."""
    poisoned = PoisonedAuditLog(times=times)
    others = {n: p for n, p in projector.projections.items() if n != AUDIT}
    projector.runtime.projections = {AUDIT: poisoned, **others}
    projector.runtime.retry = RetryPolicy(stall_after=3, first_delay=0)
    return poisoned


def audit(write_side: WriteSide, actor: str) -> int:
    """Record one audit record by `actor`; its position."""
    return write_side.audit.record_many(
        [
            new_record(
                AuditRecord.AccessDenied,
                now=NOW,
                tenant_id="t_acme",
                actor_id=actor,
                request_id="req",
                method="GET",
                path="/api/billing/usage",
                required_role="admin",
                roles=["member"],
            )
        ]
    )


def usage(write_side: WriteSide, n: int) -> int:
    with harness_for(write_side, NOW) as h:
        return h.send(
            "t_acme", [event(f"e{i}", at=NOW) for i in range(n)], at=NOW
        ).position


def logged_positions(settings: Settings) -> list[int]:
    with psycopg.connect(settings.conninfo()) as conn:
        rows = conn.execute(f"SELECT position FROM {AUDIT} ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def try_advancing(projector: Projector, times: int) -> None:
    for _ in range(times):
        projector.advance_all()


@pytest.fixture
def history(write_side: WriteSide) -> dict[str, Any]:
    """Five audit records, the third of them poison, and some usage."""
    positions = [audit(write_side, a) for a in ("ann", "bob", POISON, "cy", "di")]
    return {"audit": positions, "poison": positions[2], "usage": usage(write_side, 20)}


def test_the_failing_record_is_named_and_the_records_before_it_are_in(
    write_side: WriteSide, history: dict[str, Any]
) -> None:
    projector = write_side.projector
    poison(projector)

    with pytest.raises(ProjectionFailed) as failed:
        projector.advance(AUDIT)

    assert (failed.value.upstream, failed.value.position) == (
        "audit",
        history["poison"],
    )
    assert failed.value.error == "PoisonRecord: cannot store this record"
    assert logged_positions(write_side.settings) == history["audit"][:2]


def test_a_record_that_keeps_failing_stalls_its_projection_and_not_the_others(
    write_side: WriteSide, history: dict[str, Any]
) -> None:
    projector = write_side.projector
    poison(projector)

    try_advancing(projector, 2)
    retrying = projector.status_of(AUDIT)
    try_advancing(projector, 1)
    statuses = {s.name: s for s in projector.status()}

    assert retrying.state == "behind"
    assert retrying.failure is not None
    assert retrying.failure.failures == 2
    stalled = statuses[AUDIT]
    assert stalled.state == "stalled"
    assert stalled.failure is not None
    assert (stalled.failure.upstream, stalled.failure.position) == (
        "audit",
        history["poison"],
    )
    assert stalled.failure.failures == 3
    assert stalled.failure.error == "PoisonRecord: cannot store this record"
    assert stalled.data_through is not None
    assert stalled.data_through <= NOW
    assert projector.stalled() == [AUDIT]
    for name in ("billing_usage_daily", "billing_usage_exports"):
        assert statuses[name].state == "ok", statuses[name]
        assert all(u.lag_events == 0 for u in statuses[name].upstreams)


def test_a_stalled_projection_advances_again_once_the_cause_is_gone(
    write_side: WriteSide, history: dict[str, Any]
) -> None:
    projector = write_side.projector
    poisoned = poison(projector)
    try_advancing(projector, 3)

    poisoned.armed = False  # say, a fixed projection deployed
    projector.advance_all()

    status = projector.status_of(AUDIT)
    assert (status.state, status.failure) == ("ok", None)
    assert projector.stalled() == []
    assert logged_positions(write_side.settings) == history["audit"]


def test_a_one_off_failure_is_retried_at_once_and_leaves_no_trace(
    write_side: WriteSide, history: dict[str, Any]
) -> None:
    projector = write_side.projector
    poison(projector, times=1)  # a database blip, say

    projector.advance(AUDIT)

    assert projector.status_of(AUDIT).failure is None
    assert logged_positions(write_side.settings) == history["audit"]


def test_a_failure_that_heals_before_the_third_try_never_stalls(
    write_side: WriteSide, history: dict[str, Any]
) -> None:
    projector = write_side.projector
    poisoned = poison(projector)

    try_advancing(projector, 2)
    failing = projector.status_of(AUDIT)
    poisoned.armed = False
    try_advancing(projector, 1)

    assert failing.failure is not None
    assert failing.state == "behind"
    assert projector.status_of(AUDIT).failure is None
    assert logged_positions(write_side.settings) == history["audit"]


def test_retries_back_off_for_every_worker(
    write_side: WriteSide, history: dict[str, Any]
) -> None:
    projector = write_side.projector
    poison(projector)
    projector.runtime.retry = RetryPolicy(first_delay=600)
    with pytest.raises(ProjectionFailed):
        projector.advance(AUDIT)

    assert projector.advance(AUDIT) == 0  # not due: not tried
    failure = projector.status_of(AUDIT).failure
    assert failure is not None
    assert failure.failures == 1
    assert not failure.retry_due


def test_a_rebuild_of_a_stalled_projection_fails_at_the_same_record_and_says_so(
    write_side: WriteSide, history: dict[str, Any]
) -> None:
    projector = write_side.projector
    poisoned = poison(projector)
    try_advancing(projector, 3)

    with pytest.raises(ProjectionFailed):
        projector.rebuild(AUDIT)
    status = projector.status_of(AUDIT)

    assert (status.state, status.live_version, status.building_version) == (
        "stalled",
        1,
        2,
    )
    assert status.rebuild_failure is not None
    assert (status.rebuild_failure.version, status.rebuild_failure.position) == (
        2,
        history["poison"],
    )
    assert logged_positions(write_side.settings) == history["audit"][:2]

    poisoned.armed = False
    projector.rebuild(AUDIT)
    rebuilt = projector.status_of(AUDIT)
    assert (rebuilt.state, rebuilt.live_version, rebuilt.building_version) == (
        "ok",
        3,
        None,
    )
    assert (rebuilt.failure, rebuilt.rebuild_failure) == (None, None)
    assert logged_positions(write_side.settings) == history["audit"]


def test_a_failing_projection_does_not_keep_a_rebuild_from_starting(
    write_side: WriteSide, history: dict[str, Any]
) -> None:
    projector = write_side.projector
    poison(projector)
    projector.request_rebuild(AUDIT)
    started: list[str] = []
    daemon = ProjectionDaemon(
        write_side.projector, tick_seconds=1.0, on_rebuild_requested=started.append
    )

    daemon.start()
    try:
        head = write_side.metering.head_position()
        caught_up = projector.wait_for("billing_usage_daily", "metering", head, 30)
    finally:
        daemon.stop()

    assert started == [AUDIT]
    assert caught_up
    assert projector.status_of("billing_usage_daily").state == "ok"


# --- over HTTP ----------------------------------------------------------------


@pytest.fixture
def http(app: Any, client: TestClient[Any]) -> tuple[TestClient[Any], Projector]:
    return client, app.state.services.write_side.projector


def test_platform_status_freshness_metrics_and_readiness_say_stalled(
    http: tuple[TestClient[Any], Projector], settings: Settings
) -> None:
    client, projector = http
    poisoned = poison(projector)
    client.get(
        "/api/billing/usage", headers=auth(settings, "t_acme", "member", sub=POISON)
    )
    poison_position = projector.upstreams["audit"].head_position()
    try_advancing(projector, 3)

    ready = client.get("/readyz")
    metrics = client.get("/metrics").text
    platform = client.get(
        "/api/platform/projections", headers=auth(settings, "platform", "platform")
    ).json()
    freshness = client.get(
        "/api/ops/freshness", headers=auth(settings, "t_acme", "ops")
    ).json()
    rebuild = client.post(
        f"/api/platform/projections/{AUDIT}/rebuild",
        headers=auth(settings, "platform", "platform"),
    )

    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["projections"] == f"stalled: {AUDIT}"
    assert f'billing_projection_stalled{{projection="{AUDIT}"}} 1.0' in metrics
    assert 'billing_projection_stalled{projection="billing_usage_daily"} 0.0' in metrics
    log = next(p for p in platform if p["name"] == AUDIT)
    assert log["state"] == "stalled"
    assert log["failure"]["position"] == poison_position
    assert log["failure"]["failures"] == 3
    assert log["failure"]["error"] == "PoisonRecord: cannot store this record"
    assert {f["name"]: f["state"] for f in freshness}[AUDIT] == "stalled"
    assert all(set(f) == {"name", "state", "data_through"} for f in freshness)
    assert rebuild.status_code == 202
    assert rebuild.json()["state"] == "stalled"
    assert "will stop at the same record" in rebuild.json()["note"]

    poisoned.armed = False
    try_advancing(projector, 1)
    assert client.get("/readyz").json()["checks"]["projections"] == "ok"
    metrics = client.get("/metrics").text
    assert f'billing_projection_stalled{{projection="{AUDIT}"}} 0.0' in metrics


def wait_until(settings: Settings, condition: Callable[[], bool]) -> None:
    """Re-check `condition` whenever a projection commits or fails (30 s at most)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        conn.execute(f'LISTEN "{progress_channel(settings.db_schema)}"')
        while not condition():
            remaining = deadline - time.monotonic()
            assert remaining > 0, "condition not reached in 30 s"
            for _ in conn.notifies(timeout=remaining, stop_after=1):
                pass


def test_a_rebuild_that_fails_in_the_worker_shows_in_the_platform_status(
    http: tuple[TestClient[Any], Projector], settings: Settings
) -> None:
    client, projector = http
    poison(projector)
    client.get(
        "/api/billing/usage", headers=auth(settings, "t_acme", "member", sub=POISON)
    )
    poison_position = projector.upstreams["audit"].head_position()

    def rebuild_as_the_actor_does(name: str) -> None:
        def run() -> None:
            with contextlib.suppress(ProjectionFailed):  # the actor logs it
                projector.rebuild_requested(name)

        threading.Thread(target=run).start()

    daemon = ProjectionDaemon(
        client.app.state.services.write_side.projector,
        tick_seconds=1.0,
        on_rebuild_requested=rebuild_as_the_actor_does,
    )
    daemon.start()
    try:
        answer = client.post(
            f"/api/platform/projections/{AUDIT}/rebuild",
            headers=auth(settings, "platform", "platform"),
        )
        wait_until(
            settings, lambda: projector.status_of(AUDIT).rebuild_failure is not None
        )
    finally:
        daemon.stop()
    status = client.get(
        "/api/platform/projections", headers=auth(settings, "platform", "platform")
    ).json()

    assert answer.status_code == 202
    log = next(p for p in status if p["name"] == AUDIT)
    assert log["live_version"] == 1
    assert log["building_version"] == 2
    assert log["rebuild_running"] is False
    assert log["rebuild_failure"]["version"] == 2
    assert log["rebuild_failure"]["position"] == poison_position
    assert log["rebuild_failure"]["error"] == "PoisonRecord: cannot store this record"
