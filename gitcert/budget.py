"""ACME rate-limit budget: the new orders a plan would create, against the CA's limits.

Let's Encrypt limits new certificates per registered domain and per exact set of names
over a sliding week (https://letsencrypt.org/docs/rate-limits/). A pull request that adds
or reissues many certificates at once can run into them only after merge, when apply is
already under way; counting in plan says so before. The counts use what the repo knows:
certificates planned now, plus those issued within the window (their status records).

Pure: no git, no network. The registered domain comes from the Public Suffix List bundled
with the ``publicsuffixlist`` package.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from gitcert.model import AcmeLimits, CertificateSpec
from gitcert.state import Actual


@dataclass(frozen=True)
class Finding:
    """A limit a merge would exceed (or reach, for a warning)."""

    limit: str
    subject: str
    planned: int
    recent: int
    allowed: int
    window: timedelta

    @property
    def message(self) -> str:
        hours = int(self.window.total_seconds() // 3600)
        total = self.planned + self.recent
        return (
            f"ACME rate limit: {self.subject} would get {total} certificates in {hours}h "
            f"({self.planned} planned, {self.recent} issued recently); the limit is "
            f"{self.allowed} {self.limit}"
        )


@functools.cache
def _suffixes() -> object:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def registered_domain(name: str) -> str:
    """``www.example.co.uk`` → ``example.co.uk``; a wildcard counts for its base name."""
    base = name.removeprefix("*.")
    found = _suffixes().privatesuffix(base)  # type: ignore[attr-defined]
    return str(found) if found else base


def _domains(names: Iterable[str]) -> set[str]:
    return {registered_domain(n) for n in names}


def _renewal(spec: CertificateSpec, actual: Actual) -> bool:
    cert = actual.secret.certificate if actual.secret else None
    return cert is not None and cert.dns_names == spec.request.dns_names


def check(
    planned: Iterable[tuple[CertificateSpec, Actual]],
    issued: Iterable[tuple[CertificateSpec, Actual]],
    limits: AcmeLimits,
    now: datetime,
) -> list[Finding]:
    """Limits the ``planned`` orders would exceed, counting ``issued`` within the window.

    A renewal (the same names as the certificate it replaces) does not count against the
    per-domain limit, as with Let's Encrypt; it does count as a duplicate.
    """
    since = now - limits.window
    recent = [
        spec.request.dns_names
        for spec, actual in issued
        if actual.secret and actual.secret.certificate
        and actual.secret.certificate.not_before >= since
    ]  # fmt: skip
    orders = [(spec, actual) for spec, actual in planned if spec.request.dns_names]
    wanted = [spec.request.dns_names for spec, _ in orders]
    new = [spec.request.dns_names for spec, actual in orders if not _renewal(spec, actual)]

    per_domain_planned = Counter(d for names in new for d in _domains(names))
    per_domain_recent = Counter(d for names in recent for d in _domains(names))
    findings = [
        Finding("per registered domain", domain, count, per_domain_recent[domain],
                limits.certificates_per_registered_domain, limits.window)
        for domain, count in sorted(per_domain_planned.items())
        if count + per_domain_recent[domain] > limits.certificates_per_registered_domain
    ]  # fmt: skip

    duplicates_planned = Counter(tuple(names) for names in wanted)
    duplicates_recent = Counter(tuple(names) for names in recent)
    findings += [
        Finding("for the same set of names", ", ".join(names), count, duplicates_recent[names],
                limits.duplicate_certificates, limits.window)
        for names, count in sorted(duplicates_planned.items())
        if count + duplicates_recent[names] > limits.duplicate_certificates
    ]  # fmt: skip
    return findings
