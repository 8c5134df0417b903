"""Anomaly flags through the real write side, projector and HTTP stack.

Usage is sent through the Ingestor at a clock the test controls, and time
moves only by ticks, so every case says exactly when the read model is asked.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from application.bootstrap import WriteSide
from application.settings import Settings
from tests.harness import Harness, harness_for
from tests.integration.test_price_book import audit_types
from tests.support import auth

URL = "/api/billing/anomalies"
START = datetime(2026, 8, 3, tzinfo=UTC)  # a Monday
OCTOBER = "2026-10"
ANOMALIES = "billing_anomalies"


def usual(day: datetime) -> int:
    """A weekday rhythm: 100 to 118 on weekdays, 40 at weekends."""
    return 40 if day.weekday() >= 5 else 100 + (day.day * 7) % 19


class Usage:
    """One tenant's compute usage in ws_a, sent an hour after it happened."""

    def __init__(self, h: Harness, write_side: WriteSide) -> None:
        self.h, self.write_side = h, write_side

    def day(self, day: datetime, quantity: float, *, event_id: str = "") -> None:
        at = day.replace(hour=12)
        self.send(event_id or f"d{day:%Y%m%d}", at, quantity, at + timedelta(hours=1))

    def send(self, event_id: str, at: datetime, quantity: float, sent: datetime) -> int:
        body = {
            "id": event_id,
            "workspace_id": "ws_a",
            "product_area": "compute",
            "unit": "vcpu_hour",
            "quantity": str(round(quantity, 3)),
            "timestamp": at.isoformat(),
        }
        return self.h.send("t_acme", [body], at=sent).position

    def history(self, days: int) -> None:
        for i in range(days):
            day = START + timedelta(days=i)
            self.day(day, usual(day))

    def at(self, instant: datetime) -> None:
        """Time reaches `instant`; the read model catches up."""
        self.write_side.clock.record_tick(instant)
        self.write_side.projector.advance(ANOMALIES)


@pytest.fixture
def usage(client: TestClient[Any]) -> Iterator[Usage]:
    write_side = client.app.state.services.write_side
    with harness_for(write_side, START) as h:
        yield Usage(h, write_side)


def flags(client: TestClient[Any], settings: Settings, **params: Any) -> Any:
    response = client.get(
        URL,
        params={"period": OCTOBER} | params,
        headers=auth(settings, "t_acme", "admin"),
    )
    assert response.status_code == 200, response.text
    return response.json()


