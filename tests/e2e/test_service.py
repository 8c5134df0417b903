"""The service as an operator runs it: `billing serve` + `billing worker`, real HTTP."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from application.projecting.progress import progress_channel
from tests.e2e.conftest import Service
from tests.support import auth, event

pytestmark = pytest.mark.timeout(300)


def post_events(
    service: Service, tenant: str, body: list[dict[str, Any]]
) -> dict[str, Any]:
    response = httpx.post(
        f"{service.base_url}/api/metering/events",
        json=body,
        headers=auth(service.settings, tenant, "metering"),
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def get(
    service: Service, path: str, tenant: str, role: str, **params: Any
) -> httpx.Response:
    return httpx.get(
        f"{service.base_url}{path}",
        params=params,
        headers=auth(service.settings, tenant, role),
        timeout=30,
    )


def test_an_accepted_event_is_visible_to_the_next_read(service: Service) -> None:
    answer = post_events(service, "t_e2e", [event("e1", quantity="12.5")])

    usage = get(
        service, "/api/billing/usage", "t_e2e", "admin", min_position=answer["position"]
    )

    assert usage.status_code == 200
    body = usage.json()
    assert body["position"] >= answer["position"]
    assert [(r["workspace_id"], r["quantity"]) for r in body["rows"]] == [
        ("ws_a", "12.5")
    ]
    assert body["totals"] == [
        {"product_area": "compute", "unit": "vcpu_hour", "quantity": "12.5"}
    ]


def test_the_export_streams_csv_with_the_same_totals(service: Service) -> None:
    answer = post_events(
        service, "t_csv", [event(f"c{i}", quantity="0.1") for i in range(30)]
    )

    with httpx.stream(
        "GET",
        f"{service.base_url}/api/billing/usage/export",
        params={"min_position": answer["position"], "group_by": "product_area"},
        headers=auth(service.settings, "t_csv", "admin"),
    ) as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        lines = list(response.iter_lines())

    assert lines[0] == (
        "workspace_id,product_area,usage_date,unit,quantity,source_event_count,"
        "first_reported_quantity,late_event_count,adjustment_quantity,adjustment_count"
    )
    # first reported 3 and none late, unless it ran just after midnight UTC
    assert lines[1:] in (
        [",compute,,vcpu_hour,3,30,3,0,0,0"],
        [",compute,,vcpu_hour,3,30,0,30,0,0"],
    )


def test_requests_are_logged_as_json_with_tenant_and_request_id(
    service: Service,
) -> None:
    response = get(service, "/api/billing/usage", "t_logs", "member")

    request_id = response.headers["x-request-id"]
    service.server.wait_for_output(request_id)
    line = next(entry for entry in service.server.lines if request_id in entry)
    record = json.loads(line)
    assert record["tenant_id"] == "t_logs"
    assert (record["status"], record["route"]) == (403, "/api/billing/usage")
    assert "authorization" not in line.lower()
    assert service.settings.jwt_secret not in "".join(service.server.lines)


def test_every_line_the_worker_writes_is_json_its_main_process_too(
    service: Service,
) -> None:
    service.worker.wait_for_output("is booting up")

    records = [json.loads(line) for line in service.worker.lines if line.strip()]

    assert "dramatiq.MainProcess" in {r["logger"] for r in records}
    assert all({"ts", "level", "logger", "message"} <= r.keys() for r in records)


def test_an_unauthenticated_request_is_logged_and_counted_as_401_not_500(
    service: Service,
) -> None:
    response = httpx.get(
        f"{service.base_url}/api/billing/usage",
        headers={"X-Request-ID": "req-no-token-1"},
    )

    assert response.status_code == 401
    assert response.headers["x-request-id"] == "req-no-token-1"
    service.server.wait_for_output("req-no-token-1")
    line = next(e for e in service.server.lines if "req-no-token-1" in e)
    assert json.loads(line)["status"] == 401
    metrics = httpx.get(f"{service.base_url}/metrics").text
    assert (
        'billing_http_request_duration_seconds_count{method="GET",'
        'route="/api/billing/usage",status="401"}'
    ) in metrics
    assert 'route="/api/billing/usage",status="500"' not in metrics


def wait_for(
    service: Service, query: str, params: tuple[Any, ...], target: int
) -> None:
    """Block on projection NOTIFYs until `query` gives at least `target` (120 s max)."""
    deadline = time.monotonic() + 120
    settings = service.settings
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        conn.execute(f'LISTEN "{progress_channel(settings.db_schema)}"')
        while time.monotonic() < deadline:
            row = conn.execute(query, params).fetchone()
            if row and row[0] is not None and row[0] >= target:
                return
            for _ in conn.notifies(timeout=deadline - time.monotonic(), stop_after=1):
                pass
    raise AssertionError(f"{query} {params} never reached {target}")


def test_a_platform_rebuild_through_the_api_is_done_by_the_worker(
    service: Service,
) -> None:
    answer = post_events(service, "t_ops", [event("r1", quantity="2")])
    before = get(
        service, "/api/billing/usage", "t_ops", "admin", min_position=answer["position"]
    ).json()

    response = httpx.post(
        f"{service.base_url}/api/platform/projections/billing_usage_daily/rebuild",
        headers=auth(service.settings, "platform", "platform"),
    )
    assert response.status_code == 202
    assert response.json()["state"] in ("ok", "behind", "rebuilding")
    wait_for(
        service,
        "SELECT live_version FROM billing_projections WHERE name = %s",
        ("billing_usage_daily",),
        2,
    )

    after = get(service, "/api/billing/usage", "t_ops", "admin").json()
    status = get(service, "/api/platform/projections", "platform", "platform").json()
    freshness = get(service, "/api/ops/freshness", "t_ops", "ops").json()
    assert after["rows"] == before["rows"]
    daily = next(s for s in status if s["name"] == "billing_usage_daily")
    assert (daily["live_version"], daily["building_version"]) == (2, None)
    assert {f["name"] for f in freshness} == {s["name"] for s in status}
    assert all(set(f) == {"name", "state", "data_through"} for f in freshness)


def test_a_timezone_change_rebuckets_the_tenants_days(service: Service) -> None:
    at = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    if at > datetime.now(UTC):
        at -= timedelta(days=1)
    answer = post_events(service, "t_tz", [event("z1", at=at)])
    label = f"{at:%Y-%m}"
    before = get(
        service,
        "/api/billing/usage",
        "t_tz",
        "admin",
        period=label,
        min_position=answer["position"],
    ).json()

    changed = httpx.patch(
        f"{service.base_url}/api/ops/settings",
        json={"timezone": "America/Los_Angeles"},
        headers=auth(service.settings, "t_tz", "ops"),
    )
    assert changed.status_code == 200
    assert changed.json()["timezone"] == "America/Los_Angeles"
    wait_for(
        service,
        "SELECT notification_id FROM billing_usage_daily_tracking"
        " WHERE application_name = 'tenant_settings'",
        (),
        changed.json()["position"],
    )
    local_day = at.date() - timedelta(days=1)  # 02:00 UTC is the evening before in LA
    after = get(
        service, "/api/billing/usage", "t_tz", "admin", period=f"{local_day:%Y-%m}"
    )

    assert [r["usage_date"] for r in before["rows"]] == [at.date().isoformat()]
    assert after.json()["period"]["timezone"] == "America/Los_Angeles"
    assert [r["usage_date"] for r in after.json()["rows"]] == [local_day.isoformat()]
