"""A Redis stand-in that keeps nothing: every GET misses, every SET is dropped.

    python bench/null_redis.py PORT

Pointing `billing serve` at it makes every usage request a cache miss that
still pays the Redis round trips of a real miss (GET, then SET of the answer),
without changing what is asked. It speaks just enough RESP2/RESP3 for redis-py.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

_HELLO = (
    b"$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n$5\r\nproto\r\n"
)
_HELLO3 = b"%3\r\n" + _HELLO + b":3\r\n"  # a map (RESP3)
_HELLO2 = b"*6\r\n" + _HELLO + b":2\r\n"  # a flat array (RESP2)
_COUNTS = {b"LLEN", b"DEL", b"EXISTS", b"HSET", b"EXPIRE", b"UNLINK"}


async def read_command(reader: asyncio.StreamReader) -> list[bytes]:
    """One command as a client sends it: an array of bulk strings."""
    header = await reader.readline()
    if not header:
        raise asyncio.IncompleteReadError(b"", None)
    args = []
    for _ in range(int(header[1:])):
        size = int((await reader.readline())[1:])
        args.append((await reader.readexactly(size + 2))[:-2])
    return args


def reply(args: list[bytes], resp3: bool) -> bytes:
    """What a Redis that holds no keys would answer."""
    name = args[0].upper()
    if name == b"HELLO":
        return _HELLO3 if resp3 else _HELLO2
    if name == b"GET":
        return b"_\r\n" if resp3 else b"$-1\r\n"
    if name == b"PING":
        return b"+PONG\r\n"
    if name in _COUNTS:
        return b":0\r\n"
    return b"+OK\r\n"


async def serve_client(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    resp3 = False
    try:
        while True:
            args = await read_command(reader)
            if args[0].upper() == b"HELLO" and len(args) > 1:
                resp3 = args[1] == b"3"
            writer.write(reply(args, resp3))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve_client, "127.0.0.1", port)
    print(f"null redis listening on {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
