"""A tenant's billing settings: calendar, billing period, late-data windows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from eventsourcing.domain import Aggregate

from domain.values import tenant_settings_id

MAX_GRACE_HOURS = 24 * 31
MAX_ACCEPTANCE_DAYS = 366
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-]{1,30}(/[A-Za-z0-9_+\-]{1,30}){0,2}")


class InvalidSettings(ValueError):
    """Settings that break a rule; `field` names the offending setting."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class BillingSettings:
    """What a tenant's usage is bucketed and validated with."""

    timezone: str = "UTC"
    period_anchor_day: int = 1
    grace_hours: int = 72
    acceptance_window_days: int = 35

    @property
    def grace(self) -> timedelta:
        return timedelta(hours=self.grace_hours)

    @property
    def acceptance_window(self) -> timedelta:
        return timedelta(days=self.acceptance_window_days)

    def checked(self) -> BillingSettings:
        """Return these settings if every rule holds."""
        check_timezone_is_known(self.timezone)
        if not 1 <= self.period_anchor_day <= 28:
            raise InvalidSettings("period_anchor_day", "must be between 1 and 28")
        if not 0 <= self.grace_hours <= MAX_GRACE_HOURS:
            raise InvalidSettings(
                "grace_hours", f"must be between 0 and {MAX_GRACE_HOURS}"
            )
        if not 1 <= self.acceptance_window_days <= MAX_ACCEPTANCE_DAYS:
            raise InvalidSettings(
                "acceptance_window_days", f"must be between 1 and {MAX_ACCEPTANCE_DAYS}"
            )
        return self


DEFAULT_SETTINGS = BillingSettings()


def check_timezone_is_known(name: str) -> None:
    """The timezone must be an IANA name such as Europe/Paris."""
    unknown = InvalidSettings(
        "timezone", f"unknown IANA timezone {name[:64]!r}, e.g. Europe/Paris"
    )
    # The name becomes a file path inside the zone database: only a name's
    # shape gets that far (no NUL, "..", directory or over-long name).
    if _ZONE_NAME.fullmatch(name) is None:
        raise unknown
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory
        raise unknown from None


class TenantBillingSettings(Aggregate):
    """The settings history of one tenant; each change carries the whole state."""

    class Configured(Aggregate.Created):
        tenant_id: str
        timezone: str
        period_anchor_day: int
        grace_hours: int
        acceptance_window_days: int

    class Changed(Aggregate.Event):
        tenant_id: str
        timezone: str
        period_anchor_day: int
        grace_hours: int
        acceptance_window_days: int
        actor_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.settings = settings_of(self)

    def __init__(
        self,
        tenant_id: str,
        timezone: str,
        period_anchor_day: int,
        grace_hours: int,
        acceptance_window_days: int,
    ) -> None:
        self.tenant_id = tenant_id
        self.settings = BillingSettings(
            timezone, period_anchor_day, grace_hours, acceptance_window_days
        )

    @classmethod
    def configure(cls, tenant_id: str, *, now: datetime) -> TenantBillingSettings:
        """Start a tenant's settings history with the defaults."""
        defaults = DEFAULT_SETTINGS
        return cls._create(
            cls.Configured,
            id=tenant_settings_id(tenant_id),
            timestamp=now,
            tenant_id=tenant_id,
            timezone=defaults.timezone,
            period_anchor_day=defaults.period_anchor_day,
            grace_hours=defaults.grace_hours,
            acceptance_window_days=defaults.acceptance_window_days,
        )

    def change(
        self, settings: BillingSettings, *, actor_id: str, now: datetime
    ) -> None:
        """Replace the settings; a change to the same values records nothing."""
        settings.checked()
        if settings == self.settings:
            return
        self.trigger_event(
            self.Changed,
            timestamp=now,
            tenant_id=self.tenant_id,
            timezone=settings.timezone,
            period_anchor_day=settings.period_anchor_day,
            grace_hours=settings.grace_hours,
            acceptance_window_days=settings.acceptance_window_days,
            actor_id=actor_id,
        )


def settings_of(event: Any) -> BillingSettings:
    """The settings carried by a Configured or Changed event."""
    return BillingSettings(
        event.timezone,
        event.period_anchor_day,
        event.grace_hours,
        event.acceptance_window_days,
    )
