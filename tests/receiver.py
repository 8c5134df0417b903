"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 in a thread.

It records every request before answering, answers with the statuses it is
told (204 once they run out), and can hold a request unanswered until released
(to stop a worker in the middle of an attempt, or to make one time out).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names lowercased
    body: bytes

    @property
    def json(self) -> Any:
        return msgspec.json.decode(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    """Records webhook requests; answers as scripted."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._answers: list[int] = []
        self._hold = 0  # how many of the next requests to hold unanswered
        self._released = threading.Event()
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/billing?source=test"

    def answer_with(self, *statuses: int) -> None:
        """Answer the next requests with these statuses, in order."""
        with self._changed:
            self._answers.extend(statuses)

    def hold_next(self, count: int = 1) -> None:
        """Keep the next `count` requests waiting (no answer) until release()."""
        with self._changed:
            self._hold += count
            self._released.clear()

    def release(self) -> None:
        self._released.set()

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        """Block until `count` requests have arrived; all of them."""
        with self._changed:
            if not self._changed.wait_for(
                lambda: len(self.requests) >= count, timeout=timeout
            ):
                raise TimeoutError(
                    f"{len(self.requests)} of {count} webhook requests in {timeout} s"
                )
            return list(self.requests)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, hold = receiver._record(Received(self.path, headers, body))
                if hold:
                    receiver._released.wait(timeout=120)
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up (or was killed) meanwhile

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _record(self, received: Received) -> tuple[int, bool]:
        with self._changed:
            self.requests.append(received)
            hold = self._hold > 0
            self._hold -= 1 if hold else 0
            status = self._answers.pop(0) if self._answers else 204
            self._changed.notify_all()
            return status, hold

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
