"""The `billing` command line: serve, worker, token, seed, projections, db."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click

from application.settings import ConfigurationError, Settings
from application.tokens import ROLES, issue_token
from interfaces.progress import show_progress

_DEMO_NAME = re.compile(r"[A-Za-z0-9_]{1,63}")  # a database and a key prefix


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigurationError as e:
        raise click.ClickException(str(e)) from None


@contextmanager
def _write_side(settings: Settings) -> Iterator[Any]:
    from application.bootstrap import bootstrap, initialise_database

    initialise_database(settings)
    ws = bootstrap(settings)
    try:
        yield ws
    finally:
        ws.close()


@click.group()
def main() -> None:
    """Usage-based billing dashboard: metering ingest, read models, usage API."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers", default=1, show_default=True, type=int, help="HTTP processes"
)
def serve(host: str, port: int, workers: int) -> None:
    """Run the HTTP API and dashboard."""
    import uvicorn

    from application.bootstrap import initialise_database
    from application.logs import configure_logging
    from interfaces.http.observability import shared_metrics

    settings = _settings()
    configure_logging(settings.log_level)
    initialise_database(settings)
    with shared_metrics(processes=workers):
        uvicorn.run(
            "interfaces.http.asgi:create",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_config=None,
        )


@main.command()
@click.option("--processes", default=1, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int)
def worker(processes: int, threads: int) -> None:
    """Run Dramatiq workers: the ingest queue and the projectors."""
    from application.bootstrap import initialise_database

    initialise_database(_settings())
    command = [
        sys.executable,
        "-m",
        "workers",  # Dramatiq's command line, logging JSON in every process
        "workers.actors",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--queues",
        "ingest",
        "projections",
        "webhooks",
    ]
    os.execv(sys.executable, command)  # noqa: S606 - our own interpreter and module


@main.command()
@click.option("--tenant", required=True, help="Tenant id the token is for")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(ROLES))
@click.option("--sub", default="dev-user", show_default=True, help="Subject (user id)")
@click.option("--ttl", default=3600, show_default=True, type=int, help="Seconds")
def token(tenant: str, roles: tuple[str, ...], sub: str, ttl: int) -> None:
    """Print a JWT signed with the configured secret (development and tests)."""
    settings = _settings()
    if not 0 < ttl <= settings.max_token_lifetime_seconds:
        raise click.BadParameter(
            f"must be from 1 to {settings.max_token_lifetime_seconds} seconds"
            " (BILLING_MAX_TOKEN_LIFETIME_SECONDS)",
            param_hint="--ttl",
        )
    click.echo(
        issue_token(
            settings,
            tenant_id=tenant,
            roles=list(roles),
            subject=sub,
            ttl_seconds=ttl,
        )
    )


@main.group()
def db() -> None:
    """Database schema."""


@db.command("init")
def db_init() -> None:
    """Create the database, schema, event tables and read models (idempotent)."""
    from application.bootstrap import initialise_database

    settings = _settings()
    initialise_database(settings)
    click.echo(f"database ready: schema {settings.db_schema!r}")


@main.command()
@click.option("--tenants", default=3, show_default=True, type=int)
@click.option("--workspaces", default=5, show_default=True, type=int)
@click.option("--product-areas", default=5, show_default=True, type=int)
@click.option("--days", default=90, show_default=True, type=int)
@click.option(
    "--events-per-day",
    default=24,
    show_default=True,
    type=int,
    help="Per workspace and product area",
)
@click.option("--seed", "seed_value", default=7, show_default=True, type=int)
def seed(  # noqa: PLR0913
    tenants: int,
    workspaces: int,
    product_areas: int,
    days: int,
    events_per_day: int,
    seed_value: int,
) -> None:
    """Load deterministic demo usage through the real ingest path, replayed as
    its producers would have sent it over the last DAYS days."""
    from application.clock import utc_now
    from application.seeding import SeedPlan
    from application.seeding import seed as run_seed

    settings = _settings()
    plan = SeedPlan(
        tenants, workspaces, product_areas, days, events_per_day, seed_value
    )
    with (
        _write_side(settings) as ws,
        show_progress(plan.expected_events, "seeding usage") as bar,
    ):
        report = run_seed(
            plan,
            metering=ws.metering,
            tenants=ws.tenants,
            price_book=ws.price_book,
            clock=utc_now,
            progress=bar.update,
        )
    click.echo(
        f"accepted {report.accepted}, duplicates {report.duplicates}, "
        f"conflicts {report.conflicts}, rejected {report.rejected}; "
        f"history position {report.position}"
    )
    click.echo("tenants: " + ", ".join(t for t, _ in plan.tenant_list()))


