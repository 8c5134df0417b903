"""CSV export: format, same totals as the API, kept bytes, audited, listed."""

from __future__ import annotations

import csv
import hashlib
import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from application.settings import Settings
from tests.harness import harness_for
from tests.support import auth, caught_up, event

NOW = datetime.now(UTC)
FIRST = NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
CONTRACT = "workspace_id,product_area,usage_date,unit,quantity,source_event_count"
DAY = timedelta(days=1)
HEADER = (
    f"{CONTRACT},first_reported_quantity,late_event_count,"
    "adjustment_quantity,adjustment_count"
)


@pytest.fixture
def position(client: TestClient[Any], settings: Settings, projecting: Any) -> int:
    body = [
        event(
            f"e{i}",
            workspace=f"ws_{i % 3}",
            area=("compute", "api")[i % 2],
            unit=("vcpu_hour", "request")[i % 2],
            quantity=f"{i}.{i % 10}",
            at=FIRST + timedelta(hours=i),
        )
        for i in range(60)
    ]
    response = client.post(
        "/api/metering/events", json=body, headers=auth(settings, "t_acme", "metering")
    )
    return int(response.json()["position"])


def export(client: TestClient[Any], settings: Settings, **params: Any) -> Any:
    return client.get(
        "/api/billing/usage/export",
        params=params,
        headers=auth(settings, "t_acme", "admin", sub="ann"),
    )


def csv_totals(text: str, *, by_area: bool) -> dict[tuple[str, str], Decimal]:
    """Sum the CSV per (product area, unit), or per unit when grouped without areas."""
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in csv.DictReader(io.StringIO(text)):
        totals[(row["product_area"] if by_area else "", row["unit"])] += Decimal(
            row["quantity"]
        )
    return dict(totals)


def api_totals(
    client: TestClient[Any], settings: Settings, *, by_area: bool, **params: Any
) -> dict[tuple[str, str], Decimal]:
    body = client.get(
        "/api/billing/usage", params=params, headers=auth(settings, "t_acme", "admin")
    ).json()
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for t in body["totals"]:
        totals[(t["product_area"] if by_area else "", t["unit"])] += Decimal(
            t["quantity"]
        )
    return dict(totals)


def test_the_export_is_rfc4180_csv_with_the_contracts_columns(
    client: TestClient[Any], settings: Settings, position: int
) -> None:
    response = export(client, settings, min_position=position)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith(
        'attachment; filename="usage-t_acme-'
    )
    assert response.content.startswith(HEADER.encode() + b"\r\n")
    assert response.content.endswith(b"\r\n")
    assert b"\n" not in response.content.replace(b"\r\n", b"")
    assert int(response.headers["x-row-count"]) == len(response.text.splitlines()) - 1


def test_a_closed_periods_csv_says_which_rows_hold_late_adjustments(
    client: TestClient[Any], settings: Settings, app: Any
) -> None:
    day = datetime(2026, 8, 10, 12, tzinfo=UTC)
    with harness_for(app.state.services.write_side, day) as h:
        sent = day + timedelta(hours=1)
        h.send("t_acme", [event("kept", quantity="5", at=day)], at=sent)
        next_day = day + timedelta(days=1)
        h.send("t_acme", [event("other", quantity="1", at=next_day)], at=next_day)
        h.send("t_acme", [event("late", quantity="2.5", at=day)], at=day + 2 * DAY)
        after_close = datetime(2026, 9, 20, tzinfo=UTC)
        h.send("t_acme", [event("adjusted", quantity="2", at=day)], at=after_close)
        h.project()

    by_day = export(client, settings, period="2026-08").text.splitlines()
    by_area = export(client, settings, period="2026-08", group_by="product_area")
    api = client.get(
        "/api/billing/usage",
        params={"period": "2026-08"},
        headers=auth(settings, "t_acme", "admin"),
    ).json()

    assert by_day == [
        HEADER,
        "ws_a,compute,2026-08-10,vcpu_hour,9.5,3,5,2,2,1",
        "ws_a,compute,2026-08-11,vcpu_hour,1,1,1,0,0,0",
    ]
    assert by_area.text.splitlines()[1:] == [",compute,,vcpu_hour,10.5,4,6,2,2,1"]
    assert api["late_adjustments"] == [
        {
            "workspace_id": "ws_a",
            "product_area": "compute",
            "usage_date": "2026-08-10",
            "unit": "vcpu_hour",
            "quantity": "2",
            "event_count": 1,
        }
    ]
    assert csv_totals(by_area.text, by_area=True) == {
        ("compute", "vcpu_hour"): Decimal(api["totals"][0]["quantity"])
    }


