"""Explaining numbers: a daily row's ledger entries sum to it, now and as of a past
instant, for arbitrary histories; one metering event's whole history."""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from application.settings import Settings
from domain.periods import usage_date
from tests.harness import Harness, harness_for
from tests.oracle import Oracle
from tests.support import auth, event

pytestmark = pytest.mark.timeout(900)
START = datetime(2026, 9, 20, tzinfo=UTC)
SPAN_MINUTES = 30 * 24 * 60  # events happen within 30 days of START...
CLOCK_START = START + timedelta(days=30)  # ...and are recorded after that
PERIODS = ("2026-09", "2026-10")
ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Pacific/Auckland"]
EXPLAIN = "/api/audit/usage/explain"

quantities = st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False)
payloads = st.builds(
    lambda i, ws, area, q, minutes: {
        "id": f"e{i}",
        "workspace_id": ws,
        "product_area": area,
        "quantity": str(q),
        "unit": "unit",
        "timestamp": (START + timedelta(minutes=minutes)).isoformat(),
    },
    st.integers(0, 12),  # few ids: duplicates and conflicting re-sends
    st.sampled_from(["ws_a", "ws_b"]),
    st.sampled_from(["compute", "api"]),
    quantities,
    st.integers(0, SPAN_MINUTES),
)
steps = st.one_of(
    st.tuples(st.just("send"), st.lists(payloads, min_size=1, max_size=6)),
    st.tuples(st.just("void"), st.integers(0, 12)),
    st.tuples(st.just("amend"), st.integers(0, 12), quantities),
    st.tuples(st.just("calendar"), st.sampled_from(ZONES)),
)
histories = st.lists(st.tuples(steps, st.integers(1, 6 * 60)), min_size=2, max_size=14)


class Played:
    """What a history did, with the instants it happened at."""

    def __init__(self) -> None:
        self.oracle = Oracle()
        self.zones: list[tuple[datetime, str]] = []
        self.instants: list[datetime] = []

    def zone_at(self, at: datetime) -> str:
        return next((z for t, z in reversed(self.zones) if t <= at), "UTC")


def play(h: Harness, tenant: str, history: list[tuple[Any, int]]) -> Played:
    played = Played()
    oracle = played.oracle
    now = CLOCK_START
    for step, minutes in history:
        now += timedelta(minutes=minutes)
        played.instants.append(now)
        kind, *args = step
        if kind == "send":
            h.send(tenant, args[0], at=now)
            for payload in args[0]:
                oracle.record(tenant, payload, now)
        elif kind == "void" and oracle.void(tenant, f"e{args[0]}", now):
            h.void(tenant, f"e{args[0]}", at=now)
        elif kind == "amend" and oracle.amend(tenant, f"e{args[0]}", args[1], now):
            h.amend(tenant, f"e{args[0]}", args[1], at=now)
        elif kind == "calendar":
            h.set_calendar(tenant, args[0], at=now)
            played.zones.append((now, args[0]))
    return played


def rows_at(played: Played, cut: datetime) -> dict[tuple[Any, ...], list[Any]]:
    """The daily rows a read model over the history up to `cut` would hold,
    summed from the changes themselves in the calendar as it stood then."""
    zone = played.zone_at(cut)
    rows: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for c in played.oracle.changes:
        if c.recorded_at <= cut:
            key = (c.workspace, c.area, c.unit, usage_date(c.occurred_at, zone))
            rows[key][0] += c.delta
            rows[key][1] += c.count
    return rows


