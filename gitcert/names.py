"""Normalisation of the identities a certificate names, so that comparisons mean something.

Two specs that differ only in case, a trailing dot, Unicode versus punycode spelling, the
textual form of an IP address, order or duplicates name the same certificate, and must
not trigger a reissue. Everything that compares names goes through these functions.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$", re.ASCII)


def dns_name(name: str) -> str:
    """Lower-case, no trailing dot, IDNA (punycode) labels; ``*.`` wildcards kept.

    Unicode labels are NFC-normalised first, so a name typed on a system that writes
    decomposed characters names the same certificate.

    Raises:
        ValueError: the name cannot be a DNS name.
    """
    text = unicodedata.normalize("NFC", name.strip()).rstrip(".").lower()
    if not text:
        raise ValueError("empty DNS name")
    wildcard = text.startswith("*.")
    body = text[2:] if wildcard else text
    labels = [_label(label, name) for label in body.split(".")]
    result = ("*." if wildcard else "") + ".".join(labels)
    if len(result) > 253:
        raise ValueError(f"{name!r} is longer than 253 characters")
    return result


def _label(label: str, name: str) -> str:
    if not label.isascii():
        try:
            label = "xn--" + label.encode("punycode").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"{name!r} cannot be encoded as punycode") from exc
    if not _LABEL.match(label):
        raise ValueError(
            f"{name!r} is not a DNS name: label {label!r} may hold only letters, digits "
            "and inner hyphens"
        )
    if len(label) > 63:
        raise ValueError(f"{name!r} has a label longer than 63 characters")
    return label


def ip_address(text: str) -> str:
    """The canonical text of an IP address (``::0001`` becomes ``::1``)."""
    return str(ipaddress.ip_address(text.strip()))


def email(text: str) -> str:
    """Domain part normalised like a DNS name; the local part is case-sensitive."""
    local, sep, domain = text.strip().rpartition("@")
    if not sep or not local or not domain:
        raise ValueError(f"{text!r} is not an email address")
    return f"{local}@{dns_name(domain)}"


def uri(text: str) -> str:
    return text.strip()


def canonical_set(values: Iterable[str]) -> tuple[str, ...]:
    """Sorted without duplicates: order and repetition never matter for identities."""
    return tuple(sorted(set(values)))


def ip_sort_key(text: str) -> tuple[int, int]:
    address = ipaddress.ip_address(text)
    return (address.version, int(address))