def notices(settings: Settings) -> list[tuple[str, str]]:
    with psycopg.connect(settings.conninfo()) as conn:
        rows = conn.execute(
            "SELECT type, id FROM billing_notices WHERE suppressed IS NULL"
            " ORDER BY position"
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def test_a_spike_is_flagged_within_the_day_explained_against_a_usual_weekday(
    client: TestClient[Any], settings: Settings, usage: Usage
) -> None:
    usage.history(71)  # Aug 3 to Oct 12
    spike = datetime(2026, 10, 13, tzinfo=UTC)  # a Tuesday
    usage.send("spike", spike.replace(hour=9), 450, spike.replace(hour=9, minute=5))

    usage.at(spike.replace(hour=9, minute=10))  # the day is far from over
    body = flags(client, settings)

    (flag,) = body["anomalies"]
    assert (flag["kind"], flag["direction"], flag["status"]) == ("spike", "up", "open")
    assert flag["usage_date"] == "2026-10-13"
    assert Decimal(flag["observed"]) == 450
    assert Decimal(flag["band"]["high"]) < 450 < Decimal(flag["expected"]) * 5
    assert flag["explanation"].startswith(
        "ws_a used 450 vcpu_hour of compute on Tue 13 Oct so far, "
    )
    assert "a usual Tuesday" in flag["explanation"]
    assert notices(settings) == [("anomaly.opened", f"anomaly.opened/{flag['id']}")]
    assert "AnomaliesViewed" in audit_types(settings)


def test_a_drop_waits_for_the_day_to_settle_and_a_shift_is_one_flag(
    client: TestClient[Any], settings: Settings, usage: Usage
) -> None:
    usage.history(71)
    low = datetime(2026, 10, 13, tzinfo=UTC)
    usage.day(low, 10)  # a tenth of a usual Tuesday
    usage.at(low.replace(hour=20))
    during = flags(client, settings)["anomalies"]
    usage.day(low + timedelta(days=1), usual(low + timedelta(days=1)))
    usage.at(low + timedelta(days=2, hours=20))  # ended, late usage may come
    ended = flags(client, settings)["anomalies"]
    usage.at(low + timedelta(days=3, hours=1))  # two whole days after its end
    after = flags(client, settings)["anomalies"]
    for i in range(2, 8):  # from Thursday on, twice the usual, every day
        day = low + timedelta(days=i)
        usage.day(day, 2.2 * usual(day))
    usage.at(low + timedelta(days=8, hours=1))
    shifted = flags(client, settings)["anomalies"]

    assert during == ended == []
    assert [(f["kind"], f["usage_date"]) for f in after] == [("drop", "2026-10-13")]
    kinds = [(f["kind"], f["direction"], f["usage_date"], f["days"]) for f in shifted]
    assert kinds == [
        ("drop", "down", "2026-10-13", 1),
        ("level_shift", "up", "2026-10-15", 6),
    ]


def test_a_day_low_at_its_end_and_filled_by_late_usage_raises_nothing(
    client: TestClient[Any], settings: Settings, usage: Usage
) -> None:
    usage.history(71)
    day = datetime(2026, 10, 13, tzinfo=UTC)  # a Tuesday, usually 100 to 118
    usage.send("on-time", day.replace(hour=9), 10, day.replace(hour=10))
    usage.at(day + timedelta(days=1, hours=1))
    ended = flags(client, settings)["anomalies"]
    usage.day(day + timedelta(days=1), usual(day + timedelta(days=1)))
    late = day.replace(hour=20)  # recorded 40 h after it happened
    usage.send("late", late, usual(day) - 10, late + timedelta(hours=40))
    usage.at(day + timedelta(days=3, hours=1))  # the Tuesday has settled

    assert ended == []
    assert flags(client, settings)["anomalies"] == []
    assert notices(settings) == []


def test_a_restated_day_clears_its_flag_and_says_why(
    client: TestClient[Any], settings: Settings, usage: Usage
) -> None:
    usage.history(71)
    spike = datetime(2026, 10, 13, tzinfo=UTC)
    usage.day(spike, 900, event_id="big")
    usage.at(spike + timedelta(days=1))
    (opened,) = flags(client, settings)["anomalies"]

    usage.day(spike + timedelta(days=1), 104)  # Wednesday, as usual
    usage.h.amend("t_acme", "big", Decimal(110), at=spike + timedelta(days=2))
    usage.at(spike + timedelta(days=2, hours=1))
    (cleared,) = flags(client, settings)["anomalies"]
    still_open = flags(client, settings, status="open")["anomalies"]

    assert cleared["id"] == opened["id"]
    assert cleared["status"] == "cleared"
    assert "first reported as 900 vcpu_hour and is now 110" in cleared["reason"]
    assert still_open == []
    assert [t for t, _ in notices(settings)] == ["anomaly.opened", "anomaly.cleared"]


def test_an_admin_acknowledges_a_flag_once_with_a_note(
    client: TestClient[Any], settings: Settings, usage: Usage
) -> None:
    usage.history(71)
    spike = datetime(2026, 10, 13, tzinfo=UTC)
    usage.day(spike, 900)
    usage.at(spike + timedelta(days=1))
    (flag,) = flags(client, settings)["anomalies"]
    admin = auth(settings, "t_acme", "admin")
    path = f"{URL}/{flag['id']}/acknowledge"

    first = client.post(path, json={"note": "load test"}, headers=admin)
    again = client.post(path, json={"note": "another"}, headers=admin)
    usage.write_side.projector.advance(ANOMALIES)
    seen = flags(client, settings, min_positions=first.json()["min_positions"])

    assert first.status_code == 200, first.text
    assert (first.json()["already"], again.json()["already"]) == (False, True)
    assert again.json()["note"] == "load test"  # the first one stands
    (acknowledged,) = seen["anomalies"]
    assert acknowledged["status"] == "acknowledged"
    assert acknowledged["acknowledgement"]["note"] == "load test"
    assert audit_types(settings).count("AnomalyAcknowledged") == 2


def test_other_tenants_flags_are_not_found_and_bad_input_names_the_field(
    client: TestClient[Any], settings: Settings, usage: Usage
) -> None:
    usage.history(71)
    spike = datetime(2026, 10, 13, tzinfo=UTC)
    usage.day(spike, 900)
    usage.at(spike + timedelta(days=1))
    (flag,) = flags(client, settings)["anomalies"]
    other = auth(settings, "t_other", "admin")
    admin = auth(settings, "t_acme", "admin")

    stranger = client.post(
        f"{URL}/{flag['id']}/acknowledge", json={"note": "x"}, headers=other
    )
    theirs = client.get(URL, params={"period": OCTOBER}, headers=other).json()
    empty = client.post(
        f"{URL}/{flag['id']}/acknowledge", json={"note": " "}, headers=admin
    )
    status = client.get(URL, params={"status": "closed"}, headers=admin)

    assert stranger.status_code == 404
    assert theirs["anomalies"] == []
    assert (empty.status_code, empty.json()["detail"][:5]) == (400, "note:")
    assert (status.status_code, status.json()["detail"][:7]) == (400, "status:")


def test_a_series_with_too_little_history_is_listed_not_judged(
    client: TestClient[Any], settings: Settings, usage: Usage
) -> None:
    first = datetime(2026, 10, 5, tzinfo=UTC)
    for i in range(10):
        usage.day(first + timedelta(days=i), 100 if i < 9 else 5000)
    usage.at(first + timedelta(days=10))

    body = flags(client, settings)

    assert body["anomalies"] == []
    (series,) = body["not_evaluated"]
    assert (series["workspace_id"], series["product_area"]) == ("ws_a", "compute")
    assert "too little history" in series["reason"]


def test_a_drop_on_the_last_day_of_a_period_is_flagged_once_it_has_settled(
    client: TestClient[Any], settings: Settings, usage: Usage
) -> None:
    usage.history(89)  # Aug 3 to Oct 30
    last = datetime(2026, 10, 31, tzinfo=UTC)  # a Saturday: usually 40
    usage.day(last, 1)
    usage.at(datetime(2026, 11, 2, 0, 10, tzinfo=UTC))  # November has begun
    before = flags(client, settings)["anomalies"]
    usage.at(datetime(2026, 11, 3, 0, 10, tzinfo=UTC))  # two whole days since
    after = flags(client, settings)["anomalies"]

    assert before == []
    assert [(f["kind"], f["usage_date"]) for f in after] == [("drop", "2026-10-31")]
