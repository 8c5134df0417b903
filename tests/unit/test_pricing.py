"""Price books: ISO 4217 currencies, graduated tiers, rounding, the JSON shape."""

from __future__ import annotations

import re
from decimal import ROUND_UP, Context, Decimal, localcontext
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.currencies import ISO_4217, check_currency, minor_units, round_money
from domain.pricing import (
    InvalidPriceBook,
    Price,
    PriceBook,
    Tier,
    parse_price_book,
    price_book_data,
)
from domain.values import InvalidValue

D = Decimal
WIDE = Context(prec=200)

DESIGN_EXAMPLE: dict[str, Any] = {
    "currency": "EUR",
    "prices": [
        {"product_area": "compute", "unit": "vcpu_hour", "unit_price": "0.045"},
        {
            "product_area": "ai",
            "unit": "token",
            "included_quantity": "1000000",
            "tiers": [
                {"up_to": "10000000", "unit_price": "0.000002"},
                {"up_to": None, "unit_price": "0.0000015"},
            ],
        },
    ],
}


def tokens() -> Price:
    """The DESIGN example's tiered price: 1M free, then 10M at 0.000002, then less."""
    price = parse_price_book(DESIGN_EXAMPLE).price_of("ai", "token")
    assert price is not None
    return price


def flat(unit_price: str, included: str = "0") -> Price:
    return Price("compute", "vcpu_hour", D(unit_price), included_quantity=D(included))


# ISO 4217


@pytest.mark.parametrize(
    ("currency", "units"),
    [
        *[(code, 2) for code in ("EUR", "USD")],
        *[(code, 0) for code in ("JPY", "KRW", "ISK", "CLP", "VND")],
        *[(code, 3) for code in ("KWD", "BHD", "JOD", "OMR", "TND", "IQD", "LYD")],
        *[(code, 4) for code in ("CLF", "UYW")],
    ],
)
def test_a_currency_has_the_minor_units_of_iso_4217(currency: str, units: int) -> None:
    assert check_currency(currency) == currency
    assert minor_units(currency) == units
    assert ISO_4217[currency] == units


@pytest.mark.parametrize(
    "code",
    [
        "XYZ",
        "eur",
        "Eur",
        "EURO",
        "",
        " EUR",
        "EUR\n",
        "\uff25\uff35\uff32",
        "HRK",
        "XXX",
        "XAU",
    ],
)
def test_only_an_active_iso_4217_code_with_minor_units_is_a_currency(
    code: str,
) -> None:
    with pytest.raises(InvalidValue, match="must be an ISO 4217 currency code"):
        check_currency(code)
    with pytest.raises(InvalidValue):
        minor_units(code)


def test_the_currency_table_holds_three_letter_codes_and_known_minor_units() -> None:
    assert all(len(code) == 3 and code.isascii() for code in ISO_4217)
    assert all(code.isupper() and code.isalpha() for code in ISO_4217)
    assert set(ISO_4217.values()) == {0, 2, 3, 4}


# Rounding


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        ("0.125", "EUR", "0.12"),
        ("0.135", "EUR", "0.14"),
        ("0.1251", "EUR", "0.13"),
        ("2.5", "JPY", "2"),
        ("3.5", "JPY", "4"),
        ("1.0005", "KWD", "1.000"),
        ("1.0015", "KWD", "1.002"),
        ("0.00005", "CLF", "0.0000"),
        ("0.00015", "CLF", "0.0002"),
        ("7", "EUR", "7.00"),
        ("-0.001", "EUR", "0.00"),
    ],
)
def test_money_rounds_half_even_to_the_minor_unit(
    amount: str, currency: str, rounded: str
) -> None:
    result = round_money(D(amount), currency)

    assert str(result) == rounded


def test_rounding_ignores_the_callers_decimal_context() -> None:
    with localcontext(Context(prec=3, rounding=ROUND_UP)):
        result = round_money(D("12345.675"), "EUR")

    assert result == D("12345.68")


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "1E+60"])
def test_rounding_refuses_what_is_not_an_amount(amount: str) -> None:
    with pytest.raises(InvalidValue):
        round_money(D(amount), "EUR")


# Charges


def test_tiers_price_the_quantity_beyond_the_included_quantity() -> None:
    price = tokens()

    slices = price.slices(D(25_000_000))

    # 24M billable: the first 10M at 0.000002, the remaining 14M at 0.0000015.
    assert [(tier.unit_price, part) for tier, part in slices] == [
        (D("0.000002"), D(10_000_000)),
        (D("0.0000015"), D(14_000_000)),
    ]
    assert price.amount(D(25_000_000)) == D(41)
    assert str(price.charge(D(25_000_000), "EUR")) == "41.00"


