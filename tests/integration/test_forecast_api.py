"""GET /api/billing/forecast through the real HTTP stack, projector and cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from application.settings import Settings
from tests.harness import harness_for
from tests.integration.test_price_book import BOOK, audit_types, put
from tests.integration.test_usage_api import ingest
from tests.support import auth, event

URL = "/api/billing/forecast"
NOW = datetime.now(UTC)
# An instant of the current (UTC, anchor 1) period before now.
EARLIER = max(NOW.replace(day=1, hour=0, minute=0, second=0), NOW - timedelta(hours=1))


def forecast(
    client: TestClient[Any], settings: Settings, tenant: str = "t_acme", **params: Any
) -> Any:
    return client.get(URL, params=params, headers=auth(settings, tenant, "admin"))


@pytest.fixture
def priced(client: TestClient[Any], settings: Settings, projecting: Any) -> str:
    """Compute (priced) and storage (unpriced) usage, a price book, a budget and
    a tick; the token that reads all of them."""
    book = put(client, settings, BOOK).json()["min_positions"]
    budget = client.put(
        "/api/billing/budget",
        json={"amount": "0.10"},
        headers=auth(settings, "t_acme", "admin"),
    ).json()["min_positions"]
    metering = ingest(
        client,
        settings,
        [
            event("a", workspace="ws_a", area="compute", quantity="10", at=EARLIER),
            event("b", workspace="ws_b", area="compute", quantity="2.5", at=EARLIER),
            event(
                "c", workspace="ws_a", area="storage", unit="gb_hour", quantity="7",
                at=EARLIER,
            ),
        ],
    )  # fmt: skip
    del book
    services = client.app.state.services
    clock = services.write_side.clock.record_tick(NOW) or 0
    return f"metering:{metering},{budget},clock:{clock}"


def test_the_forecast_is_an_estimate_priced_through_the_book(
    client: TestClient[Any], settings: Settings, priced: str
) -> None:
    response = forecast(client, settings, min_positions=priced)
    again = forecast(client, settings, min_positions=priced)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["kind"], body["interval"], body["currency"]) == (
        "estimate",
        0.8,
        "EUR",
    )
    assert body["caveat"] == "An estimate from usage so far, not a charge."
    assert body["status"] == "open"
    lines = {(x["product_area"], x["unit"]): x for x in body["lines"]}
    compute = lines[("compute", "vcpu_hour")]
    storage = lines[("storage", "gb_hour")]
    assert compute["priced"] is True
    assert Decimal(compute["quantity_to_date"]) == Decimal("12.5")
    assert Decimal(compute["charges_to_date"]) == Decimal("0.56")  # 0.5625, half-even
    q = compute["projected_quantity"]
    c = compute["projected_charges"]
    assert (
        Decimal("12.5") <= Decimal(q["p10"]) <= Decimal(q["p50"]) <= Decimal(q["p90"])
    )
    assert Decimal(c["p10"]) <= Decimal(c["p50"]) <= Decimal(c["p90"])
    # Unpriced usage is listed, never priced at zero nor counted in the total.
    assert storage["priced"] is False
    assert "charges_to_date" not in storage
    assert "projected_charges" not in storage
    assert any("storage/gb_hour" in note for note in body["notes"])
    total = body["total"]
    assert total["charges_to_date"] == compute["charges_to_date"]
    assert total["projected_charges"] == compute["projected_charges"]
    # The budget (0.10) was spent already: it says so, and since when.
    assert body["budget"]["amount"] == "0.10"
    assert Decimal(body["budget"]["left_to_spend"]) == Decimal("-0.46")
    assert body["budget"]["projected_breach_date"] == EARLIER.date().isoformat()
    assert set(body["positions"]) == {
        "tenant_settings",
        "price_book",
        "metering",
        "clock",
    }
    assert body["position"] == body["positions"]["metering"]
    assert (response.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert again.json() == body
    assert audit_types(settings).count("ForecastViewed") == 2


def test_a_workspace_answer_lists_its_quantities_without_charges(
    client: TestClient[Any], settings: Settings, priced: str
) -> None:
    body = forecast(client, settings, workspace_id="ws_b", min_positions=priced).json()

    assert body["workspace_id"] == "ws_b"
    assert body["total"] is None
    assert body["budget"] is None
    (line,) = body["lines"]
    assert (line["product_area"], Decimal(line["quantity_to_date"])) == (
        "compute",
        Decimal("2.5"),
    )
    assert "charges_to_date" not in line
    assert line["priced"] is True  # its area has a price; charges are per tenant
    assert not any(note.startswith("Unpriced") for note in body["notes"])


def test_a_tenant_without_usage_gets_an_empty_low_data_estimate(
    client: TestClient[Any], settings: Settings, projecting: Any
) -> None:
    body = forecast(client, settings, tenant="t_quiet").json()

    assert (body["kind"], body["lines"], body["total"]) == ("estimate", [], None)
    assert (body["method"], body["low_data"]) == ("none", True)
    assert body["notes"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"period": "2026-13"}, "period"),
        ({"period": "soon"}, "period"),
        ({"workspace_id": "no spaces"}, "workspace_id"),
        ({"min_positions": "metering:x"}, "min_positions"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_field(
    client: TestClient[Any], settings: Settings, params: dict[str, str], field: str
) -> None:
    response = forecast(client, settings, **params)

    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith(f"{field}:")
    assert "ForecastViewed" not in audit_types(settings)


def test_a_closed_period_answers_its_actuals_as_the_usage_api_sums_them(
    client: TestClient[Any], settings: Settings, projecting: Any
) -> None:
    write_side = client.app.state.services.write_side
    put(client, settings, BOOK)  # in force from the current period only
    old = (NOW.replace(day=1) - timedelta(days=70)).replace(day=3, hour=12)
    with harness_for(write_side, old) as h:
        h.send(
            "t_acme",
            [
                event("o1", workspace="ws_a", area="compute", quantity="3.5", at=old),
                event("o2", workspace="ws_b", area="compute", quantity="1", at=old),
            ],
            at=old + timedelta(hours=1),
        )
    tick = write_side.clock.record_tick(NOW)
    label = old.strftime("%Y-%m")
    wait = f"clock:{tick},metering:{write_side.metering.head_position()}"

    body = forecast(client, settings, period=label, min_positions=wait).json()
    usage = client.get(
        "/api/billing/usage",
        params={"period": label, "group_by": "product_area", "min_positions": wait},
        headers=auth(settings, "t_acme", "admin"),
    ).json()

    assert body["status"] == "closed"
    (line,) = body["lines"]
    q = line["projected_quantity"]
    assert line["quantity_to_date"] == q["p10"] == q["p50"] == q["p90"]
    assert Decimal(line["quantity_to_date"]) == Decimal(usage["totals"][0]["quantity"])
    assert line["priced"] is False  # no price book was in force then
    assert body["total"] is None


def test_time_passing_alone_lowers_the_projection_of_a_tenant_that_stopped(
    settings: Settings, write_side: Any
) -> None:
    """No new usage, only ticks: the projection falls (the forecast is made at
    the tenant's time, which the ticks move)."""
    start = datetime(2026, 9, 1, tzinfo=UTC)
    with harness_for(write_side, start) as h:
        for day in range(75):  # steady usage, then nothing from Nov 15 on
            at = start + timedelta(days=day, hours=12)
            h.send("t_a", [event(f"d{day}", quantity="100", at=at)], at=at)
    projections = []
    for days in (0, 3, 6):
        write_side.clock.record_tick(
            datetime(2026, 11, 15, 13, tzinfo=UTC) + timedelta(days=days)
        )
        write_side.projector.advance("billing_forecast")
        projections.append(p50_of(settings, "t_a", "2026-11-01"))

    used = Decimal(1400)  # Nov 1 to 14
    assert projections[0] > projections[1] > projections[2] >= used
    # A week with nothing: usage stopped, and the projection is what was used.
    assert projections[2] < used + 1


def p50_of(settings: Settings, tenant: str, start: str) -> Decimal:
    with psycopg.connect(settings.conninfo()) as conn:
        row = conn.execute(
            "SELECT q50 FROM billing_forecast_lines WHERE tenant_id = %s"
            " AND period_start = %s AND workspace_id = ''",
            (tenant, start),
        ).fetchone()
    assert row is not None
    return Decimal(row[0])
