"""Price books: a price per product area and unit, flat or graduated, and charges.

A graduated price's tiers cut the billable quantity (what is left after the
included quantity): tier i covers (up_to[i-1], up_to[i]], the last tier has no
upper bound. The amount of a line is exact; its charge is rounded once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    localcontext,
)
from typing import Any, TypeVar

from domain.currencies import check_currency, round_money
from domain.values import (
    ZERO,
    InvalidValue,
    canonical_decimal,
    decimal_text,
    normalise_quantity,
    normalise_slug,
)

MAX_PRICES = 500
MAX_TIERS = 20
MAX_PRICE_FRACTION_DIGITS = 12
_PRICE_LIMIT = Decimal(10) ** 12
_PRICE_STEP = Decimal("1E-12")
# The grammar of values.parse_quantity, for prices too: no sign, exponent,
# separators or other scripts' digits.
_DECIMAL_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_NOT_TEXT = 'must be a decimal string such as "12.5"'
_GRAMMAR = (
    "must be written with ASCII digits and at most one decimal point, e.g. 12.5 "
    "(no sign, exponent, separators or spaces)"
)
_PRICE_FIELDS = ("product_area", "unit", "included_quantity", "unit_price", "tiers")
_TIER_FIELDS = ("up_to", "unit_price")
_ONE_OF = "must have exactly one of unit_price and tiers"

# Wide enough for any quantity (27 digits) times any price (24 digits); an
# operation that would have to round raises instead, so an amount is exact.
_EXACT = Context(prec=100, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Inexact])
# Checks compare a value with its rounded self: they may round, but never in
# whatever context the caller happens to have set.
_CHECKING = Context(prec=100, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation])

_T = TypeVar("_T")


class InvalidPriceBook(ValueError):
    """A price book broke a rule; `field` is its path, e.g. prices[1].tiers[0].up_to."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Tier:
    """A unit price up to a cumulative billable quantity (None: no upper bound)."""

    up_to: Decimal | None
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class Price:
    """The price of one product area and unit, after a free included quantity."""

    product_area: str
    unit: str
    unit_price: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    included_quantity: Decimal = ZERO

    def billable(self, quantity: Decimal) -> Decimal:
        """The quantity beyond the included quantity, never below zero."""
        if not quantity.is_finite():
            raise InvalidValue("must be a finite decimal number")
        with localcontext(_EXACT):
            return max(ZERO, quantity - self.included_quantity)

    def slices(self, quantity: Decimal) -> list[tuple[Tier, Decimal]]:
        """The billable quantity cut into the tiers it reaches, lowest first."""
        billable = self.billable(quantity)
        cut: list[tuple[Tier, Decimal]] = []
        floor = ZERO
        with localcontext(_EXACT):
            for tier in self._graduation():
                top = billable if tier.up_to is None else min(billable, tier.up_to)
                if top <= floor:
                    break
                cut.append((tier, top - floor))
                floor = top
        return cut

    def amount(self, quantity: Decimal) -> Decimal:
        """The exact, unrounded amount: each slice at its tier's unit price."""
        with localcontext(_EXACT):
            return sum(
                (part * tier.unit_price for tier, part in self.slices(quantity)), ZERO
            )

    def charge(self, quantity: Decimal, currency: str) -> Decimal:
        """The amount rounded once, for the whole line, to the currency's minor unit."""
        return round_money(self.amount(quantity), currency)

    def _graduation(self) -> tuple[Tier, ...]:
        if self.unit_price is not None:
            return (Tier(None, self.unit_price),)
        return self.tiers


@dataclass(frozen=True, slots=True)
class PriceBook:
    """A tenant's prices, all in one currency."""

    currency: str
    prices: tuple[Price, ...]

    def price_of(self, product_area: str, unit: str) -> Price | None:
        """The price of a product area and unit; None when it is unpriced."""
        return next(
            (
                p
                for p in self.prices
                if (p.product_area, p.unit) == (product_area, unit)
            ),
            None,
        )

    def checked(self) -> PriceBook:
        """The book in canonical form (self when it already is), or InvalidPriceBook
        naming the first field that breaks a rule."""
        with localcontext(_CHECKING):
            book = PriceBook(
                _field("currency", check_currency, self.currency),
                _checked_prices(self.prices),
            )
        return self if book == self else book


