"""Reading one setting from the environment: a flag, a choice, a number of seconds in
its bounds, OpenTelemetry's own variables. Each reader refuses a value the gateway
cannot run with in one line saying what to fix (`SettingsError`); app.settings puts
them together."""

from __future__ import annotations

from collections.abc import Mapping


class SettingsError(ValueError):
    """A setting has a value the gateway cannot run with; the message says what to fix."""


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


LOG_FORMATS = ("text", "json")
# The span exporters the gateway builds (OTEL_TRACES_EXPORTER), and the one OTLP protocol.
TRACES_EXPORTERS = ("otlp", "console")
OTLP_PROTOCOL = "http/protobuf"


def traces_exporters(env: Mapping[str, str]) -> tuple[str, ...]:
    """Which span exporters the standard OpenTelemetry variables ask for; () is off.

    Off unless asked: OTEL_TRACES_EXPORTER names `otlp` and/or `console`, or (unset)
    an OTLP endpoint is given (OTEL_EXPORTER_OTLP_ENDPOINT or ..._TRACES_ENDPOINT).
    OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none, keeps it off whatever else
    is set. (The SDK's own default, `otlp` to localhost, would send spans nowhere
    useful on a host without a collector.)
    """
    if flag(env, "OTEL_SDK_DISABLED", False):
        return ()
    raw = (env.get("OTEL_TRACES_EXPORTER") or "").strip().lower()
    if raw:
        names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
        if names == ("none",):
            return ()
        unknown = [name for name in names if name not in TRACES_EXPORTERS]
        if unknown or not names:
            raise SettingsError(
                f"OTEL_TRACES_EXPORTER must be otlp, console (or both, comma-separated) or "
                f"none, got {env.get('OTEL_TRACES_EXPORTER')!r}"
            )
    elif env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        names = ("otlp",)
    else:
        return ()
    if "otlp" in names:
        for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = (env.get(name) or "").strip()
            if protocol:
                if protocol != OTLP_PROTOCOL:
                    raise SettingsError(
                        f"{name} must be {OTLP_PROTOCOL} (OTLP over HTTP, port 4318 by "
                        f"default; grpc is not built in), got {protocol!r}"
                    )
                break
    return names


def integer(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
        raise SettingsError(f"{name} must be {kind}, got {raw!r}")
    return value


# The longest METRICS_JOBS_INTERVAL: counts older than an hour tell an operator little.
MAX_JOBS_INTERVAL = 3600


def whole_seconds(env: Mapping[str, str], name: str, default: int, most: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip()
    if not value.isdigit() or not 0 <= int(value) <= most:
        raise SettingsError(
            f"{name} must be a whole number of seconds from 0 to {most}, got {raw!r}"
        )
    return int(value)


# Bounds of CHANGE_POLL_INTERVAL: more often costs every process a query per poll for
# nothing; less often leaves subscribers stale for minutes.
MIN_POLL_INTERVAL, MAX_POLL_INTERVAL = 0.05, 60.0


def poll_interval(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not MIN_POLL_INTERVAL <= value <= MAX_POLL_INTERVAL:
        raise SettingsError(
            f"{name} must be a number of seconds from {MIN_POLL_INTERVAL:g} to "
            f"{MAX_POLL_INTERVAL:g}, got {raw!r}"
        )
    return value


# Bounds of IDEMPOTENCY_KEY_TTL: a client's retries span minutes to hours; a key kept
# for weeks only grows the table.
MIN_KEY_TTL, MAX_KEY_TTL = 60, 7 * 86_400


def key_ttl(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not MIN_KEY_TTL <= value <= MAX_KEY_TTL:
        raise SettingsError(
            f"{name} must be a whole number of seconds from {MIN_KEY_TTL} to {MAX_KEY_TTL} "
            f"(7 days), got {raw!r}"
        )
    return value


def seconds(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not low <= value <= high:
        raise SettingsError(f"{name} must be a number from {low:g} to {high:g}, got {raw!r}")
    return value


# Values copied from examples and templates; a real secret is random.
