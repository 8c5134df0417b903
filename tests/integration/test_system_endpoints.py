"""The endpoints anyone may call: metrics, and the API's browsable schema."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

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


def test_the_schema_page_loads_everything_from_this_app(
    client: TestClient[Any],
) -> None:
    page = client.get("/schema")

    assert page.status_code == 200
    assert "SwaggerUIBundle" in page.text
    loaded = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert len(loaded) >= 4  # the scripts, the stylesheet, the icon
    for url in loaded:
        assert urlsplit(url).netloc == "", f"{url} is on another host"
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    css = client.get(next(u for u in loaded if u.endswith(".css"))).text
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", css)


def test_the_schema_page_and_its_assets_need_no_token(
    client: TestClient[Any],
) -> None:
    assert client.get("/schema/swagger").status_code == 200
    assert client.get("/schema/assets/swagger-ui.css").status_code == 200
    assert client.get("/schema/openapi.json").status_code == 200
