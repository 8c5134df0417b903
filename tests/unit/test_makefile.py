"""`make help` lists every documented target, whatever characters its name has."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")
ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED = re.compile(r"^([^\s:#=$]+):[^=\n]*## ", re.MULTILINE)
# Names GNU make accepts that the original pattern missed (digits were the
# first reported; underscores, capitals and dots follow the same path).
UNUSUAL = ("e2e-2x", "bench_v2", "Release", "docs.html")


def listed(makefile_dir: Path) -> list[str]:
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(makefile_dir), "help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split()[1] for line in out.splitlines() if line.startswith("  make")]


def test_make_help_lists_every_documented_target() -> None:
    makefile = (ROOT / "Makefile").read_text()

    assert listed(ROOT) == DOCUMENTED.findall(makefile)


def test_make_help_lists_targets_with_digits_underscores_capitals_dots(
    tmp_path: Path,
) -> None:
    extra = "".join(f"{name}: ## {name}\n\t@true\n" for name in UNUSUAL)
    (tmp_path / "Makefile").write_text((ROOT / "Makefile").read_text() + extra)

    assert listed(tmp_path)[-len(UNUSUAL) :] == list(UNUSUAL)


def make_dry_run(*variables: str) -> str:
    """The `billing demo` command `make demo` would run with these variables."""
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), "demo", *variables],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return next(line for line in out.splitlines() if "billing demo" in line)


def test_make_help_shows_how_to_run_a_second_demo() -> None:
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(ROOT), "help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert "make demo PORT=8010 DB=billing_b NAMESPACE=demo_b" in out


def test_make_demo_takes_port_database_and_namespace() -> None:
    assert make_dry_run().endswith("billing demo --port 8000")
    assert make_dry_run("PORT=8010", "DB=billing_b", "NAMESPACE=demo_b").endswith(
        "billing demo --port 8010 --database billing_b --namespace demo_b"
    )
    assert make_dry_run("DB=billing_b").endswith(
        "billing demo --port 8000 --database billing_b --namespace billing_b"
    )
