"""Browser fixtures: the real `billing serve` + `billing worker` with seeded demo
data (one service for the module), and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from application.bootstrap import WriteSide, bootstrap
from application.tokens import issue_token
from tests.e2e.conftest import Service, service  # one server for the module
from tests.support import Process, caught_up, env_for

__all__ = ["service"]

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; `.ci/run` installs it
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
# The demo's tenant (`make demo`: 5 workspaces x 5 product areas x 90 days, so
# as many daily rows as its largest tenant), with fewer events a day so the
# seed takes seconds. 90 days and 5 workspaces plant every kind of anomaly.
SEED_PLAN = ("--tenants", "1", "--workspaces", "5", "--product-areas", "5")
SEED_PLAN += ("--days", "90", "--events-per-day", "4")
TENANT = "t_acme"


@dataclass
class Demo:
    """The seeded service, and the admin's view of it through the API."""

    service: Service
    write_side: WriteSide

    @property
    def base_url(self) -> str:
        return self.service.base_url

    def token(self, *roles: str, age: int = 0) -> str:
        """A token of TENANT with `roles`, issued `age` seconds ago (1 h life)."""
        now = time.time() - age if age else None
        return issue_token(
            self.service.settings,
            tenant_id=TENANT,
            roles=list(roles),
            subject=f"browser-{'-'.join(roles)}",
            now=now,
        )

    def get(self, path: str, role: str = "admin", **params: str) -> Any:
        response = httpx.get(
            f"{self.base_url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.token(role)}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def caught_up(self) -> None:
        caught_up(self.write_side)


@pytest.fixture(scope="module")
def demo(service: Service) -> Iterator[Demo]:
    """The demo's data seeded through the real ingest path, fully projected,
    with a budget the projection is about to reach."""
    seed = Process(["seed", *SEED_PLAN], env_for(service.settings))
    assert seed.wait(timeout=240) == 0, seed.output()
    write_side = bootstrap(service.settings)
    try:
        demo = Demo(service, write_side)
        demo.caught_up()
        _set_budget(demo)
        demo.caught_up()
        yield demo
    finally:
        write_side.close()


def _set_budget(demo: Demo) -> None:
    """A budget between the charges to date and the projection (p50)."""
    total = demo.get("/api/billing/forecast", period="current")["total"]
    to_date = Decimal(total["charges_to_date"])
    p50 = Decimal(total["projected_charges"]["p50"])
    amount = ((to_date + p50) / 2).quantize(Decimal("0.01"))
    response = httpx.put(
        f"{demo.base_url}/api/billing/budget",
        json={"period": "current", "amount": str(amount)},
        headers={"Authorization": f"Bearer {demo.token('admin')}"},
    )
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage) the size of a laptop screen; a
    script error on the page fails the test."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"errors on the page: {errors}"


def screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """Save a screenshot under var/screenshots/ (docs/ keeps the README's copies)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=full_page)
    return path