def test_usage_within_the_included_quantity_costs_nothing() -> None:
    price = tokens()

    assert price.billable(D(600_000)) == 0
    assert price.slices(D(600_000)) == []
    assert str(price.charge(D(600_000), "EUR")) == "0.00"


def test_usage_ending_on_a_tier_bound_stays_in_that_tier() -> None:
    price = tokens()

    slices = price.slices(D(11_000_000))

    assert [part for _, part in slices] == [D(10_000_000)]
    assert price.amount(D(11_000_000)) == D(20)


def test_a_flat_price_is_the_quantity_times_the_unit_price() -> None:
    price = flat("0.045")

    assert price.amount(D("1840.5")) == D("82.8225")
    assert str(price.charge(D("1840.5"), "EUR")) == "82.82"


def test_a_flat_price_can_include_a_free_quantity() -> None:
    price = flat("0.5", included="100")

    assert price.amount(D(150)) == D(25)
    assert price.amount(D(40)) == 0


def test_a_zero_decimal_currency_charges_whole_units() -> None:
    price = flat("0.3")

    assert str(price.charge(D(1234), "JPY")) == "370"
    assert str(price.charge(D(5), "JPY")) == "2"  # 1.5 -> 2, half to even


def test_a_three_decimal_currency_charges_to_the_fils() -> None:
    price = flat("0.0125")

    assert str(price.charge(D(3), "KWD")) == "0.038"  # 0.0375, half to even
    assert str(price.charge(D(5), "KWD")) == "0.062"  # 0.0625, half to even


def test_a_line_is_rounded_once_not_per_tier() -> None:
    price = Price("ai", "token", tiers=(Tier(D(1), D("0.005")), Tier(None, D("0.005"))))

    per_tier = sum(
        round_money(part * t.unit_price, "EUR") for t, part in price.slices(D(2))
    )

    assert per_tier == D("0.00")
    assert price.charge(D(2), "EUR") == D("0.01")


def test_the_amount_is_exact_at_the_largest_quantity_and_price() -> None:
    quantity = D("999999999999999999.999999999")
    price = flat("999999999999.999999999999")

    amount = price.amount(quantity)

    assert amount == WIDE.multiply(quantity, D("999999999999.999999999999"))


def test_a_negative_quantity_bills_nothing_and_a_non_finite_one_is_refused() -> None:
    assert flat("1").billable(D(-5)) == 0
    with pytest.raises(InvalidValue):
        flat("1").charge(D("Infinity"), "EUR")


def test_an_unpriced_line_has_no_price_rather_than_a_zero_one() -> None:
    book = parse_price_book(DESIGN_EXAMPLE)

    assert book.price_of("storage", "gb_month") is None
    assert book.price_of("compute", "vcpu_hour") == flat("0.045")


# The JSON shape


def test_the_design_example_reads_and_writes_back_unchanged() -> None:
    data = {**DESIGN_EXAMPLE, "effective_from": "current", "tenant_id": "t1"}

    book = parse_price_book(data)

    assert price_book_data(book) == DESIGN_EXAMPLE


def test_json_integers_are_read_exactly() -> None:
    data = one_price(unit_price=2, included_quantity=1000)

    price = parse_price_book(data).prices[0]

    assert (price.unit_price, price.included_quantity) == (D(2), D(1000))


def test_a_book_is_stored_with_normalised_slugs_and_plain_decimals() -> None:
    book = PriceBook(
        "EUR",
        (
            Price(" Compute ", "VCPU_HOUR", D("1E-12")),
            Price("ai", "token", tiers=(Tier(D("1E+3"), D("0.10")), Tier(None, D(0)))),
        ),
    )

    data = price_book_data(book.checked())

    assert data["prices"] == [
        {
            "product_area": "compute",
            "unit": "vcpu_hour",
            "unit_price": "0.000000000001",
        },
        {
            "product_area": "ai",
            "unit": "token",
            "tiers": [
                {"up_to": "1000", "unit_price": "0.1"},
                {"up_to": None, "unit_price": "0"},
            ],
        },
    ]


def test_checking_a_canonical_book_returns_it_unchanged() -> None:
    book = parse_price_book(DESIGN_EXAMPLE)

    assert book.checked() is book


# The rules, each naming its field


def one_price(**fields: Any) -> dict[str, Any]:
    price = {"product_area": "compute", "unit": "vcpu_hour", "unit_price": "0.045"}
    price.update(fields)
    return {"currency": "EUR", "prices": [{k: v for k, v in price.items() if v != ...}]}


def tiered(*tiers: Any, **fields: Any) -> dict[str, Any]:
    return one_price(unit_price=..., tiers=list(tiers), **fields)


def tier(up_to: Any, unit_price: Any = "0.01") -> dict[str, Any]:
    return {"up_to": up_to, "unit_price": unit_price}


