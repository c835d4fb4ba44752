"""A pull request's view of a plan: only the Certificates and Bundles it changes, and how.

``gitcert plan --base REF`` loads the desired state at REF (the pull request's base) and
compares it with the head's, object by object. A Certificate or Bundle is *changed* when
anything but its place in the files differs; each changed one is listed with what moved
(names added and removed, key, issuer, duration, other fields) and with the head plan's
action, reason and renewal time for it. Everything the plan would do to unchanged objects
(renewals coming due, repairs) is only counted: a reviewer reads what the pull request
does, not what the schedule does.

:func:`compare` is pure; :func:`load_base` reads the base commit.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TypeVar

from gitcert import durations, gitops, pki, reconcile
from gitcert.bundles import BundleChange
from gitcert.errors import ConfigError, ManifestError
from gitcert.model import (
    BundleSpec,
    CertificateSpec,
    DesiredState,
    IssuerRef,
    KeySpec,
    ObjectKey,
    Request,
    Source,
)
from gitcert.policies import Action

log = logging.getLogger(__name__)

_Spec = TypeVar("_Spec", CertificateSpec, Request, BundleSpec)

ADDED, REMOVED, CHANGED = "added", "removed", "changed"
REMOVED_REASON = "Removed"
SOURCES_CHANGED = "SourcesChanged"

# Fields shown in their own columns, or never shown (where an object sits in its file).
_OWN_COLUMNS = {
    "key",
    "source",
    "issuer_ref",
    "private_key",
    "request",
    "dns_names",
    "ip_addresses",
    "uris",
    "email_addresses",
    "duration",
    "name",
    "sources",
}
# Python field names that are not cert-manager's spelling once camel-cased.
_SPEC_NAMES = {
    "is_ca": "isCA",
    "labels": "secretTemplate.labels",
    "annotations": "secretTemplate.annotations",
    "spec_usages": "usages",
    "exclude_expired": "options.excludeExpired",
    "exclude_non_ca": "options.excludeNonCA",
}


@dataclass(frozen=True)
class Move:
    """A value before and after, as people read it (``ECDSA-256`` → ``RSA-2048``)."""

    before: str
    after: str


@dataclass(frozen=True)
class CertificateReview:
    key: ObjectKey
    change: str
    """``added``, ``removed`` or ``changed``."""
    source: Source
    """The manifest at the head; at the base for a removed Certificate."""
    action: Action
    reason: str
    message: str
    renewal_time: datetime | None
    renewal_estimated: bool = False
    """True when ``renewal_time`` is for a certificate issued at the plan's time: the
    issuer may still shorten its lifetime (Vault's max_ttl, an ACME CA's own)."""
    names_added: tuple[str, ...] = ()
    names_removed: tuple[str, ...] = ()
    private_key: Move | None = None
    issuer: Move | None = None
    duration: Move | None = None
    other_fields: tuple[str, ...] = ()
    """Other spec fields that differ, in cert-manager's spelling (``commonName``)."""


@dataclass(frozen=True)
class BundleReview:
    name: str
    change: str
    source: Source
    action: str
    """``create-bundle``/``update-bundle`` when a target file is written, else ``none``."""
    reason: str
    sources_added: tuple[str, ...] = ()
    sources_removed: tuple[str, ...] = ()
    other_fields: tuple[str, ...] = ()
    targets: tuple[BundleChange, ...] = ()


@dataclass(frozen=True)
class Review:
    base: str
    """The ref as given (``origin/main``)."""
    base_commit: str | None
    certificates: tuple[CertificateReview, ...]
    bundles: tuple[BundleReview, ...]
    other_pending: int
    """Changes the plan makes to objects this pull request leaves alone (renewals due)."""

    @property
    def rows(self) -> int:
        return len(self.certificates) + len(self.bundles)

    def summary(self) -> str:
        """One line: what changed against the base and what the plan does about it."""
        base = f"`{self.base}`"
        objects = [
            _count(len(self.certificates), "Certificate"),
            _count(len(self.bundles), "Bundle"),
        ]
        changed = " and ".join(o for o in objects if o)
        actions = Counter(c.action for c in self.certificates if c.action.writes)
        parts = [f"{actions[a]} to {a}" for a in Action if actions[a]]
        waiting = sum(1 for c in self.certificates if c.action is Action.WAIT)
        parts += [f"{waiting} waiting"] if waiting else []
        removed = sum(c.change == REMOVED for c in self.certificates) + sum(
            b.change == REMOVED for b in self.bundles
        )
        parts += [f"{removed} removed"] if removed else []
        written = sum(1 for b in self.bundles if b.targets)
        parts += [f"{_count(written, 'bundle')} to write"] if written else []
        elsewhere = (
            f"; {self.other_pending} other pending change(s) (renewals, repairs)"
            if self.other_pending
            else ""
        )
        if not changed:
            return f"No Certificate or Bundle changed against {base}{elsewhere}."
        done = f": {', '.join(parts)}" if parts else ": nothing to do"
        return f"{changed} changed against {base}{done}{elsewhere}."


