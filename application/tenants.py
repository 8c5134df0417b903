"""Tenant billing settings: the calendar and windows each tenant is billed by."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from eventsourcing.application import AggregateNotFoundError

from application.store.event_store import BillingApplication
from domain.tenant_settings import (
    DEFAULT_SETTINGS,
    BillingSettings,
    TenantBillingSettings,
)
from domain.values import tenant_settings_id


class TenantSettingsApp(BillingApplication):
    """Keeps each tenant's settings history (its own event table)."""

    name = "tenant_settings"

    def get_settings(self, tenant_id: str) -> BillingSettings:
        """The tenant's settings, or the defaults if it never changed them."""
        try:
            aggregate = cast(
                TenantBillingSettings,
                self.repository.get(tenant_settings_id(tenant_id)),
            )
        except AggregateNotFoundError:
            return DEFAULT_SETTINGS
        return aggregate.settings

    def update_settings(
        self,
        tenant_id: str,
        changes: Mapping[str, Any],
        *,
        actor_id: str,
        now: datetime,
    ) -> tuple[BillingSettings, int]:
        """Change only the given settings (the others keep their value); returns
        the settings now in force and the position reached."""
        wanted = dataclasses.replace(self.get_settings(tenant_id), **changes).checked()
        return wanted, self.change_settings(
            tenant_id, wanted, actor_id=actor_id, now=now
        )

    def change_settings(
        self, tenant_id: str, settings: BillingSettings, *, actor_id: str, now: datetime
    ) -> int:
        """Change the tenant's settings; returns the position reached."""
        settings.checked()
        try:
            aggregate = cast(
                TenantBillingSettings,
                self.repository.get(tenant_settings_id(tenant_id)),
            )
        except AggregateNotFoundError:
            aggregate = TenantBillingSettings.configure(tenant_id, now=now)
        aggregate.change(settings, actor_id=actor_id, now=now)
        recordings = self.save(aggregate)
        return max(
            (r.notification.id for r in recordings), default=self.head_position()
        )
