"""Query parameters every controller reads the same way, and the request id.

Parameters arrive as text and are checked here, strictly (ASCII digits only:
str.isdigit() and \\d also accept superscripts and other scripts' digits); a bad
one is a 400 naming it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from litestar import Request

from application.projecting.progress import parse_positions
from domain.periods import check_period_spec
from domain.values import InvalidValue, as_utc, check_identifier
from projections.history import Cut

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
    return parse_instant(value, "since")


def request_id(request: Request[Any, Any, Any]) -> str:
    """The id RequestContextMiddleware gave this request (echoed as X-Request-ID)."""
    return str(request.scope.get("state", {}).get("request_id", ""))


def parse_instant(value: str | None, field: str) -> datetime | None:
    """An RFC 3339 instant with its UTC offset (None when not given)."""
    if not value:
        return None
    try:
        instant = datetime.fromisoformat(value)
        if instant.tzinfo is None:
            raise ValueError
        return as_utc(instant)
    except (ValueError, InvalidValue):
        raise InvalidParameter(
            f"{field}: must be an RFC 3339 time with a UTC offset,"
            " e.g. 2026-11-12T18:00:00Z"
        ) from None


def parse_cut(
    as_of: str | None, position: str | None, positions: str | None = None
) -> Cut:
    """The point of the history an auditor asks about: `as_of` an instant,
    `position` (of metering; the others as they stood when it was recorded)
    or `positions` (one per upstream, `metering:120,tenant_settings:4`)."""
    given = [
        n
        for n, v in (("as_of", as_of), ("position", position), ("positions", positions))
        if v
    ]
    if len(given) != 1:
        raise InvalidParameter(
            "as_of: give exactly one of as_of=<RFC 3339 instant>, position=<N>"
            " or positions=<upstream:N,...>"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if positions:
        try:
            return Cut(parse_positions(positions))
        except ValueError as e:
            raise InvalidParameter(f"positions: {e}") from None
    metering = parse_position(position, "position")
    if metering is not None:
        return Cut({"metering": metering})
    return Cut({}, parse_instant(as_of, "as_of"))


def parse_period(value: str | None) -> str:
    """`current` (default), `previous` or YYYY-MM; a 400 naming `period` else."""
    spec = value or "current"
    check_period_spec(spec)
    return spec


def parse_identifier(value: str | None, field: str) -> str | None:
    """An optional identifier (e.g. `workspace_id`); a 400 naming it if bad."""
    if value is None:
        return None
    try:
        return check_identifier(value)
    except InvalidValue as e:
        raise InvalidParameter(f"{field}: {e}") from None


def parse_choice(value: str | None, field: str, choices: Sequence[str]) -> str | None:
    """An optional value out of `choices`; a 400 naming `field` else."""
    if value is not None and value not in choices:
        raise InvalidParameter(f"{field}: must be one of {', '.join(choices)}")
    return value
