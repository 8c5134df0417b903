"""Long commands report progress in lines where a bar cannot redraw itself."""

from __future__ import annotations

import io

import pytest

from interfaces.progress import ProgressLines, show_progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_pipe_gets_lines_not_a_bar() -> None:
    assert isinstance(
        show_progress(10, "seeding usage", file=io.StringIO()), ProgressLines
    )


def test_a_line_at_the_start_every_few_seconds_and_at_the_end() -> None:
    out, clock = io.StringIO(), Clock()

    with ProgressLines(
        1000, "seeding usage", file=out, every_seconds=5, clock=clock
    ) as bar:
        for _ in range(10):  # 100 events a second for 10 s
            clock.now += 1
            bar.update(100)

    assert out.getvalue().splitlines() == [
        "seeding usage: 0 of 1,000",
        "seeding usage: 500 of 1,000 (50%), 5 s, about 5 s left",
        "seeding usage: 1,000 of 1,000 (100%), 10 s, about 0 s left",
        "seeding usage: 1,000 done in 10.0 s",
    ]


def test_a_failed_run_does_not_claim_it_finished() -> None:
    out = io.StringIO()

    def fail_after_three() -> None:
        with ProgressLines(10, "rebuilding x", file=out, clock=Clock()) as bar:
            bar.update(3)
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        fail_after_three()

    assert out.getvalue().splitlines() == ["rebuilding x: 0 of 10"]
