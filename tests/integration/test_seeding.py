"""`billing seed`: deterministic demo usage, replayed as producers sent it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg

from application.bootstrap import WriteSide
from application.seeding import (
    BLOCK_HOURS,
    SEND_DELAY,
    SeedPlan,
    SeedReport,
    demo_price_book,
    generate_days,
    history_start,
    seed,
)
from domain.periods import resolve_period
from tests.oracle import read_model

NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
PLAN = SeedPlan(
    tenants=3, workspaces=2, product_areas=2, days=40, events_per_day=48, seed=11
)


def _generated(plan: SeedPlan) -> int:
    return sum(
        len(day)
        for tenant, _ in plan.tenant_list()
        for day in generate_days(plan, NOW, tenant)
    )


def seed_plan(write_side: WriteSide) -> SeedReport:
    return seed(
        PLAN,
        metering=write_side.metering,
        tenants=write_side.tenants,
        price_book=write_side.price_book,
        clock=lambda: NOW,
    )


def test_every_seeded_tenant_has_a_price_book_with_tiers_from_its_first_period(
    write_side: WriteSide,
) -> None:
    seed_plan(write_side)

    for tenant, timezone in PLAN.tenant_list():
        first_day = history_start(PLAN, NOW)
        period = resolve_period(
            "current",
            now=first_day,
            anchor_day=1,
            timezone=timezone,
            grace=timedelta(hours=72),
        )
        answer = write_side.price_book.get_price_book(tenant, period)
        book = answer.version.book
        assert book["currency"] == demo_price_book(tenant)["currency"]
        assert any("tiers" in line for line in book["prices"])
        assert answer.version.effective_from == period.start


def test_a_seed_is_deterministic_and_stores_every_event_once(
    write_side: WriteSide,
) -> None:
    first = seed_plan(write_side)
    again = seed_plan(write_side)

    generated = _generated(PLAN)
    assert (first.accepted, first.conflicts, first.rejected) == (generated, 0, 0)
    assert first.duplicates > 0  # producers' retries are part of the demo
    # Same seed, same moment: the very same events, so all duplicates, no conflict.
    assert (again.accepted, again.conflicts, again.rejected) == (0, 0, 0)
    assert again.duplicates == first.accepted + first.duplicates
    assert write_side.metering.head_position() == first.position


def test_seeded_usage_arrives_as_if_sent_live_with_a_few_late_events(
    write_side: WriteSide,
) -> None:
    report = seed_plan(write_side)
    write_side.projector.advance("billing_usage_daily")

    with psycopg.connect(write_side.settings.conninfo()) as conn:
        delays = [
            (occurred, recorded)
            for occurred, recorded in conn.execute(
                "SELECT occurred_at, recorded_at FROM billing_usage_ledger"
            )
        ]
        rows = read_model(conn)
    assert len(delays) == report.accepted
    # Nothing is recorded before it happened, nor after the moment of seeding.
    assert all(occurred <= recorded <= NOW for occurred, recorded in delays)
    # Almost all usage arrives within its producer's block; a few events late.
    block = timedelta(hours=BLOCK_HOURS) + SEND_DELAY
    late = sum(recorded - occurred > block for occurred, recorded in delays)
    assert 0 < late < 0.01 * len(delays)

    # So the read model shows a normal history: few days restated, not all.
    events = sum(r[2] for r in rows.values())
    late_counted = sum(r[4] for r in rows.values())
    assert events == report.accepted
    assert 0 < late_counted <= late
    restated = sum(1 for r in rows.values() if r[1] != r[3])
    assert restated < 0.2 * len(rows)
    # The month-end outage shows as late adjustments of the closed October in
    # each tenant's first workspace (a stray late event may add others).
    adjusted = {
        (key[0], key[2])
        for key, r in rows.items()
        if r[0] == date(2026, 10, 1) and r[6] > 0
    }
    first = PLAN.workspace_list()[0]
    assert {(tenant, first) for tenant, _ in PLAN.tenant_list()} <= adjusted
