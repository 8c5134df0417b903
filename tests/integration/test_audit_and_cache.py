"""Every view and export audited exactly once, or not served; the cache never lies."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from application.settings import Settings
from interfaces.http.app import create_app
from tests.conftest import drop_schema
from tests.support import auth, caught_up, event

USAGE = "/api/billing/usage"


def audit_counts(settings: Settings) -> dict[str, int]:
    with psycopg.connect(settings.conninfo()) as conn:
        rows = conn.execute(
            "SELECT topic, count(*) FROM audit_events GROUP BY topic"
        ).fetchall()
    return {topic.rsplit(".", 1)[-1]: n for topic, n in rows}


def ingest(client: TestClient[Any], settings: Settings, *ids: str) -> int:
    response = client.post(
        "/api/metering/events",
        json=[event(i) for i in ids],
        headers=auth(settings, "t_acme", "metering"),
    )
    return int(response.json()["position"])


def test_each_view_and_export_writes_exactly_one_audit_record(
    app: Any, client: TestClient[Any], settings: Settings, projecting: Any
) -> None:
    position = ingest(client, settings, "e1", "e2")
    admin = auth(settings, "t_acme", "admin", sub="ann")

    for _ in range(3):
        assert (
            client.get(
                USAGE, params={"min_position": position}, headers=admin
            ).status_code
            == 200
        )
    assert client.get(f"{USAGE}/export", headers=admin).status_code == 200

    assert audit_counts(settings) == {"UsageViewed": 3, "UsageExported": 1}
    caught_up(app.state.services.write_side)
    viewed = client.get(
        "/api/audit/events",
        params={"type": "UsageViewed"},
        headers=auth(settings, "t_acme", "auditor"),
    ).json()
    assert [(e["actor_id"], e["details"]["position"]) for e in viewed] == [
        ("ann", position)
    ] * 3
    assert len({e["request_id"] for e in viewed}) == 3


@pytest.fixture
def audit_table_gone(settings: Settings, client: TestClient[Any]) -> Iterator[None]:
    """Make audit writes fail for real: the audit table disappears for a moment."""
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_events RENAME TO audit_events_away")
        try:
            yield
        finally:
            conn.execute("ALTER TABLE audit_events_away RENAME TO audit_events")


def test_when_the_audit_record_cannot_be_written_nothing_is_served(
    client: TestClient[Any], settings: Settings, audit_table_gone: None
) -> None:
    admin = auth(settings, "t_acme", "admin")

    view = client.get(USAGE, headers=admin)
    export = client.get(f"{USAGE}/export", headers=admin)

    for response in (view, export):
        assert response.status_code == 503
        assert "audit record not written" in response.json()["detail"]
        assert "rows" not in response.text
        assert "workspace_id" not in response.text
    assert not list(settings.export_dir.rglob("*.csv"))


def test_a_cached_answer_is_never_older_than_the_read_model(
    client: TestClient[Any], settings: Settings, projecting: Any
) -> None:
    admin = auth(settings, "t_acme", "admin")
    first = ingest(client, settings, "e1")
    miss = client.get(USAGE, params={"min_position": first}, headers=admin)
    hit = client.get(USAGE, headers=admin)

    second = ingest(client, settings, "e2")
    after = client.get(USAGE, params={"min_position": second}, headers=admin)

    assert (
        miss.headers["x-cache"],
        hit.headers["x-cache"],
        after.headers["x-cache"],
    ) == ("miss", "hit", "miss")
    assert hit.json()["rows"] == miss.json()["rows"]
    assert after.json()["position"] >= second
    assert after.json()["rows"][0]["source_event_count"] == 2


def test_cache_entries_are_never_shared_across_tenants(
    client: TestClient[Any], settings: Settings, projecting: Any
) -> None:
    position = ingest(client, settings, "e1")
    client.get(
        USAGE,
        params={"min_position": position},
        headers=auth(settings, "t_acme", "admin"),
    )

    other = client.get(USAGE, headers=auth(settings, "t_other", "admin"))

    assert other.headers["x-cache"] == "miss"
    assert other.json()["rows"] == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A private redis-server, so this test can stop it without disturbing others."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed")
    port = free_port()
    server = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.PIPE,
    )
    assert server.stdout is not None
    for line in server.stdout:
        if b"Ready to accept connections" in line:
            break
    yield f"redis://127.0.0.1:{port}/0", server
    server.kill()
    server.wait()


def test_with_redis_stopped_the_api_still_answers_correctly(
    settings: Settings, own_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, server = own_redis
    with_redis = settings.with_changes(redis_url=url)
    with TestClient(app=create_app(with_redis)) as client:
        ws = client.app.state.services.write_side
        position = ingest(client, settings, "e1", "e2")
        ws.projector.advance_all()
        admin = auth(settings, "t_acme", "admin")
        cached = client.get(USAGE, params={"min_position": position}, headers=admin)
        assert client.get(USAGE, headers=admin).headers["x-cache"] == "hit"

        server.terminate()
        server.wait()
        ingest(client, settings, "e3")
        ws.projector.advance_all()
        without = client.get(USAGE, headers=admin)
        ready = client.get("/readyz")

    assert cached.status_code == without.status_code == 200
    assert without.headers["x-cache"] == "miss"
    assert without.json()["rows"][0]["source_event_count"] == 3
    assert ready.status_code == 200  # still serving, uncached
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["redis"].startswith("unavailable")


def test_a_calendar_change_is_never_answered_from_the_old_cache(
    app: Any, client: TestClient[Any], settings: Settings, projecting: Any
) -> None:
    admin = auth(settings, "t_acme", "admin")
    position = ingest(client, settings, "e1")
    client.get(USAGE, params={"min_position": position}, headers=admin)
    assert client.get(USAGE, headers=admin).headers["x-cache"] == "hit"

    changed = client.patch(
        "/api/ops/settings",
        json={"timezone": "Pacific/Kiritimati"},
        headers=auth(settings, "t_acme", "ops"),
    ).json()
    app.state.services.write_side.projector.wait_for(
        "billing_usage_daily", "tenant_settings", changed["position"], 30
    )
    after = client.get(USAGE, headers=admin)

    assert after.headers["x-cache"] == "miss"
    assert after.json()["period"]["timezone"] == "Pacific/Kiritimati"


def _serve_one_event(settings: Settings, quantity: str) -> list[tuple[str, Decimal]]:
    """A fresh app on `settings`' database: one event in, read twice."""
    app = create_app(settings)
    admin = auth(settings, "t_acme", "admin")
    with TestClient(app=app) as client:
        position = client.post(
            "/api/metering/events",
            json=[event("e1", quantity=quantity)],
            headers=auth(settings, "t_acme", "metering"),
        ).json()["position"]
        app.state.services.write_side.projector.advance("billing_usage_daily")
        answers = [
            client.get(USAGE, params={"min_position": position}, headers=admin)
            for _ in range(2)
        ]
    return [
        (a.headers["x-cache"], Decimal(a.json()["totals"][0]["quantity"]))
        for a in answers
    ]


def test_a_recreated_database_is_never_answered_from_the_old_cache(
    settings: Settings,
) -> None:
    before = _serve_one_event(settings, "5")
    drop_schema(settings)  # a reset or a restore: same positions, other data
    after = _serve_one_event(settings, "7")

    assert before == [("miss", Decimal(5)), ("hit", Decimal(5))]
    assert after == [("miss", Decimal(7)), ("hit", Decimal(7))]
