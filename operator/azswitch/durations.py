"""Go-style duration strings (``90s``, ``30m``, ``1h30m``), the notation Kubernetes users already write.

The CRD validates the *shape* with :data:`DURATION_PATTERN` (the same regular expression, so the apiserver
and the operator accept exactly the same strings); :func:`parse_duration` turns a string into a
``timedelta`` and :func:`format_duration` turns one back, so that ``parse_duration(format_duration(d)) == d``.
Only non-negative durations exist here: a negative timeout or cooldown has no meaning.

:func:`parse_timestamp` reads the other time value Kubernetes objects carry, an RFC 3339 timestamp (``Time``
or ``MicroTime``), the way every status field and Lease field of this project is read back.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

#: One or more ``<number><unit>`` terms (units ``h``, ``m``, ``s``, ``ms``; decimals allowed, as in Go),
#: or a bare ``0``. Written for both Python ``re`` and the apiserver's RE2 (no look-around).
DURATION_PATTERN = r"^(0|([0-9]+(\.[0-9]+)?(ms|h|m|s))+)$"

_FULL = re.compile(DURATION_PATTERN)
# ``ms`` must be tried before ``m`` or "500ms" would read as 500 minutes followed by garbage.
_TERM = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)")
_MICROSECONDS = {"h": 3_600_000_000, "m": 60_000_000, "s": 1_000_000, "ms": 1_000}
_EXAMPLES = "expected a duration such as '90s', '30m', '1h30m' or '0s' (units h, m, s, ms)"


def parse_duration(value: str) -> timedelta:
    """Parse a Go-style duration. Raises ``ValueError`` naming the bad string and showing good ones."""
    if not isinstance(value, str):
        # A bare YAML number (``timeout: 30``) is ambiguous — 30 what? — so it is refused, not guessed.
        raise ValueError(f"invalid duration {value!r}: {_EXAMPLES}")
    if not _FULL.fullmatch(value):
        raise ValueError(f"invalid duration {value!r}: {_EXAMPLES}")
    if value == "0":
        return timedelta(0)
    total = Decimal(0)
    try:
        for number, unit in _TERM.findall(value):
            total += Decimal(number) * _MICROSECONDS[unit]
        return timedelta(microseconds=int(total.to_integral_value()))
    except (OverflowError, InvalidOperation) as exc:
        raise ValueError(f"invalid duration {value!r}: too large") from exc


def format_duration(value: timedelta) -> str:
    """The shortest Go-style spelling of ``value`` (``1h30m``, ``90s`` → ``1m30s``, ``0`` → ``0s``)."""
    if value < timedelta(0):
        raise ValueError(f"negative duration {value!r} cannot be formatted")
    total_us = value // timedelta(microseconds=1)
    hours, rest = divmod(total_us, _MICROSECONDS["h"])
    minutes, rest = divmod(rest, _MICROSECONDS["m"])
    seconds, micros = divmod(rest, _MICROSECONDS["s"])
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if micros and not seconds and micros % 1000 == 0:
        parts.append(f"{micros // 1000}ms")
    elif micros:
        parts.append(f"{seconds}.{micros:06d}".rstrip("0") + "s")
    elif seconds:
        parts.append(f"{seconds}s")
    return "".join(parts) or "0s"


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (``Z`` or an offset, any fraction) as an aware datetime; None if absent or junk.
    A timestamp without a zone is taken as UTC, as Kubernetes writes only UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