OPEN = tier(None)
COMPUTE = {"product_area": "compute", "unit": "vcpu_hour", "unit_price": "1"}


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ([], "price_book", "must be a JSON object"),
        ({"prices": []}, "currency", "is required"),
        ({**one_price(), "currency": "eur"}, "currency", "ISO 4217"),
        ({**one_price(), "currency": 978}, "currency", "ISO 4217"),
        ({"currency": "EUR"}, "prices", "is required"),
        ({"currency": "EUR", "prices": {}}, "prices", "must be a list of prices"),
        ({"currency": "EUR", "prices": []}, "prices", "at least one price"),
        (
            {"currency": "EUR", "prices": [COMPUTE] * 501},
            "prices",
            "at most 500 prices",
        ),
        (
            {"currency": "EUR", "prices": [COMPUTE, {**COMPUTE, "unit": " VCPU_Hour"}]},
            "prices[1]",
            "repeats the product_area and unit of prices[0]",
        ),
        ({"currency": "EUR", "prices": ["compute"]}, "prices[0]", "must be an object"),
        (one_price(unit=...), "prices[0].unit", "is required"),
        (one_price(product_area=5), "prices[0].product_area", "must be a string"),
        (one_price(product_area="compute!"), "prices[0].product_area", "lowercase"),
        (one_price(unit="vcpu\u212a"), "prices[0].unit", "ASCII"),
        (one_price(unit_pirce="1"), "prices[0]", "unknown field 'unit_pirce'"),
        (one_price(unit_price=...), "prices[0]", "exactly one of unit_price and tiers"),
        (one_price(tiers=[OPEN]), "prices[0]", "exactly one of unit_price and tiers"),
        (one_price(unit_price=0.045), "prices[0].unit_price", "a JSON float"),
        (one_price(unit_price=True), "prices[0].unit_price", "decimal string"),
        (one_price(unit_price=None), "prices[0].unit_price", "decimal string"),
        (one_price(unit_price="-1"), "prices[0].unit_price", "must be >= 0"),
        (one_price(unit_price=-1), "prices[0].unit_price", "must be >= 0"),
        (one_price(unit_price="1e3"), "prices[0].unit_price", "ASCII digits"),
        (one_price(unit_price="NaN"), "prices[0].unit_price", "ASCII digits"),
        (one_price(unit_price="\u0661"), "prices[0].unit_price", "ASCII digits"),
        (one_price(unit_price=" 1"), "prices[0].unit_price", "ASCII digits"),
        (
            one_price(unit_price="0.0000000000001"),
            "prices[0].unit_price",
            "at most 12 decimal places",
        ),
        (
            one_price(unit_price="1000000000000"),
            "prices[0].unit_price",
            "less than 10^12",
        ),
        (
            one_price(included_quantity="1.0000000001"),
            "prices[0].included_quantity",
            "at most 9 decimal places",
        ),
        (
            one_price(included_quantity=10**18),
            "prices[0].included_quantity",
            "less than 10^18",
        ),
        (tiered(), "prices[0].tiers", "at least one tier"),
        (
            tiered(*[tier(str(n)) for n in range(1, 21)], OPEN),
            "prices[0].tiers",
            "at most 20",
        ),
        (tiered("x"), "prices[0].tiers[0]", "must be an object"),
        (tiered({"up_to": None}), "prices[0].tiers[0].unit_price", "is required"),
        (tiered({**OPEN, "from": "0"}), "prices[0].tiers[0]", "unknown field 'from'"),
        (tiered(tier("0"), OPEN), "prices[0].tiers[0].up_to", "greater than 0"),
        (
            tiered(tier("10"), tier("10"), OPEN),
            "prices[0].tiers[1].up_to",
            "greater than 10, the up_to of the tier before",
        ),
        (tiered(tier("10")), "prices[0].tiers[0].up_to", "null on the last tier"),
        (tiered(OPEN, OPEN), "prices[0].tiers[0].up_to", "all but the last"),
        (tiered(tier(1.5), OPEN), "prices[0].tiers[0].up_to", "a JSON float"),
        (
            tiered(tier("1.0000000001"), OPEN),
            "prices[0].tiers[0].up_to",
            "at most 9 decimal places",
        ),
        (tiered(tier("5", "-0.1"), OPEN), "prices[0].tiers[0].unit_price", ">= 0"),
    ],
)
def test_a_broken_rule_names_its_field(data: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidPriceBook) as caught:
        parse_price_book(data)

    assert caught.value.field == field
    assert message in caught.value.message
    assert str(caught.value) == f"{field}: {caught.value.message}"