def load_base(repo: gitops.Repository, ref: str) -> tuple[DesiredState | None, str | None]:
    """The desired state at ``ref`` and its commit; None when its manifests or settings are
    invalid.

    An invalid base is no reason to refuse reviewing a pull request that may be fixing
    it: every object of the head then shows as added.

    Raises:
        UserError: ``ref`` names nothing in the repository (fetch it first).
    """
    tree = gitops.resolve(repo, ref)
    try:
        desired, _ = reconcile.validate(tree)
    except ManifestError as exc:
        count = len(exc.problems)
        log.warning("%s: %d invalid manifest(s); every object shows as added", ref, count)
        return None, tree.commit_id
    except ConfigError as exc:
        # A base from before gitcert was set up, or with a broken gitcert.yaml.
        log.warning("%s: %s; every object shows as added", ref, exc)
        return None, tree.commit_id
    return desired, tree.commit_id


def compare(
    base: DesiredState | None, plan: reconcile.Plan, base_ref: str, base_commit: str | None
) -> Review:
    """The Certificates and Bundles that differ between ``base`` and the plan's head."""
    before = {c.key: c for c in base.certificates} if base else {}
    after = {c.key: c for c in plan.desired.certificates}
    planned = {c.key: c for c in plan.changes}

    certificates = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if new is None:
            assert old is not None
            certificates.append(_removed_certificate(old))
        elif key not in planned:
            continue  # another shard's (plan --shard)
        elif old is None or _differs(old, new):
            certificates.append(_certificate(old, new, planned[key], plan.now))
    reviewed = {c.key for c in certificates}
    other = sum(1 for c in plan.pending if c.key not in reviewed)

    bundles = _bundles(base.bundles if base else (), plan.desired.bundles, plan.bundle_changes)
    reviewed_bundles = {b.name for b in bundles}
    other += len({b.bundle for b in plan.bundle_changes} - reviewed_bundles)
    return Review(base_ref, base_commit, tuple(certificates), tuple(bundles), other)


def _count(n: int, noun: str) -> str:
    return "" if not n else f"1 {noun}" if n == 1 else f"{n} {noun}s"


def _differs(old: CertificateSpec | BundleSpec, new: CertificateSpec | BundleSpec) -> bool:
    """Anything but the manifest's place (moving a manifest to another file changes nothing)."""
    return any(
        getattr(old, f.name) != getattr(new, f.name) for f in fields(old) if f.name != "source"
    )


def _spec_name(field: str) -> str:
    if field in _SPEC_NAMES:
        return _SPEC_NAMES[field]
    head, *rest = field.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _changed_fields(old: _Spec, new: _Spec) -> list[str]:
    return [
        _spec_name(f.name)
        for f in fields(old)
        if f.name not in _OWN_COLUMNS and getattr(old, f.name) != getattr(new, f.name)
    ]


def _removed_certificate(old: CertificateSpec) -> CertificateReview:
    return CertificateReview(
        key=old.key,
        change=REMOVED,
        source=old.source,
        action=Action.NONE,
        reason=REMOVED_REASON,
        message=f"gitcert leaves Secret {old.namespace}/{old.secret_name} in the repo",
        renewal_time=None,
        names_removed=_names(old.request),
    )


