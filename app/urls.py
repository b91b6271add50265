"""The address clients reach the gateway at: each job's `url` and REST's `Location`.

PUBLIC_URL when set: behind a proxy, a load balancer or a container's port mapping it
is the only right answer, since the gateway cannot see the address clients use.

Unset, the address the request arrived at, as the server reports it in the ASGI scope
(`server`, `scheme`): the host and port actually served, with `python -m app serve
--host/--port` and with uvicorn run directly alike. Bound to every interface (0.0.0.0,
::) that is the interface the client connected to, so the url resolves for that
client (127.0.0.1 for one on this machine, the LAN address for one on the LAN). A
Unix socket has no address: its requests' Host header names the gateway instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from app.net import address
from app.settings import Settings

# A Host header that is a host and maybe a port, nothing else (no path, no user).
_HOST = re.compile(rb"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")

# What a URL leaves out: the scheme's own port.
_DEFAULT_PORTS = {"http": 80, "https": 443}


def public_url(settings: Settings, scope: Mapping[str, Any]) -> str:
    """`{PUBLIC_URL}`, or the served address of this request (HTTP or WebSocket)."""
    if settings.public_url is not None:
        return settings.public_url
    return served_url(scope)


def served_url(scope: Mapping[str, Any]) -> str:
    """`scheme://host[:port]` of the address this request reached."""
    scheme = str(scope.get("scheme", "http"))
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    if scheme not in _DEFAULT_PORTS:
        scheme = "http"
    server = scope.get("server")
    if server and server[1] is not None:
        host, port = str(server[0]), int(server[1])
        # An IPv6 address is bracketed in a URL; a name or IPv4 address is not.
        if address(host) is not None and ":" in host and not host.startswith("["):
            host = f"[{host}]"
        if port == _DEFAULT_PORTS[scheme]:
            return f"{scheme}://{host}"
        return f"{scheme}://{host}:{port}"
    for name, value in scope.get("headers") or ():
        if name == b"host" and _HOST.fullmatch(value):
            return f"{scheme}://{value.decode()}"
    return f"{scheme}://localhost"
