"""Each benchmark runs end to end in its quick mode and prints its figures.

Only that: timings are figures for people to read, never pass/fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIGURES = {
    "forecast_method.py": [
        "median APE day  1, ours",
        "median APE day  1, linear pace",
        "ours / linear pace, day  7",
        "80% interval coverage day  1",
        "forecast_quantity, one call",
    ],
    "ingest.py": [
        "ingest over HTTP, sustained",
        "batch latency",
        "peak RSS of server processes",
        "COPY same rows",
        "HTTP ingest / COPY",
    ],
    "projection.py": [
        "catch-up in-process",
        "rebuild in-process",
        "rebuild in `billing worker`",
        "raw read of metering_events",
        "catch-up / raw read",
        "lag, ingest response to projected",
    ],
    "query.py": [
        "one workspace, uncached, 1 client",
        "one workspace, cached, 1 client",
        "whole tenant, uncached, 1 client",
        "whole tenant, cached, 1 client",
        "16 clients, mixed workspaces, uncached",
        "16 clients, mixed workspaces, cached",
        "GET /healthz",
        "raw-event SQL aggregation",
        "CSV export, whole tenant: first byte",
        "API totals equal raw-event totals",
    ],
}
KINDS = ("figure", "reference", "ratio")

# `make bench-smoke` runs these (and CI, after `make test`); `make test` does not.
pytestmark = [pytest.mark.bench, pytest.mark.timeout(240)]


@pytest.mark.parametrize("script", sorted(FIGURES))
def test_a_benchmark_runs_in_quick_mode_and_prints_its_figures(
    real_services: None, script: str
) -> None:
    result = subprocess.run(
        [sys.executable, f"bench/{script}", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("command") and script in line for line in lines)
    printed = [line for line in lines if line.split(" ", 1)[0] in KINDS]
    for label in FIGURES[script]:
        assert any(label in line for line in printed), f"no {label!r} line"
    assert {line.split(" ", 1)[0] for line in printed} == set(KINDS)


def test_the_forecast_backtest_runs_through_the_real_path_in_quick_mode(
    real_services: None,
) -> None:
    result = subprocess.run(
        [sys.executable, "bench/forecast_backtest.py", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    lines = result.stdout.splitlines()
    printed = [line for line in lines if line.split(" ", 1)[0] in KINDS]
    for label in (
        "median APE day  1, ours",
        "median APE day  1, linear pace",
        "median APE day  1, trailing 28-day mean",
        "ours / linear pace, day  7",
        "80% interval coverage day  1",
        "rebuild billing_forecast",
        "rebuild billing_usage_daily (usage alone)",
        "GET forecast?period=current, uncached",
        "GET forecast?period=current, cached",
    ):
        assert any(label in line for line in printed), f"no {label!r} line"
    # What the read model answered, not how fast: every used period's actuals
    # are what was sent, every answer is as of its checkpoint's tick, and its
    # quantities agree with billing_usage_daily's ("N of N").
    for check in (
        "closed periods' actuals equal what was sent",
        "answers as of their checkpoint's tick",
        "forecast to date = billing_usage_daily",
    ):
        line = next(line for line in printed if check in line)
        same, _, total = line.split(check)[1].split()[:3]
        assert same == total, line


def test_the_anomaly_bench_runs_through_the_real_path_in_quick_mode(
    real_services: None,
) -> None:
    result = subprocess.run(
        [sys.executable, "bench/anomaly_eval.py", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    lines = result.stdout.splitlines()
    printed = [line for line in lines if line.split(" ", 1)[0] in KINDS]
    for label in (
        "spike, ours",
        "spike, mean +- 2 sd",
        "drop, static 2x / 0.5x",
        "F1 ours / mean +- 2 sd, level_shift",
        "false flags per 100 series-months, ours",
        "detection delay from the first midnight, spike",
        "spike sent to flag served, while 5,000 events/s flow",
        "spike sent to flag served, no other load",
        "rebuild billing_anomalies",
        "rebuild billing_usage_daily (usage alone)",
    ):
        assert any(label in line for line in printed), f"no {label!r} line"
    # What the read model holds, not how fast or how well it judges: its daily
    # totals are what was sent (and billing_usage_daily's), and a rebuild gives
    # the flags built live ("N of N").
    for check in (
        "daily totals equal what was sent",
        "flags after a rebuild equal the ones built live",
        "anomaly daily totals = billing_usage_daily",
    ):
        line = next(line for line in printed if check in line)
        same, _, total = line.split(check)[1].split()[:3]
        assert same == total, line


def test_the_replay_bench_runs_in_quick_mode_and_every_replay_verifies(
    real_services: None,
) -> None:
    result = subprocess.run(
        [sys.executable, "bench/replay.py", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    lines = result.stdout.splitlines()
    printed = [line for line in lines if line.split(" ", 1)[0] in KINDS]
    for label in (
        "as-of usage, whole tenant, 1 client",
        "as-of usage, one workspace, 1 client",
        "live usage, whole tenant, uncached",
        "as-of / live, whole tenant, p95",
        "replay, usage, whole tenant",
        "replay, usage, one workspace",
        "replay / live, usage, whole tenant, p95",
        "billing audit verify, last line",
    ):
        assert any(label in line for line in printed), f"no {label!r} line"
    # What was replayed, not how fast: every replay says verified and is the
    # bytes the client received ("N of N"), and `billing audit verify` found
    # no mismatch and exited 0.
    for check in ("replays verified, ", "replayed = the bytes received, "):
        checked = [line for line in printed if check in line]
        assert checked, f"no {check!r} line"
        for line in checked:
            same, _, total = line.rsplit(None, 3)[1:]
            assert same == total, line
    verify = next(line for line in printed if "billing audit verify, last line" in line)
    assert " 0 mismatched" in verify, verify
    status = next(line for line in printed if "verify, exit status" in line)
    assert status.split("wall time", 1)[1].split()[0] == "0,", status
