"""The decision chain, table-driven: each case is one gathered snapshot and its exact decision.

No git, no sops: the inputs are built directly, with a fixed clock.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gitcert import policies
from gitcert.model import CertificateSpec, IssuerRef, KeySpec, ObjectKey, Request, Source
from gitcert.pki import CertFacts
from gitcert.policies import Action, Decision, Input
from gitcert.state import (
    Actual,
    SecretFacts,
    Status,
    desired_metadata,
    managed_annotations,
    spec_digest,
)

ISSUED = datetime(2026, 1, 1, tzinfo=UTC)
NOW = ISSUED + timedelta(days=10)
REQUEST = Request(dns_names=("a.example.test", "b.example.test"), usages=("digital signature",))
SPEC = CertificateSpec(
    key=ObjectKey("Certificate", "ns", "web"),
    source=Source("manifests/web.yaml", 1),
    secret_name="web-tls",
    issuer_ref=IssuerRef("ca", "ClusterIssuer"),
    request=REQUEST,
)
CERT = CertFacts(
    not_before=ISSUED,
    not_after=ISSUED + timedelta(days=90),
    serial_number="1a",
    subject="",
    issuer="CN=CA",
    common_name="",
    dns_names=REQUEST.dns_names,
    ip_addresses=(),
    uris=(),
    email_addresses=(),
    is_ca=False,
    usages=REQUEST.usages,
    key_algorithm="ECDSA",
    key_size=256,
)
LABELS, ANNOTATIONS = desired_metadata(SPEC, managed_annotations(SPEC))
SECRET = SecretFacts(("ca.crt", "tls.crt", "tls.key"), True, LABELS, ANNOTATIONS, CERT)
RENEWAL = ISSUED + timedelta(days=60)
STATUS = Status(
    revision=1,
    renewal_time=RENEWAL,
    request=REQUEST,
    private_key=KeySpec(),
    secret_blob="blob",
    secret_facts=SECRET,
)
GOOD = Actual(SECRET, "blob", STATUS)


def annotated(**changes: str) -> SecretFacts:
    return replace(SECRET, annotations={**ANNOTATIONS, **changes})


CASES = [
    ("nothing to do when everything matches", SPEC, GOOD, NOW,
     Decision(Action.NONE, "UpToDate", "", RENEWAL)),
    ("a missing Secret is issued", SPEC, Actual(None, None, None), NOW,
     Decision(Action.ISSUE, "SecretMissing", "Secret ns/web-tls does not exist", None)),
    ("a Secret without tls.key is incomplete", SPEC,
     replace(GOOD, secret=replace(SECRET, keys=("tls.crt",))), NOW,
     Decision(Action.REISSUE, "SecretIncomplete", "the Secret has no tls.key", RENEWAL)),
    ("a readable tls.key is replaced", SPEC,
     replace(GOOD, secret=replace(SECRET, key_encrypted=False)), NOW,
     Decision(Action.REISSUE, "SecretIncomplete",
              "tls.key is not SOPS-encrypted; a new key will replace it", RENEWAL)),
    ("an unparsable tls.crt is a broken key pair", SPEC,
     replace(GOOD, secret=replace(SECRET, certificate=None, certificate_error="bad PEM")), NOW,
     Decision(Action.REISSUE, "KeyPairInvalid", "bad PEM", None)),
    ("another issuer in the annotations", SPEC,
     replace(GOOD, secret=annotated(**{"cert-manager.io/issuer-name": "old"})), NOW,
     Decision(Action.REISSUE, "IssuerChanged",
              "issued by ClusterIssuer/old, the spec now names ClusterIssuer/ca", RENEWAL)),
    ("a Secret owned by another Certificate", SPEC,
     replace(GOOD, secret=annotated(**{"cert-manager.io/certificate-name": "api"})), NOW,
     Decision(Action.REISSUE, "OwnerConflict", "the Secret belongs to Certificate 'api'", RENEWAL)),
    ("an RSA spec for an ECDSA key", replace(SPEC, private_key=KeySpec("RSA", 2048)), GOOD, NOW,
     Decision(Action.REISSUE, "KeySpecChanged",
              "the key is ECDSA-256, the spec asks for RSA-2048", RENEWAL)),
    ("a new key encoding", replace(SPEC, private_key=KeySpec(encoding="PKCS8")), GOOD, NOW,
     Decision(Action.REISSUE, "KeySpecChanged",
              "the key is encoded PKCS1, the spec asks for PKCS8", RENEWAL)),
    ("a name added since issuance",
     replace(SPEC, request=replace(REQUEST, dns_names=(*REQUEST.dns_names, "c.example.test"))),
     GOOD, NOW,
     Decision(Action.REISSUE, "SpecChanged",
              "changed since issuance: dnsNames (+c.example.test)", RENEWAL)),
    ("a longer duration", replace(SPEC, request=replace(REQUEST, duration=timedelta(hours=1))),
     GOOD, NOW,
     Decision(Action.REISSUE, "SpecChanged",
              "changed since issuance: duration (2160h0m0s → 1h0m0s)", RENEWAL)),
    ("without a status record, the certificate itself is compared",
     replace(SPEC, request=replace(REQUEST, is_ca=True)), replace(GOOD, status=None), NOW,
     Decision(Action.REISSUE, "SpecChanged",
              "the issued certificate differs from the spec: isCA (False → True)", RENEWAL)),
    ("one second before the renewal time", SPEC, GOOD, RENEWAL - timedelta(seconds=1),
     Decision(Action.NONE, "UpToDate", "", RENEWAL)),
    ("at the renewal time", SPEC, GOOD, RENEWAL,
     Decision(Action.RENEW, "RenewalDue", "renewal was due at 2026-03-02T00:00:00Z", RENEWAL)),
    ("past expiry", SPEC, GOOD, CERT.not_after,
     Decision(Action.RENEW, "Expired", "expired at 2026-04-01T00:00:00Z", RENEWAL)),
    ("renewBefore moves the renewal time", replace(SPEC, renew_before=timedelta(days=1)), GOOD,
     NOW,
     Decision(Action.UPDATE_STATUS, "StatusOutdated", "the status record is missing or stale",
              CERT.not_after - timedelta(days=1))),
    ("a template label to add", replace(SPEC, labels={"tier": "edge"}), GOOD, NOW,
     Decision(Action.UPDATE_METADATA, "SecretTemplateMismatch",
              "labels/annotations differ from secretTemplate: tier", RENEWAL)),
    ("a managed annotation edited by hand", SPEC,
     replace(GOOD, secret=annotated(**{"cert-manager.io/alt-names": "x"})), NOW,
     Decision(Action.UPDATE_METADATA, "SecretManagedMetadataMismatch",
              "managed annotations differ: cert-manager.io/alt-names", RENEWAL)),
    ("a missing status record is rewritten", SPEC, replace(GOOD, status=None), NOW,
     Decision(Action.UPDATE_STATUS, "StatusOutdated", "the status record is missing or stale",
              RENEWAL)),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "actual", "now", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_decide(spec: CertificateSpec, actual: Actual, now: datetime, expected: Decision) -> None:
    assert policies.decide(Input(spec, actual, now)) == expected


def test_the_chain_order_decides_when_several_checks_fire() -> None:
    # Issuer changed, key spec changed, names changed and renewal due all at once: the
    # issuer check comes first, so its reason is the one users see.
    spec = replace(
        SPEC,
        issuer_ref=IssuerRef("other", "ClusterIssuer"),
        private_key=KeySpec("RSA", 2048),
        request=replace(REQUEST, dns_names=("z.example.test",)),
    )
    assert policies.decide(Input(spec, GOOD, CERT.not_after)).reason == "IssuerChanged"
    assert [c.__name__ for c in policies.TRIGGER_CHAIN] == [
        "secret_missing",
        "secret_incomplete",
        "key_pair_invalid",
        "revoked",
        "issuer_changed",
        "owner_conflict",
        "key_spec_changed",
        "spec_changed",
        "renewal_due",
    ]


def test_ready_while_due_but_not_after_expiry() -> None:
    assert policies.ready(Input(SPEC, GOOD, RENEWAL)) is None
    assert policies.ready(Input(SPEC, GOOD, CERT.not_after)) == (
        "Expired",
        "expired at 2026-04-01T00:00:00Z",
    )


def failed(attempts: int, at: datetime, spec: CertificateSpec = SPEC) -> Actual:
    status = replace(
        STATUS,
        failed_attempts=attempts,
        last_failure_time=at,
        last_failure_message="boom",
        failed_spec_digest=spec_digest(spec),
    )
    return Actual(None, None, status)


@pytest.mark.parametrize(
    ("attempts", "wait"),
    [(1, 1), (2, 2), (3, 4), (6, 32), (7, 32), (40, 32)],
    ids=lambda v: str(v),
)
def test_backoff_doubles_from_one_hour_up_to_32(attempts: int, wait: int) -> None:
    actual = failed(attempts, NOW)
    until = NOW + timedelta(hours=wait)
    waiting = policies.decide(Input(SPEC, actual, until - timedelta(seconds=1)))
    assert waiting.action is Action.WAIT
    assert waiting.message.endswith(f"next attempt after {until:%Y-%m-%dT%H:%M:%SZ}")
    assert policies.decide(Input(SPEC, actual, until)).action is Action.ISSUE


def test_a_changed_spec_skips_the_backoff() -> None:
    actual = failed(3, NOW)
    changed = replace(SPEC, request=replace(REQUEST, dns_names=("new.example.test",)))
    assert policies.decide(Input(changed, actual, NOW)).action is Action.ISSUE
