"""schemathesis against /schema/openapi.json: no 5xx, with valid and invalid tokens."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from schemathesis import GenerationMode

from tests.e2e.conftest import Service
from tests.support import auth

pytestmark = pytest.mark.timeout(900)


def identities(service: Service) -> list[dict[str, str]]:
    s = service.settings
    return [
        {},
        {"Authorization": "Bearer not-a-token"},
        auth(s, "t_fuzz", "admin"),
        auth(s, "t_fuzz", "metering"),
        auth(s, "t_fuzz", "ops"),
        auth(s, "t_fuzz", "auditor"),
        auth(s, "t_fuzz", "platform"),
        auth(s, "t_fuzz", "member"),
    ]


def check_operation(operation: Any, service: Service, mode: GenerationMode) -> None:
    @hyp_settings(
        max_examples=12, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def no_server_error(case: Any) -> None:
        for headers in identities(service):
            response = case.call(base_url=service.base_url, headers=headers, timeout=30)
            assert response.status_code < 500, (
                case.as_curl_command(headers),
                response.text,
            )
            content_type = (response.headers.get("content-type") or [""])[0]
            if response.status_code >= 400 and content_type.startswith(
                "application/json"
            ):
                assert {"status_code", "detail"} <= set(response.json())

    no_server_error()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_makes_the_server_fail(
    service: Service, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{service.base_url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12  # every documented operation is exercised

    for operation in operations:
        check_operation(operation, service, mode)
