"""Usage query parameters: validated, normalised, and grouped in a fixed order."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.usage_daily.query import (
    DIMENSIONS,
    InvalidUsageQuery,
    UsageQuery,
    parse_group_by,
)


def parse(**params: str | None) -> UsageQuery:
    fields: dict[str, str | None] = {
        "period": None,
        "workspace_id": None,
        "product_area": None,
        "group_by": None,
    }
    fields.update(params)
    return UsageQuery.parse("t_acme", **fields)


def test_a_bare_query_is_the_current_period_by_every_dimension() -> None:
    query = parse()

    assert query == UsageQuery("t_acme", "current", None, None, DIMENSIONS)


def test_the_period_is_trimmed() -> None:
    assert parse(period=" 2026-11 ").period == "2026-11"


def test_the_product_area_filter_is_normalised() -> None:
    assert parse(product_area="  Compute ").product_area == "compute"


def test_a_workspace_filter_is_kept_as_given() -> None:
    assert parse(workspace_id="ws_A-1").workspace_id == "ws_A-1"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"workspace_id": ""}, "workspace_id: must not be empty"),
        ({"workspace_id": "ws a"}, "workspace_id: may contain only letters"),
        ({"workspace_id": "w" * 129}, "workspace_id: must be at most 128 characters"),
        ({"product_area": "com pute"}, "product_area: may contain only lowercase"),
        ({"product_area": " "}, "product_area: must not be empty"),
    ],
)
def test_a_bad_filter_is_refused_naming_it(
    params: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidUsageQuery) as caught:
        parse(**params)

    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("value", [None, "", "  "])
def test_no_group_by_keeps_every_dimension(value: str | None) -> None:
    assert parse_group_by(value) == ("day", "product_area", "workspace")


@given(
    st.lists(st.sampled_from(DIMENSIONS), min_size=1, unique=True).flatmap(
        st.permutations
    )
)
def test_group_by_is_the_same_whatever_the_order_given(dimensions: list[str]) -> None:
    parsed = parse_group_by(" , ".join(dimensions))

    assert parsed == tuple(d for d in DIMENSIONS if d in dimensions)


def test_queries_grouped_in_a_different_order_share_a_cache_key() -> None:
    keys = {
        parse(group_by=",".join(order)).cache_key()
        for order in itertools.permutations(["workspace", "day"])
    }

    assert keys == {"*|*|day,workspace"}


@pytest.mark.parametrize("value", ["hour", "day,hour", "Day", "day,", "tenant"])
def test_an_unknown_dimension_is_refused_naming_group_by(value: str) -> None:
    with pytest.raises(InvalidUsageQuery, match=r"^group_by: unknown dimension"):
        parse(group_by=value)


@pytest.mark.parametrize("value", ["day,day", "workspace, day ,workspace"])
def test_a_repeated_dimension_is_refused_naming_group_by(value: str) -> None:
    with pytest.raises(InvalidUsageQuery) as caught:
        parse(group_by=value)

    assert str(caught.value) == "group_by: each dimension may appear once"
