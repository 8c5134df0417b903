"""Where a webhook may go: the URL rules and the address rules (no SSRF).

An endpoint is an `https` URL (or `http` when private delivery is allowed, for
local development) whose host resolves only to public addresses. The same check
runs when the URL is set and again before every attempt, on the addresses the
sender will actually connect to: DNS may have changed in between.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to (socket.getaddrinfo by default)
Resolver = Callable[[str, int], Sequence[str]]


class InvalidWebhookUrl(ValueError):
    """The URL breaks a rule; the message starts with `url:`."""


class RefusedDestination(InvalidWebhookUrl):
    """The host is, or resolves to, an address webhooks are never sent to."""


class UnresolvableHost(InvalidWebhookUrl):
    """The host name does not resolve (now: DNS may answer later)."""


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked URL and the addresses it may be delivered to, in order."""

    scheme: str  # https, or http for local development
    host: str  # as written in the URL: the Host header and the TLS server name
    port: int
    target: str  # path and query, what the request line asks for
    addresses: tuple[str, ...]


def system_resolver(host: str, port: int) -> Sequence[str]:
    """Every address `host` resolves to (IPv4 and IPv6), in the resolver's order."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise UnresolvableHost(f"url: the host {host!r} does not resolve ({e})") from e
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def check_destination(
    url: str, *, allow_private: bool, resolve: Resolver = system_resolver
) -> Destination:
    """`url` checked, resolved, and every address it resolves to checked."""
    scheme, host, port, target = parse_url(url, allow_private=allow_private)
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    found = [host] if literal is not None else list(resolve(host, port))
    if not found:
        raise UnresolvableHost(f"url: the host {host!r} does not resolve")
    if not allow_private:
        for text in found:
            problem = address_problem(ipaddress.ip_address(text))
            if problem:
                shown = host if text == host else f"{host} ({text})"
                raise RefusedDestination(
                    f"url: {shown} is a {problem} address; webhooks are sent to"
                    " public addresses only"
                )
    return Destination(scheme, host, port, target, tuple(found))


def parse_url(url: str, *, allow_private: bool) -> tuple[str, str, int, str]:
    """(scheme, host, port, path and query) of an acceptable endpoint URL."""
    if not url.isascii() or not url.isprintable() or " " in url:
        raise InvalidWebhookUrl("url: must be printable ASCII without spaces")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookUrl(f"url: must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InvalidWebhookUrl(f"url: is not a valid URL ({e})") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise InvalidWebhookUrl(f"url: must start with {' or '.join(schemes)}://")
    if not parts.hostname:
        raise InvalidWebhookUrl("url: must name a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookUrl("url: must not hold credentials (user:password@)")
    if port == 0:
        raise InvalidWebhookUrl("url: the port must be from 1 to 65535")
    if parts.fragment:
        raise InvalidWebhookUrl("url: must not have a #fragment")
    default = 443 if parts.scheme == "https" else 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or default, target


def address_problem(address: Address) -> str | None:
    """What kind of non-public address this is, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None and address_problem(embedded):
            return address_problem(embedded)
        if address.ipv4_mapped is not None:
            return None
    checks = (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        (
            "site-local",
            isinstance(address, ipaddress.IPv6Address) and address.is_site_local,
        ),
        ("private", address.is_private),
        ("non-public", not address.is_global),
    )
    return next((name for name, applies in checks if applies), None)
