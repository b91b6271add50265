"""Which hosts and addresses are this machine: one rule for the CLI's --host
check, open mode's guard (app.middleware) and /readyz's details (app.health)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache


# Every request names the same few addresses and hosts; parsing one costs ~10 µs.
@lru_cache(maxsize=256)
def address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`text` as an IP address (IPv6 brackets allowed), or None if it is not one."""
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """A loopback address (an IPv4-mapped IPv6 one too), not a name."""
    parsed = address(host)
    if parsed is None:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped:
        return parsed.ipv4_mapped.is_loopback
    return parsed.is_loopback


def is_local_host(host: str) -> bool:
    """A loopback address or the name "localhost"."""
    return host == "localhost" or is_loopback(host)
