"""Which ACME solver answers which name: cert-manager's selector rules, table-driven."""

from __future__ import annotations

import pytest

from gitcert.issuers.acme.selection import needs_dns01, select, solver_specs

SOLVERS = solver_specs(
    [
        {"http01": {"standalone": {"port": 80}}},
        {"selector": {"dnsZones": ["example.test"]}, "dns01": {"exec": {"command": ["a"]}}},
        {"selector": {"dnsZones": ["deep.example.test"]}, "dns01": {"exec": {"command": ["b"]}}},
        {"selector": {"dnsNames": ["exact.example.test"]}, "http01": {"webroot": {"path": "/w"}}},
    ]
)


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("other.test", 0),
        ("example.test", 1),
        ("www.example.test", 1),
        ("x.deep.example.test", 2),
        ("deep.example.test", 2),
        ("exact.example.test", 3),
        ("*.example.test", 1),
        ("*.deep.example.test", 2),
    ],
    ids=[
        "no selector matches anything else",
        "a zone matches its apex",
        "a zone matches names below it",
        "the longest zone wins",
        "a deeper zone matches its own apex",
        "an exact name beats every zone",
        "a wildcard goes to a DNS-01 solver",
        "a wildcard takes the longest DNS-01 zone",
    ],
)
def test_select(name: str, index: int) -> None:
    chosen = select(SOLVERS, name)
    assert chosen is not None and chosen.index == index


def test_a_wildcard_without_a_dns01_solver_says_why() -> None:
    http_only = solver_specs([{"http01": {"standalone": {"port": 80}}}])
    assert select(http_only, "*.example.test") is None
    assert needs_dns01(http_only, "*.example.test") == (
        "*.example.test is a wildcard, which only DNS-01 can validate, and no dns01 solver "
        "matches it; add a dns01 solver (rfc2136 or exec)"
    )
    assert needs_dns01(http_only, "www.example.test") is None


def test_a_name_no_selector_covers() -> None:
    scoped = solver_specs(
        [{"selector": {"dnsZones": ["a.test"]}, "http01": {"standalone": {"port": 80}}}]
    )
    assert needs_dns01(scoped, "b.test") == (
        "no ACME solver matches b.test; add one whose selector covers it"
    )