@pytest.mark.parametrize(
    ("price", "field"),
    [
        (Price("ai", "token", D("NaN")), "prices[0].unit_price"),
        (Price("ai", "token", D(-1)), "prices[0].unit_price"),
        (
            Price("ai", "token", included_quantity=D(-1), unit_price=D(1)),
            "prices[0].included_quantity",
        ),
        (Price("ai", "token"), "prices[0]"),
        (
            Price(
                "ai",
                "token",
                tiers=(Tier(D(5), D(1)), Tier(D(5), D(1)), Tier(None, D(1))),
            ),
            "prices[0].tiers[1].up_to",
        ),
        (
            Price("ai", "token", tiers=(Tier(D("Infinity"), D(1)), Tier(None, D(1)))),
            "prices[0].tiers[0].up_to",
        ),
    ],
)
def test_checking_the_dataclass_form_names_the_field(price: Price, field: str) -> None:
    with pytest.raises(InvalidPriceBook) as caught:
        PriceBook("EUR", (price,)).checked()

    assert caught.value.field == field


# Invariants

quantities = st.decimals(
    min_value=0, max_value=D("999999999999999999.999999999"), places=9
)
unit_prices = st.decimals(
    min_value=0, max_value=D("999999999999.999999999999"), places=12
)
slugs = st.from_regex(r"[a-z0-9][a-z0-9_.\-]{0,15}", fullmatch=True)
currencies = st.sampled_from(sorted(ISO_4217))
PLAIN = re.compile(r"[0-9]+(?:\.[0-9]*[1-9])?")


@st.composite
def graduations(draw: st.DrawFn) -> tuple[Tier, ...]:
    positive = st.decimals(
        min_value=D("0.000000001"), max_value=D("999999999999999999"), places=9
    )
    bounds = sorted(draw(st.lists(positive, unique=True, max_size=19)))
    return tuple(Tier(up_to, draw(unit_prices)) for up_to in [*bounds, None])


@st.composite
def prices(draw: st.DrawFn) -> Price:
    is_flat = draw(st.booleans())
    return Price(
        draw(slugs),
        draw(slugs),
        unit_price=draw(unit_prices) if is_flat else None,
        tiers=() if is_flat else draw(graduations()),
        included_quantity=draw(quantities),
    )


books = st.builds(
    PriceBook,
    currency=currencies,
    prices=st.lists(
        prices(), min_size=1, max_size=5, unique_by=lambda p: (p.product_area, p.unit)
    ).map(tuple),
)


@given(prices(), quantities, quantities, currencies)
def test_a_charge_never_falls_when_the_quantity_grows(
    price: Price, a: Decimal, b: Decimal, currency: str
) -> None:
    less, more = sorted((a, b))

    assert price.amount(less) <= price.amount(more)
    assert price.charge(less, currency) <= price.charge(more, currency)


@given(prices(), quantities)
def test_the_slices_cover_the_billable_quantity_and_make_the_amount(
    price: Price, quantity: Decimal
) -> None:
    slices = price.slices(quantity)

    with localcontext(WIDE):  # the default 28 digits would round the expectation
        assert sum(part for _, part in slices) == price.billable(quantity)
        assert price.amount(quantity) == sum(part * t.unit_price for t, part in slices)
    assert all(part > 0 for _, part in slices)


def decimal_texts(data: dict[str, Any]) -> list[str]:
    """Every money or quantity string of a book's JSON shape."""
    texts = []
    for price in data["prices"]:
        texts += [price[k] for k in ("unit_price", "included_quantity") if k in price]
        for step in price.get("tiers", []):
            texts += [step["unit_price"]] + ([step["up_to"]] if step["up_to"] else [])
    return texts


@given(books)
def test_a_book_reads_back_from_its_json_shape(book: PriceBook) -> None:
    data = price_book_data(book)

    assert parse_price_book(data) == book
    assert all(PLAIN.fullmatch(text) for text in decimal_texts(data))


NEAR_MISSES = (
    *("EUR", "eur", "compute", " AI", "compute!", "0", "1.5", "-1", "1E3", "NaN"),
    *("0.0000000000001", "1000000000000", "1.0000000001", "1000000000000000000"),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(NEAR_MISSES),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def damaged_books(draw: st.DrawFn) -> Any:
    """A valid book's JSON with one value in its prices replaced by any JSON value."""
    data = price_book_data(draw(books))
    node: Any = data["prices"]
    while True:
        key = draw(
            st.sampled_from(list(node) if isinstance(node, dict) else range(len(node)))
        )
        if isinstance(node[key], dict | list) and node[key] and draw(st.integers(0, 4)):
            node = node[key]
            continue
        node[key] = draw(json_values)
        return data


@given(st.one_of(json_values, damaged_books()))
def test_any_json_is_either_a_checked_book_or_a_field_error(data: Any) -> None:
    outcome: PriceBook | InvalidPriceBook
    try:
        outcome = parse_price_book(data)
    except InvalidPriceBook as e:
        outcome = e

    if isinstance(outcome, InvalidPriceBook):
        assert outcome.field
        assert str(outcome) == f"{outcome.field}: {outcome.message}"
    else:
        assert outcome.checked() is outcome
