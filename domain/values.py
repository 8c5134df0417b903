"""Shared values of the billing domain: identifiers, slugs, quantities, instants."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

# A fixed namespace makes aggregate ids reproducible from natural keys.
BILLING_NAMESPACE = UUID("6f1c1e0a-2a5e-4f7e-9a39-3c1b0c9d6b21")

MAX_ID_LENGTH = 128
MAX_SLUG_LENGTH = 64
MAX_INTEGER_DIGITS = 18
MAX_FRACTION_DIGITS = 9

_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]*")
_SLUG_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.\-]*")
# The one quantity grammar: ASCII digits, optionally one decimal point followed by
# digits. No sign, exponent, separators, spaces or other scripts' digits: a billing
# system must never read "1_000", "+5" or "١٢" as a number someone meant.
_QUANTITY_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# What PostgreSQL text and json cannot hold: NUL, and lone UTF-16 surrogates
# (they have no UTF-8 encoding).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

ZERO = Decimal(0)
_QUANTITY_LIMIT = Decimal(10) ** MAX_INTEGER_DIGITS
_SMALLEST_STEP = Decimal(1).scaleb(-MAX_FRACTION_DIGITS)


class InvalidValue(ValueError):
    """A value broke a rule; the message names the rule in plain words."""


def check_identifier(value: str) -> str:
    """Return the id unchanged if it is non-empty, bounded and safe."""
    if not value:
        raise InvalidValue("must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidValue(f"must be at most {MAX_ID_LENGTH} characters")
    if _ID_PATTERN.fullmatch(value) is None:
        raise InvalidValue(
            "may contain only letters, digits and . _ : - and must start with a "
            "letter or digit"
        )
    return value


def normalise_slug(value: str) -> str:
    """Return the slug in canonical form (trimmed, lowercase) if it is valid.

    Only ASCII is folded: a non-ASCII character (the Kelvin sign, a non-breaking
    space) is refused, never folded into a different key."""
    if not value.isascii():
        raise InvalidValue("may contain only ASCII lowercase letters, digits and _ - .")
    slug = value.strip().lower()
    if not slug:
        raise InvalidValue("must not be empty")
    if len(slug) > MAX_SLUG_LENGTH:
        raise InvalidValue(f"must be at most {MAX_SLUG_LENGTH} characters")
    if _SLUG_PATTERN.fullmatch(slug) is None:
        raise InvalidValue(
            "may contain only lowercase letters, digits and _ - . and must start "
            "with a letter or digit"
        )
    return slug


def normalise_quantity(value: Decimal) -> Decimal:
    """Return a finite, non-negative quantity of bounded precision, canonical form."""
    if not value.is_finite():
        raise InvalidValue("must be a finite decimal number")
    if value < 0:
        raise InvalidValue("must be >= 0")
    # The magnitude first: quantizing a huge value would overflow the context.
    if value >= _QUANTITY_LIMIT:
        raise InvalidValue(f"must be less than 10^{MAX_INTEGER_DIGITS}")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite, checked above
    if -exponent > MAX_FRACTION_DIGITS and value != value.quantize(_SMALLEST_STEP):
        raise InvalidValue(f"must have at most {MAX_FRACTION_DIGITS} decimal places")
    return canonical_decimal(value)


def parse_quantity(text: str) -> Decimal:
    """Read a quantity written in the one grammar (e.g. ``12.5``), exactly."""
    if _QUANTITY_TEXT.fullmatch(text) is None:
        if text.startswith("-") and _QUANTITY_TEXT.fullmatch(text[1:]):
            raise InvalidValue("must be >= 0")
        raise InvalidValue(
            "must be written with ASCII digits and at most one decimal point, "
            "e.g. 12.5 (no sign, exponent, separators or spaces)"
        )
    return normalise_quantity(Decimal(text))


def check_storable_text(value: str) -> str:
    """Refuse text PostgreSQL cannot store (NUL, lone surrogates)."""
    found = _UNSTORABLE.search(value)
    if found is not None:
        raise InvalidValue(f"must not contain the character U+{ord(found.group()):04X}")
    return value


def escape_unstorable(value: str) -> str:
    """The text with NUL and lone surrogates written as visible escapes (\\u0000).

    For what must be kept even when it holds such characters (an audit record
    of a request path): stored faithfully, readable, and never poison."""
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


def escape_unstorable_in(value: Any) -> Any:
    """`escape_unstorable` applied to every string in a JSON-like value."""
    if isinstance(value, str):
        return escape_unstorable(value)
    if isinstance(value, list | tuple):
        return type(value)(escape_unstorable_in(v) for v in value)
    if isinstance(value, dict):
        return {
            escape_unstorable_in(k): escape_unstorable_in(v) for k, v in value.items()
        }
    return value


def canonical_decimal(value: Decimal) -> Decimal:
    """Strip trailing zeros (12.50 -> 12.5) and never keep a positive exponent
    (1E+3 -> 1000). Tiny values may still print as 1E-9: decimal_text() is plain."""
    if value == 0:
        return ZERO
    normalised = value.normalize()
    if normalised.as_tuple().exponent > 0:  # type: ignore[operator]
        return normalised.quantize(Decimal(1))
    return normalised


def decimal_text(value: Decimal) -> str:
    """Render a decimal as plain text, never in exponent notation."""
    return format(canonical_decimal(value), "f")


def as_utc(instant: datetime) -> datetime:
    """Convert an aware datetime to UTC; a naive one breaks the rule."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidValue("must include a UTC offset, e.g. 2026-11-20T10:00:00Z")
    try:
        return instant.astimezone(UTC)
    except OverflowError:
        raise InvalidValue("is outside the supported range of dates") from None


def usage_record_id(tenant_id: str, event_id: str) -> UUID:
    """The aggregate id of a metered event: unique forever per (tenant, id)."""
    return uuid5(BILLING_NAMESPACE, f"usage/{tenant_id}/{event_id}")


def price_book_id(tenant_id: str) -> UUID:
    """The aggregate id of a tenant's price book history."""
    return uuid5(BILLING_NAMESPACE, f"price-book/{tenant_id}")


def budget_id(tenant_id: str) -> UUID:
    """The aggregate id of a tenant's budget history."""
    return uuid5(BILLING_NAMESPACE, f"budget/{tenant_id}")


def tenant_settings_id(tenant_id: str) -> UUID:
    """The aggregate id of a tenant's billing settings."""
    return uuid5(BILLING_NAMESPACE, f"tenant-settings/{tenant_id}")


@dataclass(frozen=True, slots=True)
class UsageFacts:
    """A validated metering event, normalised, with its time in UTC."""

    event_id: str
    workspace_id: str
    product_area: str
    unit: str
    quantity: Decimal
    occurred_at: datetime
    properties: dict[str, Any]

    def same_payload_as(self, other: UsageFacts) -> bool:
        """True when re-sending `other` under the same id is a harmless duplicate."""
        return (
            self.workspace_id == other.workspace_id
            and self.product_area == other.product_area
            and self.unit == other.unit
            and self.quantity == other.quantity
            and self.occurred_at == other.occurred_at
            and self.properties == other.properties
        )
