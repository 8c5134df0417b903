"""Invariant of batch reading: any body is refused whole or every event is answered."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.metering.batch import MalformedBatch, decode_batch, read_events

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ZONES = [
    None,
    UTC,
    timezone(timedelta(hours=14)),
    timezone(-timedelta(hours=12)),
    ZoneInfo("America/New_York"),
    ZoneInfo("Asia/Kolkata"),
]
FIELDS = [
    "id",
    "workspace_id",
    "product_area",
    "quantity",
    "unit",
    "timestamp",
    "properties",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)

# Plausible field values, so that many events pass and the rules are exercised,
# and extreme ones (calendar edges, huge decimals) that must be rejected by name.
timestamps = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(ZONES),
).map(lambda d: d.isoformat())
recent = st.integers(min_value=-60 * 24 * 40, max_value=10).map(
    lambda minutes: (NOW + timedelta(minutes=minutes)).isoformat()
)
decimal_texts = st.decimals(min_value=-(10**30), max_value=10**30).map(
    str
) | st.sampled_from(
    ["NaN", "Infinity", "-Infinity", "1e3", "0.0000000001", "1.5000000000000"]
)


def mostly(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Nine draws in ten from `valid`, the rest any short text."""
    return st.sampled_from(range(10)).flatmap(
        lambda n: st.text(max_size=3) if n == 9 else valid
    )


identifiers = mostly(
    st.builds(
        str.__add__, st.sampled_from("aX0"), st.text(alphabet="bY9._:-", max_size=11)
    )
)
slugs = st.builds(
    str.__add__,
    st.sampled_from(["a", " B", "0"]),
    st.text(alphabet="bc9_.-", max_size=9),
) | st.text(max_size=3)
field_values = st.one_of(
    json_values,
    timestamps,
    recent,
    decimal_texts,
    identifiers,
    slugs,
    st.dictionaries(st.text(max_size=70), scalars, max_size=34),
)
event_like = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=8), field_values, max_size=9
)
plausible_event = st.fixed_dictionaries(
    {
        "id": identifiers,
        "workspace_id": identifiers,
        "product_area": slugs,
        "quantity": decimal_texts | st.integers(min_value=0),
        "unit": slugs,
        "timestamp": recent | timestamps,
    },
    optional={
        "properties": st.dictionaries(st.text(max_size=70), scalars, max_size=34)
    },
)
bodies = st.one_of(
    json_values,
    st.lists(event_like | plausible_event | json_values, max_size=8),
)


def assert_every_event_is_answered_once(body: bytes) -> None:
    try:
        items = decode_batch(body, max_events=10)
    except MalformedBatch:
        return
    candidates, rejections = read_events(
        items, now=NOW, acceptance_window=timedelta(days=35)
    )

    indexes = [c.index for c in candidates] + [r.index for r in rejections]
    assert sorted(indexes) == list(range(len(items)))
    assert [c.index for c in candidates] == sorted(c.index for c in candidates)
    assert [r.index for r in rejections] == sorted(r.index for r in rejections)
    assert all(": " in r.error for r in rejections)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(bodies)
def test_any_json_body_is_refused_whole_or_answered_event_by_event(body: Any) -> None:
    assert_every_event_is_answered_once(json.dumps(body).encode())


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_refused_whole_or_answered_event_by_event(body: bytes) -> None:
    assert_every_event_is_answered_once(body)


@settings(max_examples=100, deadline=None)
@given(st.lists(plausible_event, min_size=1, max_size=10))
def test_plausible_events_are_each_answered_once(events: list[dict[str, Any]]) -> None:
    assert_every_event_is_answered_once(json.dumps(events).encode())
