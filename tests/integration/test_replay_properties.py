"""For arbitrary histories and views: every recorded view replays to the bytes
that were sent, and an as-of answer at a read model's positions equals what
the read model served there.

Histories interleave ingests (late, duplicated, conflicting ids), corrections,
calendar and price changes, views of every kind (with and without a wait,
cached and not), partial catch-ups of the read models and rebuilds.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from application.settings import Settings
from projections.usage_daily import as_of
from projections.usage_daily import postgres as usage_postgres
from tests.support import auth, event

pytestmark = pytest.mark.timeout(900)
NOW = datetime.now(UTC)
USAGE = "billing_usage_daily"
FORECAST = "billing_forecast"
ANOMALIES = "billing_anomalies"

ingests = st.lists(
    st.builds(
        lambda i, ws, area, q, hours: (f"e{i}", ws, area, q, hours),
        st.integers(0, 30),  # few ids: duplicates and conflicts
        st.sampled_from(["ws_a", "ws_b"]),
        st.sampled_from(["compute", "storage"]),
        st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False),
        st.integers(0, 24 * 50),  # up to 50 days late
    ),
    min_size=1,
    max_size=12,
)
usage_queries = st.fixed_dictionaries(
    {"period": st.sampled_from(["current", "previous"])},
    optional={
        "workspace_id": st.sampled_from(["ws_a", "ws_b"]),
        "product_area": st.sampled_from(["compute", "storage"]),
        "group_by": st.sampled_from(["day", "product_area,workspace", "workspace"]),
    },
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("ingest"), ingests),
        st.tuples(st.just("void"), st.integers(0, 30)),
        st.tuples(
            st.just("amend"),
            st.integers(0, 30),
            st.decimals(min_value=0, max_value=50, places=2, allow_nan=False),
        ),
        st.tuples(
            st.just("calendar"),
            st.sampled_from(["UTC", "Asia/Kolkata", "America/New_York"]),
        ),
        st.tuples(st.just("price"), st.sampled_from(["0.5", "1.25", "3"])),
        st.tuples(
            st.just("advance"),
            st.sampled_from([USAGE, FORECAST, ANOMALIES]),
            st.integers(1, 20),
        ),
        st.tuples(st.just("catch_up")),
        st.tuples(st.just("rebuild"), st.sampled_from([USAGE, FORECAST, ANOMALIES])),
        st.tuples(st.just("usage"), usage_queries, st.booleans()),
        st.tuples(st.just("export"), usage_queries),
        st.tuples(st.just("forecast"), st.sampled_from([None, "ws_a"])),
        st.tuples(st.just("anomalies"), st.sampled_from([None, "ws_b"])),
    ),
    min_size=3,
    max_size=14,
)


class History:
    """One tenant's history, driven through the real HTTP stack."""

    def __init__(self, client: TestClient[Any], settings: Settings, app: Any) -> None:
        self.client = client
        self.settings = settings
        self.tenant = f"t_{uuid.uuid4().hex[:10]}"
        self.projector = app.state.services.write_side.projector
        self.sent: dict[str, tuple[str, bytes]] = {}  # request id -> (kind, bytes)
        self.live_at: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.position = 0

    def headers(self, role: str) -> dict[str, str]:
        return auth(self.settings, self.tenant, role)

    def run(self, step: tuple[Any, ...]) -> None:
        getattr(self, step[0])(*step[1:])

    def ingest(self, batch: list[tuple[Any, ...]]) -> None:
        body = [
            event(
                i,
                workspace=ws,
                area=area,
                quantity=str(q),
                at=NOW - timedelta(hours=hours, minutes=7),
            )
            for i, ws, area, q, hours in batch
        ]
        response = self.client.post(
            "/api/metering/events", json=body, headers=self.headers("metering")
        )
        assert response.status_code in (200, 207), response.text

    def _correct(self, body: dict[str, Any]) -> None:
        response = self.client.post(
            "/api/metering/corrections", json=body, headers=self.headers("ops")
        )
        assert response.status_code in (200, 404, 409), response.text

    def void(self, i: int) -> None:
        self._correct({"action": "void", "event_id": f"e{i}", "reason": "test"})

    def amend(self, i: int, quantity: Any) -> None:
        self._correct(
            {
                "action": "amend",
                "event_id": f"e{i}",
                "quantity": str(quantity),
                "reason": "test",
            }
        )

    def calendar(self, timezone: str) -> None:
        response = self.client.patch(
            "/api/ops/settings",
            json={"timezone": timezone},
            headers=self.headers("ops"),
        )
        assert response.status_code == 200, response.text

    def price(self, unit_price: str) -> None:
        response = self.client.put(
            "/api/ops/price-book",
            json={
                "currency": "EUR",
                "effective_from": "current",
                "prices": [
                    {
                        "product_area": "compute",
                        "unit": "vcpu_hour",
                        "unit_price": unit_price,
                    }
                ],
            },
            headers=self.headers("ops"),
        )
        assert response.status_code == 200, response.text

    def advance(self, name: str, events: int) -> None:
        self.projector.advance(name, max_events=events)

    def catch_up(self) -> None:
        for name in (USAGE, FORECAST, ANOMALIES):
            while self.projector.advance(name):
                pass

    def rebuild(self, name: str) -> None:
        self.projector.rebuild(name)

    def _view(self, kind: str, path: str, params: dict[str, Any]) -> str:
        response = self.client.get(path, params=params, headers=self.headers("admin"))
        assert response.status_code == 200, response.text
        request_id = response.headers["x-request-id"]
        self.sent[request_id] = (kind, response.content)
        return request_id

    def usage(self, query: dict[str, Any], wait: bool) -> None:
        params = dict(query)
        if wait:  # the wait's outcome is part of the bytes sent
            params["min_positions"] = "metering:1"
        request_id = self._view("usage", "/api/billing/usage", params)
        body = json.loads(self.sent[request_id][1])
        self.live_at.append((request_id, query, body))

    def export(self, query: dict[str, Any]) -> None:
        self._view("export", "/api/billing/usage/export", query)

    def forecast(self, workspace_id: str | None) -> None:
        params = {"workspace_id": workspace_id} if workspace_id else {}
        self._view("forecast", "/api/billing/forecast", params)

    def anomalies(self, workspace_id: str | None) -> None:
        params = {"workspace_id": workspace_id} if workspace_id else {}
        self._view("anomalies", "/api/billing/anomalies", params)

    def recorded_views(self) -> dict[str, dict[str, Any]]:
        """Request id -> audit event of every view and export recorded."""
        while self.projector.advance("billing_audit_log"):
            pass
        events = self.client.get(
            "/api/audit/events",
            params={"limit": "1000"},
            headers=self.headers("auditor"),
        ).json()
        return {
            e["request_id"]: e
            for e in events
            if e["type"]
            in ("UsageViewed", "UsageExported", "ForecastViewed", "AnomaliesViewed")
        }