def walk(
    client: TestClient[Any], headers: dict[str, str], params: dict[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every page of one explanation: the pages, and all their entries."""
    pages, entries, after = [], [], None
    while True:
        query = params | ({"after": str(after)} if after is not None else {})
        response = client.get(EXPLAIN, params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        entries += page["events"]
        after = page["next"]
        if after is None:
            return pages, entries


def assert_explains(
    pages: list[dict[str, Any]],
    entries: list[dict[str, Any]],
    quantity: Decimal,
    count: int,
) -> None:
    assert {(Decimal(p["quantity"]), p["source_event_count"]) for p in pages} == {
        (quantity, count)
    }
    assert sum(Decimal(e["quantity_delta"]) for e in entries) == quantity
    assert sum(e["count_delta"] for e in entries) == count
    positions = [e["position"] for e in entries]
    assert positions == sorted(set(positions))  # in order, none twice


def served_rows(
    client: TestClient[Any], settings: Settings, tenant: str
) -> list[dict[str, Any]]:
    admin = auth(settings, tenant, "admin")
    rows = []
    for period in PERIODS:
        answer = client.get(
            "/api/billing/usage", params={"period": period}, headers=admin
        )
        rows += answer.json()["rows"]
    return rows


@hyp_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories, limit=st.integers(1, 3), middle=st.floats(0, 1))
def test_every_row_is_the_sum_of_its_explanation_now_and_as_of(
    app: Any,
    client: TestClient[Any],
    settings: Settings,
    history: list[tuple[Any, int]],
    limit: int,
    middle: float,
) -> None:
    tenant = f"t_{uuid.uuid4().hex[:10]}"
    with harness_for(app.state.services.write_side, CLOCK_START) as h:
        played = play(h, tenant, history)
        h.project()
    auditor = auth(settings, tenant, "auditor")

    rows = served_rows(client, settings, tenant)
    assert len(rows) == len(rows_at(played, played.instants[-1]))
    for row in rows:
        params = {
            "workspace_id": row["workspace_id"],
            "product_area": row["product_area"],
            "unit": row["unit"],
            "usage_date": row["usage_date"],
            "limit": str(limit),
        }
        pages, entries = walk(client, auditor, params)
        assert pages[0]["quantity"] == row["quantity"]  # the same text
        assert_explains(
            pages, entries, Decimal(row["quantity"]), row["source_event_count"]
        )

    cut = played.instants[int(middle * (len(played.instants) - 1))]
    for (ws, area, unit, day), (quantity, count) in rows_at(played, cut).items():
        params = {
            "workspace_id": ws,
            "product_area": area,
            "unit": unit,
            "usage_date": day.isoformat(),
            "as_of": cut.isoformat(),
            "limit": str(limit),
        }
        pages, entries = walk(client, auditor, params)
        assert_explains(pages, entries, quantity, count)
        assert all(datetime.fromisoformat(e["recorded_at"]) <= cut for e in entries)


# Examples


def project(app: Any) -> None:
    app.state.services.write_side.projector.advance("billing_usage_daily")


def ingest(
    client: TestClient[Any], settings: Settings, tenant: str, body: list[Any]
) -> None:
    answer = client.post(
        "/api/metering/events", json=body, headers=auth(settings, tenant, "metering")
    )
    assert answer.status_code == 200, answer.text


def correct(
    client: TestClient[Any], settings: Settings, tenant: str, body: dict[str, Any]
) -> None:
    answer = client.post(
        "/api/metering/corrections",
        json=body,
        headers=auth(settings, tenant, "ops", sub="ops_jane"),
    )
    assert answer.status_code == 200, answer.text


def test_an_amended_then_voided_event_shows_its_three_steps_in_order(
    client: TestClient[Any], settings: Settings
) -> None:
    ingest(client, settings, "t_acme", [event("e1", quantity="2.50")])
    amend = {"action": "amend", "event_id": "e1", "quantity": "4", "reason": "meter"}
    correct(client, settings, "t_acme", amend)
    void = {"action": "void", "event_id": "e1", "reason": "duplicate of e2"}
    correct(client, settings, "t_acme", void)

    answer = client.get(
        "/api/audit/metering-events/e1", headers=auth(settings, "t_acme", "auditor")
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["event_id"], body["quantity"], body["voided"]) == ("e1", "0", True)
    recorded, amended, voided = body["history"]
    assert [recorded["kind"], amended["kind"], voided["kind"]] == [
        "recorded",
        "amended",
        "voided",
    ]
    assert recorded["position"] < amended["position"] < voided["position"]
    assert recorded["recorded_at"] <= amended["recorded_at"] <= voided["recorded_at"]
    assert (recorded["quantity"], recorded["workspace_id"]) == ("2.5", "ws_a")
    assert (amended["previous_quantity"], amended["quantity"]) == ("2.5", "4")
    assert (amended["reason"], amended["actor_id"]) == ("meter", "ops_jane")
    assert (voided["quantity"], voided["reason"]) == ("4", "duplicate of e2")
    assert voided["correction_id"] != amended["correction_id"]


def test_an_unknown_or_another_tenants_event_is_not_found(
    client: TestClient[Any], settings: Settings
) -> None:
    ingest(client, settings, "t_other", [event("e1")])
    auditor = auth(settings, "t_acme", "auditor")

    for event_id in ("e1", "nope"):
        answer = client.get(f"/api/audit/metering-events/{event_id}", headers=auditor)
        assert answer.status_code == 404, answer.text
        assert set(answer.json()) == {"status_code", "detail"}


def test_a_row_that_does_not_exist_is_not_found(
    app: Any, client: TestClient[Any], settings: Settings
) -> None:
    at = datetime(2026, 11, 2, 12, tzinfo=UTC)
    ingest(client, settings, "t_other", [event("e1", at=at)])
    project(app)
    params = {
        "workspace_id": "ws_a",
        "product_area": "compute",
        "unit": "vcpu_hour",
        "usage_date": "2026-11-02",
    }

    answer = client.get(
        EXPLAIN, params=params, headers=auth(settings, "t_acme", "auditor")
    )

    assert answer.status_code == 404, answer.text
    assert "no usage row" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"usage_date": "2026-13-01"}, "usage_date"),
        ({"usage_date": "2026-11-2"}, "usage_date"),
        ({"usage_date": None}, "usage_date"),
        ({"unit": None}, "unit"),
        ({"unit": "GB hours!"}, "unit"),
        ({"product_area": ""}, "product_area"),
        ({"workspace_id": "ws a"}, "workspace_id"),
        ({"as_of": "2026-11-02T10:00:00"}, "as_of"),
        ({"as_of": "yesterday"}, "as_of"),
        ({"position": "-1"}, "position"),
        ({"position": "99999"}, "position"),
        ({"position": "1", "as_of": "2026-11-02T10:00:00Z"}, "position"),
        ({"after": "x"}, "after"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(
    client: TestClient[Any],
    settings: Settings,
    change: dict[str, str | None],
    field: str,
) -> None:
    params = {
        "workspace_id": "ws_a",
        "product_area": "compute",
        "unit": "vcpu_hour",
        "usage_date": "2026-11-02",
    } | change
    answer = client.get(
        EXPLAIN,
        params={k: v for k, v in params.items() if v is not None},
        headers=auth(settings, "t_acme", "auditor"),
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"].startswith(f"{field}:")


def test_pages_end_exactly_at_the_last_entry(
    app: Any, client: TestClient[Any], settings: Settings
) -> None:
    at = datetime(2026, 11, 2, 12, tzinfo=UTC)
    body = [event(f"e{i}", quantity=f"1.{i}", at=at) for i in range(4)]
    ingest(client, settings, "t_acme", body)
    correct(
        client, settings, "t_acme", {"action": "void", "event_id": "e0", "reason": "x"}
    )
    project(app)
    auditor = auth(settings, "t_acme", "auditor")
    params = {
        "workspace_id": "ws_a",
        "product_area": "compute",
        "unit": "vcpu_hour",
        "usage_date": "2026-11-02",
    }

    first = client.get(EXPLAIN, params=params | {"limit": "3"}, headers=auditor)
    second = client.get(
        EXPLAIN,
        params=params | {"limit": "3", "after": str(first.json()["next"])},
        headers=auditor,
    )
    whole = client.get(EXPLAIN, params=params | {"limit": "5"}, headers=auditor)

    assert [len(r.json()["events"]) for r in (first, second, whole)] == [3, 2, 5]
    assert first.json()["next"] == first.json()["events"][-1]["position"]
    assert second.json()["next"] is None
    assert whole.json()["next"] is None
    assert whole.json()["quantity"] == "3.6"  # 1.1 + 1.2 + 1.3 (e0 voided)
    assert whole.json()["source_event_count"] == 3
    kinds = [e["kind"] for e in whole.json()["events"]]
    assert kinds == ["recorded"] * 4 + ["voided"]


def test_explanations_and_inspections_are_audited(
    app: Any, client: TestClient[Any], settings: Settings
) -> None:
    at = datetime(2026, 11, 2, 12, tzinfo=UTC)
    ingest(client, settings, "t_acme", [event("e1", at=at)])
    project(app)
    auditor = auth(settings, "t_acme", "auditor", sub="auditor_ann")
    params = {
        "workspace_id": "ws_a",
        "product_area": "compute",
        "unit": "vcpu_hour",
        "usage_date": "2026-11-02",
    }
    explained = client.get(EXPLAIN, params=params, headers=auditor)
    client.get("/api/audit/metering-events/e1", headers=auditor)
    client.get("/api/audit/metering-events/e2", headers=auditor)
    app.state.services.write_side.projector.advance("billing_audit_log")

    logged = client.get(
        "/api/audit/events", params={"since": "2000-01-01T00:00:00Z"}, headers=auditor
    ).json()

    records = [
        (r["type"], r["actor_id"], r["details"].get("found"))
        for r in logged
        if r["type"] in ("UsageExplained", "MeteringEventInspected")
    ]
    assert records == [
        ("UsageExplained", "auditor_ann", True),
        ("MeteringEventInspected", "auditor_ann", True),
        ("MeteringEventInspected", "auditor_ann", False),
    ]
    (first,) = [r for r in logged if r["type"] == "UsageExplained"]
    assert first["details"]["sha256"] == hashlib.sha256(explained.content).hexdigest()


def test_a_row_at_a_metering_position_counts_only_the_events_up_to_it(
    app: Any, client: TestClient[Any], settings: Settings
) -> None:
    at = datetime(2026, 11, 2, 12, tzinfo=UTC)
    metering = auth(settings, "t_acme", "metering")
    first = client.post(
        "/api/metering/events",
        json=[event("e1", quantity="2", at=at)],
        headers=metering,
    ).json()["position"]
    client.post(
        "/api/metering/events",
        json=[event("e2", quantity="3", at=at)],
        headers=metering,
    )
    project(app)
    params = {
        "workspace_id": "ws_a",
        "product_area": "compute",
        "unit": "vcpu_hour",
        "usage_date": "2026-11-02",
    }
    auditor = auth(settings, "t_acme", "auditor")

    then = client.get(
        EXPLAIN, params=params | {"position": str(first)}, headers=auditor
    )
    now = client.get(EXPLAIN, params=params, headers=auditor)

    assert then.status_code == 200, then.text
    assert (then.json()["quantity"], then.json()["source_event_count"]) == ("2", 1)
    assert [e["event_id"] for e in then.json()["events"]] == ["e1"]
    assert (now.json()["quantity"], now.json()["source_event_count"]) == ("5", 2)
