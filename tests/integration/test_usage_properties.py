"""For arbitrary histories: CSV totals == API totals == a brute-force sum, and no
tenant ever sees another's usage."""

from __future__ import annotations

import csv
import io
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
from domain.periods import resolve_period
from tests.oracle import Oracle
from tests.support import auth, event

pytestmark = pytest.mark.timeout(600)
NOW = datetime.now(UTC)
CURRENT = resolve_period(
    "current", now=NOW, anchor_day=1, timezone="UTC", grace=timedelta(hours=72)
)
EARLIEST = datetime.combine(CURRENT.previous().start, datetime.min.time(), UTC)
SPAN_MINUTES = int((NOW - EARLIEST).total_seconds() // 60) - 10

usage_events = st.builds(
    lambda i, ws, area, unit, q, minutes: event(
        f"e{i}",
        workspace=ws,
        area=area,
        unit=unit,
        quantity=str(q),
        at=EARLIEST + timedelta(minutes=minutes),
    ),
    st.integers(0, 25),
    st.sampled_from(["ws_a", "ws_b", "ws_c"]),
    st.sampled_from(["compute", "api", "storage"]),
    st.sampled_from(["hour", "gb"]),
    st.decimals(min_value=0, max_value=10**6, places=4, allow_nan=False),
    st.integers(0, SPAN_MINUTES),
)
queries = st.fixed_dictionaries(
    {"period": st.sampled_from(["current", "previous", CURRENT.previous().label])},
    optional={
        "workspace_id": st.sampled_from(["ws_a", "ws_b", "ws_c", "ws_none"]),
        "product_area": st.sampled_from(["compute", "api", "storage"]),
        "group_by": st.lists(
            st.sampled_from(["day", "product_area", "workspace"]),
            min_size=1,
            max_size=3,
            unique=True,
        ).map(",".join),
    },
)


@pytest.fixture
def noise(client: TestClient[Any], settings: Settings) -> None:
    """Another tenant with the same workspaces and huge quantities: any leak shows."""
    body = [
        event(
            f"n{i}",
            workspace=ws,
            area=area,
            quantity="1000000000",
            at=NOW - timedelta(hours=i),
        )
        for i, (ws, area) in enumerate(
            [("ws_a", "compute"), ("ws_b", "api"), ("ws_c", "storage")]
        )
    ]
    client.post(
        "/api/metering/events", json=body, headers=auth(settings, "t_noise", "metering")
    )


def per_key(
    rows: list[dict[str, Any]], by_area: bool
) -> dict[tuple[str, str], Decimal]:
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in rows:
        totals[(r["product_area"] if by_area else "", r["unit"])] += Decimal(
            r["quantity"]
        )
    return {k: v for k, v in totals.items() if v != 0}


@hyp_settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batches=st.lists(
        st.lists(usage_events, min_size=1, max_size=8), min_size=1, max_size=3
    ),
    voids=st.lists(st.integers(0, 25), max_size=4),
    checks=st.lists(queries, min_size=1, max_size=4),
)
def test_csv_totals_equal_api_totals_equal_brute_force(
    client: TestClient[Any],
    settings: Settings,
    projecting: Any,
    noise: None,
    batches: list[list[dict[str, Any]]],
    voids: list[int],
    checks: list[dict[str, str]],
) -> None:
    tenant = f"t_{uuid.uuid4().hex[:10]}"
    oracle = Oracle()
    position = 0
    for batch in batches:
        answer = client.post(
            "/api/metering/backfill", json=batch, headers=auth(settings, tenant, "ops")
        ).json()
        assert [r["status"] for r in answer["results"]] == [
            oracle.record(tenant, e, NOW) for e in batch
        ]
        position = max(position, answer["position"])
    for i in voids:
        if oracle.void(tenant, f"e{i}", NOW):
            correction = {"action": "void", "event_id": f"e{i}", "reason": "property"}
            answer = client.post(
                "/api/metering/corrections",
                json=correction,
                headers=auth(settings, tenant, "ops"),
            )
            position = max(position, answer.json()["position"])

    admin = auth(settings, tenant, "admin")
    for query in checks:
        params = query | {"min_position": str(position)}
        body = client.get("/api/billing/usage", params=params, headers=admin).json()
        exported = client.get(
            "/api/billing/usage/export", params=params, headers=admin
        ).text
        period = resolve_period(
            query["period"],
            now=NOW,
            anchor_day=1,
            timezone="UTC",
            grace=timedelta(hours=72),
        )
        expected = oracle.totals(
            tenant,
            period.start,
            period.end,
            query.get("workspace_id"),
            query.get("product_area"),
        )
        by_area = "product_area" in query.get("group_by", "product_area")

        assert body["position"] >= position
        assert per_key(body["totals"], True) == {
            k: v for k, v in expected.items() if v != 0
        }
        assert per_key(body["rows"], by_area) == per_key(
            [
                {"product_area": pa, "unit": u, "quantity": q}
                for (pa, u), q in expected.items()
            ],
            by_area,
        )
        assert per_key(list(csv.DictReader(io.StringIO(exported))), by_area) == per_key(
            body["rows"], by_area
        )
