"""`properties` of a metering event: a small flat object of scalar values."""

from __future__ import annotations

from typing import Any

import pytest

from domain.metering_rules import EventRejected, check_properties_are_flat_and_small


def rejection(properties: dict[str, Any]) -> str:
    with pytest.raises(EventRejected) as caught:
        check_properties_are_flat_and_small(properties)
    return str(caught.value)


def test_flat_scalar_properties_are_kept_as_given() -> None:
    properties = {"region": "eu", "cores": 4, "ratio": 0.5, "spot": True, "x": None}

    assert check_properties_are_flat_and_small(properties) == properties


def test_thirty_two_keys_are_accepted() -> None:
    properties = {f"k{i}": i for i in range(32)}

    assert check_properties_are_flat_and_small(properties) == properties


def test_more_than_thirty_two_keys_are_rejected() -> None:
    properties = {f"k{i}": i for i in range(33)}

    assert rejection(properties) == "properties: must have at most 32 keys"


@pytest.mark.parametrize("key", ["", "k" * 65])
def test_an_empty_or_long_key_is_rejected(key: str) -> None:
    assert rejection({key: 1}) == "properties: keys must be 1 to 64 characters"


def test_a_key_of_sixty_four_characters_is_accepted() -> None:
    assert check_properties_are_flat_and_small({"k" * 64: 1}) == {"k" * 64: 1}


def test_a_text_value_longer_than_256_characters_is_rejected_naming_its_key() -> None:
    assert rejection({"note": "x" * 257}) == (
        "properties.note: must be at most 256 characters"
    )


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], (1,), b"bytes"])
def test_a_nested_or_non_scalar_value_is_rejected_naming_its_key(value: Any) -> None:
    assert rejection({"tags": value}) == (
        "properties.tags: must be a string, number, boolean or null"
    )


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_number_is_rejected_naming_its_key(value: float) -> None:
    assert rejection({"ratio": value}) == "properties.ratio: must be a finite number"


def test_properties_larger_than_4096_bytes_in_all_are_rejected() -> None:
    # each entry counts len(key) + len(value) + 6: 16 * (3 + 250 + 6) + 2 = 4146
    properties = {f"k{i:02d}": "v" * 250 for i in range(16)}

    assert rejection(properties) == "properties: must be at most 4096 bytes in all"


def test_properties_just_under_the_size_limit_are_accepted() -> None:
    # 15 * (3 + 250 + 6) + 2 = 3887
    properties = {f"k{i:02d}": "v" * 250 for i in range(15)}

    assert check_properties_are_flat_and_small(properties) == properties
