"""When a failed delivery is tried again.

Standard Webhooks' suggested schedule: the first attempt at once, then after
5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h: 8 attempts over about 27.6 hours.
Each wait is stretched by a random 0-20 % (jitter: an endpoint back from an outage
is not hit by every delivery at the same instant), and a `Retry-After` the
receiver sent (seconds or an HTTP date, at most 24 h) is honoured when it asks for
longer. WEBHOOK_RETRY_SCALE multiplies every wait (tests run it in milliseconds).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

# Seconds to wait after the 1st, 2nd, ... failed attempt; after the last, none.
RETRY_DELAYS = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.2
MAX_RETRY_AFTER = 86_400.0


def next_delay(
    failed_attempts: int, scale: float, retry_after: float | None = None
) -> float | None:
    """Seconds until the next attempt after `failed_attempts` failures; None: no more."""
    if failed_attempts >= MAX_ATTEMPTS:
        return None
    delay = RETRY_DELAYS[failed_attempts - 1] * scale * (1 + random.uniform(0, JITTER))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def total_hours() -> float:
    return sum(RETRY_DELAYS) / 3600


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """`Retry-After` in seconds: a number of seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def after(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)
