"""ISO 4217 currencies: the active codes, their minor units, rounding to them."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

from domain.values import InvalidValue

# The active codes of ISO 4217 list one (as published in January 2026: ANG, BGN,
# HRK, SLL and ZWL withdrawn), grouped by minor units. Codes without a minor unit
# (XAU gold, XDR, XTS for testing, XXX "no currency", ...) are left out: nothing
# is charged in them.
_CODES_BY_MINOR_UNITS = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    2: (
        "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD "
        "BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP "
        "DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF "
        "IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL "
        "MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR "
        "NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP "
        "SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD "
        "USN UYU UZS VED VES WST XAD XCD XCG YER ZAR ZMW ZWG"
    ),
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}

ISO_4217: dict[str, int] = {
    code: units
    for units, codes in _CODES_BY_MINOR_UNITS.items()
    for code in codes.split()
}

# Money is rounded in its own context so a caller's decimal settings (a lower
# precision, another rounding mode) can never change a charge.
_MONEY = Context(prec=100, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation])
# Far above any bill (10^18 units at 10^12 each), far below the context's digits.
_LARGEST_AMOUNT = Decimal(10) ** 60


def check_currency(code: str) -> str:
    """Return the code if it is an active ISO 4217 code, exactly as written."""
    if not isinstance(code, str) or code not in ISO_4217:
        raise InvalidValue("must be an ISO 4217 currency code, e.g. EUR")
    return code


def minor_units(currency: str) -> int:
    """How many digits a currency has after the point: EUR 2, JPY 0, KWD 3."""
    return ISO_4217[check_currency(currency)]


def round_money(amount: Decimal, currency: str) -> Decimal:
    """The amount rounded half-even to the currency's minor unit (0.125 -> 0.12)."""
    places = minor_units(currency)
    if not amount.is_finite() or abs(amount) >= _LARGEST_AMOUNT:
        raise InvalidValue("must be a finite amount below 10^60")
    rounded = amount.quantize(Decimal(1).scaleb(-places, _MONEY), context=_MONEY)
    # A tiny negative amount rounds to -0.00, which no invoice should print.
    return rounded.copy_abs() if rounded.is_zero() else rounded
