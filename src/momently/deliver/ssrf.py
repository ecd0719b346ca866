"""Outbound HTTP only to public addresses: no way into the internal network (SSRF).

A webhook URL or a Web Push endpoint (which a customer's browser supplies) is
resolved and *every* address it resolves to is checked with :mod:`ipaddress`;
one private, loopback, link-local (cloud metadata at 169.254.169.254),
shared, reserved, multicast or unspecified address refuses the send — as do
IPv4 addresses hidden in IPv6 (mapped, 6to4, Teredo). A target on the
brand's own network is allowed only by saying so: ``allow_private_targets:
true`` on the provider in the playbook.

Redirects are never followed by the adapters, so an answer cannot bounce a
send to an address that was not checked. A resolver that answers differently
between the check and the connection (DNS rebinding) is not covered here:
the check narrows the window to one lookup, and the adapters' short timeouts
bound what a rebinding host could do.

>>> is_public(ipaddress.ip_address("93.184.216.34")), is_public(ipaddress.ip_address("10.0.0.1"))
(True, False)
>>> is_public(ipaddress.ip_address("::ffff:127.0.0.1")), is_public(ipaddress.ip_address("fe80::1"))
(False, False)
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from momently.deliver.errors import PermanentSendError, RetryableSendError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
DEFAULT_PORTS = {"http": 80, "https": 443}


class BlockedTarget(PermanentSendError):
    """The target resolves to an address momently does not send to."""


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (what the HTTP client will try)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = [ip.ipv4_mapped, ip.sixtofour]
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return [v4 for v4 in found if v4 is not None]


def is_public(ip: IPAddress) -> bool:
    """Whether ``ip`` is a globally routable unicast address (and hides no private one)."""
    if not ip.is_global or ip.is_multicast or ip.is_unspecified:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        return all(is_public(v4) for v4 in _embedded(ip))
    return True


def parse_address(text: str) -> IPAddress:
    """An address as a resolver gives it; an IPv6 zone (``fe80::1%eth0``) is dropped."""
    return ipaddress.ip_address(text.split("%", 1)[0])


@dataclass(frozen=True)
class TargetPolicy:
    """Where outbound requests may go: public addresses, or anywhere if ``allow_private``."""

    allow_private: bool = False
    resolver: Resolver = field(default=system_resolver, compare=False)

    def check_url(self, url: str) -> None:
        """Raise :class:`BlockedTarget` unless every address of ``url``'s host is allowed.

        A host that cannot be resolved now is a retryable failure (DNS may be down).
        """
        if self.allow_private:
            return
        parts = urlsplit(url)
        host = parts.hostname
        if not host:
            raise BlockedTarget(f"no host in the target URL {url!r}")
        try:
            port = parts.port or DEFAULT_PORTS.get(parts.scheme, 443)
        except ValueError as exc:
            raise BlockedTarget(f"bad port in the target URL: {exc}") from exc
        self.check_host(host, port)

    def check_host(self, host: str, port: int) -> None:
        if self.allow_private:
            return
        try:
            literal: IPAddress | None = parse_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = [parse_address(a) for a in self.resolver(host, port)]
            except (OSError, UnicodeError, ValueError) as exc:
                raise RetryableSendError(f"cannot resolve {host}: {exc}") from exc
            if not addresses:
                raise RetryableSendError(f"cannot resolve {host}: no address")
        for address in addresses:
            if not is_public(address):
                raise BlockedTarget(
                    f"target {host} resolves to {address}, which is not a public address;"
                    " set allow_private_targets: true on the provider to send there"
                )
