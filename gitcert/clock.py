"""The one source of "now" for every decision gitcert makes.

Tests and ``--now`` pin the clock, so that renewal and backoff decisions can be checked
against exact instants. Times are UTC and carry whole seconds only, because that is the
precision status records store and compare (see :func:`truncate`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime

from gitcert.errors import UserError

Clock = Callable[[], datetime]

NOW_ENV = "GITCERT_NOW"


def truncate(moment: datetime) -> datetime:
    """Drop sub-second precision; stored and compared times must agree exactly."""
    return moment.replace(microsecond=0)


def system_clock() -> datetime:
    return truncate(datetime.now(UTC))


def parse_instant(text: str) -> datetime:
    """Parse an RFC 3339 instant such as ``2026-05-01T12:00:00Z``."""
    if len(text) == 20 and text[-1] == "Z":  # what gitcert writes: the fast, common case
        try:
            return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
        except ValueError:
            pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise UserError(
            f"not an RFC 3339 time: {text!r} (expected e.g. 2026-05-01T12:00:00Z)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return truncate(moment.astimezone(UTC))


def format_instant(moment: datetime) -> str:
    return truncate(moment).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fixed_clock(moment: datetime) -> Clock:
    pinned = truncate(moment)
    return lambda: pinned


def from_option(now: str | None) -> Clock:
    """The clock for a run: ``--now``, else ``$GITCERT_NOW``, else the system clock."""
    if now:
        return fixed_clock(parse_instant(now))
    if os.environ.get(NOW_ENV):
        try:
            return fixed_clock(parse_instant(os.environ[NOW_ENV]))
        except UserError as exc:
            raise UserError(f"${NOW_ENV}: {exc}") from exc
    return system_clock
