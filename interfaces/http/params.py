"""Query parameters every controller reads the same way, and the request id.

Parameters arrive as text and are checked here, strictly (ASCII digits only:
str.isdigit() and \\d also accept superscripts and other scripts' digits); a bad
one is a 400 naming it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from litestar import Request

from application.projecting.progress import parse_positions
from domain.values import InvalidValue, as_utc

_DIGITS = re.compile(r"[0-9]{1,18}")


class InvalidParameter(ValueError):
    """A query parameter breaks a rule; the message names it."""


def parse_position(value: str | None, field: str = "min_position") -> int | None:
    if value is None or value == "":
        return None
    if _DIGITS.fullmatch(value) is None:
        raise InvalidParameter(f"{field}: must be a non-negative integer")
    return int(value)


def parse_min_positions(
    min_position: str | None, min_positions: str | None
) -> dict[str, int]:
    """What a read waits for: `min_position` (metering, as an ingest answers it)
    and `min_positions` (`metering:120,tenant_settings:4`, as writes answer)."""
    wanted: dict[str, int] = {}
    if min_positions:
        try:
            wanted = parse_positions(min_positions)
        except ValueError as e:
            raise InvalidParameter(f"min_positions: {e}") from None
    metering = parse_position(min_position)
    if metering is not None:
        wanted["metering"] = max(wanted.get("metering", 0), metering)
    return wanted


def parse_limit(value: str | None, *, default: int = 50, maximum: int = 500) -> int:
    if value is None or value == "":
        return default
    if _DIGITS.fullmatch(value) is None or not 1 <= int(value) <= maximum:
        raise InvalidParameter(f"limit: must be an integer from 1 to {maximum}")
    return int(value)


def parse_since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except (ValueError, InvalidValue):
        raise InvalidParameter(
            "since: must be an ISO 8601 time with a UTC offset,"
            " e.g. 2026-11-01T00:00:00Z"
        ) from None


def request_id(request: Request[Any, Any, Any]) -> str:
    """The id RequestContextMiddleware gave this request (echoed as X-Request-ID)."""
    return str(request.scope.get("state", {}).get("request_id", ""))
