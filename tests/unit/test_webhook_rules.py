"""Webhook rules with no services: addresses, URLs, signatures, retries, settings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress

import pytest
from standardwebhooks import Webhook

from application.notifying.addresses import (
    InvalidWebhookUrl,
    RefusedDestination,
    UnresolvableHost,
    address_problem,
    check_destination,
    parse_url,
)
from application.notifying.delivering import RetryPolicy, retryable
from application.notifying.dispatcher import webhook_body
from application.notifying.sending import Answer
from application.notifying.signing import new_secret, signed_headers
from application.notifying.store import PendingNotice
from application.settings import ConfigurationError, Settings


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "1.1.1.1"],
)
def test_a_public_address_has_no_problem(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("10.255.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("255.255.255.255", "reserved"),
        ("224.0.0.251", "multicast"),
        ("100.64.1.1", "non-public"),
        ("198.18.0.1", "private"),  # benchmarking
        ("192.0.2.1", "private"),  # documentation
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1%eth0", "link-local"),
        ("fd12:3456::1", "private"),
        ("fec0::1", "site-local"),
        ("ff05::2", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "reserved"),  # NAT64 around 169.254.169.254
        ("2001:db8::1", "private"),
    ],
)
def test_every_kind_of_non_public_address_is_named(address: str, problem: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem


def test_a_url_is_split_into_what_the_request_needs() -> None:
    assert parse_url("https://Hooks.Example.com/a/b?x=1", allow_private=False) == (
        "https",
        "hooks.example.com",
        443,
        "/a/b?x=1",
    )
    assert parse_url("http://[::1]:8080", allow_private=True) == (
        "http",
        "::1",
        8080,
        "/",
    )


def resolver(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda host, port: list(addresses)


def test_a_name_is_refused_if_any_address_it_resolves_to_is_not_public() -> None:
    with pytest.raises(RefusedDestination) as refused:
        check_destination(
            "https://hooks.test/x",
            allow_private=False,
            resolve=resolver("93.184.215.14", "10.0.0.1"),
        )

    assert str(refused.value) == (
        "url: hooks.test (10.0.0.1) is a private address;"
        " webhooks are sent to public addresses only"
    )


def test_a_checked_destination_keeps_the_host_and_every_address() -> None:
    destination = check_destination(
        "https://hooks.test:8443/x",
        allow_private=False,
        resolve=resolver("93.184.215.14", "2606:4700::1111"),
    )

    assert destination.host == "hooks.test"
    assert destination.port == 8443
    assert destination.addresses == ("93.184.215.14", "2606:4700::1111")


def test_a_name_that_does_not_resolve_is_its_own_error() -> None:
    with pytest.raises(UnresolvableHost):
        check_destination(
            "https://hooks.test/", allow_private=False, resolve=resolver()
        )


@pytest.mark.parametrize(
    "url",
    [
        "",
        "https//x",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "https://x\n.com",
        "https://93.184.215.14:0/",
    ],
)
def test_what_is_not_an_https_url_is_refused(url: str) -> None:
    with pytest.raises(InvalidWebhookUrl, match=r"^url: "):
        parse_url(url, allow_private=False)


def test_the_signature_is_hmac_sha256_over_id_timestamp_and_body() -> None:
    secret = new_secret()
    body = '{"type":"anomaly.opened","data":{"x":"1"}}'

    headers = signed_headers(secret, "n1", 1_790_000_000, body)

    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"n1.1790000000.{body}".encode(), hashlib.sha256).digest()
    assert headers == {
        "webhook-id": "n1",
        "webhook-timestamp": "1790000000",
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def test_a_secret_is_32_random_bytes_in_the_standard_form() -> None:
    secrets = {new_secret() for _ in range(50)}

    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
        Webhook(secret)  # the reference library accepts it


def test_the_body_keeps_the_recorded_data_exactly() -> None:
    notice = PendingNotice(
        "n1", "t_a", "budget.threshold_crossed", '{"pct": 75, "x": 0.1}', 7, True
    )

    assert webhook_body(notice) == (
        '{"type":"budget.threshold_crossed","data":{"pct": 75, "x": 0.1}}'
    )


def policy(**kwargs: object) -> RetryPolicy:
    values: dict[str, object] = {
        "max_attempts": 8,
        "backoff_seconds": 10.0,
        "max_backoff_seconds": 3600.0,
    }
    return RetryPolicy(**(values | kwargs))  # type: ignore[arg-type]


def test_backoff_is_full_jitter_over_a_doubling_capped_step() -> None:
    highest = policy(uniform=lambda low, high: high)
    lowest = policy(uniform=lambda low, high: low)

    assert [highest.delay(n) for n in range(1, 11)] == [
        10,
        20,
        40,
        80,
        160,
        320,
        640,
        1280,
        2560,
        3600,
    ]
    assert {lowest.delay(n) for n in range(1, 11)} == {0}


def test_a_retry_after_answer_is_waited_for_within_the_cap() -> None:
    lowest = policy(uniform=lambda low, high: low)

    assert lowest.delay(1, retry_after=120) == 120
    assert lowest.delay(1, retry_after=86_400) == 3600


@pytest.mark.parametrize(
    ("answer", "step"),
    [
        (Answer(200, None, 5), "delivered"),
        (Answer(204, None, 5), "delivered"),
        (Answer(500, "answered HTTP 500", 5), "pending"),
        (Answer(503, "answered HTTP 503", 5), "pending"),
        (Answer(429, "answered HTTP 429", 5), "pending"),
        (Answer(None, "timeout", 5), "pending"),
        (Answer(None, "ConnectionRefusedError: refused", 5), "pending"),
        (Answer(400, "answered HTTP 400", 5), "dead"),
        (Answer(404, "answered HTTP 404", 5), "dead"),
        (Answer(301, "answered HTTP 301", 5), "dead"),
        (Answer(None, "refused: url: ...", 5, refused=True), "dead"),
    ],
)
def test_what_is_retried_and_what_ends_the_delivery(answer: Answer, step: str) -> None:
    assert policy().next_step(answer, attempt=1)[0] == step
    assert retryable(answer) == (step == "pending")


def test_the_last_try_ends_the_delivery_whatever_the_answer() -> None:
    failed = Answer(500, "answered HTTP 500", 5)

    assert policy(max_attempts=3).next_step(failed, attempt=2)[0] == "pending"
    assert policy(max_attempts=3).next_step(failed, attempt=3) == ("dead", None)


def test_webhook_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "BILLING_WEBHOOK_ALLOW_PRIVATE": "true",
            "BILLING_WEBHOOK_TIMEOUT_SECONDS": "2.5",
            "BILLING_WEBHOOK_MAX_ATTEMPTS": "3",
            "BILLING_WEBHOOK_BACKOFF_SECONDS": "0.5",
            "BILLING_WEBHOOK_MAX_BACKOFF_SECONDS": "30",
            "BILLING_WEBHOOK_RECOVER_AFTER_SECONDS": "10",
        }
    )

    assert settings.webhook_allow_private is True
    assert settings.webhook_timeout_seconds == 2.5
    assert settings.webhook_max_attempts == 3
    assert settings.webhook_backoff_seconds == 0.5
    assert settings.webhook_max_backoff_seconds == 30
    assert settings.webhook_recover_after_seconds == 10
    assert Settings.from_env({}).webhook_allow_private is False


def test_a_malformed_private_delivery_flag_fails_fast() -> None:
    with pytest.raises(ConfigurationError, match="BILLING_WEBHOOK_ALLOW_PRIVATE"):
        Settings.from_env({"BILLING_WEBHOOK_ALLOW_PRIVATE": "maybe"})
