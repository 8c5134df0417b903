"""PUT/GET /api/billing/budget: a budget per period, in the price book's currency."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from application.settings import Settings
from tests.integration.test_price_book import BOOK, audit_types, next_month_label, put
from tests.support import auth

URL = "/api/billing/budget"


def admin(settings: Settings) -> dict[str, str]:
    return auth(settings, "t_acme", "admin")


def test_an_admin_sets_the_periods_budget_in_the_price_books_currency(
    client: TestClient[Any], settings: Settings
) -> None:
    put(client, settings, BOOK)

    response = client.put(URL, json={"amount": "30000.00"}, headers=admin(settings))
    read = client.get(URL, headers=admin(settings))

    assert response.status_code == 200, response.text
    assert response.json()["position"] >= 1
    body = read.json()
    assert (body["amount"], body["currency"], body["set_by"]) == (
        "30000",
        "EUR",
        "tester",
    )
    assert audit_types(settings) == ["PriceBookChanged", "BudgetChanged"]


def test_a_later_budget_for_the_same_period_replaces_it_and_periods_are_apart(
    client: TestClient[Any], settings: Settings
) -> None:
    put(client, settings, BOOK)
    client.put(URL, json={"amount": "100"}, headers=admin(settings))
    client.put(URL, json={"amount": "250.5"}, headers=admin(settings))
    later = next_month_label()
    client.put(URL, json={"amount": "900", "period": later}, headers=admin(settings))

    now = client.get(URL, headers=admin(settings)).json()
    then = client.get(URL, params={"period": later}, headers=admin(settings)).json()

    assert (now["amount"], then["amount"]) == ("250.5", "900")


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (
            {"amount": "10.001"},
            422,
            "amount: must have at most 2 decimal places in EUR",
        ),
        ({"amount": "-5"}, 422, "amount: must be >= 0"),
        ({"amount": "1e3"}, 422, "amount: must be written with ASCII digits"),
        ({"amount": 12}, 400, "amount: expected `str`"),
        ({"amount": "1", "period": "previous"}, 422, "period: must be 'current'"),
        ({"amount": "1", "period": "2001-01"}, 422, "period: 2001-01 has started"),
    ],
)
def test_a_bad_budget_is_refused_naming_the_field_and_writes_nothing(
    client: TestClient[Any],
    settings: Settings,
    body: dict[str, Any],
    status: int,
    detail: str,
) -> None:
    put(client, settings, BOOK)

    response = client.put(URL, json=body, headers=admin(settings))

    assert response.status_code == status, response.text
    assert response.json()["detail"].lower().startswith(detail.lower())
    assert client.get(URL, headers=admin(settings)).status_code == 404
    assert audit_types(settings) == ["PriceBookChanged"]


def test_a_budget_needs_a_price_book_for_its_currency(
    client: TestClient[Any], settings: Settings
) -> None:
    response = client.put(URL, json={"amount": "10"}, headers=admin(settings))

    assert response.status_code == 409
    assert "set a price book" in response.json()["detail"]


def test_a_zero_decimal_currency_takes_whole_amounts_only(
    client: TestClient[Any], settings: Settings
) -> None:
    put(client, settings, BOOK | {"currency": "JPY"})

    whole = client.put(URL, json={"amount": "5000"}, headers=admin(settings))
    cents = client.put(URL, json={"amount": "5000.5"}, headers=admin(settings))

    assert whole.status_code == 200
    assert cents.status_code == 422
