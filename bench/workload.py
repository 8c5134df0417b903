"""Synthetic metering events, encoded as request bodies before any timing starts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from itertools import islice
from typing import Any
from zlib import crc32

import msgspec

from application.seeding import PRODUCT_AREAS

AREAS = [(area, unit) for area, unit, _ in PRODUCT_AREAS]
REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")


class IngestSummary(msgspec.Struct):
    """The counters of an ingest response (its per-event results are skipped)."""

    accepted: int
    duplicates: int
    conflicts: int
    rejected: int
    position: int


summary_decoder = msgspec.json.Decoder(IngestSummary)


def event(event_id: str, at: datetime, *, workspace: int, area: int) -> dict[str, Any]:
    """One event of workspace number `workspace` and product area number `area`."""
    name, unit = AREAS[area % len(AREAS)]
    return {
        "id": event_id,
        "workspace_id": f"ws_{workspace:02d}",
        "product_area": name,
        "quantity": f"{crc32(event_id.encode()) % 10000 / 100:.2f}",
        "unit": unit,
        "timestamp": at.isoformat(),
        "properties": {"region": REGIONS[area % len(REGIONS)]},
    }


def recent_events(
    prefix: str, count: int, now: datetime, *, days: int = 7
) -> Iterator[dict[str, Any]]:
    """`count` events over the last `days` days (inside the acceptance window)."""
    span = days * 86400
    for i in range(count):
        at = now - timedelta(seconds=60 + (i * 104729) % span)
        yield event(f"{prefix}{i}", at, workspace=(i // len(AREAS)) % 20, area=i)


def history(  # noqa: PLR0913 - one argument per dimension of the data set
    prefix: str,
    now: datetime,
    *,
    days: int,
    workspaces: int,
    areas: int,
    per_day: int,
) -> Iterator[dict[str, Any]]:
    """`per_day` events per workspace, product area and day, oldest day first."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    step = timedelta(days=1) / per_day
    for d in range(days):
        day = midnight - timedelta(days=days - 1 - d)
        for k in range(per_day):
            at = day + step * (k + 0.5)
            if at >= now:
                break
            for w in range(workspaces):
                for a in range(areas):
                    yield event(f"{prefix}{d}-{k}-{w}-{a}", at, workspace=w, area=a)


def bodies(events: Iterable[dict[str, Any]], size: int) -> list[bytes]:
    """The events as JSON array bodies of `size` events each."""
    encode = msgspec.json.Encoder().encode
    it = iter(events)
    out = []
    while batch := list(islice(it, size)):
        out.append(encode(batch))
    return out