def parse_price_book(data: Mapping[str, Any]) -> PriceBook:
    """Read a price book from its JSON shape (money and quantities as strings)."""
    if not isinstance(data, Mapping):
        raise InvalidPriceBook("price_book", "must be a JSON object")
    # Other top-level keys (effective_from; tenant_id, period... when a GET answer
    # is sent back) belong to the caller.
    currency = _required(data, "", "currency")
    prices = _items("prices", _required(data, "", "prices"), MAX_PRICES, "price")
    with localcontext(_CHECKING):
        parsed = tuple(_parse_price(f"prices[{i}]", p) for i, p in enumerate(prices))
        return PriceBook(currency, parsed).checked()


def price_book_data(book: PriceBook) -> dict[str, Any]:
    """A book in its JSON shape, decimals as plain text: parse_price_book's inverse."""
    with localcontext(_CHECKING):
        return {
            "currency": book.currency,
            "prices": [_price_data(p) for p in book.prices],
        }


def _price_data(price: Price) -> dict[str, Any]:
    data: dict[str, Any] = {"product_area": price.product_area, "unit": price.unit}
    if price.included_quantity:
        data["included_quantity"] = decimal_text(price.included_quantity)
    if price.unit_price is not None:
        data["unit_price"] = decimal_text(price.unit_price)
    else:
        data["tiers"] = [
            {
                "up_to": None if t.up_to is None else decimal_text(t.up_to),
                "unit_price": decimal_text(t.unit_price),
            }
            for t in price.tiers
        ]
    return data


# Checking: every value, in the dataclass form.


def _checked_prices(prices: tuple[Price, ...]) -> tuple[Price, ...]:
    _check_count("prices", len(prices), MAX_PRICES, "price")
    checked = tuple(_checked_price(f"prices[{i}]", p) for i, p in enumerate(prices))
    first: dict[tuple[str, str], int] = {}
    for i, price in enumerate(checked):
        j = first.setdefault((price.product_area, price.unit), i)
        if j != i:
            raise InvalidPriceBook(
                f"prices[{i}]", f"repeats the product_area and unit of prices[{j}]"
            )
    return checked


def _checked_price(path: str, price: Price) -> Price:
    product_area = _field(f"{path}.product_area", normalise_slug, price.product_area)
    unit = _field(f"{path}.unit", normalise_slug, price.unit)
    if (price.unit_price is None) == (not price.tiers):
        raise InvalidPriceBook(path, _ONE_OF)
    unit_price = price.unit_price
    if unit_price is not None:
        unit_price = _field(f"{path}.unit_price", _normalise_unit_price, unit_price)
    return Price(
        product_area,
        unit,
        unit_price,
        tiers=_checked_tiers(f"{path}.tiers", price.tiers) if price.tiers else (),
        included_quantity=_field(
            f"{path}.included_quantity", normalise_quantity, price.included_quantity
        ),
    )


