"""/metrics of `billing serve --workers 2` counts the requests of both processes."""

from __future__ import annotations

import re

import httpx

from application.settings import Settings
from tests.e2e.conftest import free_port
from tests.support import Process, env_for

REQUESTS = 60
COUNT = re.compile(
    r'^billing_http_request_duration_seconds_count\{method="GET",'
    r'route="/api/billing/usage",status="401"\} (\S+)$',
    re.MULTILINE,
)


def test_every_http_process_answers_metrics_for_all_of_them(
    settings: Settings,
) -> None:
    port = free_port()
    server = Process(
        ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env_for(settings),
    )
    try:
        server.wait_for_output("Application startup complete", count=2)
        base = f"http://127.0.0.1:{port}"
        for _ in range(REQUESTS):  # a new connection each: both processes serve
            assert httpx.get(f"{base}/api/billing/usage").status_code == 401
        counts = []
        for _ in range(10):
            body = httpx.get(f"{base}/metrics").text
            found = COUNT.search(body)
            assert found, body[:2000]
            counts.append(float(found.group(1)))
    finally:
        assert server.stop() == 0, server.output()

    assert counts == [REQUESTS] * 10
