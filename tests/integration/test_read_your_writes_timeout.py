"""A read whose wait for its writes times out says so, cached or not.

The wait is cut to a fifth of a second and the position asked for is far
beyond anything recorded, so every wait here times out (nothing sleeps).
"""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from application.settings import Settings
from tests.support import auth, caught_up, event

AHEAD = 999_999_999
TIMED_OUT = {"reached": False, "missing": {"metering": AHEAD}}
READS = ["/api/billing/usage", "/api/billing/forecast", "/api/billing/anomalies"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_changes(max_read_wait_seconds=0.2)


def read(client: TestClient[Any], settings: Settings, path: str, **params: Any) -> Any:
    return client.get(path, params=params, headers=auth(settings, "t_acme", "admin"))


def ingest(client: TestClient[Any], settings: Settings) -> int:
    answer = client.post(
        "/api/metering/events",
        json=[event("e1")],
        headers=auth(settings, "t_acme", "metering"),
    )
    return int(answer.json()["position"])


def without(answer: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in fields}


@pytest.mark.parametrize("path", READS)
def test_a_read_that_timed_out_says_so_in_its_body_and_a_header(
    client: TestClient[Any], settings: Settings, path: str
) -> None:
    response = read(client, settings, path, min_positions=f"metering:{AHEAD}")

    assert response.status_code == 200
    assert response.headers["x-read-your-writes"] == "timeout"
    assert response.json()["waited"] == TIMED_OUT


@pytest.mark.parametrize("path", READS)
def test_a_cached_answer_keeps_saying_its_own_wait_timed_out(
    client: TestClient[Any], settings: Settings, path: str
) -> None:
    first = read(client, settings, path, min_position=str(AHEAD))
    again = read(client, settings, path, min_position=str(AHEAD))
    unasked = read(client, settings, path)

    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert again.headers["x-read-your-writes"] == "timeout"
    assert again.json()["waited"] == TIMED_OUT
    assert unasked.headers["x-cache"] == "hit"  # the same data, asked nothing
    assert "x-read-your-writes" not in unasked.headers
    assert "waited" not in unasked.json()
    assert without(again.json(), "waited", "as_of") == without(unasked.json(), "as_of")


@pytest.mark.parametrize("path", READS)
def test_a_read_whose_writes_are_in_says_it_reached_them(
    client: TestClient[Any], settings: Settings, app: Any, projecting: Any, path: str
) -> None:
    position = ingest(client, settings)
    caught_up(app.state.services.write_side)
    cached = read(client, settings, path, min_position=str(AHEAD))

    response = read(client, settings, path, min_position=str(position))

    assert response.headers["x-read-your-writes"] == "reached"
    assert response.json()["waited"] == {"reached": True, "missing": {}}
    assert cached.json()["waited"] == TIMED_OUT


def test_an_export_that_timed_out_says_so_in_a_header(
    client: TestClient[Any], settings: Settings
) -> None:
    timed_out = read(
        client, settings, "/api/billing/usage/export", min_position=str(AHEAD)
    )
    unasked = read(client, settings, "/api/billing/usage/export")

    assert timed_out.status_code == 200
    assert timed_out.headers["x-read-your-writes"] == "timeout"
    assert timed_out.text == unasked.text  # the CSV itself is the same
    assert "x-read-your-writes" not in unasked.headers
