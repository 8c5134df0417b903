"""One plain sentence per flag: what, when, against what usual range."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal

from projections.anomalies.detect import Episode
from projections.usage_series import SeriesKey

TIMES, DASH = "\u00d7", "\u2013"  # the multiplication sign, an en dash


def explanation(key: SeriesKey, episode: Episode) -> str:
    """E.g. "ws_analytics used 4,210 vcpu_hour of compute on Tue 24 Nov, 3.1x a
    usual Tuesday (1,280-1,420 is usual)"."""
    peak = episode.peak
    ratio = _ratio(peak.observed, peak.expected)
    usual = f"{_number(peak.low)}{DASH}{_number(peak.high)}"
    if episode.kind == "level_shift":
        days = episode.days
        mean = sum((_ratio(d.observed, d.expected) for d in days), Decimal(0)) / len(
            days
        )
        state = "still unusual" if not days[-1].complete else "unusual"
        return (
            f"{key.workspace_id}'s {key.product_area} usage has been about "
            f"{mean:.1f}{TIMES} its usual level for {len(days)} days since "
            f"{_day(days[0].day)} ({state}; a usual {_weekday(peak.day)} is "
            f"{usual} {key.unit})."
        )
    so_far = "" if peak.complete else " so far"
    return (
        f"{key.workspace_id} used {_number(peak.observed)} {key.unit} of "
        f"{key.product_area} on {_day(peak.day)}{so_far}, {ratio:.1f}{TIMES} a usual "
        f"{_weekday(peak.day)} ({usual})."
    )


def cleared_reason(
    key: SeriesKey, episode: Episode, now: Mapping[date, Decimal]
) -> str:
    """Why a flag raised on the first report of its days no longer stands."""
    first = episode.peak
    current = now.get(first.day, Decimal(0))
    return (
        f"Restated by late data or a correction: {_day(first.day)} was first "
        f"reported as {_number(first.observed)} {key.unit} and is now "
        f"{_number(current)}, within the usual range."
    )


def _ratio(observed: Decimal, expected: Decimal) -> Decimal:
    if expected <= 0:
        return Decimal(0) if observed <= 0 else Decimal(99)
    return observed / expected


def _number(value: Decimal) -> str:
    if value == value.to_integral_value():
        return f"{value:,.0f}"
    return f"{value.normalize():,f}"


def _day(day: date) -> str:
    return f"{day:%a} {day.day} {day:%b}"


def _weekday(day: date) -> str:
    return f"{day:%A}"
