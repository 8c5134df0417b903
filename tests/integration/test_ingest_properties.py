"""Properties of ingest over HTTP, for arbitrary bodies, against PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from application.settings import Settings
from tests.support import auth

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
recent = st.datetimes(
    min_value=datetime(2026, 1, 1),
    max_value=datetime(2027, 1, 1),
    timezones=st.just(UTC),
).map(lambda t: min(t, datetime.now(UTC) - timedelta(seconds=1)).isoformat())
plausible_event = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["e1", "e2", "e3"]) | st.text(max_size=10),
        "workspace_id": st.sampled_from(["ws_a", "ws_b"]) | json_values,
        "product_area": st.sampled_from(["compute", " API ", "bad area"]) | json_values,
        "quantity": st.sampled_from(["1", "0.5", "-1", "NaN", "1e400", 2.5])
        | json_values,
        "unit": st.sampled_from(["hour", "GB"]) | json_values,
        "timestamp": recent | json_values,
    },
    optional={"properties": json_values},
)
bodies = st.lists(plausible_event | json_values, max_size=12) | json_values


@hyp_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=bodies)
def test_any_body_gets_a_4xx_or_an_answer_for_every_event(
    client: TestClient[Any], settings: Settings, body: Any
) -> None:
    response = client.post(
        "/api/metering/events",
        content=msgspec.json.encode(body),
        headers=auth(settings, "t_prop", "metering")
        | {"content-type": "application/json"},
    )

    assert response.status_code < 500, response.text
    if response.status_code == 200:
        answer = response.json()
        assert isinstance(body, list)
        assert [r["index"] for r in answer["results"]] == list(range(len(body)))
        counts = {
            s: sum(r["status"] == s for r in answer["results"])
            for s in ("accepted", "duplicate", "conflict", "rejected")
        }
        assert counts == {
            "accepted": answer["accepted"],
            "duplicate": answer["duplicates"],
            "conflict": answer["conflicts"],
            "rejected": answer["rejected"],
        }
        assert all(
            r.get("error") for r in answer["results"] if r["status"] == "rejected"
        )
    else:
        assert set(response.json()) == {"status_code", "detail"}