def _checked_tiers(path: str, tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
    _check_count(path, len(tiers), MAX_TIERS, "tier")
    checked: list[Tier] = []
    floor = ZERO
    for i, tier in enumerate(tiers):
        last = i == len(tiers) - 1
        checked.append(_checked_tier(f"{path}[{i}]", tier, floor, last=last))
        if checked[-1].up_to is not None:
            floor = checked[-1].up_to
    return tuple(checked)


def _checked_tier(path: str, tier: Tier, floor: Decimal, *, last: bool) -> Tier:
    unit_price = _field(f"{path}.unit_price", _normalise_unit_price, tier.unit_price)
    if tier.up_to is None:
        if not last:
            raise InvalidPriceBook(
                f"{path}.up_to", "must be set on all but the last tier"
            )
        return Tier(None, unit_price)
    if last:
        raise InvalidPriceBook(f"{path}.up_to", "must be null on the last tier")
    up_to = _field(f"{path}.up_to", normalise_quantity, tier.up_to)
    if up_to <= floor:
        raise InvalidPriceBook(
            f"{path}.up_to",
            f"must be greater than {decimal_text(floor)}"
            + (", the up_to of the tier before" if floor else ""),
        )
    return Tier(up_to, unit_price)


def _normalise_unit_price(value: Decimal) -> Decimal:
    """A finite price >= 0, below 10^12, of at most 12 decimal places."""
    if not value.is_finite():
        raise InvalidValue("must be a finite decimal number")
    if value < 0:
        raise InvalidValue("must be >= 0")
    if value >= _PRICE_LIMIT:
        raise InvalidValue("must be less than 10^12")
    if value != value.quantize(_PRICE_STEP):
        raise InvalidValue(
            f"must have at most {MAX_PRICE_FRACTION_DIGITS} decimal places"
        )
    return canonical_decimal(value)


def _check_count(path: str, count: int, most: int, what: str) -> None:
    if count == 0:
        raise InvalidPriceBook(path, f"must list at least one {what}")
    if count > most:
        raise InvalidPriceBook(path, f"must list at most {most} {what}s")


def _field(path: str, check: Callable[[Any], _T], value: Any) -> _T:
    try:
        return check(value)
    except InvalidValue as e:
        raise InvalidPriceBook(path, str(e)) from None


# Parsing: the JSON shape, its types and its grammar; checked() does the rest.


def _parse_price(path: str, data: Any) -> Price:
    if not isinstance(data, Mapping):
        raise InvalidPriceBook(path, "must be an object")
    _refuse_unknown(path, data, _PRICE_FIELDS)
    product_area, unit = _text(data, path, "product_area"), _text(data, path, "unit")
    if ("unit_price" in data) == ("tiers" in data):
        raise InvalidPriceBook(path, _ONE_OF)
    return Price(
        product_area,
        unit,
        unit_price=_price_number(data, path) if "unit_price" in data else None,
        tiers=_parse_tiers(f"{path}.tiers", data["tiers"]) if "tiers" in data else (),
        included_quantity=_number(
            f"{path}.included_quantity", data.get("included_quantity", 0)
        ),
    )


def _parse_tiers(path: str, value: Any) -> tuple[Tier, ...]:
    tiers = _items(path, value, MAX_TIERS, "tier")
    return tuple(_parse_tier(f"{path}[{i}]", tier) for i, tier in enumerate(tiers))


def _parse_tier(path: str, data: Any) -> Tier:
    if not isinstance(data, Mapping):
        raise InvalidPriceBook(path, "must be an object")
    _refuse_unknown(path, data, _TIER_FIELDS)
    up_to = data.get("up_to")
    return Tier(
        None if up_to is None else _number(f"{path}.up_to", up_to),
        _price_number(data, path),
    )


def _price_number(data: Mapping[str, Any], path: str) -> Decimal:
    return _number(f"{path}.unit_price", _required(data, path, "unit_price"))


def _number(path: str, value: Any) -> Decimal:
    """A decimal string read exactly; a JSON integer is exact too, a float is not."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float):
        raise InvalidPriceBook(path, f"{_NOT_TEXT}: a JSON float may lose digits")
    if not isinstance(value, str):
        raise InvalidPriceBook(path, _NOT_TEXT)
    if _DECIMAL_TEXT.fullmatch(value) is None:
        negative = value.startswith("-") and _DECIMAL_TEXT.fullmatch(value[1:])
        raise InvalidPriceBook(path, "must be >= 0" if negative else _GRAMMAR)
    return Decimal(value)  # checked() bounds it


def _text(data: Mapping[str, Any], path: str, key: str) -> str:
    value = _required(data, path, key)
    if not isinstance(value, str):
        raise InvalidPriceBook(f"{path}.{key}", "must be a string")
    return value


def _items(path: str, value: Any, most: int, what: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidPriceBook(path, f"must be a list of {what}s")
    _check_count(path, len(value), most, what)
    return value


def _required(data: Mapping[str, Any], path: str, key: str) -> Any:
    if key not in data:
        raise InvalidPriceBook(f"{path}.{key}" if path else key, "is required")
    return data[key]


def _refuse_unknown(path: str, data: Mapping[Any, Any], known: tuple[str, ...]) -> None:
    # A misspelt key (included_quantiy) must not silently become a default.
    for key in data:
        if key not in known:
            raise InvalidPriceBook(
                path,
                f"has an unknown field {str(key)[:40]!r}; "
                f"the fields are {', '.join(known)}",
            )
