"""Input that once broke the service for everyone: each finding, now a 4xx.

Each test is one finding of the bad-input review (issue 9): a NUL character,
nesting thousands deep, invalid UTF-8, non-ASCII digits, odd timezones, loose
quantities, folded slugs, immortal tokens and huge headers.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import jwt
import psycopg
import pytest
from litestar.testing import TestClient

from application.settings import Settings
from domain.audit import AuditRecord
from domain.values import UsageFacts
from tests.support import auth, event

NOW = datetime.now(UTC)
EVENTS = "/api/metering/events"
DEEP = b"[" * 10_000 + b"]" * 10_000


def services(client: TestClient[Any]) -> Any:
    return client.app.state.services


def stored(settings: Settings, table: str) -> int:
    with psycopg.connect(settings.conninfo()) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def post_raw(
    client: TestClient[Any], path: str, body: bytes, headers: dict[str, str]
) -> Any:
    return client.post(
        path, content=body, headers=headers | {"content-type": "application/json"}
    )


# --- 1. a NUL in one tenant's properties -------------------------------------


def test_a_nul_in_properties_is_rejected_at_the_door_naming_the_field(
    client: TestClient[Any], settings: Settings
) -> None:
    body = [event("ok"), event("nul", properties={"note": "a\u0000b"})]

    response = client.post(EVENTS, json=body, headers=auth(settings, "t_a", "metering"))

    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == [
        "accepted",
        "rejected",
    ]
    assert response.json()["results"][1]["error"] == (
        "properties.note: must not contain the character U+0000"
    )
    assert stored(settings, "metering_events") == 1


def test_a_nul_already_in_the_history_never_fails_another_tenants_reads(
    client: TestClient[Any], settings: Settings
) -> None:
    """An event stored before the door was shut is the next one the read model
    has not processed: every tenant's usage and CSV still answer."""
    poison = UsageFacts(
        "old",
        "ws_a",
        "compute",
        "vcpu_hour",
        quantity=Decimal(1),
        occurred_at=NOW - timedelta(hours=1),
        properties={"note": "a\u0000b"},
    )
    services(client).write_side.metering.record_batch("t_a", [poison], now=NOW)
    admin_b = auth(settings, "t_b", "admin")

    usage = client.get("/api/billing/usage?period=current", headers=admin_b)
    export = client.get("/api/billing/usage/export?period=current", headers=admin_b)

    assert usage.status_code == 200
    assert usage.json()["position"] == 0  # behind the poison, and saying so
    assert datetime.fromisoformat(usage.json()["as_of"]) <= datetime.now(UTC)
    assert export.status_code == 200


# --- 2. a denied request whose path holds a NUL ------------------------------


def test_a_denied_path_with_a_nul_is_audited_escaped_and_the_log_keeps_going(
    client: TestClient[Any], settings: Settings
) -> None:
    """The finding: a metering token POSTs to the rebuild route of a read model
    named "billing_audit_log\\x00x"; the denial's record held the NUL."""
    [route] = [r for r in client.app.routes if r.path.endswith("{name:str}/rebuild")]
    path = route.path.replace("{name:str}", "billing_audit_log%00x")
    projector = services(client).write_side.projector

    denied = client.post(path, headers=auth(settings, "t_a", "metering"))
    projector.advance("billing_audit_log")
    log = client.get(
        "/api/audit/events?type=AccessDenied", headers=auth(settings, "t_a", "auditor")
    )

    assert denied.status_code == 403
    assert projector.position_of("billing_audit_log", "audit") == (
        services(client).write_side.audit.head_position()
    )
    [record] = log.json()
    assert record["details"]["path"].endswith("billing_audit_log\\u0000x/rebuild")


