"""POST /api/metering/corrections: void, amend, range void with a dry run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from application.settings import Settings
from tests.support import auth, event

URL = "/api/metering/corrections"
DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
    days=2
)


def seed(
    client: TestClient[Any], settings: Settings, body: list[dict[str, Any]]
) -> int:
    response = client.post(
        "/api/metering/events", json=body, headers=auth(settings, "t_acme", "metering")
    )
    assert response.json()["accepted"] == len(body)
    return int(response.json()["position"])


def correct(client: TestClient[Any], settings: Settings, body: dict[str, Any]) -> Any:
    return client.post(
        URL, json=body, headers=auth(settings, "t_acme", "ops", sub="olivia")
    )


def history(settings: Settings) -> list[tuple[str, int]]:
    with psycopg.connect(settings.conninfo()) as conn:
        return [
            (r[0].rsplit(".", 1)[-1], r[1])
            for r in conn.execute(
                "SELECT topic, originator_version FROM metering_events"
                " ORDER BY notification_id"
            ).fetchall()
        ]


def audit_topics(settings: Settings) -> list[str]:
    with psycopg.connect(settings.conninfo()) as conn:
        return [
            r[0].rsplit(".", 1)[-1]
            for r in conn.execute("SELECT topic FROM audit_events").fetchall()
        ]


def test_voiding_an_event_adds_to_the_history_and_is_audited(
    client: TestClient[Any], settings: Settings, write_side: Any
) -> None:
    seed(client, settings, [event("e1", quantity="5", at=DAY + timedelta(hours=3))])

    response = correct(
        client, settings, {"action": "void", "event_id": "e1", "reason": "test traffic"}
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["action"], body["dry_run"], body["event_count"]) == ("void", False, 1)
    assert body["days"] == [
        {
            "usage_date": DAY.date().isoformat(),
            "workspace_id": "ws_a",
            "product_area": "compute",
            "unit": "vcpu_hour",
            "quantity_change": "-5",
            "event_count_change": -1,
        }
    ]
    assert history(settings) == [("Recorded", 1), ("Voided", 2)]
    assert audit_topics(settings) == ["CorrectionApplied"]
    record = write_side.metering.get_record("t_acme", "e1")
    assert record.voided
    assert record.original_quantity == Decimal(5)


def test_amending_changes_the_quantity_and_keeps_the_original(
    client: TestClient[Any], settings: Settings, write_side: Any
) -> None:
    seed(client, settings, [event("e1", quantity="5")])

    body = correct(
        client,
        settings,
        {
            "action": "amend",
            "event_id": "e1",
            "quantity": "3.25",
            "reason": "meter bug",
        },
    ).json()

    assert body["totals"] == [
        {"product_area": "compute", "unit": "vcpu_hour", "quantity_change": "-1.75"}
    ]
    record = write_side.metering.get_record("t_acme", "e1")
    assert (record.quantity, record.original_quantity) == (Decimal("3.25"), Decimal(5))


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (
            {"action": "void", "event_id": "missing", "reason": "x"},
            404,
            "event missing not found",
        ),
        (
            {"action": "void", "event_id": "e1", "reason": "  "},
            422,
            "reason: must not be empty",
        ),
        (
            {"action": "amend", "event_id": "e1", "quantity": "-2", "reason": "x"},
            422,
            "quantity: must be >= 0",
        ),
        (
            {"action": "amend", "event_id": "e1", "quantity": "5", "reason": "x"},
            409,
            "event e1 already has quantity 5",
        ),
        (
            {"action": "explode", "event_id": "e1", "reason": "x"},
            400,
            "action: invalid value 'explode'",
        ),
        ({"action": "void", "reason": "x"}, 400, "event_id: is required"),
    ],
)
def test_bad_corrections_are_refused_and_write_nothing(
    client: TestClient[Any],
    settings: Settings,
    body: dict[str, Any],
    status: int,
    detail: str,
) -> None:
    seed(client, settings, [event("e1", quantity="5")])

    response = correct(client, settings, body)

    assert response.status_code == status
    assert response.json()["detail"].startswith(detail)
    assert history(settings) == [("Recorded", 1)]


def test_a_voided_event_cannot_be_voided_or_amended_again(
    client: TestClient[Any], settings: Settings
) -> None:
    seed(client, settings, [event("e1")])
    correct(client, settings, {"action": "void", "event_id": "e1", "reason": "x"})

    again = correct(
        client, settings, {"action": "void", "event_id": "e1", "reason": "x"}
    )
    amend = correct(
        client,
        settings,
        {"action": "amend", "event_id": "e1", "quantity": "2", "reason": "x"},
    )

    assert again.status_code == amend.status_code == 409
    assert again.json()["detail"] == "event e1 is already voided"


def range_void(**overrides: Any) -> dict[str, Any]:
    return {
        "action": "void_range",
        "reason": "duplicate export from producer",
        "filter": {
            "start": DAY.isoformat(),
            "end": (DAY + timedelta(days=1)).isoformat(),
            "workspace_id": "ws_a",
        },
    } | overrides


def seed_range(client: TestClient[Any], settings: Settings) -> None:
    seed(
        client,
        settings,
        [
            event("in1", quantity="2", at=DAY + timedelta(hours=1)),
            event(
                "in2",
                quantity="3",
                area="storage",
                unit="gb_hour",
                at=DAY + timedelta(hours=20),
            ),
            event(
                "other-ws", quantity="7", workspace="ws_b", at=DAY + timedelta(hours=2)
            ),
            event("next-day", quantity="11", at=DAY + timedelta(days=1, hours=1)),
        ],
    )


def test_a_range_void_dry_run_reports_and_writes_nothing(
    client: TestClient[Any], settings: Settings, projecting: Any
) -> None:
    seed_range(client, settings)

    response = correct(client, settings, range_void())

    assert response.status_code == 200
    body = response.json()
    assert (body["dry_run"], body["event_count"], body["correction_id"]) == (
        True,
        2,
        None,
    )
    assert body["totals"] == [
        {"product_area": "compute", "unit": "vcpu_hour", "quantity_change": "-2"},
        {"product_area": "storage", "unit": "gb_hour", "quantity_change": "-3"},
    ]
    assert {d["usage_date"] for d in body["days"]} == {DAY.date().isoformat()}
    assert [topic for topic, _ in history(settings)] == ["Recorded"] * 4
    assert audit_topics(settings) == []


def test_a_range_void_voids_exactly_what_the_dry_run_showed(
    client: TestClient[Any], settings: Settings, projecting: Any, write_side: Any
) -> None:
    seed_range(client, settings)
    preview = correct(client, settings, range_void()).json()

    applied = correct(
        client,
        settings,
        range_void(dry_run=False, expected_events=preview["event_count"]),
    )

    assert applied.status_code == 200
    body = applied.json()
    assert (body["dry_run"], body["event_count"], body["totals"]) == (
        False,
        2,
        preview["totals"],
    )
    voided = {
        e
        for e in ("in1", "in2", "other-ws", "next-day")
        if write_side.metering.get_record("t_acme", e).voided
    }
    assert voided == {"in1", "in2"}
    assert audit_topics(settings) == ["CorrectionApplied"]


def test_a_range_void_refuses_when_the_match_differs_from_what_was_expected(
    client: TestClient[Any], settings: Settings, projecting: Any
) -> None:
    seed_range(client, settings)

    response = correct(client, settings, range_void(dry_run=False, expected_events=5))

    assert response.status_code == 409
    assert (
        response.json()["detail"]
        == "expected_events: 5 expected, 2 match now; nothing was written"
    )
    assert [topic for topic, _ in history(settings)] == ["Recorded"] * 4


def test_a_range_void_needs_an_ordered_range(
    client: TestClient[Any], settings: Settings
) -> None:
    body = range_void(filter={"start": DAY.isoformat(), "end": DAY.isoformat()})

    response = correct(client, settings, body)

    assert response.status_code == 422
    assert response.json()["detail"] == "filter.end: must be after filter.start"


def test_a_dry_run_reports_days_as_the_usage_read_model_buckets_them(
    client: TestClient[Any], settings: Settings, projecting: Any
) -> None:
    """One day-and-period rule: a range void's days are the usage API's days."""
    client.patch(
        "/api/ops/settings",
        json={"timezone": "America/Los_Angeles"},
        headers=auth(settings, "t_acme", "ops"),
    )
    position = seed(
        client, settings, [event("in1", quantity="2", at=DAY + timedelta(hours=1))]
    )
    usage = client.get(
        f"/api/billing/usage?period=current&min_position={position}",
        headers=auth(settings, "t_acme", "admin"),
    ).json()
    previous = client.get(
        f"/api/billing/usage?period=previous&min_position={position}",
        headers=auth(settings, "t_acme", "admin"),
    ).json()

    body = correct(client, settings, range_void()).json()

    served = {r["usage_date"] for r in usage["rows"] + previous["rows"]}
    assert {d["usage_date"] for d in body["days"]} == served
    assert served == {(DAY - timedelta(days=1)).date().isoformat()}  # 17:00 in LA
