"""Replays and as-of reads, by example: what an auditor sees, and what they
are refused (the properties are in test_replay_properties.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from application.settings import Settings
from projections import series_history
from projections.anomalies.postgres import AnomalyProjection, anomaly_changes
from projections.forecast.as_of import kept_residuals, own_residuals
from projections.forecast.changes import forecast_changes
from projections.forecast.postgres import ForecastProjection
from projections.history import Cut
from projections.usage_daily import as_of
from projections.usage_daily import postgres as usage_postgres
from tests.support import auth, caught_up, env_for, event

TENANT = "t_acme"
_NOW = datetime.now(UTC)
# An hour of the current month already past: usage is sent at it (and a few
# minutes after it), so it counts in the current period whatever the time.
DAY = max(
    _NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
    (_NOW - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0),
)


def send(client: TestClient[Any], settings: Settings, body: list[Any]) -> int:
    response = client.post(
        "/api/metering/events", json=body, headers=auth(settings, TENANT, "metering")
    )
    assert response.status_code == 200, response.text
    return int(response.json()["position"])


def view(client: TestClient[Any], settings: Settings, path: str, **params: Any) -> Any:
    response = client.get(path, params=params, headers=auth(settings, TENANT, "admin"))
    assert response.status_code == 200, response.text
    return response


def audited(
    client: TestClient[Any], settings: Settings, request_id: str
) -> dict[str, Any]:
    """The audit event of a request, once the read models (the audit log's
    among them) have caught up with every history."""
    caught_up(client.app.state.services.write_side)
    events = client.get(
        "/api/audit/events",
        params={"limit": "1000"},
        headers=auth(settings, TENANT, "auditor"),
    ).json()
    found = [e for e in events if e["request_id"] == request_id]
    if found:
        return found[0]
    raise AssertionError(f"no audit event for request {request_id}")


def replay(client: TestClient[Any], settings: Settings, audit_id: int) -> Any:
    return client.get(
        f"/api/audit/views/{audit_id}/replay", headers=auth(settings, TENANT, "auditor")
    )


def test_a_view_replays_byte_for_byte_after_late_data_and_a_rebuild(
    client: TestClient[Any], settings: Settings, projecting: Any, app: Any
) -> None:
    position = send(client, settings, [event("e1", quantity="2.5", at=DAY)])
    sent = view(
        client, settings, "/api/billing/usage", min_positions=f"metering:{position}"
    )
    assert b'"waited"' in sent.content  # the wait's outcome is part of the bytes
    record = audited(client, settings, sent.headers["x-request-id"])

    # Later: late usage for the same day, a void, a new time zone, a rebuild.
    send(client, settings, [event("e2", quantity="4", at=DAY + timedelta(minutes=1))])
    client.post(
        "/api/metering/corrections",
        json={"action": "void", "event_id": "e1", "reason": "test"},
        headers=auth(settings, TENANT, "ops"),
    )
    client.patch(
        "/api/ops/settings",
        json={"timezone": "Asia/Tokyo"},
        headers=auth(settings, TENANT, "ops"),
    )
    app.state.services.write_side.projector.rebuild("billing_usage_daily")

    response = replay(client, settings, record["id"])

    assert response.status_code == 200
    out = response.json()
    assert out["verified"] is True
    assert out["type"] == "UsageViewed"
    assert out["recorded_sha256"] == out["replayed_sha256"]
    assert out["body"] == sent.json()  # the very answer, not today's
    assert audited(client, settings, response.headers["x-request-id"])["details"] == {
        "audit_event_id": record["id"],
        "audit_event_type": "UsageViewed",
        "verified": True,
        "replayed_sha256": out["replayed_sha256"],
    }


def test_an_export_replays_to_its_stored_bytes(
    client: TestClient[Any], settings: Settings, projecting: Any
) -> None:
    position = send(
        client,
        settings,
        [
            event(f"e{i}", quantity=f"{i}.5", at=DAY - timedelta(days=i))
            for i in range(4)
        ],
    )
    exported = view(
        client,
        settings,
        "/api/billing/usage/export",
        min_positions=f"metering:{position}",
    )
    record = audited(client, settings, exported.headers["x-request-id"])
    send(client, settings, [event("late", quantity="9", at=DAY - timedelta(days=1))])

    out = replay(client, settings, record["id"]).json()

    assert out["verified"] is True
    assert out["body"].encode() == exported.content
    assert out["stored_sha256"] == out["recorded_sha256"]


def test_a_changed_history_fails_verification_and_the_cli_says_so(
    client: TestClient[Any], settings: Settings, projecting: Any
) -> None:
    """Replay must be able to say no: tamper with the ledger behind a view."""
    position = send(client, settings, [event("e1", quantity="2", at=DAY)])
    sent = view(
        client, settings, "/api/billing/usage", min_positions=f"metering:{position}"
    )
    record = audited(client, settings, sent.headers["x-request-id"])
    env = env_for(settings)
    verify = [sys.executable, "-m", "interfaces.cli", "audit", "verify"]
    ok = subprocess.run(verify, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 verified, 0 mismatched" in ok.stdout

    # The ledger changed behind the daily rows: only a replay that sums the
    # ledger itself (--from-ledger) can see it.
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        conn.execute(
            "UPDATE billing_usage_ledger SET quantity_delta = 3 WHERE event_id = 'e1'"
        )
    bad = subprocess.run(
        [*verify, "--from-ledger"], env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"MISMATCH {record['id']} UsageViewed of {TENANT}" in bad.stdout
    one = subprocess.run(
        [*verify[:-1], "replay", str(record["id"]), "--from-ledger"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert one.returncode == 1
    assert "MISMATCH" in one.stdout

    # The daily rows changed behind the ledger: the default replay sees it.
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        conn.execute(
            "UPDATE billing_usage_ledger SET quantity_delta = 2 WHERE event_id = 'e1'"
        )
        conn.execute("UPDATE billing_usage_daily SET quantity = quantity + 1")
    out = replay(client, settings, record["id"]).json()
    assert out["verified"] is False
    assert out["replayed_sha256"] != out["recorded_sha256"]


def test_usage_as_of_an_instant_holds_only_what_was_recorded_by_then(
    client: TestClient[Any], settings: Settings, projecting: Any
) -> None:
    send(client, settings, [event("e1", quantity="1.5", at=DAY)])
    between = datetime.now(UTC)  # the next event is recorded after it
    position = send(client, settings, [event("e2", quantity="4", at=DAY)])
    view(client, settings, "/api/billing/usage", min_positions=f"metering:{position}")
    auditor = auth(settings, TENANT, "auditor")

    then = client.get(
        "/api/audit/usage", params={"as_of": between.isoformat()}, headers=auditor
    )
    now = client.get(
        "/api/audit/usage", params={"position": str(position)}, headers=auditor
    )

    assert then.status_code == now.status_code == 200
    assert [r["quantity"] for r in then.json()["rows"]] == ["1.5"]
    assert then.json()["position"] == position - 1
    assert then.json()["as_of"] == between.isoformat().replace("+00:00", "Z")
    assert [r["quantity"] for r in now.json()["rows"]] == ["5.5"]
    # The as-of read is audited as a view, and replays like one.
    record = audited(client, settings, then.headers["x-request-id"])
    assert record["type"] == "UsageViewed"
    assert replay(client, settings, record["id"]).json()["verified"] is True


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "as_of"),
        ({"as_of": "2026-11-01T00:00:00Z", "position": "3"}, "as_of"),
        ({"as_of": "yesterday"}, "as_of"),
        ({"as_of": "2026-11-01T00:00:00"}, "as_of"),
        ({"position": "-1"}, "position"),
        ({"position": "999999"}, "position"),
        ({"positions": "metering"}, "positions"),
        ({"as_of": "2026-11-01T00:00:00Z", "period": "2026-13"}, "period"),
        ({"as_of": "2026-11-01T00:00:00Z", "workspace_id": "bad id"}, "workspace_id"),
    ],
)
def test_a_bad_as_of_question_is_a_400_naming_the_field(
    client: TestClient[Any], settings: Settings, params: dict[str, str], field: str
) -> None:
    send(client, settings, [event("e1", at=DAY)])
    for path in ("/api/audit/usage", "/api/audit/forecast", "/api/audit/anomalies"):
        response = client.get(
            path, params=params, headers=auth(settings, TENANT, "auditor")
        )
        assert response.status_code == 400, (path, response.text)
        assert response.json()["detail"].startswith(f"{field}:"), response.text


def test_replay_refuses_what_is_not_a_view_of_this_tenant(
    client: TestClient[Any], settings: Settings, projecting: Any
) -> None:
    position = send(client, settings, [event("e1", at=DAY)])
    sent = view(
        client, settings, "/api/billing/usage", min_positions=f"metering:{position}"
    )
    record = audited(client, settings, sent.headers["x-request-id"])
    correction = client.post(
        "/api/metering/corrections",
        json={"action": "void", "event_id": "e1", "reason": "test"},
        headers=auth(settings, TENANT, "ops"),
    )
    other = audited(client, settings, correction.headers["x-request-id"])

    assert replay(client, settings, 987654).status_code == 404
    stranger = client.get(
        f"/api/audit/views/{record['id']}/replay",
        headers=auth(settings, "t_other", "auditor"),
    )
    assert stranger.status_code == 404
    refused = replay(client, settings, other["id"])
    assert refused.status_code == 409
    assert "CorrectionApplied, not a view or an export" in refused.json()["detail"]


def test_usage_as_of_from_a_checkpoint_is_every_entry_up_to_the_cut(
    client: TestClient[Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a checkpoint after every batch, an as-of read at each position
    (nearest checkpoint plus the entries after it, or the live rows less the
    later ones) equals every entry up to it summed again, and the sums sent;
    after a calendar change the old checkpoints still answer the cuts before."""
    monkeypatch.setattr(usage_postgres, "CHECKPOINT_EVERY", 1)
    projector = client.app.state.services.write_side.projector
    sent: list[tuple[int, Decimal]] = []
    total = Decimal(0)
    for k, quantity in enumerate(["1.5", "2", "0.25", "7", "3.125"]):
        position = send(
            client,
            settings,
            [event(f"c{k}", quantity=quantity, at=DAY + timedelta(minutes=k))],
        )
        while projector.advance("billing_usage_daily"):
            pass
        total += Decimal(quantity)
        sent.append((position, total))
    response = client.patch(
        "/api/ops/settings",
        json={"timezone": "Asia/Kolkata"},
        headers=auth(settings, TENANT, "ops"),
    )
    assert response.status_code == 200, response.text
    while projector.advance("billing_usage_daily"):
        pass
    with psycopg.connect(settings.conninfo()) as conn:
        marks = conn.execute(
            "SELECT count(*) FROM billing_usage_checkpoint_marks WHERE tenant_id = %s",
            (TENANT,),
        ).fetchone()
    assert marks is not None
    assert marks[0] >= len(sent) - 1

    auditor = auth(settings, TENANT, "auditor")
    for position, expected in sent:
        answers = []
        for delta_limit, checkpoints in ((-1, True), (10**9, False), (-1, False)):
            monkeypatch.setattr(as_of, "DELTA_LIMIT", delta_limit)
            monkeypatch.setattr(as_of, "USE_CHECKPOINTS", checkpoints)
            response = client.get(
                "/api/audit/usage",
                params={"position": str(position)},
                headers=auditor,
            )
            assert response.status_code == 200, response.text
            body = response.json()
            answers.append((body["rows"], body["totals"]))
            assert sum(Decimal(r["quantity"]) for r in body["rows"]) == expected
        assert answers[0] == answers[1] == answers[2], position


