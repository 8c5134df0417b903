"""401/403 for every protected route, enumerated from the app's own route table."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import jwt
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from application.settings import Settings
from application.tokens import ROLES, issue_token
from tests.support import auth, event

ALL_ROLES = (*ROLES, "member")  # member: a role with no billing rights
PATH_VALUES = {
    "name": "billing_usage_daily",
    "export_id": str(uuid.uuid4()),
    "anomaly_id": "an_0000",
    "event_id": "e1",
    "audit_event_id": "1",
}


def required_role(path: str) -> str:
    if path.startswith("/api/billing/"):
        return "admin"
    if path.startswith("/api/audit/"):
        return "auditor"
    if path == "/api/metering/events":
        return "metering"
    if path.startswith("/api/platform/"):
        return "platform"
    return "ops"  # /api/ops/*, corrections, backfill


def protected_routes(app: Litestar) -> list[tuple[str, str]]:
    """(method, concrete path) of every /api/ route, so a new one cannot escape."""
    routes = []
    for route in app.routes:
        if not route.path.startswith("/api/"):
            continue
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PATH_VALUES[m[1]], route.path)
        for method in sorted(route.methods - {"OPTIONS", "HEAD"}):  # type: ignore[union-attr]
            routes.append((method, path))
    return routes


def call(
    client: TestClient[Any], method: str, path: str, headers: dict[str, str]
) -> Any:
    body = [event("e1")] if method == "POST" else None
    if method == "PATCH":
        body = {"grace_hours": 48}
    if path.endswith("/corrections"):
        body = {"action": "void", "event_id": "e1", "reason": "test"}
    return client.request(method, path, json=body, headers=headers)


def test_the_route_table_has_every_documented_area(app: Litestar) -> None:
    paths = {path for _, path in protected_routes(app)}
    assert {
        "/api/billing/usage",
        "/api/billing/usage/export",
        "/api/billing/usage/exports",
        "/api/metering/events",
        "/api/metering/corrections",
        "/api/audit/events",
        "/api/audit/usage/explain",
        "/api/audit/metering-events/e1",
        "/api/ops/freshness",
        "/api/ops/settings",
        "/api/platform/projections",
        "/api/platform/projections/billing_usage_daily/rebuild",
    } <= paths
    assert "/api/ops/projections" not in paths  # platform-wide: moved to platform


def bad_tokens(settings: Settings) -> dict[str, str]:
    claims = {"sub": "u", "tenant_id": "t_acme", "roles": list(ALL_ROLES)}
    now = int(time.time())
    return {
        "none": "",
        "not a bearer": "Basic dXNlcjpwYXNz",
        "garbage": "Bearer not.a.jwt",
        "expired": "Bearer "
        + issue_token(
            settings,
            tenant_id="t_acme",
            roles=list(ALL_ROLES),
            subject="u",
            ttl_seconds=-1,
        ),
        "wrongly signed": "Bearer "
        + jwt.encode(
            claims | {"exp": now + 60},
            "another-secret-another-secret-0123456789",
            "HS256",
        ),
        "unsigned": "Bearer "
        + jwt.encode(claims | {"exp": now + 60}, None, algorithm="none"),
        "no exp": "Bearer " + jwt.encode(claims, settings.jwt_secret, "HS256"),
        "no tenant": "Bearer "
        + jwt.encode(
            {"sub": "u", "roles": ["admin"], "exp": now + 60},
            settings.jwt_secret,
            "HS256",
        ),
    }


def test_every_protected_route_answers_401_without_a_valid_token(
    app: Litestar, client: TestClient[Any], settings: Settings
) -> None:
    for method, path in protected_routes(app):
        for label, header in bad_tokens(settings).items():
            headers = {"Authorization": header} if header else {}
            response = call(client, method, path, headers)
            assert response.status_code == 401, (method, path, label, response.text)
            assert set(response.json()) == {"status_code", "detail"}


def test_every_protected_route_answers_403_to_every_other_role(
    app: Litestar, client: TestClient[Any], settings: Settings
) -> None:
    for method, path in protected_routes(app):
        needed = required_role(path)
        for role in ALL_ROLES:
            if role == needed:
                continue
            response = call(client, method, path, auth(settings, "t_acme", role))
            assert response.status_code == 403, (method, path, role, response.text)
            assert response.json()["detail"] == f"the {needed!r} role is required"


def test_the_right_role_gets_past_authentication(
    app: Litestar, client: TestClient[Any], settings: Settings
) -> None:
    for method, path in protected_routes(app):
        response = call(
            client, method, path, auth(settings, "t_acme", required_role(path))
        )
        assert response.status_code not in (401, 403), (method, path, response.text)
        assert response.status_code < 500, (method, path, response.text)


def test_a_denied_attempt_is_audited(
    client: TestClient[Any], settings: Settings
) -> None:
    client.get(
        "/api/billing/usage", headers=auth(settings, "t_acme", "member", sub="mallory")
    )

    with psycopg.connect(settings.conninfo()) as conn:
        rows = conn.execute(
            "SELECT topic, convert_from(state, 'UTF8')::json FROM audit_events"
        ).fetchall()
    assert len(rows) == 1
    topic, state = rows[0]
    assert topic == "domain.audit:AuditRecord.AccessDenied"
    assert (state["tenant_id"], state["actor_id"], state["required_role"]) == (
        "t_acme",
        "mallory",
        "admin",
    )
    assert state["path"] == "/api/billing/usage"


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/metrics", "/schema/openapi.json", "/dashboard"]
)
def test_public_endpoints_need_no_token(client: TestClient[Any], path: str) -> None:
    assert client.get(path).status_code == 200


def test_no_error_response_carries_a_stack_trace(
    client: TestClient[Any], settings: Settings
) -> None:
    responses = [
        client.post(
            "/api/metering/events",
            content=b"[",
            headers=auth(settings, "t", "metering"),
        ),
        client.get(
            "/api/billing/usage",
            params={"period": "x"},
            headers=auth(settings, "t", "admin"),
        ),
        client.get("/api/billing/usage"),
    ]
    for response in responses:
        assert "Traceback" not in response.text
        assert set(response.json()) == {"status_code", "detail"}
