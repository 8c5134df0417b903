"""Shared values: decimal text, deterministic ids, payload comparison."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.values import (
    canonical_decimal,
    decimal_text,
    tenant_settings_id,
    usage_record_id,
)
from tests.unit.builders import facts


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("12.50", "12.5"),
        ("1E+3", "1000"),
        ("0", "0"),
        ("0.000", "0"),
        ("0E+5", "0"),
        ("100", "100"),
        ("1.000000001", "1.000000001"),
        ("1.2E-7", "0.00000012"),
    ],
)
def test_decimal_text_is_plain_and_without_trailing_zeros(
    value: str, text: str
) -> None:
    assert decimal_text(Decimal(value)) == text


quantities = st.decimals(min_value=0, max_value=10**18 - 1, places=9)


@given(quantities)
def test_decimal_text_keeps_the_value_and_never_uses_an_exponent(
    value: Decimal,
) -> None:
    text = decimal_text(value)

    assert Decimal(text) == value
    assert "E" not in text
    if "." in text:
        assert not text.endswith(("0", "."))


def test_canonical_decimal_turns_a_positive_exponent_into_digits() -> None:
    canonical = canonical_decimal(Decimal("1E+3"))

    assert canonical.as_tuple() == Decimal("1000").as_tuple()


def test_canonical_decimal_strips_trailing_zeros() -> None:
    assert canonical_decimal(Decimal("12.500")).as_tuple() == Decimal("12.5").as_tuple()


def test_a_usage_record_id_is_the_same_for_the_same_tenant_and_event() -> None:
    assert usage_record_id("t_acme", "evt_1") == usage_record_id("t_acme", "evt_1")


def test_a_usage_record_id_differs_per_tenant_for_the_same_event_id() -> None:
    assert usage_record_id("t_acme", "evt_1") != usage_record_id("t_other", "evt_1")


def test_a_usage_record_id_differs_per_event_id() -> None:
    assert usage_record_id("t_acme", "evt_1") != usage_record_id("t_acme", "evt_2")


def test_a_tenant_settings_id_never_collides_with_a_usage_record_id() -> None:
    assert tenant_settings_id("t_acme") != usage_record_id("t_acme", "t_acme")


def test_a_resend_of_the_same_payload_is_the_same_payload() -> None:
    assert facts().same_payload_as(facts())


def test_the_event_id_is_not_part_of_the_payload() -> None:
    assert facts(event_id="evt_1").same_payload_as(facts(event_id="evt_2"))


def test_equal_quantities_in_different_notation_are_the_same_payload() -> None:
    a = facts(quantity=Decimal("12.5"))
    b = facts(quantity=Decimal("12.50"))

    assert a.same_payload_as(b)


@pytest.mark.parametrize(
    "change",
    [
        {"workspace_id": "ws_b"},
        {"product_area": "storage"},
        {"unit": "gb_hour"},
        {"quantity": Decimal("12.6")},
        {"occurred_at": facts().occurred_at + timedelta(seconds=1)},
        {"properties": {"region": "us-east-1"}},
        {"properties": {}},
    ],
)
def test_a_change_to_any_field_but_the_id_is_a_different_payload(
    change: dict[str, object],
) -> None:
    assert not facts().same_payload_as(facts(**change))
