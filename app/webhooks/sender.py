"""One delivery attempt: signed as Standard Webhooks says, sent with httpx.

Headers: `webhook-id` (the delivery's, the same on every attempt), `webhook-timestamp`
(this attempt's, seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256>`, by the
`standardwebhooks` package; two during a secret rotation's overlap). The connection
goes to the address `app.webhooks.guard` checked, redirects are never followed, and
the response body is not read. A 2xx answer is a success; anything else, a timeout
or a refused address is a failure with its reason.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks import Webhook

from app.webhooks.guard import TargetRefused, resolve

USER_AGENT = "jobs-gateway-webhooks/1"


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    # None: delivered.
    error: str | None
    duration_ms: int
    retry_after: str | None = None


def sign(secrets: list[str], msg_id: str, at: datetime, body: str) -> str:
    return " ".join(Webhook(secret).sign(msg_id, at, body) for secret in secrets)


class Sender:
    def __init__(self, connect_timeout: float, timeout: float, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.deadline = connect_timeout + 2 * timeout
        # trust_env off: no proxy from the environment (it would bypass the address check).
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": USER_AGENT},
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(
        self, url: str, secrets: list[str], msg_id: str, at: datetime, body: str
    ) -> Outcome:
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            address = await resolve(host, port, self.allow_private)
        except TargetRefused as exc:
            return Outcome(None, str(exc), elapsed())
        netloc = f"[{address}]" if address.version == 6 else str(address)
        target = urlunsplit((parts.scheme, f"{netloc}:{port}", parts.path or "/", parts.query, ""))
        headers = {
            "host": parts.netloc.rpartition("@")[2],
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": sign(secrets, msg_id, at, body),
        }
        try:
            async with asyncio.timeout(self.deadline):
                request = self.client.build_request(
                    "POST",
                    target,
                    content=body.encode(),
                    headers=headers,
                    # TLS to the name, not the address: its certificate is checked.
                    extensions={"sni_hostname": host},
                )
                # Streamed and closed unread: a receiver's body is of no use here.
                response = await self.client.send(request, stream=True)
                await response.aclose()
        except TimeoutError:
            return Outcome(None, f"timed out after {self.deadline:g} s", elapsed())
        except httpx.TimeoutException as exc:
            return Outcome(None, f"timed out ({type(exc).__name__})", elapsed())
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:500], elapsed())
        code = response.status_code
        if 200 <= code < 300:
            return Outcome(code, None, elapsed())
        if 300 <= code < 400:
            where = response.headers.get("location", "")
            error = f"HTTP {code}: redirect to {where[:200]!r} not followed"
        else:
            error = f"HTTP {code}"
        return Outcome(code, error, elapsed(), response.headers.get("retry-after"))
