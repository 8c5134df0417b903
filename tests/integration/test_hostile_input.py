"""Hostile text and nesting into every field and parameter of every route.

Arbitrary Unicode (NUL, lone surrogates, control and combining characters,
right-to-left marks) and arbitrary nesting go into path parameters, query
parameters, JSON bodies and headers of every operation the OpenAPI document
lists, with a token that gets past the guard. Whatever comes in: no 5xx, a
refused request writes nothing, an accepted batch writes exactly what it
accepted, and every projection still reaches the head of its histories.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from application.settings import Settings
from tests.integration.test_auth_matrix import required_role
from tests.support import auth, event

pytestmark = pytest.mark.timeout(600)

NASTY = "\x00\x01\x1f\x7f\u0085\u00a0\u0301\u200b\u200e\u200f\u202e\u2028\ufeff\ufffe"
# Digits of other scripts (superscript, circled, Arabic-Indic, fullwidth) and
# the Kelvin sign: what lenient parsing would read as numbers or fold into ASCII.
NUMERIC = "0123456789.-+_ e\u00b2\u2460\u0661\u0662\uff11\u212a"
nasty_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(NASTY),
        st.sampled_from(NUMERIC),
        st.characters(codec=None),  # every code point, lone surrogates included
        st.characters(codec="ascii"),
    ),
    max_size=40,
)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), nasty_text)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(nasty_text, inner, max_size=4),
    ),
    max_leaves=12,
)


def deeply_nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def json_body(draw: st.DrawFn, path: str) -> bytes:
    """A body near what the route expects, with hostile values in its fields."""
    if draw(st.integers(0, 4)) == 0:
        return deeply_nested(draw(st.integers(500, 20_000))).encode()
    template: Any = {
        "/api/metering/corrections": {
            "action": draw(st.sampled_from(["void", "amend", "void_range"])),
            "event_id": "e1",
            "quantity": "1",
            "reason": "r",
            "filter": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00Z"},
        },
        "/api/ops/settings": {"timezone": "UTC", "grace_hours": 24},
    }.get(path, [event("e1")])
    target = template[0] if isinstance(template, list) else template
    for key in draw(st.lists(st.sampled_from(sorted(target)), max_size=3)):
        target[key] = draw(json_value)
    if isinstance(template, list) and draw(st.booleans()):
        target["properties"] = draw(st.dictionaries(nasty_text, json_leaf, max_size=3))
    return json.dumps(template, ensure_ascii=True).encode()  # surrogates as \\udxxx


def url_part(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def operations(client: TestClient[Any]) -> list[tuple[str, str, list[str], bool]]:
    """(method, path template, query parameter names, has a body) per operation;
    those that take input listed three times, so they are drawn more often."""
    schema = client.get("/schema/openapi.json").json()
    found = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            names = [p["name"] for p in operation.get("parameters", [])]
            takes_input = bool(names) or "requestBody" in operation or "{" in path
            found += [(method.upper(), path, names, "requestBody" in operation)] * (
                3 if takes_input else 1
            )
    return found


def heads(client: TestClient[Any]) -> dict[str, int]:
    ws = client.app.state.services.write_side
    return {app.name: app.head_position() for app in (ws.metering, ws.tenants)}


def every_projection_reaches_the_head(client: TestClient[Any]) -> None:
    projector = client.app.state.services.write_side.projector
    projector.advance_all()
    for status in projector.status():
        for upstream in status.upstreams:
            assert upstream.position == upstream.head, (status.name, upstream)


@given(data=st.data())
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_hostile_input_to_any_route_fails_the_server_or_writes_half(
    client: TestClient[Any], settings: Settings, data: st.DataObject
) -> None:
    method, template, query_names, has_body = data.draw(
        st.sampled_from(operations(client)), label="operation"
    )
    path = re.sub(
        r"\{[^}]+\}", lambda _: url_part(data.draw(nasty_text, label="path")), template
    )
    chosen = data.draw(st.lists(st.sampled_from(query_names or ["x"]), max_size=4))
    query = "&".join(
        f"{url_part(name)}={url_part(data.draw(nasty_text, label=name))}"
        for name in chosen
    )
    header_text = st.binary(max_size=20).map(
        lambda b: b.replace(b"\r", b"").replace(b"\n", b"")
    )
    role = data.draw(st.sampled_from([required_role(template), "member"]))
    headers = auth(settings, "t_h", role) | {
        "X-Request-ID": data.draw(header_text),  # any bytes: httpx sends bytes as is
        "User-Agent": data.draw(header_text),
        "content-type": "application/json",
    }
    body = data.draw(json_body(template)) if has_body else None
    before = heads(client)

    response = client.request(
        method, f"{path}?{query}" if query else path, content=body, headers=headers
    )

    assert response.status_code < 500, (method, path, query, body and body[:300])
    # Another tenant reads while the projections are behind whatever came in.
    other = client.get("/api/billing/usage", headers=auth(settings, "t_o", "admin"))
    assert other.status_code == 200, other.text
    after = heads(client)
    if response.status_code >= 400:
        assert after == before, "a refused request wrote something"
    elif template == "/api/metering/events":
        added = after["metering"] - before["metering"]
        assert added == response.json()["accepted"]
    every_projection_reaches_the_head(client)
