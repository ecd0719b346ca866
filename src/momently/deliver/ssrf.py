"""Outbound HTTP only to public addresses: no way into the internal network (SSRF).

A webhook URL or a Web Push endpoint (which a customer's browser supplies) is
resolved and *every* address it resolves to is checked with :mod:`ipaddress`;
one private, loopback, link-local (cloud metadata at 169.254.169.254),
shared, reserved, multicast or unspecified address refuses the send — as do
IPv4 addresses hidden in IPv6 (mapped, 6to4, Teredo). A target on the
brand's own network is allowed only by saying so: ``allow_private_targets:
true`` on the provider in the playbook.

The same check covers every HTTP channel: webhooks, the SMS API's
``base_url`` and Web Push endpoints. Redirects are never followed by the
adapters, so an answer cannot bounce a send to an address that was not
checked. Each adapter connects to the address it checked, so a name that
resolves differently a moment later (DNS rebinding) cannot move the request:
the webhook through :func:`pinned` (the URL names the IP, ``Host`` and TLS SNI
and certificate check keep the name), SMS through :func:`checked_client` (an
httpcore network backend that checks at connect time and connects to the
checked addresses), Web Push through a requests adapter whose connections do
the same (``deliver/channels/webpush.py``). SMTP is not checked: its host is
the brand's own relay, named by the operator, never by a customer.

>>> is_public(ipaddress.ip_address("93.184.216.34")), is_public(ipaddress.ip_address("10.0.0.1"))
(True, False)
>>> is_public(ipaddress.ip_address("::ffff:127.0.0.1")), is_public(ipaddress.ip_address("fe80::1"))
(False, False)
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from momently.deliver.errors import PermanentSendError, RetryableSendError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
DEFAULT_PORTS = {"http": 80, "https": 443}
SocketOption = Any  # httpcore's (level, option, value) tuples, passed through


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

    def check_url(self, url: str) -> list[IPAddress]:
        """The checked addresses of ``url``'s host; :class:`BlockedTarget` unless every one
        is allowed; none (nothing resolved) when private targets are allowed.

        A host that cannot be resolved now is a retryable failure (DNS may be down).
        """
        if self.allow_private:
            return []
        parts = urlsplit(url)
        host = parts.hostname
        if not host:
            raise BlockedTarget(f"no host in the target URL {url!r}")
        try:
            port = parts.port or DEFAULT_PORTS.get(parts.scheme, 443)
        except ValueError as exc:
            raise BlockedTarget(f"bad port in the target URL: {exc}") from exc
        return self.check_host(host, port)

    def check_host(self, host: str, port: int) -> list[IPAddress]:
        if self.allow_private:
            return []
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
        return addresses


def pinned(url: str, addresses: list[IPAddress]) -> tuple[str, dict[str, str], dict[str, str]]:
    """``url`` sent to the first checked address: the URL with that IP, the ``Host``
    header, and httpx's ``sni_hostname`` extension (TLS still verifies the name).

    >>> pinned("https://h.example:8443/x?y=1", [ipaddress.ip_address("93.184.216.34")])
    ('https://93.184.216.34:8443/x?y=1', {'host': 'h.example:8443'}, {'sni_hostname': 'h.example'})
    >>> pinned("https://h.example/x", [])
    ('https://h.example/x', {}, {})
    """
    parts = urlsplit(url)
    if not addresses or not parts.hostname:
        return url, {}, {}
    try:
        parse_address(parts.hostname)
        return url, {}, {}  # already an address: nothing to resolve again
    except ValueError:
        pass
    userinfo, at, hostport = parts.netloc.rpartition("@")
    address = addresses[0]
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = userinfo + at + (host if parts.port is None else f"{host}:{parts.port}")
    return (
        parts._replace(netloc=netloc).geturl(),
        {"host": hostport},
        {"sni_hostname": parts.hostname},
    )


class CheckedBackend(httpcore.NetworkBackend):
    """An httpcore network backend that checks every connection's host with ``policy`` at
    connect time and connects to the addresses it checked, in order (no second lookup,
    so DNS rebinding has no window). TLS still verifies the name the URL gives."""

    def __init__(self, policy: TargetPolicy, inner: httpcore.NetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        targets = [str(a) for a in self._policy.check_host(host, port)] or [host]
        for target in targets[:-1]:
            try:
                return self._inner.connect_tcp(target, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue  # the next checked address, as a resolver's list is meant
        return self._inner.connect_tcp(targets[-1], port, timeout, local_address, socket_options)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        raise BlockedTarget("outbound requests go over TCP to a checked address only")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def checked_client(
    policy: TargetPolicy, *, timeout: float, auth: tuple[str, str] | None = None
) -> httpx.Client:
    """An httpx client whose every connection goes through :class:`CheckedBackend`.

    It follows no redirect and ignores proxy settings from the environment (a proxy
    would make the connection the check sees the proxy's, not the target's).
    """
    transport = httpx.HTTPTransport(trust_env=False)
    # httpx builds httpcore's pool without a backend argument; give it ours (if httpx
    # renamed these, tests/deliver/test_ssrf.py's loopback refusals would fail).
    transport._pool._network_backend = CheckedBackend(policy)  # noqa: SLF001
    return httpx.Client(
        transport=transport,
        timeout=timeout,
        auth=auth,
        follow_redirects=False,
        trust_env=False,
    )
