"""Read-your-writes, said in the answer: whether a read's wait was long enough.

A read asked to wait (`min_positions`) waits at most BILLING_MAX_READ_WAIT_SECONDS,
then answers with what its read model holds. The answer then says so: a `waited`
field and the X-Read-Your-Writes header. Both depend on the request, not on the
data, so they are added around the cached bytes, never kept in them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import NamedTuple

import msgspec

from application.projecting.progress import PositionWatcher


class Wait(msgspec.Struct):
    """`reached`: every position asked for was processed before answering;
    else `missing` names each upstream that was not and the position asked."""

    reached: bool
    missing: dict[str, int]

    @property
    def outcome(self) -> str:
        """The X-Read-Your-Writes header: `reached` or `timeout`."""
        return "reached" if self.reached else "timeout"


async def wait_for_writes(
    watcher: PositionWatcher,
    read_positions: Callable[[], Awaitable[Mapping[str, int]]],
    wanted: Mapping[str, int] | None,
    timeout: float,
    *,
    followed: Sequence[str],
) -> Wait | None:
    """Wait briefly for the positions asked; None when none were asked."""
    if not wanted:
        return None
    missing = await watcher.unreached(
        read_positions, wanted, timeout, followed=followed
    )
    return Wait(reached=not missing, missing=missing)


_encode = msgspec.json.Encoder().encode


def with_wait(body: bytes, wait: Wait | None) -> bytes:
    """The answer's JSON object (as cached) with its `waited` field added last."""
    if wait is None:
        return body
    return b"".join((body[:-1], b',"waited":', _encode(wait), b"}"))


class Answer(NamedTuple):
    """An encoded answer, whether it came from the cache, and how its wait went."""

    body: bytes
    hit: bool
    wait: Wait | None
