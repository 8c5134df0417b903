"""MsgspecMapper: every stored event comes back with the same values and types."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import (
    JSONTranscoder,
    MapperDeserialisationError,
    StoredEvent,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from application.store.mapper import MsgspecMapper
from domain.audit import AuditRecord
from domain.budget import BudgetHistory
from domain.price_book import PriceBookHistory
from domain.tenant_settings import BillingSettings, TenantBillingSettings
from domain.usage import UsageRecord
from tests.unit.builders import NOW, amend, recorded, void


@pytest.fixture(scope="module")
def mapper() -> MsgspecMapper:
    return MsgspecMapper(transcoder=JSONTranscoder())


def assert_round_trips(mapper: MsgspecMapper, event: Any) -> None:
    restored: Any = mapper.to_domain_event(mapper.to_stored_event(event))

    assert type(restored) is type(event)
    for field in dataclasses.fields(event):
        original, copy = getattr(event, field.name), getattr(restored, field.name)
        assert copy == original, field.name
        assert type(copy) is type(original), field.name
        if isinstance(original, Decimal):
            assert copy.as_tuple() == original.as_tuple(), field.name
        if isinstance(original, datetime):
            assert copy.utcoffset() == original.utcoffset(), field.name


def usage_events() -> list[Any]:
    record = recorded(
        quantity=Decimal("12.50"), properties={"a": "x", "n": 2, "f": 0.5}
    )
    amend(record, "7.250000001", now=NOW + timedelta(hours=1))
    void(record, now=NOW + timedelta(hours=2))
    return list(record.collect_events())


def settings_events() -> list[Any]:
    tenant = TenantBillingSettings.configure("t_acme", now=NOW)
    tenant.change(BillingSettings("Europe/Berlin", 15, 48, 60), actor_id="a", now=NOW)
    return list(tenant.collect_events())


def audit_events() -> list[Any]:
    common = {"tenant_id": "t_acme", "actor_id": "admin_1", "request_id": "req-1"}
    period = {"label": "2026-11", "start": "2026-11-01", "end": "2026-12-01"}
    totals = [{"product_area": "compute", "unit": "h", "quantity": "1.5"}]
    fields: dict[type[AuditRecord.Recorded], dict[str, Any]] = {
        AuditRecord.UsageViewed: {
            "period": period,
            "filters": {"workspace_id": None},
            "position": 7,
            "row_count": 3,
            "sha256": "cd" * 32,
            "replay": {
                "positions": {"metering": 7, "tenant_settings": 1},
                "versions": {"billing_usage_daily": 2},
                "now": "2026-11-30T12:00:00.123456+00:00",
                "as_of": "2026-11-30T12:00:00.123456+00:00",
                "waited": {"reached": True, "missing": {}},
                "params": {"period": "current", "group_by": ["day"]},
            },
        },
        AuditRecord.ForecastViewed: {
            "period": period,
            "filters": {"period": "current", "workspace_id": None},
            "positions": {"metering": 7, "clock": 2},
            "sha256": "0" * 64,
        },
        AuditRecord.AnomaliesViewed: {
            "period": period,
            "filters": {"period": "current", "workspace_id": None, "status": None},
            "positions": {"metering": 7, "clock": 2},
            "sha256": "0" * 64,
        },
        AuditRecord.AnomalyAcknowledged: {
            "anomaly_id": "an_0123",
            "note": "known: a load test",
            "position": None,
        },
        AuditRecord.UsageExported: {
            "export_id": uuid4(),
            "period": period,
            "filters": {},
            "position": 7,
            "file_key": "t_acme/x.csv",
            "row_count": 3,
            "totals": totals,
            "sha256": "ab" * 32,
        },
        AuditRecord.AccessDenied: {
            "method": "GET",
            "path": "/api/billing/usage",
            "required_role": "admin",
            "roles": ["member"],
        },
        AuditRecord.CorrectionApplied: {
            "correction_id": uuid4(),
            "action": "void",
            "reason": "dup",
            "event_ids": ["evt_1"],
            "filter": {"workspace_id": "ws_a"},
            "event_count": 1,
            "totals": totals,
            "position": 9,
        },
        AuditRecord.BackfillRecorded: {
            "accepted": 1,
            "duplicates": 2,
            "conflicts": 3,
            "rejected": 4,
            "position": 5,
        },
        AuditRecord.ProjectionRebuildRequested: {"projection": "billing_usage_daily"},
        AuditRecord.BudgetChanged: {
            "period": "2026-11-01",
            "amount": "30000",
            "currency": "EUR",
            "position": 4,
        },
        AuditRecord.PriceBookChanged: {
            "effective_from": "2026-11-01",
            "currency": "EUR",
            "prices": 2,
            "position": 3,
        },
        AuditRecord.ViewReplayed: {
            "audit_event_id": 12,
            "audit_event_type": "UsageViewed",
            "verified": True,
            "replayed_sha256": "cd" * 32,
        },
        AuditRecord.UsageExplained: {
            "params": {"usage_date": "2026-11-12", "unit": "hour"},
            "position": 7,
            "found": True,
            "entry_count": 2,
            "sha256": "ef" * 32,
        },
        AuditRecord.MeteringEventInspected: {
            "event_id": "evt_1",
            "found": False,
            "entry_count": 0,
            "sha256": None,
        },
        AuditRecord.WebhookChanged: {
            "action": "set",
            "url": "https://hooks.example.com/billing",
        },
    }
    return [
        AuditRecord.record(
            cls, id=uuid4(), now=NOW, **common, **extra
        ).collect_events()[0]
        for cls, extra in fields.items()
    ]


def test_every_audit_record_type_is_covered() -> None:
    audited = {type(e) for e in audit_events()}

    assert audited == set(AuditRecord.Recorded.__subclasses__())


def price_book_events() -> list[Any]:
    history = PriceBookHistory.start("t_acme", now=NOW)
    history.set_version(
        {
            "currency": "EUR",
            "prices": [
                {
                    "product_area": "ai",
                    "unit": "token",
                    "tiers": [
                        {"up_to": "10", "unit_price": "0.5"},
                        {"up_to": None, "unit_price": "0.25"},
                    ],
                },
            ],
        },
        effective_from=date(2026, 11, 1),
        actor_id="ops",
        now=NOW,
    )
    budgets = BudgetHistory.start("t_acme", now=NOW)
    budgets.set_budget(
        date(2026, 11, 1), Decimal("30000.5"), currency="EUR", actor_id="a", now=NOW
    )
    return [*history.collect_events(), *budgets.collect_events()]


@pytest.mark.parametrize(
    "event",
    [*usage_events(), *settings_events(), *audit_events(), *price_book_events()],
    ids=lambda e: type(e).__qualname__,
)
def test_an_event_round_trips_with_equal_values_and_exact_types(
    mapper: MsgspecMapper, event: Any
) -> None:
    assert_round_trips(mapper, event)


def test_a_stored_event_keeps_its_identity_and_topic(mapper: MsgspecMapper) -> None:
    event = usage_events()[0]

    stored = mapper.to_stored_event(event)

    assert stored.originator_id == event.originator_id
    assert stored.originator_version == event.originator_version
    assert stored.topic == "domain.usage:UsageRecord.Recorded"


def test_a_record_rebuilt_from_stored_events_has_the_same_state(
    mapper: MsgspecMapper,
) -> None:
    restored: list[Any] = [
        mapper.to_domain_event(mapper.to_stored_event(e)) for e in usage_events()
    ]

    record = None
    for event in restored:
        record = event.mutate(record)

    assert isinstance(record, UsageRecord)
    assert record.voided
    assert record.facts.quantity == Decimal("12.50")


@pytest.mark.parametrize(
    "state",
    [
        b"{not json",
        b"[]",
        b'{"timestamp": "2026-11-20T12:00:00Z"}',
        b'{"timestamp": "yesterday", "originator_topic": "x", "tenant_id": "t",'
        b' "event_id": "e", "workspace_id": "w", "product_area": "p", "unit": "u",'
        b' "quantity": "1", "occurred_at": "2026-11-20T12:00:00Z", "properties": {},'
        b' "backfill": false}',
    ],
)
def test_a_corrupted_state_is_a_deserialisation_error(
    mapper: MsgspecMapper, state: bytes
) -> None:
    good = mapper.to_stored_event(usage_events()[0])
    corrupted = StoredEvent(
        good.originator_id, good.originator_version, good.topic, state
    )

    with pytest.raises(MapperDeserialisationError, match="Recorded"):
        mapper.to_domain_event(corrupted)


def test_a_wrongly_typed_quantity_is_a_deserialisation_error(
    mapper: MsgspecMapper,
) -> None:
    good = mapper.to_stored_event(usage_events()[0])
    state = good.state.replace(b'"quantity":"12.50"', b'"quantity":[1]')
    assert state != good.state

    with pytest.raises(MapperDeserialisationError):
        mapper.to_domain_event(
            StoredEvent(good.originator_id, good.originator_version, good.topic, state)
        )


instants = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.just(UTC),
)
quantities = st.decimals(
    allow_nan=False, allow_infinity=False, min_value=0
) | st.decimals(min_value=0, max_value=10**18, places=9)


@settings(deadline=None)
@given(quantity=quantities, occurred_at=instants, recorded_at=instants)
def test_any_quantity_and_instant_round_trip_exactly(
    mapper: MsgspecMapper,
    quantity: Decimal,
    occurred_at: datetime,
    recorded_at: datetime,
) -> None:
    record = recorded(quantity=quantity, occurred_at=occurred_at, now=recorded_at)

    [event] = record.collect_events()

    assert_round_trips(mapper, event)


@settings(deadline=None)
@given(previous=quantities, new=quantities, correction_id=st.uuids())
def test_an_amendment_round_trips_exactly(
    mapper: MsgspecMapper, previous: Decimal, new: Decimal, correction_id: UUID
) -> None:
    assume(new != previous)
    record = recorded(quantity=previous)
    record.collect_events()
    record.amend(new, correction_id=correction_id, actor_id="a", reason="r", now=NOW)

    [event] = record.collect_events()

    assert_round_trips(mapper, event)
