"""A lean HTTP/1.1 keep-alive GET client on asyncio, so the client's CPU stays small.

httpx spends a few hundred microseconds of CPU per request; at thousands of
requests per second on two shared cores, that would be taken from the server
being measured. Requests here are pre-encoded bytes; a reply is read by its
Content-Length (or chunks) and only the status and headers are parsed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import uvloop


class Reply(NamedTuple):
    status: int
    headers: dict[bytes, bytes]
    body: bytes


def get_request(path: str, bearer: str | None = None) -> bytes:
    """The bytes of `GET path` on a keep-alive connection."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    if bearer:
        lines.append(f"Authorization: Bearer {bearer}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, request: bytes) -> Reply:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", self.port
            )
        assert self.reader is not None
        self.writer.write(request)
        reply = await _read_reply(self.reader)
        if reply.headers.get(b"connection") == b"close":
            await self.close()
        return reply

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def _read_reply(reader: asyncio.StreamReader) -> Reply:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        body = await _read_chunks(reader)
    else:
        body = b""
    return Reply(int(status_line.split(b" ", 2)[1]), headers, body)


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readline()).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    await reader.readline()  # the CRLF after the last chunk (no trailers)
    return b"".join(parts)


@dataclass
class Load:
    """What the clients of a run saw."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    hits: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def cache_text(self) -> str:
        return f"{self.hits / max(1, len(self.latencies)):.0%} cache hits"


async def _client(
    port: int, requests: Sequence[bytes], offset: int, until: float, load: Load
) -> None:
    conn = Connection(port)
    i = offset
    while time.perf_counter() < until:
        started = time.perf_counter()
        try:
            reply = await conn.get(requests[i % len(requests)])
        except (OSError, asyncio.IncompleteReadError):
            load.errors += 1
            await conn.close()
            continue
        load.latencies.append(time.perf_counter() - started)
        load.errors += reply.status != 200
        load.hits += reply.headers.get(b"x-cache") == b"hit"
        i += 1
    await conn.close()


async def _concurrently(
    port: int, requests: Sequence[bytes], clients: int, seconds: float
) -> Load:
    load = Load()
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(
        *(_client(port, requests, k, until, load) for k in range(clients))
    )
    load.seconds = time.perf_counter() - started
    return load


def concurrent_load(
    port: int, requests: Sequence[bytes], *, clients: int, seconds: float
) -> Load:
    """`clients` connections sending back to back for `seconds`, cycling `requests`."""
    return uvloop.run(_concurrently(port, requests, clients, seconds))


async def _sequentially(
    port: int, request: bytes, count: int, before_each: Callable[[], object] | None
) -> Load:
    load = Load()
    conn = Connection(port)
    for _ in range(count):
        if before_each:
            before_each()
        started = time.perf_counter()
        reply = await conn.get(request)
        load.latencies.append(time.perf_counter() - started)
        load.errors += reply.status != 200
        load.hits += reply.headers.get(b"x-cache") == b"hit"
    await conn.close()
    return load


def one_client(
    port: int,
    request: bytes,
    count: int,
    before_each: Callable[[], object] | None = None,
) -> Load:
    """One connection, `count` requests back to back; `before_each` runs untimed."""
    return uvloop.run(_sequentially(port, request, count, before_each))


def fetch(port: int, request: bytes) -> Reply:
    """One request on a fresh connection."""

    async def once() -> Reply:
        conn = Connection(port)
        try:
            return await conn.get(request)
        finally:
            await conn.close()

    return uvloop.run(once())
