"""Go-style durations (``2160h``, ``1h30m``, ``90m``, ``1.5h``), as cert-manager's fields use.

cert-manager parses ``duration`` and ``renewBefore`` with Go's ``time.ParseDuration``, so
manifests written for it use that syntax. We accept the same grammar, keep whole seconds
(the precision certificates and status records carry) and format back the way Go does.
"""

from __future__ import annotations

import functools
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

_UNITS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "μs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
# ASCII digits only: Go rejects other scripts' digits, which Python's \d would accept.
_TERM = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)", re.ASCII)
# Go's time.Duration is an int64 of nanoseconds: about 2562047h47m16s.
MAX_SECONDS = (2**63 - 1) // 10**9


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> timedelta:
    """Parse a Go duration; sub-second remainders are dropped.

    Raises:
        ValueError: the text is not a Go duration, or it is negative.
    """
    if not isinstance(text, str) or not text:
        raise ValueError("expected a duration such as 2160h or 1h30m")
    body = text[1:] if text[0] == "+" else text
    if body.startswith("-"):
        raise ValueError(f"{text!r} is negative; expected a positive duration such as 2160h")
    if body == "0":
        return timedelta(0)

    position, seconds = 0, Decimal(0)
    for match in _TERM.finditer(body):
        if match.start() != position:
            break
        try:
            seconds += Decimal(match.group(1)) * _UNITS[match.group(2)]
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only numbers
            raise ValueError(f"{text!r} is not a duration") from exc
        position = match.end()
    if position != len(body) or position == 0:
        raise ValueError(f"{text!r} is not a duration; expected e.g. 2160h, 1h30m or 90m")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{text!r} is too long; durations go up to {MAX_SECONDS // 3600}h")
    return timedelta(seconds=int(seconds))


def format(value: timedelta) -> str:
    """Format whole seconds as Go does: ``2160h0m0s``, ``1h30m0s``, ``45s``."""
    total = int(value.total_seconds())
    if total == 0:
        return "0s"
    sign = "-" if total < 0 else ""
    total = abs(total)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{sign}{minutes}m{seconds}s"
    return f"{sign}{seconds}s"
