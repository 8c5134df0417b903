"""The endpoints anyone may call: metrics, and the API's browsable schema."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient


def test_metrics_say_their_text_format_and_charset_once(
    client: TestClient[Any],
) -> None:
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"] == (
        "text/plain; version=0.0.4; charset=utf-8"
    )
    assert "# TYPE billing_http_request_duration_seconds histogram" in response.text