def test_an_audit_record_stored_with_a_nul_before_the_fix_does_not_stall_the_log(
    client: TestClient[Any], settings: Settings
) -> None:
    """Records written by older code may hold a NUL; the log escapes it."""
    ws = services(client).write_side
    poisoned = AuditRecord._create(  # bypasses record(), as older code did
        AuditRecord.AccessDenied,
        id=uuid.uuid4(),
        timestamp=NOW,
        tenant_id="t_a",
        actor_id="u\u0000",
        request_id="r",
        method="POST",
        path="/api/ops/projections/billing_audit_log\u0000x/rebuild",
        required_role="ops",
        roles=["metering"],
    )
    ws.audit.save(poisoned)
    after = AuditRecord.record(
        AuditRecord.ProjectionRebuildRequested,
        id=uuid.uuid4(),
        now=NOW,
        tenant_id="t_a",
        actor_id="ops",
        request_id="r2",
        projection="billing_usage_daily",
    )
    ws.audit.save(after)

    ws.projector.advance("billing_audit_log")
    response = client.get(
        "/api/audit/events?type=AccessDenied", headers=auth(settings, "t_a", "auditor")
    )

    assert ws.projector.position_of("billing_audit_log", "audit") == 2
    [record] = response.json()
    assert record["actor_id"] == "u\\u0000"
    assert record["details"]["path"].endswith("billing_audit_log\\u0000x/rebuild")


# --- 3. 500s on bad input ----------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        DEEP,
        b'[{"id": "e", "properties": ' + DEEP + b"}]",
    ],
    ids=["body", "properties"],
)
def test_json_nested_ten_thousand_deep_is_a_400_and_writes_nothing(
    client: TestClient[Any], settings: Settings, body: bytes
) -> None:
    response = post_raw(client, EVENTS, body, auth(settings, "t_a", "metering"))

    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]
    assert stored(settings, "metering_events") == 0


@pytest.mark.parametrize(
    ("method", "path", "bad_utf8"),
    [
        ("PATCH", "/api/ops/settings", b'{"timezone": "Europe/\xff"}'),
        (
            "POST",
            "/api/metering/corrections",
            b'{"action": "void", "event_id": "e\xff", "reason": "x"}',
        ),
    ],
)
def test_nesting_and_bad_utf8_in_other_json_bodies_are_400s(
    client: TestClient[Any], settings: Settings, method: str, path: str, bad_utf8: bytes
) -> None:
    headers = auth(settings, "t_a", "ops") | {"content-type": "application/json"}

    deep = client.request(
        method, path, content=b'{"x": ' + DEEP + b"}", headers=headers
    )
    invalid = client.request(method, path, content=bad_utf8, headers=headers)

    assert (deep.status_code, invalid.status_code) == (400, 400)
    assert deep.json()["detail"] == "body: is nested too deeply"
    assert invalid.json()["detail"].startswith("body: is not valid JSON (invalid UTF-8")


def test_invalid_utf8_inside_a_json_string_is_a_400_and_writes_nothing(
    client: TestClient[Any], settings: Settings
) -> None:
    body = json.dumps([event("ok"), event("bad", unit="UNIT")]).encode()
    body = body.replace(b"UNIT", b"vcpu\xc3\x28")

    response = post_raw(client, EVENTS, body, auth(settings, "t_a", "metering"))

    assert response.status_code == 400
    assert response.json()["detail"].startswith("body: is not valid JSON")
    assert stored(settings, "metering_events") == 0


@pytest.mark.parametrize("limit", ["²", "①", "١٢", "1_0", "+5", " 5"])
@pytest.mark.parametrize(
    ("path", "role"),
    [("/api/billing/usage/exports", "admin"), ("/api/audit/events", "auditor")],
)
def test_a_non_ascii_digit_in_an_integer_parameter_is_a_400(
    client: TestClient[Any], settings: Settings, limit: str, path: str, role: str
) -> None:
    response = client.get(
        path, params={"limit": limit}, headers=auth(settings, "t_a", role)
    )

    assert response.status_code == 400
    assert response.json()["detail"].startswith("limit: must be an integer")


