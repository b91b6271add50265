"""Which addresses a webhook may reach: checked when connecting, not only at creation.

An endpoint's host is resolved here, every address it resolves to is checked, and
the request goes to the checked address (the URL's host in the Host header and in
TLS's SNI, so certificates are still verified against the name): a name that
resolves to a public address when the endpoint is created and to 127.0.0.1 later
(DNS rebinding) is refused at that later connection. Refused: loopback, private
(RFC 1918, IPv6 ULA fc00::/7), link-local (169.254/16 with the cloud metadata
address 169.254.169.254, fe80::/10), shared (100.64/10), multicast, reserved,
unspecified, and IPv4-mapped/-translated forms of them. WEBHOOK_ALLOW_PRIVATE_TARGETS
(off by default; tests use it) allows them, and http:// URLs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services; link-local already covers the IPv4 one, named for the message.
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class TargetRefused(Exception):
    """The endpoint's host is, or resolves to, an address webhooks may not reach."""


def forbidden(address: IPAddress) -> str | None:
    """Why `address` may not be reached, or None."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return forbidden(mapped)
    if address in METADATA:
        return "a cloud metadata address"
    checks = (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "an unspecified address"),
        ("is_reserved", "a reserved address"),
        ("is_private", "a private address"),
    )
    for attribute, what in checks:
        if getattr(address, attribute):
            return what
    if not address.is_global:
        return "not a public address"
    return None


def check_literal_host(host: str, allow_private: bool) -> str | None:
    """At creation: why a URL whose host is an IP literal or `localhost` is refused."""
    if allow_private:
        return None
    if host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost"):
        return "must not point at this machine (localhost)"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    reason = forbidden(address)
    return f"must not point at {reason} ({host})" if reason else None


async def resolve(host: str, port: int, allow_private: bool) -> IPAddress:
    """The address to connect to: every address `host` resolves to must be allowed."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        found = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise TargetRefused(f"cannot resolve {host}: {exc.strerror or exc}") from None
        found = [ipaddress.ip_address(info[4][0]) for info in infos]
        if not found:
            raise TargetRefused(f"{host} resolves to no address")
    if not allow_private:
        for address in found:
            reason = forbidden(address)
            if reason is not None:
                raise TargetRefused(f"{host} resolves to {address}, {reason}: refused")
    return found[0]