@main.group()
def projections() -> None:
    """Read models: status and rebuilds."""


@projections.command("status")
def projections_status() -> None:
    """State, position, head and lag of every read model, and why one fails."""
    with _write_side(_settings()) as ws:
        for s in ws.projector.status():
            building = f", building v{s.building_version}" if s.building_version else ""
            running = " (rebuild running)" if s.rebuild_running else ""
            through = (
                f"{s.data_through:%Y-%m-%d %H:%M:%S %Z}" if s.data_through else "?"
            )
            click.echo(
                f"{s.name}  {s.state.upper()}  live v{s.live_version}{building}"
                f"{running}  data through {through}"
            )
            for u in s.upstreams:
                click.echo(
                    f"  {u.upstream:<16} position {u.position:>10}  head {u.head:>10}"
                    f"  lag {u.lag_events:>8} events  {u.lag_seconds:8.3f} s"
                )
            for label, failure in (
                ("failing", s.failure),
                ("rebuild failed", s.rebuild_failure),
            ):
                if failure:
                    click.echo(_failure_line(label, failure))


def _failure_line(label: str, f: Any) -> str:
    where = f"{f.upstream} position {f.position}" if f.upstream else "no record"
    return (
        f"  {label} (v{f.version}) at {where}, {f.failures} time(s) in a row"
        f" since {f.first_failed_at:%Y-%m-%d %H:%M:%S %Z}: {f.error}"
    )


@projections.command("rebuild")
@click.argument("name")
def projections_rebuild(name: str) -> None:
    """Rebuild NAME from the full history while the live copy keeps serving."""
    from application.projecting.failing import ProjectionFailed
    from application.projecting.rebuild import RebuildInProgress

    with _write_side(_settings()) as ws:
        if name not in ws.projector.projections:
            known = ", ".join(ws.projector.projections)
            raise click.ClickException(f"unknown projection {name!r}; one of: {known}")
        started = time.monotonic()
        with show_progress(1, f"rebuilding {name}") as bar:

            def progress(done: int, total: int) -> None:
                bar.length = max(total, done, 1)
                bar.update(done - bar.pos)

            try:
                done = ws.projector.rebuild(name, progress)
            except RebuildInProgress as e:
                raise click.ClickException(str(e)) from None
            except ProjectionFailed as e:
                raise click.ClickException(
                    f"rebuild failed, the live copy keeps serving: {e}"
                ) from None
        seconds = time.monotonic() - started
        click.echo(f"rebuilt {name} from {done} events in {seconds:.1f} s; swapped in")


@main.group()
def audit() -> None:
    """Auditors: replay past views and exports, verify them in bulk."""


@audit.command("replay")
@click.argument("audit_event_id", type=int)
@click.option("--body/--no-body", default=False, help="Print the reproduced bytes")
@click.option(
    "--from-ledger",
    is_flag=True,
    help="Sum the ledger, not today's daily rows or a read model's own days",
)
def audit_replay(audit_event_id: int, body: bool, from_ledger: bool) -> None:
    """Reproduce the view or export AUDIT_EVENT_ID (an id from GET
    /api/audit/events) from the history and check it against the SHA-256 of
    what was sent. Exits 1 when they differ."""
    import asyncio

    async def run() -> bool:
        async with _read_side() as rs:
            tenant = await rs.audit_reader.tenant_of(audit_event_id)
            record = tenant and await rs.replay.recorded(tenant, audit_event_id)
            if not record:
                raise click.ClickException(f"audit event {audit_event_id} not found")
            replayed = await rs.replay.reproduce(record, from_ledger=from_ledger)
        verdict = "verified" if replayed.verified else "MISMATCH"
        click.echo(
            f"{record.id} {record.type} of {record.tenant_id} at"
            f" {record.occurred_at:%Y-%m-%d %H:%M:%S %Z}: {verdict}\n"
            f"  recorded sha256 {record.recorded_sha256}\n"
            f"  replayed sha256 {replayed.replayed_sha256}"
        )
        if record.type == "UsageExported":
            stored = replayed.stored_sha256 or "(the file is gone)"
            click.echo(f"  stored file     {stored}")
        if body:
            click.echo(replayed.body.decode())
        return replayed.verified

    try:
        verified = asyncio.run(run())
    except ValueError as e:  # NotReplayable: not a view, or recorded before
        raise click.ClickException(str(e)) from None
    sys.exit(0 if verified else 1)


