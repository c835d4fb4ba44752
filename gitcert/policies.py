"""Reason codes and the ordered chains of pure checks that decide what happens to a Certificate.

A check looks at one gathered :class:`Input` and returns ``(reason, message)`` when it
fires, or None. A chain runs its checks in order and stops at the first that fires.
Order is load-bearing: later checks assume earlier ones passed (the expiry check assumes
a certificate that parses), so chains are tested as a whole.

Nothing here reads files, runs sops or talks to git. The clock is a value in the input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from enum import StrEnum

from gitcert import durations, pki
from gitcert.model import CertificateSpec, IssuerSpec, Request
from gitcert.state import Actual, desired_metadata, managed_annotations, spec_digest

# Reasons users see in plans, status and commit messages.
SECRET_MISSING = "SecretMissing"
SECRET_INCOMPLETE = "SecretIncomplete"
KEY_PAIR_INVALID = "KeyPairInvalid"
ISSUER_CHANGED = "IssuerChanged"
OWNER_CONFLICT = "OwnerConflict"
KEY_SPEC_CHANGED = "KeySpecChanged"
SPEC_CHANGED = "SpecChanged"
RENEWAL_DUE = "RenewalDue"
REVOKED = "Revoked"
NOT_YET_VALID = "NotYetValid"
EXPIRED = "Expired"
SECRET_TEMPLATE_MISMATCH = "SecretTemplateMismatch"
MANAGED_METADATA_MISMATCH = "SecretManagedMetadataMismatch"
STATUS_OUTDATED = "StatusOutdated"
UP_TO_DATE = "UpToDate"
BACKOFF = "Backoff"

BACKOFF_START = timedelta(hours=1)
BACKOFF_CAP = timedelta(hours=32)


class Action(StrEnum):
    ISSUE = "issue"
    REISSUE = "reissue"
    RENEW = "renew"
    UPDATE_METADATA = "update-metadata"
    UPDATE_STATUS = "update-status"
    WAIT = "wait"
    NONE = "none"

    @property
    def issues(self) -> bool:
        return self in (Action.ISSUE, Action.REISSUE, Action.RENEW)

    @property
    def writes(self) -> bool:
        return self not in (Action.WAIT, Action.NONE)


@dataclass(frozen=True)
class Input:
    spec: CertificateSpec
    actual: Actual
    now: datetime
    issuer: IssuerSpec | None = None


Fired = tuple[str, str] | None
Check = Callable[[Input], Fired]


def renewal_time(i: Input) -> datetime | None:
    """When the current certificate is due: the issuer's suggestion (ACME ARI) for this very
    certificate if there is one, else the rule from its lifetime and the spec."""
    cert = i.actual.secret.certificate if i.actual.secret else None
    if cert is None:
        return None
    status = i.actual.status
    if status and status.suggested_renewal_time and status.serial_number == cert.serial_number:
        return status.suggested_renewal_time
    return pki.renewal_time(
        cert.not_before, cert.not_after, i.spec.renew_before, i.spec.renew_before_percentage
    )


# --- checks ----------------------------------------------------------------------------------


def secret_missing(i: Input) -> Fired:
    if i.actual.secret is None:
        return SECRET_MISSING, f"Secret {i.spec.namespace}/{i.spec.secret_name} does not exist"
    return None


def secret_incomplete(i: Input) -> Fired:
    assert i.actual.secret is not None
    missing = [k for k in ("tls.crt", "tls.key") if k not in i.actual.secret.keys]
    if missing:
        return SECRET_INCOMPLETE, f"the Secret has no {' or '.join(missing)}"
    if not i.actual.secret.key_encrypted:
        return SECRET_INCOMPLETE, "tls.key is not SOPS-encrypted; a new key will replace it"
    return None


def key_pair_invalid(i: Input) -> Fired:
    assert i.actual.secret is not None
    if i.actual.secret.certificate is None:
        return KEY_PAIR_INVALID, i.actual.secret.certificate_error or "tls.crt does not parse"
    return None


def revoked(i: Input) -> Fired:
    cert = i.actual.secret.certificate if i.actual.secret else None
    status = i.actual.status
    if cert is not None and status is not None and status.revoked_serial == cert.serial_number:
        return REVOKED, f"the certificate was revoked ({status.revocation_reason})"
    return None


def issuer_changed(i: Input) -> Fired:
    assert i.actual.secret is not None
    ann, ref = i.actual.secret.annotations, i.spec.issuer_ref
    recorded = (
        ann.get("cert-manager.io/issuer-name", ""),
        ann.get("cert-manager.io/issuer-kind", ""),
        ann.get("cert-manager.io/issuer-group", ""),
    )
    if recorded != (ref.name, ref.kind, ref.group):
        was = f"{recorded[1] or '?'}/{recorded[0] or '?'}"
        return ISSUER_CHANGED, f"issued by {was}, the spec now names {ref.kind}/{ref.name}"
    return None


def owner_conflict(i: Input) -> Fired:
    assert i.actual.secret is not None
    owner = i.actual.secret.annotations.get("cert-manager.io/certificate-name", "")
    if owner != i.spec.name:
        return OWNER_CONFLICT, f"the Secret belongs to Certificate {owner or '(none)'!r}"
    return None


def key_spec_changed(i: Input) -> Fired:
    cert = i.actual.secret.certificate if i.actual.secret else None
    assert cert is not None
    want = i.spec.private_key
    have = (
        cert.key_algorithm
        if cert.key_algorithm == "Ed25519"
        else f"{cert.key_algorithm}-{cert.key_size}"
    )
    if have != want.describe():
        return KEY_SPEC_CHANGED, f"the key is {have}, the spec asks for {want.describe()}"
    recorded = i.actual.status.private_key if i.actual.status else None
    if recorded is not None and recorded.encoding != want.encoding:
        return (
            KEY_SPEC_CHANGED,
            f"the key is encoded {recorded.encoding}, the spec asks for {want.encoding}",
        )
    return None


_REQUEST_FIELDS = {
    "common_name": "commonName",
    "literal_subject": "literalSubject",
    "subject": "subject",
    "dns_names": "dnsNames",
    "ip_addresses": "ipAddresses",
    "uris": "uris",
    "email_addresses": "emailAddresses",
    "duration": "duration",
    "is_ca": "isCA",
    "usages": "usages",
}


def _describe_change(field: str, was: object, now: object) -> str:
    name = _REQUEST_FIELDS[field]
    if isinstance(was, tuple) and isinstance(now, tuple) and field != "subject":
        added = [x for x in now if x not in was]
        removed = [x for x in was if x not in now]
        parts = ([f"+{', +'.join(map(str, added))}"] if added else []) + (
            [f"-{', -'.join(map(str, removed))}"] if removed else []
        )
        return f"{name} ({'; '.join(parts)})"
    if field == "duration":
        return f"{name} ({durations.format(was)} → {durations.format(now)})"  # type: ignore[arg-type]
    if field == "subject":
        return name
    return f"{name} ({was!r} → {now!r})"


def spec_changed(i: Input) -> Fired:
    """Compare with the recorded request; without a record, with the certificate itself."""
    recorded = i.actual.status.request if i.actual.status else None
    if recorded is not None:
        changed = [
            _describe_change(f.name, getattr(recorded, f.name), getattr(i.spec.request, f.name))
            for f in fields(Request)
            if getattr(recorded, f.name) != getattr(i.spec.request, f.name)
        ]
        if changed:
            return SPEC_CHANGED, "changed since issuance: " + ", ".join(changed)
        return None

    cert = i.actual.secret.certificate if i.actual.secret else None
    assert cert is not None
    request = i.spec.request
    issued = Request(
        common_name=cert.common_name,
        dns_names=cert.dns_names,
        ip_addresses=cert.ip_addresses,
        uris=cert.uris,
        email_addresses=cert.email_addresses,
        is_ca=cert.is_ca,
    )
    compared: tuple[str, ...] = ("dns_names", "ip_addresses", "uris", "email_addresses", "is_ca")
    if not request.literal_subject:
        compared = ("common_name", *compared)
    changed = [
        _describe_change(f, getattr(issued, f), getattr(request, f))
        for f in compared
        if getattr(issued, f) != getattr(request, f)
    ]
    if changed:
        return SPEC_CHANGED, "the issued certificate differs from the spec: " + ", ".join(changed)
    return None


def expired(i: Input) -> Fired:
    cert = i.actual.secret.certificate if i.actual.secret else None
    assert cert is not None
    if i.now >= cert.not_after:
        return EXPIRED, f"expired at {cert.not_after:%Y-%m-%dT%H:%M:%SZ}"
    return None


def renewal_due(i: Input) -> Fired:
    expiry = expired(i)
    if expiry is not None:
        return expiry
    due = renewal_time(i)
    assert due is not None
    if i.now >= due:
        return RENEWAL_DUE, f"renewal was due at {due:%Y-%m-%dT%H:%M:%SZ}"
    return None


TRIGGER_CHAIN: Sequence[Check] = (
    secret_missing,
    secret_incomplete,
    key_pair_invalid,
    revoked,
    issuer_changed,
    owner_conflict,
    key_spec_changed,
    spec_changed,
    renewal_due,
)


def not_yet_valid(i: Input) -> Fired:
    cert = i.actual.secret.certificate if i.actual.secret else None
    assert cert is not None
    if i.now < cert.not_before:
        return NOT_YET_VALID, f"valid only from {cert.not_before:%Y-%m-%dT%H:%M:%SZ}"
    return None


# Readiness is the trigger chain with "is it valid now?" instead of "is it due?", so a
# certificate can be Ready and due for renewal at once.
READINESS_CHAIN: Sequence[Check] = (*TRIGGER_CHAIN[:-1], not_yet_valid, expired)


ISSUER_ROTATED = "IssuerRotated"
_NEW_KEY_REASONS = {SECRET_MISSING, SECRET_INCOMPLETE, KEY_PAIR_INVALID, KEY_SPEC_CHANGED}


def issuer_rotated(
    leaf: pki.CertFacts | None, ca: CertificateSpec, ca_actual: Actual, ca_decision: Decision
) -> Fired:
    """Whether a certificate must follow its CA to a new key.

    The CA is reissued with a new key in this very run (rotationPolicy Always, or a reason
    that forces a new key), or the certificate was signed by a key the CA no longer has
    (its authority key id is not the CA's subject key id).
    """
    if leaf is None:
        return None
    current = ca_actual.secret.certificate if ca_actual.secret else None
    new_key = ca.private_key.rotation_policy == "Always" or ca_decision.reason in _NEW_KEY_REASONS
    if ca_decision.action.issues and new_key:
        return ISSUER_ROTATED, f"its CA {ca.key} is reissued with a new key"
    # A new subject breaks the chain too: the leaf names its issuer by subject.
    new_subject = pki.subject_name(ca.request).rfc4514_string()
    if ca_decision.action.issues and current and current.subject != new_subject:
        return ISSUER_ROTATED, f"its CA {ca.key} is reissued with a new subject"
    if current and current.subject_key_id and leaf.authority_key_id:
        if current.subject_key_id != leaf.authority_key_id:
            return ISSUER_ROTATED, f"signed by a key its CA {ca.key} no longer has"
    if current and leaf.issuer != current.subject:
        return (
            ISSUER_ROTATED,
            f"issued by {leaf.issuer!r}, but its CA {ca.key} is now {current.subject!r}",
        )
    return None


def run(chain: Sequence[Check], i: Input) -> Fired:
    for check in chain:
        fired = check(i)
        if fired is not None:
            return fired
    return None


# --- metadata drift, repaired without reissuing ------------------------------------------------


def metadata_drift(i: Input) -> Fired:
    assert i.actual.secret is not None
    managed = managed_annotations(i.spec)
    labels, annotations = desired_metadata(i.spec, managed)
    have_labels, have_annotations = i.actual.secret.labels, i.actual.secret.annotations
    template_keys = set(i.spec.labels) | set(i.spec.annotations)
    if dict(have_labels) == labels and dict(have_annotations) == annotations:
        return None
    drifted = sorted(
        k for k in set(labels) | set(have_labels) if labels.get(k) != have_labels.get(k)
    ) + sorted(
        k
        for k in set(annotations) | set(have_annotations)
        if annotations.get(k) != have_annotations.get(k)
    )
    if any(k in template_keys or k not in managed for k in drifted):
        return (
            SECRET_TEMPLATE_MISMATCH,
            f"labels/annotations differ from secretTemplate: {', '.join(drifted)}",
        )
    return MANAGED_METADATA_MISMATCH, f"managed annotations differ: {', '.join(drifted)}"


# --- backoff ----------------------------------------------------------------------------------


def backoff_delay(attempts: int) -> timedelta:
    """1h after the first failure, doubling each time, never more than 32h."""
    if attempts <= 0:
        return timedelta(0)
    delay: timedelta = BACKOFF_START * (2 ** min(attempts - 1, 16))
    return min(delay, BACKOFF_CAP)


def backoff_until(i: Input) -> datetime | None:
    """When the next attempt may run, or None when it may run now.

    A spec that changed since the failure is a new request and is tried at once.
    """
    status = i.actual.status
    if status is None or status.failed_attempts == 0 or status.last_failure_time is None:
        return None
    if status.failed_spec_digest != spec_digest(i.spec, i.issuer):
        return None
    until = status.last_failure_time + backoff_delay(status.failed_attempts)
    if status.retry_after is not None:
        until = max(until, status.retry_after)
    return until if i.now < until else None


# --- the decision ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    message: str
    renewal_time: datetime | None


_ACTIONS = {SECRET_MISSING: Action.ISSUE, RENEWAL_DUE: Action.RENEW, EXPIRED: Action.RENEW}


def decide(i: Input) -> Decision:
    """What to do with one Certificate: the trigger chain, then drift, then the record."""
    renewal = renewal_time(i)
    fired = run(TRIGGER_CHAIN, i)
    if fired is not None:
        reason, message = fired
        until = backoff_until(i)
        if until is not None:
            status = i.actual.status
            assert status is not None
            return Decision(
                Action.WAIT,
                reason,
                f"{message}; backing off after {status.failed_attempts} failed attempt(s), "
                f"last: {status.last_failure_message}; "
                f"next attempt after {until:%Y-%m-%dT%H:%M:%SZ}",
                renewal,
            )
        return Decision(_ACTIONS.get(reason, Action.REISSUE), reason, message, renewal)

    drift = metadata_drift(i)
    if drift is not None:
        return Decision(Action.UPDATE_METADATA, drift[0], drift[1], renewal)

    status = i.actual.status
    if (
        status is None
        or status.renewal_time != renewal
        or status.secret_blob != i.actual.secret_blob
    ):
        return Decision(
            Action.UPDATE_STATUS, STATUS_OUTDATED, "the status record is missing or stale", renewal
        )
    return Decision(Action.NONE, UP_TO_DATE, "", renewal)


def ready(i: Input) -> Fired:
    """None when the Certificate is Ready; else the reason it is not."""
    return run(READINESS_CHAIN, i)
