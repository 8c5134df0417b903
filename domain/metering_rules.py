"""The validation rules a metering event must pass before it is recorded.

Each rule is a function named for what it checks; each failure says which field
broke which rule, e.g. ``quantity: must be >= 0``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.values import (
    InvalidValue,
    UsageFacts,
    as_utc,
    check_identifier,
    check_storable_text,
    normalise_slug,
    parse_quantity,
)

MAX_FUTURE_SKEW = timedelta(minutes=5)
EARLIEST_USAGE = datetime(2000, 1, 1, tzinfo=UTC)
MAX_PROPERTIES = 32
MAX_PROPERTY_KEY_LENGTH = 64
MAX_PROPERTY_TEXT_LENGTH = 256
MAX_PROPERTIES_SIZE = 4096


class EventRejected(ValueError):
    """An event broke a rule; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _field(name: str, check: Any, value: Any) -> Any:
    try:
        return check(value)
    except InvalidValue as e:
        raise EventRejected(name, str(e)) from None


def check_occurred_within_acceptance(
    occurred_at: datetime, now: datetime, window: timedelta, *, backfill: bool
) -> datetime:
    """An event may not be from the future, nor older than the acceptance window."""
    utc: datetime = _field("timestamp", as_utc, occurred_at)
    if utc < EARLIEST_USAGE:
        raise EventRejected("timestamp", "must be on or after 2000-01-01T00:00:00Z")
    if utc > now + MAX_FUTURE_SKEW:
        raise EventRejected(
            "timestamp", "must not be more than 5 minutes in the future"
        )
    if not backfill and utc < now - window:
        raise EventRejected(
            "timestamp",
            f"is older than the tenant's acceptance window of {window.days} days; "
            "older usage enters only through an ops backfill",
        )
    return utc


def check_properties_are_flat_and_small(
    properties: Mapping[str, Any],
) -> dict[str, Any]:
    """Properties are a small flat object of scalar values PostgreSQL can store."""
    if len(properties) > MAX_PROPERTIES:
        raise EventRejected("properties", f"must have at most {MAX_PROPERTIES} keys")
    size = 2
    for key, value in properties.items():
        if not key or len(key) > MAX_PROPERTY_KEY_LENGTH:
            raise EventRejected(
                "properties",
                f"keys must be 1 to {MAX_PROPERTY_KEY_LENGTH} characters",
            )
        _field("properties", check_storable_text, key)
        if isinstance(value, str):
            _field(f"properties.{key}", check_storable_text, value)
            if len(value) > MAX_PROPERTY_TEXT_LENGTH:
                raise EventRejected(
                    f"properties.{key}",
                    f"must be at most {MAX_PROPERTY_TEXT_LENGTH} characters",
                )
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise EventRejected(f"properties.{key}", "must be a finite number")
        elif value is not None and not isinstance(value, bool | int):
            raise EventRejected(
                f"properties.{key}", "must be a string, number, boolean or null"
            )
        size += len(key) + len(str(value)) + 6
    if size > MAX_PROPERTIES_SIZE:
        raise EventRejected(
            "properties", f"must be at most {MAX_PROPERTIES_SIZE} bytes in all"
        )
    return dict(properties)


def validate_usage_event(  # noqa: PLR0913 - one argument per event field
    *,
    event_id: str,
    workspace_id: str,
    product_area: str,
    unit: str,
    quantity: str,
    timestamp: datetime,
    properties: Mapping[str, Any],
    now: datetime,
    acceptance_window: timedelta,
    backfill: bool = False,
) -> UsageFacts:
    """Check every rule and return the event's normalised facts.

    `quantity` is the text as sent (a JSON string's content or a JSON number's
    literal): it must follow the one quantity grammar."""
    return UsageFacts(
        event_id=_field("id", check_identifier, event_id),
        workspace_id=_field("workspace_id", check_identifier, workspace_id),
        product_area=_field("product_area", normalise_slug, product_area),
        unit=_field("unit", normalise_slug, unit),
        quantity=_field("quantity", parse_quantity, quantity),
        occurred_at=check_occurred_within_acceptance(
            timestamp, now, acceptance_window, backfill=backfill
        ),
        properties=check_properties_are_flat_and_small(properties),
    )