def test_series_at_a_cut_from_a_read_models_days_is_every_entry_up_to_it(
    client: TestClient[Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forecast's and the anomaly flags' inputs at every metering position,
    read from each read model's own days less the days touched after the
    cut, equal those summed again from every ledger entry up to the cut:
    with usage late enough to restate its day, amended and voided after the
    days it touched, over workspaces and days, and across a calendar change
    (before which the days, bucketed in another time zone, cannot be used).
    So do the closed periods' backtests a forecast at the cut rests on, kept
    by the read model where no entry after the cut changed them."""
    projector = client.app.state.services.write_side.projector
    ops = auth(settings, TENANT, "ops")
    response = client.patch(
        "/api/ops/settings", json={"acceptance_window_days": 120}, headers=ops
    )
    assert response.status_code == 200, response.text

    def project() -> None:
        for name in ("billing_usage_daily", "billing_forecast", "billing_anomalies"):
            while projector.advance(name):
                pass

    head = 0
    for k in range(6):
        head = send(
            client,
            settings,
            [
                event(
                    f"s{k}",
                    workspace=f"ws_{k % 2}",
                    area=("compute", "storage")[k % 3 == 0],
                    quantity=f"{k + 1}.5",
                    at=DAY - timedelta(days=(0, 1, 20, 33, 45, 64)[k], hours=k),
                ),
                event(f"late{k}", quantity="0.25", at=DAY - timedelta(days=3)),
            ],
        )
        project()
    for body in (
        {"action": "amend", "event_id": "s3", "quantity": "9", "reason": "test"},
        {"action": "void", "event_id": "s4", "reason": "test"},
    ):
        response = client.post("/api/metering/corrections", json=body, headers=ops)
        assert response.status_code == 200, response.text
        project()
    with psycopg.connect(settings.conninfo()) as conn:
        found = conn.execute("SELECT max(notification_id) FROM metering_events")
        head = found.fetchone()[0]  # type: ignore[index]
    used: list[bool] = []
    kept_periods: list[int] = []
    read_model_days = series_history._days_from_read_model

    async def counted(*args: Any, **kwargs: Any) -> Any:
        found = await read_model_days(*args, **kwargs)
        used.append(found is not None)
        return found

    monkeypatch.setattr(series_history, "_days_from_read_model", counted)

    async def compare(head: int) -> int:
        compared = 0
        async with await psycopg.AsyncConnection.connect(settings.conninfo()) as conn:
            for position in range(1, head + 1):
                for model, late in (
                    (ForecastProjection, forecast_changes(()).late),
                    (AnomalyProjection, anomaly_changes(()).late),
                ):
                    cut = Cut({"metering": position})
                    _, days = await series_history.series_at(
                        conn, TENANT, cut, model, late=late
                    )
                    _, summed = await series_history.series_at(
                        conn, TENANT, cut, model, late=late, from_ledger=True
                    )
                    assert days == summed, (position, model.name)
                    compared += bool(summed.usage)
                    if model is ForecastProjection and summed.observed:
                        period = summed.period("current", summed.observed)
                        kept = await kept_residuals(conn, days, period)
                        kept_periods.append(len(kept or ()))
                        assert own_residuals(days, period, kept) == own_residuals(
                            summed, period
                        ), position
        return compared

    assert asyncio.run(compare(head)) >= 20
    assert used
    assert all(used)  # every cut from the read models' days
    # No backtests kept at the first cuts (no closed period yet), some at
    # the last (the usage 64 days back is in a closed period, and nothing
    # came after the cut).
    assert kept_periods[0] == 0
    assert kept_periods[-1] >= 1, kept_periods
    used.clear()
    # With more of the tenant's entries after the cut than DELTA_LIMIT, every
    # entry up to the cut is summed again.
    with monkeypatch.context() as patched:
        patched.setattr(series_history, "DELTA_LIMIT", 3)
        assert asyncio.run(compare(head)) >= 20
    assert True in used
    assert False in used
    used.clear()

    response = client.patch(
        "/api/ops/settings", json={"timezone": "Asia/Kolkata"}, headers=ops
    )
    assert response.status_code == 200, response.text
    head = max(head, send(client, settings, [event("after", quantity="4")]))
    project()
    assert asyncio.run(compare(head)) >= 20
    # The days before the calendar change are bucketed in UTC, the read
    # models' now in Asia/Kolkata: those cuts sum every entry again.
    assert used.count(True) == 2  # the cut after it, in each read model
    assert used.count(False) >= 20
