"""One HTTP POST to a checked destination, on the very address that was checked.

The connection goes to an address `check_destination` approved (not to the host
name, which DNS could answer differently a moment later), while the Host header
and the TLS server name (SNI, certificate check) stay the URL's host. Redirects
are not followed. The whole attempt, answer included, is bounded by `timeout`.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from application.notifying.addresses import Destination

USER_AGENT = "billing-webhooks/1"


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got: a status code, or an error (and how long it took)."""

    status_code: int | None
    error: str | None
    duration_ms: int
    retry_after: float | None = None  # seconds, from a 429 or 503's Retry-After
    refused: bool = False  # never sent: the destination breaks the address rules


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to `address`; the Host header stays the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to `address`; TLS verifies the certificate for the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def post(
    destination: Destination, body: bytes, headers: dict[str, str], timeout: float
) -> Answer:
    """POST `body` to the first address of `destination` that accepts a connection."""
    started = time.monotonic()
    error = "no address to connect to"
    for address in destination.addresses:
        try:
            status, retry_after = _post_once(
                destination, address, body, headers, timeout
            )
        except ConnectionRefusedError as e:  # try the next address
            error = _describe(e)
            continue
        except (OSError, http.client.HTTPException) as e:
            return Answer(None, _describe(e), _elapsed_ms(started))
        return Answer(status, None, _elapsed_ms(started), retry_after)
    return Answer(None, error, _elapsed_ms(started))


def _post_once(
    destination: Destination,
    address: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
) -> tuple[int, float | None]:
    kind = (
        _PinnedHTTPSConnection
        if destination.scheme == "https"
        else _PinnedHTTPConnection
    )
    conn = kind(destination.host, destination.port, address, timeout)
    # A server that answers a byte at a time never trips the socket timeout:
    # shutting the socket down at the deadline ends the attempt regardless.
    expired = threading.Event()
    watchdog = threading.Timer(timeout, _shut, args=(conn, expired))
    watchdog.start()
    try:
        conn.request(
            "POST",
            destination.target,
            body=body,
            headers={
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                **headers,
            },
        )
        response = conn.getresponse()
        with contextlib.suppress(OSError, http.client.HTTPException):
            response.read(64 * 1024)  # let the server finish; the body is not kept
        return response.status, _retry_after(response.getheader("retry-after"))
    except (OSError, http.client.HTTPException) as e:
        if expired.is_set() or isinstance(e, TimeoutError):
            raise TimeoutError(f"no answer within {timeout:g} s") from None
        raise
    finally:
        watchdog.cancel()
        conn.close()


def _shut(conn: http.client.HTTPConnection, expired: threading.Event) -> None:
    expired.set()
    if conn.sock is not None:
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_RDWR)


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is not honoured)."""
    if value and value.strip().isascii() and value.strip().isdigit():
        return float(value.strip())
    return None


def _describe(error: BaseException) -> str:
    """A short, secret-free description: the error's class and message."""
    if isinstance(error, TimeoutError):
        return f"timeout: {error}" if str(error) else "timeout"
    text = str(error) or error.__class__.__name__
    return f"{error.__class__.__name__}: {text}"[:500]


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
