"""What a usage question may ask: the period, filters and grouping."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from domain.values import InvalidValue, check_identifier, normalise_slug

DIMENSIONS = ("day", "product_area", "workspace")
_COLUMN = {
    "day": "usage_date",
    "product_area": "product_area",
    "workspace": "workspace_id",
}


class InvalidUsageQuery(ValueError):
    """A query parameter breaks a rule; the message names it."""


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """A validated usage query (the tenant always comes from the caller's token)."""

    tenant_id: str
    period: str = "current"
    workspace_id: str | None = None
    product_area: str | None = None
    group_by: tuple[str, ...] = DIMENSIONS

    @classmethod
    def parse(
        cls,
        tenant_id: str,
        *,
        period: str | None,
        workspace_id: str | None,
        product_area: str | None,
        group_by: str | None,
    ) -> UsageQuery:
        return cls(
            tenant_id=tenant_id,
            period=(period or "current").strip(),
            workspace_id=_optional("workspace_id", check_identifier, workspace_id),
            product_area=_optional("product_area", normalise_slug, product_area),
            group_by=parse_group_by(group_by),
        )

    def cache_key(self) -> str:
        return "|".join(
            (
                self.workspace_id or "*",
                self.product_area or "*",
                ",".join(self.group_by),
            )
        )


def parse_group_by(value: str | None) -> tuple[str, ...]:
    if value is None or not value.strip():
        return DIMENSIONS
    parts = [p.strip() for p in value.split(",")]
    unknown = [p for p in parts if p not in DIMENSIONS]
    if unknown:
        raise InvalidUsageQuery(
            f"group_by: unknown dimension {unknown[0]!r}; use any of day, "
            "product_area, "
            "workspace, separated by commas"
        )
    if len(set(parts)) != len(parts):
        raise InvalidUsageQuery("group_by: each dimension may appear once")
    return tuple(d for d in DIMENSIONS if d in parts)


def _optional(field: str, check: Any, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(check(value))
    except InvalidValue as e:
        raise InvalidUsageQuery(f"{field}: {e}") from None


def group_columns(query: UsageQuery) -> Sequence[str]:
    """The read-model columns a query keeps, in dimension order."""
    return [_COLUMN[d] for d in DIMENSIONS if d in query.group_by]
