"""The rules a metering event must pass, each failure naming its field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from domain.metering_rules import EventRejected, validate_usage_event
from domain.values import UsageFacts

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=35)


def validate(**changes: Any) -> UsageFacts:
    fields: dict[str, Any] = {
        "event_id": "evt_1",
        "workspace_id": "ws_a",
        "product_area": "compute",
        "unit": "vcpu_hour",
        "quantity": "12.5",
        "timestamp": NOW - timedelta(hours=1),
        "properties": {"region": "eu-west-1"},
        "now": NOW,
        "acceptance_window": WINDOW,
    }
    fields.update(changes)
    return validate_usage_event(**fields)


def rejection(**changes: Any) -> str:
    with pytest.raises(EventRejected) as caught:
        validate(**changes)
    return str(caught.value)


def test_a_valid_event_becomes_its_normalised_facts() -> None:
    facts = validate()

    assert facts == UsageFacts(
        event_id="evt_1",
        workspace_id="ws_a",
        product_area="compute",
        unit="vcpu_hour",
        quantity=Decimal("12.5"),
        occurred_at=NOW - timedelta(hours=1),
        properties={"region": "eu-west-1"},
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("event_id", "", "id: must not be empty"),
        ("event_id", "e" * 129, "id: must be at most 128 characters"),
        ("workspace_id", "", "workspace_id: must not be empty"),
        ("workspace_id", "w" * 129, "workspace_id: must be at most 128 characters"),
    ],
)
def test_an_empty_or_too_long_identifier_is_rejected_by_name(
    field: str, value: str, message: str
) -> None:
    assert rejection(**{field: value}) == message


@pytest.mark.parametrize(
    "value", ["evt 1", "evt/1", "_evt", "-evt", "évt", "evt\n", "evt;drop", "<x>"]
)
@pytest.mark.parametrize(
    ("field", "name"), [("event_id", "id"), ("workspace_id", "workspace_id")]
)
def test_an_identifier_with_unsafe_characters_is_rejected_by_name(
    field: str, name: str, value: str
) -> None:
    assert rejection(**{field: value}) == (
        f"{name}: may contain only letters, digits and . _ : - and must start with "
        "a letter or digit"
    )


def test_an_identifier_of_exactly_128_safe_characters_is_accepted() -> None:
    event_id = "A1._:-" + "x" * 122

    assert validate(event_id=event_id).event_id == event_id


@pytest.mark.parametrize("field", ["product_area", "unit"])
def test_product_area_and_unit_are_trimmed_and_lowercased(field: str) -> None:
    facts = validate(**{field: "  Compute "})

    assert getattr(facts, field) == "compute"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("a" * 65, "must be at most 64 characters"),
        (
            "vcpu hour",
            "may contain only lowercase letters, digits and _ - . and must start "
            "with a letter or digit",
        ),
        (
            "_compute",
            "may contain only lowercase letters, digits and _ - . and must start "
            "with a letter or digit",
        ),
        (
            "gb/s",
            "may contain only lowercase letters, digits and _ - . and must start "
            "with a letter or digit",
        ),
    ],
)
@pytest.mark.parametrize("field", ["product_area", "unit"])
def test_a_bad_slug_is_rejected_by_name(field: str, value: str, problem: str) -> None:
    assert rejection(**{field: value}) == f"{field}: {problem}"


@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        ("-0.001", "quantity: must be >= 0"),
        ("0.0000000001", "quantity: must have at most 9 decimal places"),
        ("1.0000000001", "quantity: must have at most 9 decimal places"),
        ("1000000000000000000", "quantity: must be less than 10^18"),
    ],
)
def test_a_quantity_breaking_a_rule_is_rejected_by_name(
    quantity: str, message: str
) -> None:
    assert rejection(quantity=quantity) == message


@pytest.mark.parametrize(
    "quantity",
    [
        "NaN",
        "sNaN",
        "Infinity",
        "-Infinity",
        "1E+18",
        "1e3",
        "1_000",
        "+5",
        " 12 ",
        "12\u00a0",
        "\u0661\u0662",  # Arabic-Indic digits
        "\uff11",  # a fullwidth digit
        "1,000",
        "1.2.3",
        ".5",
        "5.",
        "",
        "0x10",
    ],
)
def test_a_quantity_outside_the_one_grammar_is_refused_not_read(
    quantity: str,
) -> None:
    assert rejection(quantity=quantity) == (
        "quantity: must be written with ASCII digits and at most one decimal"
        " point, e.g. 12.5 (no sign, exponent, separators or spaces)"
    )


@pytest.mark.parametrize(
    ("quantity", "stored"),
    [
        ("1.5000000000000", "1.5"),
        ("999999999999999999.999999999", "999999999999999999.999999999"),
        ("0.000000001", "0.000000001"),
        ("12.50", "12.5"),
        ("1000", "1000"),
        ("0.00000000000000000000", "0"),
        ("0", "0"),
        ("007", "7"),
    ],
)
def test_a_quantity_within_bounds_is_kept_in_canonical_form(
    quantity: str, stored: str
) -> None:
    facts = validate(quantity=quantity)

    assert facts.quantity == Decimal(quantity)
    assert format(facts.quantity, "f") == stored


def test_a_huge_quantity_with_trailing_zero_decimals_is_rejected_by_name() -> None:
    quantity = "12345678901234567890.0000000000"

    assert rejection(quantity=quantity) == "quantity: must be less than 10^18"


def test_a_timestamp_without_offset_is_rejected() -> None:
    naive = datetime(2026, 11, 20, 10, 0)

    assert rejection(timestamp=naive) == (
        "timestamp: must include a UTC offset, e.g. 2026-11-20T10:00:00Z"
    )


def test_a_timestamp_up_to_five_minutes_ahead_is_accepted() -> None:
    facts = validate(timestamp=NOW + timedelta(minutes=5))

    assert facts.occurred_at == NOW + timedelta(minutes=5)


def test_a_timestamp_more_than_five_minutes_ahead_is_rejected() -> None:
    ahead = NOW + timedelta(minutes=5, microseconds=1)

    assert rejection(timestamp=ahead) == (
        "timestamp: must not be more than 5 minutes in the future"
    )


def test_a_timestamp_older_than_the_acceptance_window_is_rejected() -> None:
    too_old = NOW - WINDOW - timedelta(microseconds=1)

    assert rejection(timestamp=too_old) == (
        "timestamp: is older than the tenant's acceptance window of 35 days; "
        "older usage enters only through an ops backfill"
    )


def test_a_timestamp_at_the_edge_of_the_acceptance_window_is_accepted() -> None:
    assert validate(timestamp=NOW - WINDOW).occurred_at == NOW - WINDOW


def test_a_backfill_accepts_a_timestamp_older_than_the_window() -> None:
    old = NOW - timedelta(days=90)

    assert validate(timestamp=old, backfill=True).occurred_at == old


def test_a_backfill_still_rejects_a_timestamp_in_the_future() -> None:
    with pytest.raises(EventRejected, match="in the future"):
        validate(timestamp=NOW + timedelta(hours=1), backfill=True)


def test_a_timestamp_with_an_offset_is_stored_in_utc() -> None:
    paris = timezone(timedelta(hours=1))

    facts = validate(timestamp=datetime(2026, 11, 20, 11, 0, tzinfo=paris))

    assert facts.occurred_at == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert facts.occurred_at.utcoffset() == timedelta(0)
    assert facts.occurred_at.tzinfo is UTC


def test_a_timestamp_at_the_edge_of_the_calendar_is_rejected_by_name() -> None:
    edge = datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=1)))

    with pytest.raises(EventRejected, match=r"^timestamp: "):
        validate(timestamp=edge)
