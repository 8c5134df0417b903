"""What a view or export records to be replayed, and reading it back.

Every audited answer records, in its `replay` field, the position of each
upstream it reflects, the live version of its read model, the instant its
period was resolved at (`now`), the `as_of` it reported, how a wait for
`min_positions` went (part of the bytes sent) and the request's parameters;
with the SHA-256 of the bytes sent, that is all a replay needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from application.serving.waiting import Wait
from projections.history import Cut
from projections.usage_daily.query import UsageQuery

# The audit record types that a replay can reproduce.
REPLAYABLE = ("UsageViewed", "UsageExported", "ForecastViewed", "AnomaliesViewed")


class NotReplayable(ValueError):
    """The record is not a view or export, or predates what replay needs."""


def replay_fields(  # noqa: PLR0913 - each is part of what reproduces the bytes
    positions: Mapping[str, int],
    versions: Mapping[str, int],
    now: datetime,
    as_of: datetime | None,
    waited: Wait | None,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """The `replay` field of an audit record (JSON-ready)."""
    return {
        "positions": dict(positions),
        "versions": dict(versions),
        "now": now.isoformat(),
        "as_of": as_of.isoformat() if as_of is not None else None,
        "waited": msgspec.to_builtins(waited) if waited is not None else None,
        "params": dict(params),
    }


@dataclass(frozen=True, slots=True)
class RecordedView:
    """One audited view or export, as the audit log holds it."""

    id: int  # its position in the audit log
    type: str
    tenant_id: str
    occurred_at: datetime
    details: Mapping[str, Any]

    def __post_init__(self) -> None:
        if self.type not in REPLAYABLE:
            raise NotReplayable(
                f"audit event {self.id} is a {self.type}, not a view or an export"
            )
        if not self.details.get("replay") or not self.details.get("sha256"):
            raise NotReplayable(
                f"audit event {self.id} was recorded before views kept what a"
                " replay needs (positions, instant, parameters)"
            )

    @property
    def replay(self) -> Mapping[str, Any]:
        return self.details["replay"]  # type: ignore[no-any-return]

    @property
    def recorded_sha256(self) -> str:
        return str(self.details["sha256"])

    @property
    def params(self) -> Mapping[str, Any]:
        return self.replay["params"]  # type: ignore[no-any-return]

    @property
    def positions(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.replay["positions"].items()}

    @property
    def now(self) -> datetime:
        return datetime.fromisoformat(self.replay["now"])

    @property
    def as_of(self) -> datetime | None:
        value = self.replay.get("as_of")
        return None if value is None else datetime.fromisoformat(value)

    def cut(self) -> Cut:
        return Cut(self.positions, None)

    def waited(self) -> Wait | None:
        value = self.replay.get("waited")
        return None if value is None else msgspec.convert(value, Wait)

    def usage_query(self) -> UsageQuery:
        p = self.params
        return UsageQuery(
            tenant_id=self.tenant_id,
            period=p["period"],
            workspace_id=p.get("workspace_id"),
            product_area=p.get("product_area"),
            group_by=tuple(p["group_by"]),
        )
