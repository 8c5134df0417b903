"""JSON request bodies: what msgspec cannot decode is the caller's 400, not our 500.

msgspec raises RecursionError for nesting deeper than the interpreter's stack
and UnicodeDecodeError for invalid UTF-8 inside a string; both are malformed
bodies, answered like any other (`body: ...`) and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from litestar import Request
from litestar.exceptions import ClientException

T = TypeVar("T")


@contextmanager
def malformed_body_is_400() -> Iterator[None]:
    try:
        yield
    except RecursionError:
        raise ClientException("body: is nested too deeply") from None
    except UnicodeDecodeError as e:
        raise ClientException(
            f"body: is not valid JSON (invalid UTF-8 at offset {e.start})"
        ) from None


def decode_body(decode: Callable[[bytes], T], body: bytes) -> T:
    """`decode(body)`, with undecodable bodies answered 400."""
    with malformed_body_is_400():
        return decode(body)


class JsonRequest(Request[Any, Any, Any]):
    """Litestar's request, whose JSON body (JSONBody parameters) decodes safely."""

    async def json(self) -> Any:
        with malformed_body_is_400():
            return await super().json()