def test_csv_totals_equal_the_api_totals(
    client: TestClient[Any], settings: Settings, position: int
) -> None:
    for params in (
        {},
        {"workspace_id": "ws_1"},
        {"product_area": "api"},
        {"group_by": "day"},
    ):
        by_area = "product_area" in params.get("group_by", "product_area")
        exported = export(client, settings, min_position=position, **params).text
        assert csv_totals(exported, by_area=by_area) == api_totals(
            client, settings, by_area=by_area, min_position=position, **params
        )


def test_the_exported_bytes_are_kept_and_hashed(
    client: TestClient[Any], settings: Settings, position: int
) -> None:
    response = export(client, settings, min_position=position)

    kept = settings.export_dir / response.headers["x-export-file-key"]
    assert kept.read_bytes() == response.content
    assert (
        hashlib.sha256(response.content).hexdigest()
        == response.headers["x-content-sha256"]
    )
    assert not list(settings.export_dir.rglob("*.partial"))


def test_each_export_is_audited_and_listed(
    app: Any, client: TestClient[Any], settings: Settings, position: int
) -> None:
    response = export(client, settings, min_position=position, workspace_id="ws_2")
    caught_up(app.state.services.write_side)

    audit = client.get(
        "/api/audit/events",
        params={"type": "UsageExported"},
        headers=auth(settings, "t_acme", "auditor"),
    ).json()
    listed = client.get(
        "/api/billing/usage/exports", headers=auth(settings, "t_acme", "admin")
    ).json()
    fetched = client.get(
        f"/api/audit/exports/{response.headers['x-export-id']}",
        headers=auth(settings, "t_acme", "auditor"),
    )

    assert len(audit) == 1
    details = audit[0]["details"]
    assert audit[0]["actor_id"] == "ann"
    assert details["sha256"] == response.headers["x-content-sha256"]
    assert details["row_count"] == int(response.headers["x-row-count"])
    assert details["filters"]["workspace_id"] == "ws_2"
    assert [
        (e["export_id"], e["workspace_id"], e["requested_by_id"]) for e in listed
    ] == [(response.headers["x-export-id"], "ws_2", "ann")]
    assert fetched.content == response.content


def test_another_tenants_export_cannot_be_fetched(
    app: Any, client: TestClient[Any], settings: Settings, position: int
) -> None:
    export_id = export(client, settings, min_position=position).headers["x-export-id"]
    caught_up(app.state.services.write_side)

    response = client.get(
        f"/api/audit/exports/{export_id}", headers=auth(settings, "t_other", "auditor")
    )
    listed = client.get(
        "/api/billing/usage/exports", headers=auth(settings, "t_other", "admin")
    )

    assert response.status_code == 404
    assert listed.json() == []


def test_cells_a_spreadsheet_would_run_are_escaped_and_quoting_is_rfc4180(
    client: TestClient[Any], settings: Settings
) -> None:
    # Ingest never lets such values in; write them into the read model directly
    # to prove the export would still neutralise them.
    hostile = [
        ('=HYPERLINK("http://x")', "compute", "=1+1"),
        ("+cmd", "a,b", "-sum"),
        ("@evil", 'say "hi"', "\tunit"),
    ]
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        for workspace, area, unit in hostile:
            conn.execute(
                "INSERT INTO billing_usage_daily_v1 VALUES"
                " ('t_acme', %s, %s, %s, %s, %s, 1, 1, 1, 0, 0, 0)",
                (FIRST.date(), workspace, area, unit, FIRST.date()),
            )

    response = export(client, settings)

    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    assert rows[0] == HEADER.split(",")
    cells = {(r[0], r[1], r[3]) for r in rows[1:]}
    assert cells == {
        ('\'=HYPERLINK("http://x")', "compute", "'=1+1"),
        ("'+cmd", "a,b", "'-sum"),
        ("'@evil", 'say "hi"', "'\tunit"),
    }
    assert b'"a,b"' in response.content
    assert b'"say ""hi"""' in response.content