@audit.command("verify")
@click.option("--tenant", help="Only this tenant's views and exports")
@click.option(
    "--since", help="Only those recorded from this RFC 3339 instant, e.g. 2026-11-01"
)
@click.option("--sample", type=click.IntRange(min=1), help="Only N, spread evenly")
@click.option(
    "--from-ledger",
    is_flag=True,
    help="Sum every ledger entry up to each view's cut instead of starting"
    " from today's daily rows or a read model's own days (slower, independent"
    " of them)",
)
def audit_verify(
    tenant: str | None, since: str | None, sample: int | None, from_ledger: bool
) -> None:
    """Reproduce past views and exports in bulk and compare each with the
    SHA-256 recorded when it was sent; print every mismatch, exit 1 on any."""
    import asyncio
    from datetime import UTC, datetime

    try:
        start = datetime.fromisoformat(since) if since else None
    except ValueError:
        raise click.BadParameter(
            "must be an RFC 3339 time", param_hint="--since"
        ) from None
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)

    async def run() -> tuple[int, int, int, float]:
        verified = mismatched = skipped = 0
        started = time.monotonic()
        async with _read_side() as rs:
            total = await rs.replay.count(tenant, start)
            with show_progress(min(total, sample or total), "verifying") as bar:
                async for outcome in rs.replay.verify(
                    tenant, start, sample, from_ledger=from_ledger
                ):
                    bar.update(1)
                    if isinstance(outcome, tuple):
                        skipped += 1
                    elif outcome.verified:
                        verified += 1
                    else:
                        mismatched += 1
                        r = outcome.record
                        click.echo(
                            f"MISMATCH {r.id} {r.type} of {r.tenant_id} at"
                            f" {r.occurred_at:%Y-%m-%d %H:%M:%S %Z}: recorded"
                            f" {r.recorded_sha256}, replayed"
                            f" {outcome.replayed_sha256}"
                        )
        return verified, mismatched, skipped, time.monotonic() - started

    verified, mismatched, skipped, seconds = asyncio.run(run())
    done = verified + mismatched
    rate = done / seconds if seconds > 0 else 0.0
    click.echo(
        f"{verified} verified, {mismatched} mismatched, {skipped} not replayable"
        f" (recorded before views kept what replay needs) in {seconds:.1f} s"
        f" ({rate:.1f} views/s)"
    )
    sys.exit(1 if mismatched else 0)


@asynccontextmanager
async def _read_side() -> AsyncIterator[Any]:
    from application.bootstrap import build_services, open_read_side

    services = build_services(_settings())
    try:
        rs = await open_read_side(services)
        try:
            yield rs
        finally:
            await rs.close()
    finally:
        services.close()


@main.command("dead-letters")
def dead_letters() -> None:
    """List ingest messages that failed, with why (kept 30 days)."""
    import json

    import redis

    settings = _settings()
    client = redis.Redis.from_url(settings.redis_url)
    entries = client.hgetall(f"{settings.redis_namespace}:dead-letter-reasons")
    if not entries:
        click.echo("no dead letters")
    for message_id, raw in sorted(entries.items()):
        record = json.loads(raw)
        click.echo(
            f"{message_id.decode()}  {record['queue']}/{record['actor']}:"
            f" {record['reason']}"
        )


