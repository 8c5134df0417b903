"""Reading a batch body: its shape, each event's fields, and the rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from application.metering.batch import (
    Candidate,
    MalformedBatch,
    Rejection,
    decode_batch,
    read_events,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=35)


def event(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": "evt_1",
        "workspace_id": "ws_a",
        "product_area": "compute",
        "quantity": "12.5",
        "unit": "vcpu_hour",
        "timestamp": "2026-11-20T10:00:00Z",
        "properties": {"region": "eu-west-1"},
    }
    fields.update(changes)
    return fields


def read(body: bytes) -> tuple[list[Candidate], list[Rejection]]:
    items = decode_batch(body, max_events=100)
    return read_events(items, now=NOW, acceptance_window=WINDOW)


def read_json(*events: Any) -> tuple[list[Candidate], list[Rejection]]:
    return read(json.dumps(list(events)).encode())


def only_error(*events: Any) -> str:
    candidates, [rejection] = read_json(*events)
    assert candidates == []
    return rejection.error


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "body: must be a JSON array of events, got nothing"),
        (b" \r\n\t", "body: must be a JSON array of events, got nothing"),
        (b"{}", "body: must be a JSON array of events"),
        (b'{"id": "evt_1"}', "body: must be a JSON array of events"),
        (b"null", "body: must be a JSON array of events"),
        (b'"[]"', "body: must be a JSON array of events"),
        (b"[]", "body: must contain at least one event"),
    ],
)
def test_a_body_of_the_wrong_shape_is_malformed(body: bytes, message: str) -> None:
    with pytest.raises(MalformedBatch) as caught:
        decode_batch(body, max_events=100)

    assert str(caught.value) == message
    assert not caught.value.too_large


@pytest.mark.parametrize(
    "body", [b"[", b"{", b"not json", b"[1] x", b"\xff\xfe", b"[1,]"]
)
def test_a_body_that_is_not_json_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedBatch, match=r"^body: is not valid JSON \("):
        decode_batch(body, max_events=100)


def test_a_body_with_more_events_than_allowed_is_too_large() -> None:
    body = json.dumps([event(id=f"e{i}") for i in range(4)]).encode()

    with pytest.raises(MalformedBatch) as caught:
        decode_batch(body, max_events=3)

    assert str(caught.value) == "body: must contain at most 3 events, got 4"
    assert caught.value.too_large


def test_a_body_with_exactly_the_maximum_of_events_is_read() -> None:
    body = json.dumps([event(id=f"e{i}") for i in range(3)]).encode()

    assert len(decode_batch(body, max_events=3)) == 3


def test_events_are_read_in_input_order_with_their_indexes() -> None:
    events = [event(id="a"), event(id="b", quantity="-1"), event(id="c")]

    candidates, rejections = read_json(*events)

    assert [(c.index, c.facts.event_id) for c in candidates] == [(0, "a"), (2, "c")]
    assert rejections == [Rejection(1, "b", "quantity: must be >= 0")]


@pytest.mark.parametrize("element", [5, "evt", None, True, [event()]])
def test_an_element_that_is_not_an_object_is_rejected(element: Any) -> None:
    assert only_error(element) == "event: must be a JSON object"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("workspace_id", 5, "workspace_id: expected `str`, got `int`"),
        ("id", None, "id: expected `str`, got `null`"),
        ("product_area", ["compute"], "product_area: expected `str`, got `array`"),
        ("quantity", True, "quantity: expected a decimal string or number"),
        ("quantity", {"n": 1}, "quantity: expected a decimal string or number"),
        ("timestamp", 1763632800, "timestamp: expected `datetime`, got `int`"),
        ("properties", [], "properties: expected `object`, got `array`"),
    ],
)
def test_a_field_of_the_wrong_type_is_rejected_naming_it(
    field: str, value: Any, message: str
) -> None:
    assert only_error(event(**{field: value})) == message


@pytest.mark.parametrize(
    "field", ["id", "workspace_id", "product_area", "quantity", "unit", "timestamp"]
)
def test_a_missing_field_is_rejected_as_required(field: str) -> None:
    incomplete = event()
    del incomplete[field]

    assert only_error(incomplete) == f"{field}: is required"


def test_properties_may_be_left_out() -> None:
    without = event()
    del without["properties"]

    [candidate], _ = read_json(without)

    assert candidate.facts.properties == {}


@pytest.mark.parametrize("value", [{"a": 1}, [1]])
def test_a_nested_property_value_is_rejected_naming_properties(value: Any) -> None:
    error = only_error(event(properties={"tags": value}))

    assert error.startswith("properties: expected `bool | int | float | str | null`")


def test_a_rejection_for_a_domain_rule_keeps_the_event_id() -> None:
    _, [rejection] = read_json(event(id="evt_9", unit="Vcpu Hour"))

    assert rejection.event_id == "evt_9"
    assert rejection.error.startswith("unit: may contain only lowercase letters")


def test_a_rejection_for_a_wrong_type_keeps_the_event_id() -> None:
    _, [rejection] = read_json(event(id="evt_9", quantity=None))

    assert rejection.event_id == "evt_9"


def test_a_rejection_for_an_out_of_range_number_keeps_the_event_id() -> None:
    body = b'[{"id": "evt_9", "workspace_id": "ws_a", "product_area": "compute",'
    body += b' "quantity": "1", "unit": "h", "timestamp": "2026-11-20T10:00:00Z",'
    body += b' "properties": {"big": 1e400}}]'

    _, [rejection] = read(body)

    assert rejection.event_id == "evt_9"


GRAMMAR = (
    "quantity: must be written with ASCII digits and at most one decimal point,"
    " e.g. 12.5 (no sign, exponent, separators or spaces)"
)


@pytest.mark.parametrize(
    ("literal", "quantity"),
    [
        (b"0.1", Decimal("0.1")),
        (b'"0.1"', Decimal("0.1")),
        (b"12.50", Decimal("12.5")),
        (b'"0.000000001"', Decimal("0.000000001")),
        (b"0.30000000000000004", "quantity: must have at most 9 decimal places"),
        (b"1e3", GRAMMAR),  # an exponent is not the grammar, as a number too
        (b'"1E-9"', GRAMMAR),
        (b'"1,5"', GRAMMAR),
        (b"-1", "quantity: must be >= 0"),
    ],
)
def test_a_quantity_is_read_exactly_from_a_json_number_or_string(
    literal: bytes, quantity: Decimal | str
) -> None:
    body = json.dumps([event(quantity="QUANTITY")]).encode()
    body = body.replace(b'"QUANTITY"', literal)

    candidates, rejections = read(body)

    if isinstance(quantity, str):
        assert [r.error for r in rejections] == [quantity]
    else:
        [candidate] = candidates
        assert candidate.facts.quantity == quantity
        assert str(candidate.facts.quantity) == str(quantity)


def test_a_timestamp_with_an_offset_is_read_and_stored_in_utc() -> None:
    [candidate], _ = read_json(event(timestamp="2026-11-20T11:00:00+01:00"))

    assert candidate.facts.occurred_at == datetime(2026, 11, 20, 10, tzinfo=UTC)


def test_a_timestamp_without_offset_is_rejected_naming_timestamp() -> None:
    assert only_error(event(timestamp="2026-11-20T10:00:00")) == (
        "timestamp: must include a UTC offset, e.g. 2026-11-20T10:00:00Z"
    )


def test_a_backfill_reads_events_older_than_the_window() -> None:
    items = decode_batch(
        json.dumps([event(timestamp="2026-01-01T00:00:00Z")]).encode(), 10
    )

    candidates, _ = read_events(items, now=NOW, acceptance_window=WINDOW, backfill=True)

    assert [c.facts.occurred_at.year for c in candidates] == [2026]


def test_a_huge_quantity_with_many_decimals_is_one_rejection_not_a_failed_batch() -> (
    None
):
    body = json.dumps([event(id="ok"), event(id="huge", quantity="QUANTITY")]).encode()
    body = body.replace(b'"QUANTITY"', b"12345678901234567890.0000000000")

    candidates, rejections = read(body)

    assert [c.index for c in candidates] == [0]
    assert rejections == [Rejection(1, "huge", "quantity: must be less than 10^18")]


@pytest.mark.parametrize(
    "timestamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
)
def test_a_timestamp_at_the_edge_of_the_calendar_is_one_rejection(
    timestamp: str,
) -> None:
    candidates, rejections = read_json(
        event(id="ok"), event(id="edge", timestamp=timestamp)
    )

    assert [c.index for c in candidates] == [0]
    assert [(r.index, r.error.split(":")[0]) for r in rejections] == [(1, "timestamp")]


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'[{"id": "e", "properties": ' + b"[" * 10_000 + b"]" * 10_000 + b"}]",
        b'[{"id": "e", "properties": {"a": '
        + b'{"b":' * 5_000
        + b"1"
        + b"}" * 5_001
        + b"}]",
    ],
    ids=["body", "properties array", "properties object"],
)
def test_json_nested_thousands_deep_is_a_malformed_body_not_a_crash(
    body: bytes,
) -> None:
    with pytest.raises(MalformedBatch, match="nested too deeply"):
        read(body)


def test_invalid_utf8_inside_a_string_refuses_the_body_naming_the_byte() -> None:
    body = json.dumps([event(id="ok"), event(id="bad", unit="UNIT")]).encode()
    body = body.replace(b"UNIT", b"vcpu\xff\xfe")

    with pytest.raises(MalformedBatch, match=r"invalid UTF-8: byte 0xff at offset"):
        read(body)


def test_an_escaped_lone_surrogate_refuses_the_body() -> None:
    body = json.dumps([event(properties={"note": "SURROGATE"})]).encode()
    body = body.replace(b"SURROGATE", rb"\ud800")

    with pytest.raises(MalformedBatch, match=r"^body: is not valid JSON"):
        read(body)


@pytest.mark.parametrize(
    ("properties", "error"),
    [
        (
            {"note": "a\u0000b"},
            "properties.note: must not contain the character U+0000",
        ),
        ({"a\u0000b": "x"}, "properties: must not contain the character U+0000"),
    ],
)
def test_a_nul_in_properties_is_one_rejection_naming_the_field(
    properties: dict[str, Any], error: str
) -> None:
    candidates, rejections = read_json(
        event(id="ok"), event(id="nul", properties=properties)
    )

    assert [c.index for c in candidates] == [0]
    assert rejections == [Rejection(1, "nul", error)]


@pytest.mark.parametrize(
    "text", ["\u200f\u05e9\u05dc\u05d5\u05dd", "e\u0301", "\u0007bell", "\U0001f600"]
)
def test_other_unicode_in_properties_is_kept_as_sent(text: str) -> None:
    [candidate], _ = read_json(event(properties={"note": text}))

    assert candidate.facts.properties == {"note": text}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("product_area", "\u212aube"),  # KELVIN SIGN lowercases to an ASCII k
        ("unit", "vcpu_hour\u00a0"),  # a trailing non-breaking space
        ("unit", "\u0131nstance"),  # dotless i
        ("workspace_id", "ws_\u0430"),  # Cyrillic a
    ],
)
def test_non_ascii_identifiers_and_slugs_are_refused_not_folded(
    field: str, value: str
) -> None:
    error = only_error(event(**{field: value}))

    assert error.startswith(f"{field}: may contain only")