@pytest.mark.parametrize(
    "timezone", ["Europe", "x" * 300, "../../etc/passwd", "Europe/Paris\u0000"]
)
def test_a_timezone_that_is_not_a_zone_name_is_a_4xx_and_changes_nothing(
    client: TestClient[Any], settings: Settings, timezone: str
) -> None:
    headers = auth(settings, "t_a", "ops")

    response = client.patch(
        "/api/ops/settings", json={"timezone": timezone}, headers=headers
    )
    after = client.get("/api/ops/settings", headers=headers).json()

    assert response.status_code == 422
    assert response.json()["detail"].startswith("timezone: unknown IANA timezone")
    assert after["timezone"] == "UTC"


# --- 6. strict where money is concerned --------------------------------------


@pytest.mark.parametrize(
    "quantity", ["1_000", "+5", " 12 ", "١٢", "12\u00a0", "1e3", "0x1"]
)
def test_a_quantity_outside_the_grammar_is_rejected_not_read(
    client: TestClient[Any], settings: Settings, quantity: str
) -> None:
    response = client.post(
        EVENTS,
        json=[event("q", quantity=quantity)],
        headers=auth(settings, "t_a", "metering"),
    )

    [result] = response.json()["results"]
    assert result["status"] == "rejected"
    assert result["error"].startswith("quantity: must be written with ASCII digits")


def test_a_kelvin_sign_is_refused_not_folded_into_another_key(
    client: TestClient[Any], settings: Settings
) -> None:
    body = [event("k1", area="\u212aube"), event("k2", area="kube")]

    response = client.post(EVENTS, json=body, headers=auth(settings, "t_a", "metering"))

    assert [r["status"] for r in response.json()["results"]] == [
        "rejected",
        "accepted",
    ]


def test_an_amend_quantity_follows_the_same_grammar(
    client: TestClient[Any], settings: Settings
) -> None:
    client.post(EVENTS, json=[event("e1")], headers=auth(settings, "t_a", "metering"))
    ops = auth(settings, "t_a", "ops")
    amend = {"action": "amend", "event_id": "e1", "reason": "fix"}

    refused = client.post(
        "/api/metering/corrections", json=amend | {"quantity": "1_0"}, headers=ops
    )
    nul_reason = client.post(
        "/api/metering/corrections",
        json=amend | {"quantity": "2", "reason": "a\u0000"},
        headers=ops,
    )

    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("quantity: must be written")
    assert nul_reason.status_code == 422
    assert nul_reason.json()["detail"] == (
        "reason: must not contain the character U+0000"
    )


def _token(settings: Settings, claims: dict[str, Any]) -> dict[str, str]:
    """A correctly signed token with these claims changed (None: left out)."""
    now = int(time.time())
    body = {"sub": "u", "tenant_id": "t_a", "roles": ["admin"], "iat": now}
    body |= {"exp": now + 600} | claims
    body = {k: v for k, v in body.items() if v is not None}
    token = jwt.encode(body, settings.jwt_secret, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        (
            {"exp": int(time.time()) + 100 * 365 * 86400},
            "token lifetime exceeds the maximum of 86400 seconds",
        ),
        (
            {"iat": None, "exp": int(time.time()) + 2 * 86400},
            "token lifetime exceeds the maximum of 86400 seconds",
        ),
        (
            {"iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200},
            "token 'iat' is in the future",
        ),
        ({"sub": "u\u0000"}, "token 'sub' must not contain the character U+0000"),
        (
            {"roles": ["admin\u0000"]},
            "token 'roles' must not contain the character U+0000",
        ),
    ],
    ids=["a century", "two days without iat", "iat ahead", "nul sub", "nul role"],
)
def test_tokens_that_live_too_long_or_carry_poison_are_401(
    client: TestClient[Any], settings: Settings, claims: dict[str, Any], detail: str
) -> None:
    response = client.get("/api/billing/usage", headers=_token(settings, claims))

    assert response.status_code == 401
    assert response.json()["detail"] == detail


def test_a_megabyte_of_headers_is_431_before_authentication(
    client: TestClient[Any], settings: Settings
) -> None:
    headers = {"Authorization": "Bearer " + "a" * 1_000_000}

    response = client.get("/api/billing/usage", headers=headers)

    assert response.status_code == 431
    assert response.json()["detail"].startswith("request headers: must be at most")
    assert stored(settings, "audit_events") == 0