def _certificate(
    old: CertificateSpec | None,
    new: CertificateSpec,
    planned: reconcile.PlannedChange,
    now: datetime,
) -> CertificateReview:
    decision = planned.decision
    renewal, estimated = decision.renewal_time, False
    if decision.action.issues:
        # The renewal time once issued now: the lifetime the spec asks for, by the same
        # rule a certificate in the repo gets.
        not_after = now + new.request.duration
        renewal = pki.renewal_time(now, not_after, new.renew_before, new.renew_before_percentage)
        estimated = True

    added: tuple[str, ...] = _names(new.request)
    removed: tuple[str, ...] = ()
    key_move = issuer_move = duration_move = None
    other: list[str] = []
    if old is not None:
        before, after = set(_names(old.request)), set(added)
        added = tuple(n for n in _names(new.request) if n not in before)
        removed = tuple(n for n in _names(old.request) if n not in after)
        key_move = _key_move(old.private_key, new.private_key)
        issuer_move = _move(_issuer_text(old.issuer_ref), _issuer_text(new.issuer_ref))
        duration_move = _move(
            durations.format(old.request.duration), durations.format(new.request.duration)
        )
        fields_changed = _changed_fields(old.request, new.request) + _changed_fields(old, new)
        other = list(dict.fromkeys(fields_changed))
        if "usages" in other and _usages_follow_key(old, new):
            other.remove("usages")

    return CertificateReview(
        key=new.key,
        change=CHANGED if old is not None else ADDED,
        source=new.source,
        action=decision.action,
        reason=decision.reason,
        message=decision.message,
        renewal_time=renewal,
        renewal_estimated=estimated,
        names_added=added,
        names_removed=removed,
        private_key=key_move,
        issuer=issuer_move,
        duration=duration_move,
        other_fields=tuple(other),
    )


def _usages_follow_key(old: CertificateSpec, new: CertificateSpec) -> bool:
    """Whether the usages changed only because the key algorithm did: an RSA key adds key
    encipherment to the default usages, which the private key column already tells."""
    moved = set(old.request.usages) ^ set(new.request.usages)
    algorithm_changed = old.private_key.algorithm != new.private_key.algorithm
    return algorithm_changed and moved <= {"key encipherment"}


def _names(request: Request) -> tuple[str, ...]:
    """Every identity of a request, DNS names first; already normalised by the loader."""
    return (*request.dns_names, *request.ip_addresses, *request.uris, *request.email_addresses)


def _move(before: str, after: str) -> Move | None:
    return Move(before, after) if before != after else None


def _issuer_text(ref: IssuerRef) -> str:
    group = "" if ref.group == "cert-manager.io" else f" ({ref.group})"
    return f"{ref.kind}/{ref.name}{group}"


def _key_move(old: KeySpec, new: KeySpec) -> Move | None:
    """Algorithm and size; the encoding and rotation policy too when they change."""
    if old == new:
        return None
    extras: list[tuple[str, str]] = []
    if old.encoding != new.encoding:
        extras.append((old.encoding, new.encoding))
    if old.rotation_policy != new.rotation_policy:
        extras.append((f"rotation {old.rotation_policy}", f"rotation {new.rotation_policy}"))
    before = ", ".join([old.describe(), *(e[0] for e in extras)])
    after = ", ".join([new.describe(), *(e[1] for e in extras)])
    return Move(before, after)


def _bundles(
    before: Iterable[BundleSpec], after: Iterable[BundleSpec], planned: Sequence[BundleChange]
) -> list[BundleReview]:
    old_by_name = {b.name: b for b in before}
    new_by_name = {b.name: b for b in after}
    found = []
    for name in sorted(old_by_name.keys() | new_by_name.keys()):
        old, new = old_by_name.get(name), new_by_name.get(name)
        if new is None:
            assert old is not None
            found.append(_removed_bundle(old))
        elif old is None or _differs(old, new):
            targets = tuple(c for c in planned if c.bundle == name)
            found.append(_bundle(old, new, targets))
    return found


def _removed_bundle(old: BundleSpec) -> BundleReview:
    return BundleReview(
        name=old.name,
        change=REMOVED,
        source=old.source,
        action=str(Action.NONE),
        reason=REMOVED_REASON,
        sources_removed=tuple(s.describe() for s in old.sources),
    )


def _bundle(
    old: BundleSpec | None, new: BundleSpec, targets: tuple[BundleChange, ...]
) -> BundleReview:
    old_sources = old.sources if old is not None else ()
    return BundleReview(
        name=new.name,
        change=CHANGED if old is not None else ADDED,
        source=new.source,
        action=targets[0].action if targets else str(Action.NONE),
        reason=SOURCES_CHANGED if targets else "",
        sources_added=tuple(s.describe() for s in new.sources if s not in old_sources),
        sources_removed=tuple(s.describe() for s in old_sources if s not in new.sources),
        other_fields=tuple(_changed_fields(old, new)) if old is not None else (),
        targets=targets,
    )