@given(history=steps)
@hyp_settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_recorded_view_replays_to_the_bytes_sent(
    history: list[tuple[Any, ...]],
    client: TestClient[Any],
    settings: Settings,
    app: Any,
) -> None:
    h = History(client, settings, app)
    h.run(("ingest", [("e0", "ws_a", "compute", 1, 30)]))
    for step in history:
        h.run(step)
    h.usage({"period": "current"}, False)
    h.export({"period": "previous"})

    # Whatever arrives after the views (late data, a correction, a new
    # calendar, a rebuild) must not change what their replay reproduces:
    # from the read models' rows and days less what came later (before the
    # new calendar), and summed again from the ledger (after it).
    h.ingest([("late", "ws_a", "compute", 7, 40)])
    h.void(0)
    h.catch_up()
    replay_every_view(h, client)
    h.calendar("Pacific/Chatham")
    h.catch_up()
    h.rebuild(USAGE)
    replay_every_view(h, client)


def replay_every_view(h: History, client: TestClient[Any]) -> None:
    ids = h.recorded_views()
    assert set(ids) == set(h.sent)
    for request_id, recorded in ids.items():
        kind, sent = h.sent[request_id]
        response = client.get(
            f"/api/audit/views/{recorded['id']}/replay", headers=h.headers("auditor")
        )
        assert response.status_code == 200, response.text
        replay = response.json()
        assert replay["verified"], (kind, replay)
        assert replay["recorded_sha256"] == replay["replayed_sha256"]
        if kind == "export":
            assert replay["body"].encode() == sent
        else:
            assert json.loads(sent) == replay["body"]


@given(history=steps)
@hyp_settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_usage_as_of_a_position_is_what_the_read_model_served_there(
    history: list[tuple[Any, ...]],
    client: TestClient[Any],
    settings: Settings,
    app: Any,
) -> None:
    h = History(client, settings, app)
    # A checkpoint (as-of reads start from the nearest) every few entries.
    with patched(usage_postgres, "CHECKPOINT_EVERY", 2):
        h.run(("ingest", [("e0", "ws_b", "storage", 2, 3)]))
        for step in history:
            h.run(step)
            if step[0] != "usage":
                h.usage({"period": "current"}, False)
        h.catch_up()
        h.usage({"period": "previous", "group_by": "day"}, False)
        h.ingest([("after", "ws_a", "compute", 5, 60)])
        h.void(0)
        h.catch_up()

    recorded = h.recorded_views()
    compared = 0
    for request_id, query, live in h.live_at:
        # The positions the read model served at, as the view recorded them.
        cut = recorded[request_id]["details"]["replay"]["positions"]
        assert cut["metering"] == live["position"]
        if live["position"] == 0:
            continue  # nothing processed yet: a cut at no event is 1970
        positions = ",".join(f"{name}:{p}" for name, p in sorted(cut.items()))
        # The period the view resolved (`current` is relative to the instant
        # the answer is about; the cut's is when its last event was recorded).
        label = live["period"]["start"][:7]
        # Every way of reading the rows at a cut: the nearer of the live rows
        # less what came after it and a checkpoint plus what came between, a
        # checkpoint only, and every entry summed again.
        for delta_limit, checkpoints in (
            (as_of.DELTA_LIMIT, True),
            (-1, True),
            (-1, False),
        ):
            with (
                patched(as_of, "DELTA_LIMIT", delta_limit),
                patched(as_of, "USE_CHECKPOINTS", checkpoints),
            ):
                response = client.get(
                    "/api/audit/usage",
                    params={**query, "period": label, "positions": positions},
                    headers=h.headers("auditor"),
                )
            assert response.status_code == 200, response.text
            at = response.json()
            assert at["position"] == live["position"]
            compared += 1
            for field in (
                "tenant_id",
                "period",
                "group_by",
                "rows",
                "totals",
                "late_adjustments",
            ):
                assert at[field] == live[field], (field, delta_limit, checkpoints)
    assert compared >= 1  # the view after the catch-up at least


@contextmanager
def patched(module: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)
