"""Normalisation of the identities a certificate names, so that comparisons mean something.

Two specs that differ only in case, a trailing dot, Unicode versus punycode spelling, the
textual form of an IP address, order or duplicates name the same certificate, and must
not trigger a reissue. Everything that compares names goes through these functions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


def dns_name(name: str) -> str:
    """Lower-case, no trailing dot, IDNA (punycode) labels; ``*.`` wildcards kept.

    Raises:
        ValueError: the name cannot be encoded as a DNS name.
    """
    text = name.strip().rstrip(".").lower()
    if not text:
        raise ValueError("empty DNS name")
    wildcard = text.startswith("*.")
    body = text[2:] if wildcard else text
    labels = []
    for label in body.split("."):
        if not label:
            raise ValueError(f"{name!r} has an empty label")
        if label.isascii():
            labels.append(label)
            continue
        try:
            labels.append("xn--" + label.encode("punycode").decode("ascii"))
        except UnicodeError as exc:
            raise ValueError(f"{name!r} cannot be encoded as punycode") from exc
    for label in labels:
        if len(label) > 63:
            raise ValueError(f"{name!r} has a label longer than 63 characters")
    return ("*." if wildcard else "") + ".".join(labels)


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
