"""A tenant's billing settings: the rules they follow and their history."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.tenant_settings import (
    DEFAULT_SETTINGS,
    BillingSettings,
    InvalidSettings,
    TenantBillingSettings,
)
from domain.values import tenant_settings_id
from tests.unit.builders import NOW


def test_the_default_settings_are_utc_calendar_months_with_three_days_grace() -> None:
    assert DEFAULT_SETTINGS.checked() == BillingSettings("UTC", 1, 72, 35)
    assert DEFAULT_SETTINGS.grace == timedelta(hours=72)
    assert DEFAULT_SETTINGS.acceptance_window == timedelta(days=35)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            BillingSettings(timezone="Mars/Olympus"),
            "timezone: unknown IANA timezone 'Mars/Olympus', e.g. Europe/Paris",
        ),
        (
            BillingSettings(timezone="../etc/passwd"),
            "timezone: unknown IANA timezone '../etc/passwd', e.g. Europe/Paris",
        ),
        (
            BillingSettings(timezone=""),
            "timezone: unknown IANA timezone '', e.g. Europe/Paris",
        ),
        (
            BillingSettings(period_anchor_day=0),
            "period_anchor_day: must be between 1 and 28",
        ),
        (
            BillingSettings(period_anchor_day=29),
            "period_anchor_day: must be between 1 and 28",
        ),
        (BillingSettings(grace_hours=-1), "grace_hours: must be between 0 and 744"),
        (BillingSettings(grace_hours=745), "grace_hours: must be between 0 and 744"),
        (
            BillingSettings(acceptance_window_days=0),
            "acceptance_window_days: must be between 1 and 366",
        ),
        (
            BillingSettings(acceptance_window_days=367),
            "acceptance_window_days: must be between 1 and 366",
        ),
    ],
)
def test_settings_breaking_a_rule_are_refused_naming_the_setting(
    settings: BillingSettings, message: str
) -> None:
    with pytest.raises(InvalidSettings) as caught:
        settings.checked()

    assert str(caught.value) == message
    assert caught.value.field == message.split(":")[0]


@pytest.mark.parametrize(
    "settings",
    [
        BillingSettings("Europe/Berlin", 28, 0, 1),
        BillingSettings("America/New_York", 1, 744, 366),
        BillingSettings("Asia/Kolkata", 15, 72, 35),
    ],
)
def test_settings_at_the_bounds_are_accepted(settings: BillingSettings) -> None:
    assert settings.checked() == settings


def test_configuring_a_tenant_starts_its_history_with_the_defaults() -> None:
    tenant = TenantBillingSettings.configure("t_acme", now=NOW)

    [event] = tenant.collect_events()
    assert isinstance(event, TenantBillingSettings.Configured)
    assert tenant.id == tenant_settings_id("t_acme")
    assert tenant.settings == DEFAULT_SETTINGS


def test_changing_the_settings_records_the_whole_new_state() -> None:
    tenant = TenantBillingSettings.configure("t_acme", now=NOW)
    tenant.collect_events()
    wanted = BillingSettings("Europe/Berlin", 15, 48, 60)

    tenant.change(wanted, actor_id="admin_1", now=NOW)

    [event] = tenant.collect_events()
    assert isinstance(event, TenantBillingSettings.Changed)
    assert (event.timezone, event.period_anchor_day) == ("Europe/Berlin", 15)
    assert (event.grace_hours, event.acceptance_window_days) == (48, 60)
    assert event.actor_id == "admin_1"
    assert tenant.settings == wanted


def test_changing_to_equal_settings_records_no_event() -> None:
    tenant = TenantBillingSettings.configure("t_acme", now=NOW)
    tenant.collect_events()

    tenant.change(BillingSettings(), actor_id="admin_1", now=NOW)

    assert tenant.collect_events() == []


def test_changing_to_invalid_settings_is_refused_and_records_nothing() -> None:
    tenant = TenantBillingSettings.configure("t_acme", now=NOW)
    tenant.collect_events()

    with pytest.raises(InvalidSettings):
        tenant.change(BillingSettings(period_anchor_day=31), actor_id="a", now=NOW)

    assert tenant.collect_events() == []
    assert tenant.settings == DEFAULT_SETTINGS
