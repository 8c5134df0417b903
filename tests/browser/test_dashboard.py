"""The dashboard in a real browser (Chromium), against the real service and the
demo's seeded data: what an admin sees equals what the API answers."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Demo, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
TOKEN_KEY = "billing-admin-token"
AREA_ROWS = """rows => rows.map(r => [r.dataset.area, r.dataset.unit,
  Object.fromEntries([...r.querySelectorAll('data')]
    .map(d => [d.dataset.field, d.value]))])"""
CELLS = """cells => cells.map(c => [c.closest('tr').dataset.workspace ?? 'total',
  c.dataset.area, c.dataset.unit, c.querySelector('data')?.value ?? null])"""


def open_dashboard(
    page: Page,
    demo: Demo,
    token: str | None = None,
    *,
    query: str = "",
    state: str = "loaded",
) -> None:
    """Follow a dashboard link carrying a token; wait until the page is `state`."""
    page.goto("about:blank")  # a new document each time, even if only the hash differs
    page.goto(f"{demo.base_url}/dashboard{query}#token={token or demo.token('admin')}")
    page.wait_for_selector(f"main[data-state={state}]", state="attached")


def choose(page: Page, select: str, value: str) -> None:
    """Pick an option as a user does; wait for everything to be drawn again."""
    page.select_option(select, value)
    page.wait_for_selector("main[data-state=loaded]", state="attached")


def reload(page: Page) -> None:
    page.reload()
    page.wait_for_selector("main[data-state=loaded]", state="attached")


def forecast_around(
    demo: Demo, page: Page, show: Callable[[], None], **params: str
) -> Any:
    """Show the page between two reads of the forecast; again if time ticked in
    between (the workers record a tick every 5 minutes, which moves it)."""
    for _ in range(3):
        before = demo.get("/api/billing/forecast", **params)
        show()
        after = demo.get("/api/billing/forecast", **params)
        if before["positions"] == after["positions"]:
            return after
        show = lambda: reload(page)  # noqa: E731 - the same view, read again
    pytest.fail("the forecast kept moving")


def shown(page: Page, selector: str) -> str | None:
    """The API value a <data> element on the page holds."""
    return page.locator(selector).get_attribute("value")


def area_rows(page: Page) -> dict[tuple[str, str], dict[str, str]]:
    rows = page.locator("#areas tbody tr").evaluate_all(AREA_ROWS)
    return {(area, unit): values for area, unit, values in rows}


def workspace_cells(page: Page) -> dict[tuple[str, str, str], str | None]:
    cells = page.locator("#workspaces td[data-area]").evaluate_all(CELLS)
    return {(w, a, u): q for w, a, u, q in cells}


def days_so_far(usage: dict[str, Any]) -> list[date]:
    """Each day of the answer's period up to its as_of, in the tenant's calendar."""
    period = usage["period"]
    today = datetime.fromisoformat(usage["as_of"]).astimezone(
        ZoneInfo(period["timezone"])
    )
    first, end = date.fromisoformat(period["start"]), date.fromisoformat(period["end"])
    last = min(today.date(), end - timedelta(days=1))
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def test_the_token_link_signs_in_and_leaves_the_address_bar(
    page: Page, demo: Demo
) -> None:
    token = demo.token("admin")

    open_dashboard(page, demo, token)

    assert token not in page.url
    assert urlsplit(page.url).fragment == ""
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") == token
    reload(page)  # kept for the tab
    expect(page.locator("#headline [data-field=p50]")).to_be_visible()
    expect(page.locator("#sign-in")).to_be_hidden()


def test_the_headline_and_breakdowns_equal_the_apis(page: Page, demo: Demo) -> None:
    forecast = forecast_around(
        demo, page, lambda: open_dashboard(page, demo), period="current"
    )
    usage = demo.get("/api/billing/usage", period="current")
    by_workspace = demo.get(
        "/api/billing/usage", period="current", group_by="workspace,product_area"
    )
    screenshot(page, "dashboard")

    total, budget = forecast["total"], forecast["budget"]
    projected = total["projected_charges"]
    assert {
        f: shown(page, f"#headline [data-field={f}]")
        for f in ("charges-to-date", "p10", "p50", "p90", "budget")
    } == {
        "charges-to-date": total["charges_to_date"],
        "p10": projected["p10"],
        "p50": projected["p50"],
        "p90": projected["p90"],
        "budget": budget["amount"],
    }
    expect(page.locator("#headline .tag")).to_have_text(forecast["kind"])
    expect(page.locator("#headline")).to_contain_text(forecast["caveat"])
    if budget["projected_breach_date"]:
        breach = page.locator("#headline [data-field=breach]")
        expect(breach).to_have_attribute("datetime", budget["projected_breach_date"])

    lines = {(x["product_area"], x["unit"]): x for x in forecast["lines"]}
    rows = area_rows(page)
    assert rows == {
        (t["product_area"], t["unit"]): {
            "quantity": t["quantity"],
            "projected-quantity": lines[t["product_area"], t["unit"]][
                "projected_quantity"
            ]["p50"],
            "charges-to-date": lines[t["product_area"], t["unit"]]["charges_to_date"],
            **lines[t["product_area"], t["unit"]]["projected_charges"],
        }
        for t in usage["totals"]
    }
    footer = "#areas tfoot [data-field=charges-to-date]"
    assert shown(page, footer) == total["charges_to_date"]
    assert sum(Decimal(r["charges-to-date"]) for r in rows.values()) == Decimal(
        total["charges_to_date"]
    )  # the subtotals add up to the total shown under them

    flags = demo.get("/api/billing/anomalies", period="current")["anomalies"]
    listed = page.locator("#anomalies tbody tr")
    assert listed.evaluate_all("rs => rs.map(r => r.dataset.anomalyId)") == [
        a["id"] for a in flags
    ]
    open_count = page.locator("#headline [data-field=open-anomalies]")
    expect(open_count).to_have_text(str(sum(a["status"] == "open" for a in flags)))

    cells = workspace_cells(page)
    for r in by_workspace["rows"]:
        key = (r["workspace_id"], r["product_area"], r["unit"])
        assert cells.pop(key) == r["quantity"]
    assert cells == {
        ("total", t["product_area"], t["unit"]): t["quantity"]
        for t in by_workspace["totals"]
    }
    for t in by_workspace["totals"]:
        column = [
            Decimal(r["quantity"])
            for r in by_workspace["rows"]
            if (r["product_area"], r["unit"]) == (t["product_area"], t["unit"])
        ]
        assert sum(column) == Decimal(t["quantity"])


def test_the_chart_has_one_point_per_day_of_the_period_so_far(
    page: Page, demo: Demo
) -> None:
    open_dashboard(page, demo)
    usage = demo.get(
        "/api/billing/usage", period="current", group_by="day,product_area"
    )
    days = days_so_far(usage)

    panels = page.locator("#charts figure.panel")
    expect(panels).to_have_count(len(usage["totals"]))
    for i, t in enumerate(usage["totals"]):
        panel = panels.nth(i)
        expect(panel).to_have_attribute("data-area", t["product_area"])
        expect(panel).to_have_attribute("data-days", str(len(days)))
        expect(panel.locator("canvas")).to_have_count(1)
        assert panel.locator("canvas").bounding_box()["height"] > 100  # type: ignore[index]

    table = page.locator("#daily tbody tr")
    expect(table).to_have_count(len(days))
    assert table.evaluate_all("rows => rows.map(r => r.dataset.day)") == [
        d.isoformat() for d in days
    ]
    quantities = {
        (r["usage_date"], r["product_area"]): r["quantity"] for r in usage["rows"]
    }
    first_area = usage["totals"][0]["product_area"]
    column = table.evaluate_all("rows => rows.map(r => r.querySelector('data').value)")
    assert column == [quantities.get((d.isoformat(), first_area), "0") for d in days]


def test_switching_period_and_filters_updates_everything(
    page: Page, demo: Demo
) -> None:
    open_dashboard(page, demo)

    choose(page, "#period", "previous")  # a closed period: its actuals
    forecast = demo.get("/api/billing/forecast", period="previous")
    if forecast["status"] != "closed":
        # The month's first days: the previous period is in its grace hours.
        pytest.skip("the previous period is still in its grace hours")
    usage = demo.get(
        "/api/billing/usage", period="previous", group_by="workspace,product_area"
    )
    actual = forecast["total"]["projected_charges"]
    assert forecast["status"] == "closed"
    for f in ("p10", "p50", "p90"):
        assert shown(page, f"#headline [data-field={f}]") == actual[f]
    expect(page.locator("#period-range")).to_contain_text("closed")
    expect(page.locator("#charts figure.panel").first).to_have_attribute(
        "data-days", str(len(days_so_far(usage)))
    )
    late = page.locator("#late-list tbody tr")
    expect(late).to_have_count(len(usage["late_adjustments"]))
    assert usage["late_adjustments"], "the seed re-sends a month's end after it closed"

    workspace = usage["rows"][0]["workspace_id"]
    choose(page, "#workspace", workspace)
    mine = demo.get(
        "/api/billing/usage",
        period="previous",
        workspace_id=workspace,
        group_by="workspace,product_area",
    )
    rows = page.locator("#workspaces tbody tr")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.workspace)") == [
        workspace
    ]
    assert {k: q for k, q in workspace_cells(page).items() if k[0] == "total"} == {
        ("total", t["product_area"], t["unit"]): t["quantity"] for t in mine["totals"]
    }
    expect(page.locator("#headline [data-field=p50]")).to_have_count(0)  # per tenant
    flagged = page.locator("#anomalies tbody tr")
    assert set(flagged.evaluate_all("rs => rs.map(r => r.dataset.workspace)")) <= {
        workspace
    }

    choose(page, "#workspace", "")
    area = usage["totals"][0]["product_area"]
    forecast = forecast_around(
        demo,
        page,
        lambda: (choose(page, "#period", "current"), choose(page, "#area", area)),
        period="current",
    )
    assert page.url.endswith(f"/dashboard?area={area}")
    line = next(x for x in forecast["lines"] if x["product_area"] == area)
    assert shown(page, "#headline [data-field=p50]") == line["projected_charges"]["p50"]
    assert (
        shown(page, "#headline [data-field=charges-to-date]")
        == (line["charges_to_date"])
    )
    assert {a for a, _ in area_rows(page)} == {area}
    panels = page.locator("#charts figure.panel")
    assert set(panels.evaluate_all("ps => ps.map(p => p.dataset.area)")) == {area}
    flagged = page.locator("#anomalies tbody tr")
    assert set(flagged.evaluate_all("rs => rs.map(r => r.dataset.area)")) <= {area}


def test_acknowledging_an_anomaly_shows_it_and_audits_it_once(
    page: Page, demo: Demo
) -> None:
    period, flag = next(
        (period, max(found, key=lambda a: abs(a["score"])))  # the clearest
        for period in ("current", "previous")
        if (
            found := demo.get("/api/billing/anomalies", period=period, status="open")[
                "anomalies"
            ]
        )
    )
    note = "Expected: the quarterly import ran that day."
    open_dashboard(page, demo, query=f"?period={period}")

    page.click(f'[data-open="{flag["id"]}"]')
    dialog = page.locator("#anomaly")
    expect(dialog).to_contain_text(flag["explanation"])
    page.fill("#ack-note", note)
    page.click("#ack-submit")

    expect(dialog.locator("[data-field=status]")).to_have_text("acknowledged")
    expect(dialog).to_contain_text(note)
    row = page.locator(f'tr[data-anomaly-id="{flag["id"]}"]')
    expect(row).to_have_attribute("data-status", "acknowledged")
    screenshot(page, "dashboard-anomaly")
    demo.caught_up()  # the audit log read model has every audit event
    audited = demo.get("/api/audit/events", role="auditor", type="AnomalyAcknowledged")
    assert [e["details"]["note"] for e in audited if _about(e, flag["id"])] == [note]
    answer = demo.get("/api/billing/anomalies", period=period)["anomalies"]
    assert next(a for a in answer if a["id"] == flag["id"])["status"] == "acknowledged"


def _about(event: dict[str, Any], anomaly_id: str) -> bool:
    return bool(event["details"].get("anomaly_id") == anomaly_id)


def test_the_downloaded_csv_has_the_page_totals(page: Page, demo: Demo) -> None:
    open_dashboard(page, demo, query="?period=previous")
    workspace = page.locator("#workspaces tbody tr").first.get_attribute(
        "data-workspace"
    )
    choose(page, "#workspace", str(workspace))  # what is on screen, filters and all

    with page.expect_download() as download:
        page.click("#download")
    text = Path(download.value.path()).read_text(encoding="utf-8")

    lines = list(csv.DictReader(io.StringIO(text)))
    header = text.splitlines()[0].split(",")
    assert header[:6] == [  # DESIGN section 6; columns may be added after these
        "workspace_id",
        "product_area",
        "usage_date",
        "unit",
        "quantity",
        "source_event_count",
    ]
    sums: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for line in lines:
        sums[line["product_area"], line["unit"]] += Decimal(line["quantity"])
    on_page = {key: Decimal(v["quantity"]) for key, v in area_rows(page).items()}
    assert sums == on_page
    footer = {
        (a, u): Decimal(q or "0")
        for (w, a, u), q in workspace_cells(page).items()
        if w == "total"
    }
    assert sums == footer
    expect(page.locator("#status")).to_contain_text(f"{len(lines)} rows")


def test_a_token_without_the_admin_role_sees_the_403_state(
    page: Page, demo: Demo
) -> None:
    open_dashboard(page, demo, demo.token("member"), state="failed")

    problem = page.locator("#problem")
    expect(problem).to_be_visible()
    expect(problem).to_have_attribute("data-kind", "403")
    expect(problem).to_contain_text("admin role")
    expect(problem).to_contain_text("403")  # and the API's own words
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("main data")).to_have_count(0)
    screenshot(page, "dashboard-403")


@pytest.mark.parametrize("token", ["expired", "invalid"])
def test_an_expired_or_invalid_token_sees_the_401_state(
    page: Page, demo: Demo, token: str
) -> None:
    signed = demo.token("admin", age=7200) if token == "expired" else "not.a.jwt"

    open_dashboard(page, demo, signed, state="failed")

    problem = page.locator("#problem")
    expect(problem).to_have_attribute("data-kind", "401")
    expect(problem).to_contain_text("expired or is not valid")
    expect(page.locator("main data")).to_have_count(0)
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None

    page.fill("#token", demo.token("admin"))  # the paste box, for a new token
    page.press("#token", "Enter")
    page.wait_for_selector("main[data-state=loaded]", state="attached")
    expect(page.locator("#problem")).to_be_hidden()
    expect(page.locator("#headline [data-field=p50]")).to_have_count(1)


def test_a_failed_request_clears_the_numbers_on_screen(page: Page, demo: Demo) -> None:
    open_dashboard(page, demo)
    expect(page.locator("#headline [data-field=p50]")).to_have_count(1)

    page.route("**/api/billing/anomalies*", lambda route: route.abort())
    page.select_option("#period", "previous")
    page.wait_for_selector("main[data-state=failed]", state="attached")

    expect(page.locator("#problem")).to_have_attribute("data-kind", "network")
    expect(page.locator("main data")).to_have_count(0)
    page.unroute("**/api/billing/anomalies*")
    page.click("#retry")
    page.wait_for_selector("main[data-state=loaded]", state="attached")
    expect(page.locator("#headline [data-field=p50]")).to_have_count(1)


def test_the_dashboard_loads_everything_from_its_own_host_and_works_by_keyboard(
    page: Page, demo: Demo
) -> None:
    hosts: set[str] = set()
    page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc))
    open_dashboard(page, demo)

    assert hosts - {""} == {urlsplit(demo.base_url).netloc}  # "": blob and about:
    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(
            page.evaluate(
                "document.activeElement.id || document.activeElement.className"
            )
        )
    assert order == ["skip", "sign-out", "period", "workspace", "area", "download"]

    page.focus("#period")
    page.keyboard.press("ArrowDown")  # previous period
    page.wait_for_selector("main[data-state=loaded]", state="attached")
    details = page.locator("[data-open]").first
    details.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#anomaly")).to_have_attribute("open", "")
    page.keyboard.press("Escape")
    expect(page.locator("#anomaly")).not_to_have_attribute("open", "")
    assert page.evaluate("document.activeElement.dataset.open") == (
        details.get_attribute("data-open")
    )


def test_the_dashboard_has_no_serious_accessibility_violations(
    page: Page, demo: Demo
) -> None:
    page.add_init_script(path=AXE)
    open_dashboard(page, demo)
    page.click("#daily-details summary")  # the chart's table too

    found = axe(page)
    if not page.locator("[data-open]").count():
        # The month's first hours: no flag yet in the current period.
        choose(page, "#period", "previous")
    page.locator("[data-open]").first.click()
    found += axe(page)  # with the anomaly dialog open

    serious = [v for v in found if v["impact"] in ("serious", "critical")]
    assert serious == [], serious


def axe(page: Page) -> list[dict[str, Any]]:
    return list(
        page.evaluate(
            """async () => (await axe.run(document, {resultTypes: ['violations']}))
              .violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))"""
        )
    )


def test_time_to_the_headline_numbers_is_printed(
    page: Page, demo: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    times = []
    for _ in range(3):
        open_dashboard(page, demo)
        times.append(
            page.evaluate("performance.getEntriesByName('headline')[0].startTime")
        )
    rows = len(demo.get("/api/billing/usage", period="current")["rows"])
    with capsys.disabled():
        print(  # noqa: T201 - a figure to read, never a pass/fail threshold
            f"\ndashboard: time to the headline numbers (navigation start to drawn),"
            f" tenant of the demo's size ({rows} daily rows this period):"
            f" {', '.join(f'{t:.0f} ms' for t in times)} (target <= 1000 ms)"
        )
