"""Progress of a long command: a bar on a terminal, plain lines anywhere else.

A bar redraws itself in place, which a pipe, a log file or CI cannot show:
click then prints its label once and nothing more until the end. There we
print a line when the work starts, every few seconds, and when it is done.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

import click

EVERY_SECONDS = 5.0


def show_progress(length: int, label: str, *, file: TextIO | None = None) -> Any:
    """A context manager with `update(n)`, `length` and `pos`, as click's bar."""
    out = file or sys.stderr
    if out.isatty():
        return click.progressbar(
            length=length, label=label, show_eta=True, show_pos=True, file=out
        )
    return ProgressLines(length, label, file=out)


class ProgressLines:
    """`label: done of total (percent), elapsed, time left` every few seconds."""

    def __init__(
        self,
        length: int,
        label: str,
        *,
        file: TextIO,
        every_seconds: float = EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.length = length
        self.pos = 0
        self.label = label
        self.file = file
        self.every_seconds = every_seconds
        self.clock = clock
        self._started = self._printed = 0.0

    def __enter__(self) -> ProgressLines:
        self._started = self._printed = self.clock()
        self._print(f"{self.label}: 0 of {self.length:,}")
        return self

    def update(self, steps: int) -> None:
        self.pos += steps
        now = self.clock()
        if now - self._printed >= self.every_seconds:
            self._printed = now
            elapsed = now - self._started
            left = elapsed * (self.length - self.pos) / self.pos if self.pos else 0
            self._print(
                f"{self._done()}, {elapsed:.0f} s, about {max(left, 0):.0f} s left"
            )

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            # The length may have been an estimate: say what was done.
            elapsed = self.clock() - self._started
            self._print(f"{self.label}: {self.pos:,} done in {elapsed:.1f} s")

    def _done(self) -> str:
        percent = 100 * self.pos // self.length if self.length else 100
        return f"{self.label}: {self.pos:,} of {self.length:,} ({min(percent, 100)}%)"

    def _print(self, line: str) -> None:
        click.echo(line, file=self.file)
