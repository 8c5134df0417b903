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
from tests.support import auth, caught_up, event

NOW = datetime.now(UTC)
FIRST = NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
HEADER = "workspace_id,product_area,usage_date,unit,quantity,source_event_count"


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
