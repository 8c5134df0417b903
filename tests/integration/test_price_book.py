"""PUT/GET /api/ops/price-book and GET /api/billing/price-book, end to end."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from application.settings import Settings
from tests.support import auth

OPS = "/api/ops/price-book"
ADMIN = "/api/billing/price-book"
BOOK: dict[str, Any] = {
    "currency": "EUR",
    "prices": [
        {"product_area": "compute", "unit": "vcpu_hour", "unit_price": "0.045"},
        {
            "product_area": "ai",
            "unit": "token",
            "included_quantity": "1000000",
            "tiers": [
                {"up_to": "10000000", "unit_price": "0.000002"},
                {"up_to": None, "unit_price": "0.0000015"},
            ],
        },
    ],
}


def next_month_label(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return f"{year:04d}-{month:02d}"


def put(client: TestClient[Any], settings: Settings, body: dict[str, Any]) -> Any:
    return client.put(OPS, json=body, headers=auth(settings, "t_acme", "ops"))


def audit_types(settings: Settings) -> list[str]:
    with psycopg.connect(settings.conninfo()) as conn:
        rows = conn.execute("SELECT topic FROM audit_events").fetchall()
    return [r[0].rsplit(".", 1)[-1] for r in rows]


def test_ops_set_a_price_book_and_admins_read_it_with_its_history(
    client: TestClient[Any], settings: Settings
) -> None:
    response = put(client, settings, BOOK)
    read = client.get(ADMIN, headers=auth(settings, "t_acme", "admin"))

    assert response.status_code == 200, response.text
    assert response.json()["position"] >= 1
    body = read.json()
    assert read.status_code == 200
    assert (body["currency"], body["set_by"]) == ("EUR", "tester")
    assert body["prices"] == BOOK["prices"]
    assert len(body["versions"]) == 1
    assert audit_types(settings) == ["PriceBookChanged"]


def test_a_future_version_prices_its_period_and_leaves_the_current_one(
    client: TestClient[Any], settings: Settings
) -> None:
    put(client, settings, BOOK)
    later = BOOK | {
        "effective_from": next_month_label(),
        "prices": [
            {"product_area": "compute", "unit": "vcpu_hour", "unit_price": "0.05"}
        ],
    }

    put(client, settings, later)
    admin = auth(settings, "t_acme", "admin")
    now = client.get(ADMIN, headers=admin).json()
    then = client.get(
        ADMIN, params={"period": next_month_label()}, headers=admin
    ).json()

    assert now["prices"][0]["unit_price"] == "0.045"
    assert then["prices"] == later["prices"]
    assert len(then["versions"]) == 2


def test_setting_the_current_period_again_restates_it_and_keeps_the_old_version(
    client: TestClient[Any], settings: Settings
) -> None:
    put(client, settings, BOOK)
    cheaper = BOOK | {
        "prices": [
            {"product_area": "compute", "unit": "vcpu_hour", "unit_price": "0.04"}
        ]
    }

    put(client, settings, cheaper)
    body = client.get(OPS, headers=auth(settings, "t_acme", "ops")).json()

    assert body["prices"] == cheaper["prices"]
    assert [v["effective_from"] for v in body["versions"]] == [
        body["effective_from"]
    ] * 2


@pytest.mark.parametrize(
    ("change", "status", "detail"),
    [
        ({"currency": "XYZ"}, 422, "currency: must be an ISO 4217 currency code"),
        ({"effective_from": "2001-01"}, 422, "effective_from: 2001-01 has started"),
        ({"effective_from": "previous"}, 422, "effective_from: must be 'current'"),
        (
            {"prices": [{"product_area": "compute", "unit": "h"}]},
            422,
            "prices[0]",
        ),
        (
            {"prices": [{"product_area": "compute", "unit": "h", "unit_price": 1.5}]},
            400,
            "prices",
        ),
    ],
)
def test_a_bad_price_book_is_refused_naming_the_field_and_writes_nothing(
    client: TestClient[Any],
    settings: Settings,
    change: dict[str, Any],
    status: int,
    detail: str,
) -> None:
    response = put(client, settings, BOOK | change)

    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(detail)
    assert client.get(OPS, headers=auth(settings, "t_acme", "ops")).status_code == 404
    assert audit_types(settings) == []


def test_a_tenant_bills_in_one_currency(
    client: TestClient[Any], settings: Settings
) -> None:
    put(client, settings, BOOK)

    response = put(client, settings, BOOK | {"currency": "USD"})

    assert response.status_code == 409
    assert response.json()["detail"].startswith("currency: this tenant bills in EUR")


def test_without_a_price_book_the_answer_says_so(
    client: TestClient[Any], settings: Settings
) -> None:
    response = client.get(ADMIN, headers=auth(settings, "t_acme", "admin"))

    assert response.status_code == 404
    assert "no price book" in response.json()["detail"]


def test_another_tenants_price_book_is_not_reachable(
    client: TestClient[Any], settings: Settings
) -> None:
    put(client, settings, BOOK)

    other = client.get(ADMIN, headers=auth(settings, "t_other", "admin"))

    assert other.status_code == 404
