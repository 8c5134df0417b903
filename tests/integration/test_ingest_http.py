"""POST /api/metering/events against the real stack and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from application.bootstrap import bootstrap
from application.settings import Settings
from application.tokens import issue_token
from tests.support import auth, event, events

URL = "/api/metering/events"


def stored_count(settings: Settings) -> int:
    with psycopg.connect(settings.conninfo()) as conn:
        row = conn.execute("SELECT count(*) FROM metering_events").fetchone()
    assert row is not None
    return int(row[0])


def post(
    client: TestClient[Any], settings: Settings, body: Any, tenant: str = "t_acme"
) -> Any:
    return client.post(URL, json=body, headers=auth(settings, tenant, "metering"))


def test_a_valid_batch_is_accepted_and_durable(
    client: TestClient[Any], settings: Settings
) -> None:
    response = post(client, settings, events("e", 3))

    assert response.status_code == 200
    body = response.json()
    assert (
        body["accepted"],
        body["duplicates"],
        body["conflicts"],
        body["rejected"],
    ) == (3, 0, 0, 0)
    assert [r["status"] for r in body["results"]] == ["accepted"] * 3
    assert body["position"] == 3
    assert stored_count(settings) == 3


def test_resending_the_same_event_is_a_harmless_duplicate(
    client: TestClient[Any], settings: Settings
) -> None:
    post(client, settings, [event("e1", quantity="12.5")])

    again = post(
        client, settings, [event("e1", quantity="12.50", area=" Compute ")]
    ).json()

    assert again["duplicates"] == 1
    assert again["results"] == [{"index": 0, "id": "e1", "status": "duplicate"}]
    assert again["position"] == 1  # where the original is
    assert stored_count(settings) == 1


def test_the_same_id_with_another_payload_is_a_conflict_and_changes_nothing(
    client: TestClient[Any], settings: Settings
) -> None:
    post(client, settings, [event("e1", quantity="1")])

    response = post(client, settings, [event("e1", quantity="2")]).json()

    assert response["conflicts"] == 1
    result = response["results"][0]
    assert result["status"] == "conflict"
    assert result["error"].startswith("id:")
    with psycopg.connect(settings.conninfo()) as conn:
        rows = conn.execute(
            "SELECT count(*), min(convert_from(state, 'UTF8')) FROM metering_events"
        ).fetchone()
    assert rows is not None
    assert rows[0] == 1
    assert '"quantity":"1"' in rows[1]


def test_copies_within_one_batch_are_resolved_against_the_first(
    client: TestClient[Any], settings: Settings
) -> None:
    body = [
        event("e1", quantity="1"),
        event("e1", quantity="1"),
        event("e1", quantity="9"),
    ]

    results = post(client, settings, body).json()["results"]

    assert [r["status"] for r in results] == ["accepted", "duplicate", "conflict"]
    assert stored_count(settings) == 1


def test_a_batch_is_partially_acceptable_and_every_event_is_answered_in_order(
    client: TestClient[Any], settings: Settings
) -> None:
    body = [
        event("ok1"),
        event("neg", quantity="-1"),
        {"id": "bad-type", "workspace_id": 5},
        "not an object",
        event("ok2"),
    ]

    response = post(client, settings, body).json()

    assert [(r["index"], r["status"]) for r in response["results"]] == [
        (0, "accepted"),
        (1, "rejected"),
        (2, "rejected"),
        (3, "rejected"),
        (4, "accepted"),
    ]
    errors = {r["index"]: r.get("error") for r in response["results"]}
    assert errors[1] == "quantity: must be >= 0"
    assert errors[2] == "workspace_id: expected `str`, got `int`"
    assert errors[3] == "event: must be a JSON object"
    assert stored_count(settings) == 2


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"", 400, "body: must be a JSON array of events, got nothing"),
        (b"{not json", 400, "body: is not valid JSON"),
        (b'{"id": "e1"}', 400, "body: must be a JSON array of events"),
        (b"[]", 400, "body: must contain at least one event"),
    ],
)
def test_a_malformed_body_is_refused_whole_and_writes_nothing(
    client: TestClient[Any], settings: Settings, body: bytes, status: int, detail: str
) -> None:
    response = client.post(
        URL,
        content=body,
        headers=auth(settings, "t_acme", "metering")
        | {"content-type": "application/json"},
    )

    assert response.status_code == status
    assert response.json()["detail"].startswith(detail)
    assert stored_count(settings) == 0


def test_more_than_ten_thousand_events_is_too_large(
    client: TestClient[Any], settings: Settings
) -> None:
    response = post(client, settings, events("e", 10_001))

    assert response.status_code == 413
    assert (
        response.json()["detail"]
        == "body: must contain at most 10000 events, got 10001"
    )
    assert stored_count(settings) == 0


def test_a_body_over_the_size_limit_is_refused_with_413(settings: Settings) -> None:
    from interfaces.http.app import create_app

    small = settings.with_changes(max_body_bytes=2_000)
    with TestClient(app=create_app(small)) as client:
        response = post(client, small, events("e", 20, properties={"note": "x" * 100}))

    assert response.status_code == 413
    assert stored_count(small) == 0


def test_old_events_need_the_ops_backfill_which_is_audited(
    client: TestClient[Any], settings: Settings
) -> None:
    old = event("old", at=datetime.now(UTC) - timedelta(days=60))

    refused = post(client, settings, [old]).json()
    backfilled = client.post(
        "/api/metering/backfill", json=[old], headers=auth(settings, "t_acme", "ops")
    )

    assert refused["results"][0]["error"].startswith("timestamp: is older than")
    assert backfilled.status_code == 200
    assert backfilled.json()["accepted"] == 1
    with psycopg.connect(settings.conninfo()) as conn:
        topics = [
            r[0] for r in conn.execute("SELECT topic FROM audit_events").fetchall()
        ]
    assert topics == ["domain.audit:AuditRecord.BackfillRecorded"]


def test_the_metering_role_cannot_backfill(
    client: TestClient[Any], settings: Settings
) -> None:
    response = client.post(
        "/api/metering/backfill",
        json=[event("e1")],
        headers=auth(settings, "t_acme", "metering"),
    )

    assert response.status_code == 403
    assert stored_count(settings) == 0


def test_the_same_event_id_under_two_tenants_is_two_events(
    client: TestClient[Any], settings: Settings
) -> None:
    a = post(client, settings, [event("shared")], tenant="t_a").json()
    b = post(client, settings, [event("shared")], tenant="t_b").json()

    assert a["accepted"] == b["accepted"] == 1
    assert stored_count(settings) == 2


def test_a_tenant_in_the_body_is_ignored_the_token_decides(
    client: TestClient[Any], settings: Settings, write_side: Any
) -> None:
    body = [event("e1") | {"tenant_id": "t_victim"}]

    post(client, settings, body, tenant="t_attacker")

    assert write_side.metering.get_record("t_attacker", "e1").tenant_id == "t_attacker"
    with pytest.raises(LookupError):
        write_side.metering.get_record("t_victim", "e1")


def test_idempotency_holds_across_restarts_of_the_application(
    settings: Settings, write_side: Any
) -> None:
    from application.clock import utc_now
    from application.metering.ingestor import Ingestor

    first = Ingestor(
        write_side.metering, write_side.tenants, clock=utc_now, max_events=10
    )
    import msgspec

    body = msgspec.json.encode([event("e1"), event("e2")])
    assert first.ingest("t_acme", body).accepted == 2
    write_side.close()

    restarted = bootstrap(settings)
    try:
        again = Ingestor(
            restarted.metering, restarted.tenants, clock=utc_now, max_events=10
        )
        response = again.ingest("t_acme", body)
    finally:
        restarted.close()

    assert (response.accepted, response.duplicates) == (0, 2)


def test_properties_are_kept_in_the_history_but_never_served(
    client: TestClient[Any], settings: Settings, projecting: Any
) -> None:
    body = [event("e1", properties={"email": "someone@example.com"})]
    position = post(client, settings, body).json()["position"]

    usage = client.get(
        "/api/billing/usage",
        params={"min_position": position},
        headers=auth(settings, "t_acme", "admin"),
    )
    export = client.get(
        "/api/billing/usage/export", headers=auth(settings, "t_acme", "admin")
    )

    assert usage.status_code == export.status_code == 200
    assert usage.json()["rows"]
    assert "someone@example.com" not in usage.text
    assert "someone@example.com" not in export.text
    with psycopg.connect(settings.conninfo()) as conn:
        row = conn.execute(
            "SELECT convert_from(state, 'UTF8') FROM metering_events"
        ).fetchone()
    assert row is not None
    assert "someone@example.com" in row[0]


def test_an_expired_token_cannot_ingest(
    client: TestClient[Any], settings: Settings
) -> None:
    token = issue_token(
        settings, tenant_id="t_acme", roles=["metering"], subject="s", ttl_seconds=-10
    )

    response = client.post(
        URL, json=[event("e1")], headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 401
    assert response.json() == {"status_code": 401, "detail": "token expired"}
    assert stored_count(settings) == 0
