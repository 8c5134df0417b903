"""The webhook endpoint API: set, read, rotate, remove, audit, refuse, the log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from application.settings import Settings
from interfaces.http.app import create_app
from tests.integration.webhook_support import fast, record_notice
from tests.support import auth

PATH = "/api/billing/webhooks"
PUBLIC_URL = "https://93.184.215.14/hooks/billing"  # a literal public address


def put(client: TestClient[Any], settings: Settings, url: str, tenant: str = "t_acme"):
    return client.put(PATH, json={"url": url}, headers=auth(settings, tenant, "admin"))


def test_put_answers_a_secret_once_and_get_never_shows_it(
    client: TestClient[Any], settings: Settings
) -> None:
    response = put(client, settings, PUBLIC_URL)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["url"] == PUBLIC_URL
    assert body["tenant_id"] == "t_acme"
    assert body["secret"].startswith("whsec_")
    assert len(body["secret"]) >= len("whsec_") + 32
    assert response.headers["cache-control"] == "no-store"
    shown = client.get(PATH, headers=auth(settings, "t_acme", "admin"))
    assert shown.status_code == 200
    assert shown.json()["url"] == PUBLIC_URL
    assert "secret" not in shown.json()
    assert body["secret"] not in shown.text


def test_put_again_rotates_the_secret(
    client: TestClient[Any], settings: Settings
) -> None:
    first = put(client, settings, PUBLIC_URL).json()
    second = put(client, settings, PUBLIC_URL).json()

    assert second["secret"] != first["secret"]
    assert second["created_at"] == first["created_at"]


def test_each_tenant_has_its_own_endpoint(
    client: TestClient[Any], settings: Settings
) -> None:
    put(client, settings, PUBLIC_URL, tenant="t_a")

    other = client.get(PATH, headers=auth(settings, "t_b", "admin"))

    assert other.status_code == 404
    assert other.json()["detail"] == "no webhook endpoint is set for this tenant"


def test_delete_removes_the_endpoint(
    client: TestClient[Any], settings: Settings
) -> None:
    put(client, settings, PUBLIC_URL)
    headers = auth(settings, "t_acme", "admin")

    assert client.delete(PATH, headers=headers).status_code == 204
    assert client.get(PATH, headers=headers).status_code == 404
    assert client.delete(PATH, headers=headers).status_code == 404


def test_changes_are_audited_without_the_secret(
    client: TestClient[Any], settings: Settings
) -> None:
    secret = put(client, settings, PUBLIC_URL).json()["secret"]
    client.delete(PATH, headers=auth(settings, "t_acme", "admin"))

    with psycopg.connect(settings.conninfo()) as conn:
        records = conn.execute(
            "SELECT topic, convert_from(state, 'UTF8') FROM audit_events"
            " ORDER BY notification_id"
        ).fetchall()
    changes = [state for topic, state in records if topic.endswith("WebhookChanged")]
    assert len(changes) == 2
    assert '"action":"set"' in changes[0]
    assert '"action":"removed"' in changes[1]
    assert all(PUBLIC_URL in state and "tester" in state for state in changes)
    assert not any(secret in state for _, state in records)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://93.184.215.14/x", "must start with https://"),
        ("http://93.184.215.14/x", "must start with https://"),
        ("not a url", "must be printable ASCII without spaces"),
        ("hooks.example.com/x", "must start with https://"),
        ("https://", "must name a host"),
        ("https://93.184.215.14:99999/", "is not a valid URL"),
        ("https://user:pw@93.184.215.14/", "must not hold credentials"),
        ("https://93.184.215.14/#part", "must not have a #fragment"),
        ("https://93.184.215.14/" + "a" * 2048, "must be at most 2048 characters"),
        ("https://exämple.com/", "must be printable ASCII"),
        ("https://no-such-host.invalid/", "does not resolve"),
    ],
)
def test_a_bad_url_is_refused_naming_the_field(
    client: TestClient[Any], settings: Settings, url: str, problem: str
) -> None:
    response = put(client, settings, url)

    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("url: ")
    assert problem in response.json()["detail"]
    assert (
        client.get(PATH, headers=auth(settings, "t_acme", "admin")).status_code == 404
    )


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("localhost", "loopback"),
        ("2130706433", "loopback"),  # 127.0.0.1 written as one number
        ("10.1.2.3", "private"),
        ("172.16.5.4", "private"),
        ("192.168.0.10", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("240.0.0.1", "reserved"),
        ("[::1]", "loopback"),
        ("[::]", "unspecified"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("[::ffff:10.0.0.1]", "private"),
        ("[fe80::1]", "link-local"),
        ("[fc00::1]", "private"),
        ("[ff02::1]", "multicast"),
        ("[2002:a00:1::]", "private"),  # 6to4 around 10.0.0.1
    ],
)
def test_private_and_special_addresses_are_refused_by_default(
    client: TestClient[Any], settings: Settings, host: str, kind: str
) -> None:
    response = put(client, settings, f"https://{host}:8443/hook")

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith("url: ")
    assert f"is a {kind} address" in detail


def test_development_may_allow_http_and_private_addresses(
    settings: Settings,
) -> None:
    with TestClient(app=create_app(fast(settings))) as client:
        response = put(client, settings, "http://127.0.0.1:9/hook")

    assert response.status_code == 200, response.text


def test_a_body_without_a_url_is_refused_naming_it(
    client: TestClient[Any], settings: Settings
) -> None:
    headers = auth(settings, "t_acme", "admin")

    missing = client.put(PATH, json={}, headers=headers)
    extra = client.put(PATH, json={"url": PUBLIC_URL, "secret": "x"}, headers=headers)

    assert missing.status_code == 400
    assert "`url`" in missing.json()["detail"]
    assert extra.status_code == 400
    assert "secret" in extra.json()["detail"]


@pytest.fixture
def private_client(settings: Settings) -> Iterator[TestClient[Any]]:
    with TestClient(app=create_app(fast(settings))) as client:
        yield client


def test_the_delivery_log_lists_the_tenants_deliveries_newest_first(
    private_client: TestClient[Any], settings: Settings
) -> None:
    from application.bootstrap import build_webhook_delivery
    from tests.integration.webhook_support import Queue

    put(private_client, settings, "http://127.0.0.1:9/hook")
    put(private_client, settings, "http://127.0.0.1:9/hook", tenant="t_other")
    for n in range(3):
        record_notice(settings, f"budget.threshold_crossed/t_acme/2026-11-01/{n}")
    record_notice(settings, "anomaly.opened/t_other/1", "t_other")
    services = private_client.app.state.services
    build_webhook_delivery(services, Queue()).dispatcher.dispatch()
    headers = auth(settings, "t_acme", "admin")

    listed = private_client.get(f"{PATH}/deliveries", headers=headers).json()
    limited = private_client.get(f"{PATH}/deliveries?limit=2", headers=headers).json()
    pending = private_client.get(f"{PATH}/deliveries?status=pending", headers=headers)
    dead = private_client.get(f"{PATH}/deliveries?status=dead", headers=headers)

    ids = [d["id"] for d in listed["deliveries"]]
    assert ids == [f"budget.threshold_crossed/t_acme/2026-11-01/{n}" for n in (2, 1, 0)]
    first = listed["deliveries"][0]
    assert first["status"] == "pending"
    assert first["attempts"] == 0
    assert first["next_attempt_at"] is not None
    assert first["delivered_at"] is None
    assert [d["id"] for d in limited["deliveries"]] == ids[:2]
    assert len(pending.json()["deliveries"]) == 3
    assert dead.json()["deliveries"] == []


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("status=lost", "status: must be one of pending, delivered, dead, cancelled"),
        ("limit=0", "limit: must be an integer from 1 to 500"),
        ("limit=abc", "limit: must be an integer from 1 to 500"),
    ],
)
def test_a_bad_delivery_log_parameter_is_refused_naming_it(
    client: TestClient[Any], settings: Settings, query: str, detail: str
) -> None:
    response = client.get(
        f"{PATH}/deliveries?{query}", headers=auth(settings, "t_acme", "admin")
    )

    assert response.status_code == 400
    assert response.json() == {"status_code": 400, "detail": detail}