@main.command()
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--reseed/--no-reseed", default=False, help="Seed even if data exists")
@click.option(
    "--database",
    help="Database on DATABASE_URL's server (created if missing) [default: its own]",
)
@click.option(
    "--namespace",
    help="Redis namespace of queues and cache [default: --database if given,"
    " else BILLING_REDIS_NAMESPACE]",
)
@click.option("--days", default=90, show_default=True, help="Days of usage to seed")
def demo(
    port: int, reseed: bool, days: int, database: str | None, namespace: str | None
) -> None:
    """Seed demo data if the store is empty, then run a worker and the API; on
    embedded PostgreSQL and Redis where none answers (BILLING_EMBEDDED)."""
    from interfaces.embedded import EmbeddedError, embedded_services

    os.environ.update(demo_environment(os.environ, database, namespace))
    # `kill` or a closed terminal stops the demo as Ctrl-C does: children too.
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, _interrupt)
    try:
        with embedded_services(_settings(), click.echo) as settings:
            _demo(settings, port, reseed, days)
    except EmbeddedError as e:
        raise click.ClickException(str(e)) from None


def _demo(settings: Settings, port: int, reseed: bool, days: int) -> None:
    with _write_side(settings) as ws:
        empty = ws.metering.head_position() == 0
    if empty or reseed:
        seed = [sys.executable, "-m", "interfaces.cli", "seed", "--days", str(days)]
        subprocess.run(seed, check=True)  # noqa: S603 - our own interpreter
    children: list[subprocess.Popen[bytes]] = []
    try:
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "interfaces.cli", "worker", "--processes", "1"]
            )
        )
        _print_welcome(settings, port)
        children.append(
            subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "interfaces.cli", "serve", "--port", str(port)]
            )
        )
        children[-1].wait()
    except KeyboardInterrupt:
        click.echo("stopping the API and the worker")
    finally:
        # SIGTERM is a graceful stop for both, even after a terminal's Ctrl-C
        # reached them already (a second SIGINT would make uvicorn force-quit).
        for process in children:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in children:
            process.wait(timeout=30)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def demo_environment(
    env: Mapping[str, str], database: str | None, namespace: str | None
) -> dict[str, str]:
    """The variables that point a demo (and its worker, API and seeding) at
    another database on the same server and another Redis namespace, so two
    demos on one machine share no data, queues or cache."""
    changes = {}
    if database is not None:
        if _DEMO_NAME.fullmatch(database) is None:
            raise click.BadParameter("letters, digits and _", param_hint="--database")
        url = urlsplit(env.get("DATABASE_URL") or Settings().database_url)
        changes["DATABASE_URL"] = urlunsplit(url._replace(path=f"/{database}"))
    namespace = namespace or database
    if namespace is not None:
        if _DEMO_NAME.fullmatch(namespace) is None:
            raise click.BadParameter("letters, digits and _", param_hint="--namespace")
        changes["BILLING_REDIS_NAMESPACE"] = namespace
    return changes


def _print_welcome(settings: Settings, port: int) -> None:
    tokens = {
        role: issue_token(
            settings,
            tenant_id="t_acme",
            roles=[role],
            subject=f"demo-{role}",
            ttl_seconds=12 * 3600,
        )
        for role in ("admin", "ops", "auditor", "metering")
    }
    platform = issue_token(
        settings,
        tenant_id="platform",  # labels its audit records; it sees every tenant's
        roles=["platform"],
        subject="demo-platform",
        ttl_seconds=12 * 3600,
    )
    base = f"http://127.0.0.1:{port}"
    click.echo(
        f"""
The billing dashboard is starting on {base}
  dashboard   {base}/dashboard#token={tokens["admin"]}
              (the link signs this browser tab in as t_acme's admin)
  API docs    {base}/schema      OpenAPI: {base}/schema/openapi.json
  health      {base}/readyz      metrics: {base}/metrics
  database    {settings.postgres.dbname}    Redis namespace: {settings.redis_namespace}

Tokens for tenant t_acme (12 h; make more with `billing token`):
  admin     {tokens["admin"]}
  ops       {tokens["ops"]}
  auditor   {tokens["auditor"]}
  metering  {tokens["metering"]}

Platform operator (status and rebuilds of the read models every tenant shares):
  platform  {platform}

Try: curl -H "Authorization: Bearer $ADMIN" "{base}/api/billing/usage?period=current"
"""
    )


if __name__ == "__main__":
    main()
