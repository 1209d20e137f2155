"""Webhook receiver URLs: what we accept, and where we may connect (SSRF).

A webhook makes this server send requests to an address a customer chose, from inside our
network. In production a URL must be ``https``, carry no credentials, and its host must
resolve only to public addresses — never private, loopback, link-local (cloud metadata at
169.254.169.254), multicast, reserved, unspecified or shared (CGNAT) ones, in IPv4, IPv6 or
IPv4 embedded in IPv6 (mapped, 6to4, Teredo, NAT64). The check runs when the endpoint is
saved (a 422 on ``url``) and again at every delivery, which then connects to the very address
it checked, so a DNS answer that changes in between (rebinding) cannot redirect us inward.
The embedded default and the tests allow http and private addresses (their receivers run on
this machine): ``WEBHOOK_ALLOW_PRIVATE_ADDRESSES`` and ``WEBHOOK_REQUIRE_HTTPS``.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeUrl(ValueError):
    """The URL is malformed or not allowed; the message is for the ``url`` field."""


@dataclass(frozen=True)
class Target:
    """Where a request goes: the URL's parts and the address to connect to."""

    scheme: str
    host: str  # as written (the Host header, TLS server name)
    port: int
    path: str  # path and query
    addresses: tuple[str, ...]  # the checked IP addresses to connect to, in DNS order


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_forbidden(address: IPAddress) -> bool:
    """Whether a receiver at ``address`` would reach inside a network rather than the Internet."""
    embedded = _embedded_ipv4(address)
    if embedded is not None and is_forbidden(embedded):
        return True
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def parse(url: str, *, require_https: bool) -> SplitResult:
    """The URL's parts, or :class:`UnsafeUrl` saying what is wrong with it."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"Must be at most {MAX_URL_LENGTH} characters.")
    if any(ord(char) <= 32 or ord(char) == 127 for char in url):
        raise UnsafeUrl("Must not contain spaces or control characters.")
    if not url.isascii():
        raise UnsafeUrl(
            "Must be ASCII: write an international host name in punycode (xn--...) and "
            "other characters as %XX."
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise UnsafeUrl("Not a valid URL.") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("Must be an http or https URL.")
    if require_https and parts.scheme != "https":
        raise UnsafeUrl("Must be an https URL.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeUrl("Must not contain a user name or password.")
    if not parts.hostname:
        raise UnsafeUrl("Must name a host.")
    if parts.fragment:
        raise UnsafeUrl("Must not contain a fragment (#...).")
    return parts


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal IP is itself); UnsafeUrl if none."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl("The host name does not resolve.") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeUrl("The host name does not resolve.")
    return addresses


def check(url: str, *, require_https: bool, allow_private: bool) -> None:
    """Whether an endpoint may be saved with ``url`` (UnsafeUrl if not). Where private
    addresses are allowed there is nothing to resolve for; delivery resolves anyway."""
    if allow_private:
        parse(url, require_https=require_https)
    else:
        target(url, require_https=require_https, allow_private=False)


def target(url: str, *, require_https: bool, allow_private: bool) -> Target:
    """Check ``url`` and pick the address to connect to (every address of the host must pass)."""
    parts = parse(url, require_https=require_https)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(host, port)
    if not allow_private and any(is_forbidden(address) for address in addresses):
        raise UnsafeUrl(
            "The host resolves to a private, loopback, link-local or otherwise internal "
            "address; webhooks go to public addresses only."
        )
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(parts.scheme, host, port, path, tuple(str(a) for a in addresses))
