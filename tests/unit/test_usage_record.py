"""The usage record: recorded once, then voided or amended by corrections."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.usage import AlreadyVoided, QuantityUnchanged, UsageRecord
from domain.values import usage_record_id
from tests.unit.builders import NOW, amend, facts, recorded, void


def test_recording_an_event_records_its_facts_under_the_tenant_scoped_id() -> None:
    record = recorded("t_acme", event_id="evt_7")

    [event] = record.collect_events()
    assert isinstance(event, UsageRecord.Recorded)
    assert record.id == usage_record_id("t_acme", "evt_7")
    assert event.tenant_id == "t_acme"
    assert event.quantity == Decimal("12.5")
    assert event.timestamp == NOW
    assert record.facts == facts(event_id="evt_7")
    assert not record.voided


def test_voiding_records_the_quantity_that_stops_counting() -> None:
    record = recorded(quantity=Decimal("3"))
    record.collect_events()

    void(record)

    [event] = record.collect_events()
    assert isinstance(event, UsageRecord.Voided)
    assert event.quantity == Decimal("3")
    assert event.event_id == "evt_1"
    assert event.reason == "duplicate"
    assert record.voided


def test_voiding_twice_is_refused() -> None:
    record = recorded()
    void(record)

    with pytest.raises(AlreadyVoided, match="evt_1 is already voided"):
        void(record)


def test_amending_a_voided_record_is_refused() -> None:
    record = recorded()
    void(record)

    with pytest.raises(AlreadyVoided):
        amend(record, "99")


def test_amending_records_the_previous_and_the_new_quantity() -> None:
    record = recorded(quantity=Decimal("3"))
    record.collect_events()

    amend(record, "5")

    [event] = record.collect_events()
    assert isinstance(event, UsageRecord.Amended)
    assert (event.previous_quantity, event.quantity) == (Decimal("3"), Decimal("5"))
    assert record.quantity == Decimal("5")


def test_amending_to_the_same_quantity_is_refused() -> None:
    record = recorded(quantity=Decimal("3"))

    with pytest.raises(QuantityUnchanged):
        amend(record, "3.000")


def test_a_second_amendment_starts_from_the_first_ones_quantity() -> None:
    record = recorded(quantity=Decimal("3"))
    amend(record, "5")
    record.collect_events()

    amend(record, "7")

    [event] = record.collect_events()
    assert isinstance(event, UsageRecord.Amended)
    assert event.previous_quantity == Decimal("5")


def test_voiding_an_amended_record_voids_its_amended_quantity() -> None:
    record = recorded(quantity=Decimal("3"))
    amend(record, "5")
    record.collect_events()

    void(record)

    [event] = record.collect_events()
    assert isinstance(event, UsageRecord.Voided)
    assert event.quantity == Decimal("5")


def test_facts_keep_the_originally_recorded_quantity_after_an_amendment() -> None:
    record = recorded(quantity=Decimal("3"))

    amend(record, "5")

    assert record.facts.quantity == Decimal("3")
    assert record.facts.same_payload_as(facts(quantity=Decimal("3")))


def test_a_record_rebuilt_from_its_history_has_the_same_state() -> None:
    record = recorded(quantity=Decimal("3"))
    amend(record, "5")
    events = record.collect_events()

    rebuilt = None
    for event in events:
        rebuilt = event.mutate(rebuilt)

    assert isinstance(rebuilt, UsageRecord)
    assert (rebuilt.quantity, rebuilt.facts.quantity) == (Decimal("5"), Decimal("3"))
    assert rebuilt.version == record.version
