"""Logging set-up: one handler for the whole process, with a redaction filter.

Modules log through ``logging.getLogger(__name__)``. Level meanings:
debug for mechanics, info for decisions an operator cares about, warning for a degraded
path that continues, error for a certificate that failed.
"""

from __future__ import annotations

import logging
import re

_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(-----END \1PRIVATE KEY-----|$)", re.S
)
_AGE_SECRET = re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]+")


def redact(text: str) -> str:
    """Replace private key material with a marker. Used on every log record."""
    text = _PRIVATE_KEY.sub("[REDACTED PRIVATE KEY]", text)
    return _AGE_SECRET.sub("[REDACTED AGE KEY]", text)


class RedactingFilter(logging.Filter):
    """Last line of defence: no PEM private key or age identity ever reaches a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def setup(verbosity: int) -> None:
    """Configure the root logger: warnings by default, ``-v`` info, ``-vv`` debug."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
