"""`billing seed` says how far it is, on a terminal or not."""

from __future__ import annotations

import re

from click.testing import CliRunner

from application.settings import Settings
from interfaces.cli import main
from tests.support import env_for

TINY = ["--tenants", "1", "--workspaces", "1", "--product-areas", "1", "--days", "2"]


def test_seeding_into_a_pipe_prints_progress_lines(settings: Settings) -> None:
    result = CliRunner().invoke(main, ["seed", *TINY], env=env_for(settings))

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "seeding usage: 0 of 48"
    assert re.fullmatch(r"seeding usage: \d+ done in \d+\.\d s", lines[-3]), lines
    assert lines[-2].startswith("accepted ")
