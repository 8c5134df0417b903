"""GET /api/billing/usage: shape, periods, filters, grouping, freshness, flags."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from application.settings import Settings
from interfaces.http.app import create_app
from tests.harness import harness_for
from tests.support import auth, event

URL = "/api/billing/usage"
NOW = datetime.now(UTC)
THIS_MONTH = NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def ingest(
    client: TestClient[Any],
    settings: Settings,
    body: list[dict[str, Any]],
    tenant: str = "t_acme",
) -> int:
    response = client.post(
        "/api/metering/events", json=body, headers=auth(settings, tenant, "metering")
    )
    assert response.status_code == 200
    return int(response.json()["position"])


def usage(
    client: TestClient[Any], settings: Settings, tenant: str = "t_acme", **params: Any
) -> Any:
    return client.get(URL, params=params, headers=auth(settings, tenant, "admin"))


@pytest.fixture
def seeded(client: TestClient[Any], settings: Settings, projecting: Any) -> int:
    day1, day2 = THIS_MONTH + timedelta(hours=1), THIS_MONTH + timedelta(hours=30)
    if day2 + timedelta(hours=1) > NOW:
        pytest.skip("the month's first 31 hours: this usage would be in the future")
    return ingest(
        client,
        settings,
        [
            event("a", workspace="ws_a", area="compute", quantity="1.25", at=day1),
            event("b", workspace="ws_a", area="compute", quantity="2", at=day2),
            event("c", workspace="ws_b", area="compute", quantity="0.75", at=day1),
            event(
                "d",
                workspace="ws_b",
                area="storage",
                unit="gb_hour",
                quantity="10",
                at=day2,
            ),
            event(
                "e",
                workspace="ws_b",
                area="compute",
                unit="gpu_hour",
                quantity="3",
                at=day2,
            ),
        ],
    )


def test_the_answer_has_the_contracts_shape(
    client: TestClient[Any], settings: Settings, seeded: int
) -> None:
    body = usage(client, settings, min_position=seeded).json()

    assert set(body) == {
        "tenant_id",
        "period",
        "as_of",
        "position",
        "group_by",
        "rows",
        "totals",
        "late_adjustments",
        "waited",  # it asked to wait (min_position)
    }
    assert body["waited"] == {"reached": True, "missing": {}}
    assert body["tenant_id"] == "t_acme"
    assert body["position"] >= seeded
    assert body["period"]["start"] == THIS_MONTH.date().isoformat()
    assert (body["period"]["timezone"], body["period"]["status"]) == ("UTC", "open")
    assert body["rows"][0] == {
        "workspace_id": "ws_a",
        "product_area": "compute",
        "usage_date": THIS_MONTH.date().isoformat(),
        "unit": "vcpu_hour",
        "quantity": "1.25",
        "source_event_count": 1,
        "first_reported_quantity": "0",
        "late_event_count": 1,
    }
    assert len(body["rows"]) == 5


def test_totals_never_add_different_units(
    client: TestClient[Any], settings: Settings, seeded: int
) -> None:
    totals = usage(client, settings, min_position=seeded).json()["totals"]

    assert totals == [
        {"product_area": "compute", "unit": "gpu_hour", "quantity": "3"},
        {"product_area": "compute", "unit": "vcpu_hour", "quantity": "4"},
        {"product_area": "storage", "unit": "gb_hour", "quantity": "10"},
    ]


@pytest.mark.parametrize(
    ("params", "rows"),
    [
        (
            {"workspace_id": "ws_a"},
            [
                ("ws_a", "compute", 0, "vcpu_hour", "1.25"),
                ("ws_a", "compute", 1, "vcpu_hour", "2"),
            ],
        ),
        ({"product_area": " STORAGE "}, [("ws_b", "storage", 1, "gb_hour", "10")]),
        (
            {"group_by": "product_area"},
            [
                ("", "compute", "", "gpu_hour", "3"),
                ("", "compute", "", "vcpu_hour", "4"),
                ("", "storage", "", "gb_hour", "10"),
            ],
        ),
        (
            {"group_by": "workspace,product_area", "workspace_id": "ws_b"},
            [
                ("ws_b", "compute", "", "gpu_hour", "3"),
                ("ws_b", "compute", "", "vcpu_hour", "0.75"),
                ("ws_b", "storage", "", "gb_hour", "10"),
            ],
        ),
        (
            {"group_by": "day"},
            [
                ("", "", 0, "vcpu_hour", "2"),
                ("", "", 1, "gb_hour", "10"),
                ("", "", 1, "gpu_hour", "3"),
                ("", "", 1, "vcpu_hour", "2"),
            ],
        ),
    ],
)
def test_filters_and_grouping_sum_over_the_dimensions_left_out(
    client: TestClient[Any],
    settings: Settings,
    seeded: int,
    params: dict[str, str],
    rows: list[Any],
) -> None:
    body = usage(client, settings, min_position=seeded, **params).json()

    def day_index(r: dict[str, Any]) -> Any:
        if "usage_date" not in r:
            return ""
        return (datetime.fromisoformat(r["usage_date"]).date() - THIS_MONTH.date()).days

    got = [
        (
            r.get("workspace_id", ""),
            r.get("product_area", ""),
            day_index(r),
            r["unit"],
            r["quantity"],
        )
        for r in body["rows"]
    ]
    assert got == rows


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"period": "last-week"}, "period: must be 'current', 'previous' or YYYY-MM"),
        ({"period": "2026-13"}, "period: must be a real month"),
        ({"workspace_id": "ws a"}, "workspace_id: may contain only"),
        ({"product_area": "Bad Area!"}, "product_area: may contain only"),
        ({"group_by": "day,day"}, "group_by: each dimension may appear once"),
        ({"group_by": "tenant"}, "group_by: unknown dimension 'tenant'"),
        ({"min_position": "-1"}, "min_position: must be a non-negative integer"),
    ],
)
def test_bad_parameters_get_a_400_naming_the_parameter(
    client: TestClient[Any], settings: Settings, params: dict[str, str], detail: str
) -> None:
    response = usage(client, settings, **params)

    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail)


def test_an_unknown_workspace_and_another_tenants_workspace_answer_alike(
    client: TestClient[Any], settings: Settings, seeded: int
) -> None:
    ingest(client, settings, [event("x", workspace="ws_secret")], tenant="t_other")

    foreign = usage(
        client, settings, workspace_id="ws_secret", min_position=seeded
    ).json()
    unknown = usage(
        client, settings, workspace_id="ws_never", min_position=seeded
    ).json()

    assert foreign["rows"] == unknown["rows"] == []
    assert foreign["totals"] == unknown["totals"] == []


def test_another_tenants_admin_sees_none_of_this_tenants_data(
    client: TestClient[Any], settings: Settings, seeded: int
) -> None:
    body = usage(client, settings, tenant="t_other", min_position=seeded).json()
    export = client.get(f"{URL}/export", headers=auth(settings, "t_other", "admin"))

    assert body["tenant_id"] == "t_other"
    assert body["rows"] == body["totals"] == []
    assert export.text.splitlines()[1:] == []


def test_read_your_writes_with_the_ingest_position(
    client: TestClient[Any], settings: Settings, projecting: Any
) -> None:
    position = ingest(client, settings, [event("fresh", quantity="42")])

    body = usage(client, settings, min_position=position).json()

    assert body["position"] >= position
    assert [r["quantity"] for r in body["rows"]] == ["42"]
    assert datetime.fromisoformat(body["as_of"]) >= NOW


def test_without_a_runner_the_answer_says_how_far_it_got(settings: Settings) -> None:
    impatient = settings.with_changes(max_read_wait_seconds=0.2)
    before = datetime.now(UTC)
    with TestClient(app=create_app(impatient)) as client:
        position = ingest(client, settings, [event("e1")])
        body = usage(client, settings, min_position=position).json()

    assert body["position"] == 0  # waited briefly, then answered with what it has
    assert body["rows"] == []
    assert before <= datetime.fromisoformat(body["as_of"]) <= datetime.now(UTC)


def test_previous_and_labelled_periods_resolve_in_the_tenants_calendar(
    client: TestClient[Any], settings: Settings, app: Any
) -> None:
    with harness_for(app.state.services.write_side, NOW) as h:
        h.set_calendar("t_acme", "Asia/Tokyo", anchor=10, at=NOW)
        h.project()

    previous = usage(client, settings, period="previous").json()["period"]
    labelled = usage(client, settings, period="2026-03").json()["period"]

    assert previous["timezone"] == "Asia/Tokyo"
    assert labelled["start"] == "2026-03-10"
    assert labelled["end"] == "2026-04-10"
    assert (
        labelled["closes_at"] == "2026-04-12T15:00:00Z"
    )  # 13 Apr 00:00 JST + 72 h - 9 h


def test_a_closed_period_shows_its_late_adjustments(
    client: TestClient[Any], settings: Settings, app: Any
) -> None:
    ws = app.state.services.write_side
    old = datetime(2026, 8, 10, 12, tzinfo=UTC)
    with harness_for(ws, old) as h:
        h.send(
            "t_acme", [event("kept", quantity="5", at=old)], at=old + timedelta(hours=1)
        )
        h.send(
            "t_acme",
            [event("late", quantity="2", at=old)],
            at=datetime(2026, 9, 20, tzinfo=UTC),
        )
        h.project()

    body = usage(client, settings, period="2026-08").json()

    assert body["period"]["status"] == "closed"
    assert body["totals"] == [
        {"product_area": "compute", "unit": "vcpu_hour", "quantity": "7"}
    ]
    assert body["late_adjustments"] == [
        {
            "workspace_id": "ws_a",
            "product_area": "compute",
            "usage_date": "2026-08-10",
            "unit": "vcpu_hour",
            "quantity": "2",
            "event_count": 1,
        }
    ]


@pytest.fixture
def flagged_client(settings: Settings) -> Iterator[TestClient[Any]]:
    flagged = settings.with_changes(enabled_tenants=frozenset({"t_pilot"}))
    with TestClient(app=create_app(flagged)) as test_client:
        yield test_client


def test_the_rollout_flag_hides_billing_from_tenants_outside_the_cohort(
    flagged_client: TestClient[Any], settings: Settings
) -> None:
    outside = flagged_client.get(URL, headers=auth(settings, "t_acme", "admin"))
    inside = flagged_client.get(URL, headers=auth(settings, "t_pilot", "admin"))
    member = flagged_client.get(URL, headers=auth(settings, "t_acme", "member"))

    assert outside.status_code == 404
    assert outside.json()["detail"] == "billing usage is not enabled for this tenant"
    assert inside.status_code == 200
    assert member.status_code == 403


def test_a_read_waits_for_a_settings_change_with_min_positions(
    client: TestClient[Any], settings: Settings
) -> None:
    """Read-your-writes across upstreams: a read given the PATCH's min_positions
    waits until the read model has the new calendar (here: until the test lets
    the projection run), then shows it."""
    projector = client.app.state.services.write_side.projector
    ingest(client, settings, [event("e1")])
    projector.advance_all()
    changed = client.patch(
        "/api/ops/settings",
        json={"period_anchor_day": 15},
        headers=auth(settings, "t_acme", "ops"),
    ).json()
    answers: list[Any] = []

    def read() -> None:
        answers.append(
            client.get(
                "/api/billing/usage",
                params={"min_positions": changed["min_positions"]},
                headers=auth(settings, "t_acme", "admin"),
            ).json()
        )

    reader = threading.Thread(target=read)
    reader.start()
    projector.advance_all()  # the settings change reaches the read model
    reader.join(timeout=30)

    assert changed["min_positions"] == f"tenant_settings:{changed['position']}"
    assert answers[0]["period"]["start"].endswith("-15")


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("nope:1", "min_positions: unknown upstream 'nope'"),
        ("metering:x", "min_positions: metering: position must be"),
        ("metering:\u00b2", "min_positions: metering: position must be"),
    ],
)
def test_a_bad_min_positions_is_a_400_naming_it(
    client: TestClient[Any], settings: Settings, value: str, detail: str
) -> None:
    response = client.get(
        "/api/billing/usage",
        params={"min_positions": value},
        headers=auth(settings, "t_acme", "admin"),
    )

    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail)
