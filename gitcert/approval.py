"""Whether CertificateRequestPolicies allow a Certificate's request, as approver-policy decides.

cert-manager's approver-policy approves or denies each CertificateRequest against the
``policy.cert-manager.io/v1alpha1`` CertificateRequestPolicies that select it. gitcert
applies the same rules to what a Certificate would request, twice: when manifests are
validated (so a pull request asking for something no policy allows fails its plan at the
manifest's line), and again by apply right before a certificate is signed.

The rules, as approver-policy has them:

- A policy judges a request when its ``selector`` selects it: the issuerRef's name, kind
  and group (globs), and the namespace's name (globs) and labels. An omitted part
  selects everything.
- A policy allows a request when it allows everything the request carries: each value
  matches one of its field's globs (``*`` matches any run of characters, dots and ``*``
  included), a field the policy does not list allows no value, a ``required`` field must
  be there, ``isCA`` needs ``allowed.isCA: true``, and the duration and the private key
  keep within ``constraints``.
- Once any policy exists, a request must be allowed by at least one policy that selects
  it. When none does, each selecting policy's first refusal is reported.

TODO: approver-policy counts only policies bound by RBAC to the requester; gitcert has no
requester identity (whoever can commit requests), so every policy is bound to everyone.

Pure: no git, sops or network. Namespace labels come in as a value (gitcert.yaml's).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from gitcert import durations, names
from gitcert.model import (
    SUBJECT_FIELDS,
    AllowedValues,
    CertificateRequestPolicy,
    CertificateSpec,
    PolicyConstraints,
    PolicySelector,
)

log = logging.getLogger(__name__)

FieldPath = tuple[str | int, ...]
"""A field of the Certificate's manifest: ``("spec", "dnsNames", "*.example.test")``.

For the name lists the last element is the normalised name; the reconciler turns it into
the index the user wrote it at (:func:`gitcert.manifests.item_path`)."""

NOT_SELECTED = "no CertificateRequestPolicy selects it"


@dataclass(frozen=True)
class Refusal:
    """Why one policy (or, with ``policy`` empty, the lack of any) refuses a request."""

    policy: str
    field: FieldPath
    message: str
    """A whole sentence naming the policy and the refused value."""


def evaluate(
    policies: Sequence[CertificateRequestPolicy],
    certificate: CertificateSpec,
    namespaces: Mapping[str, Mapping[str, str]],
) -> list[Refusal]:
    """Why ``certificate`` may not be issued; empty when it may.

    Args:
        policies: every CertificateRequestPolicy of the repo; none means no policy applies.
        certificate: what would be requested.
        namespaces: every namespace with its labels, for ``selector.namespace.matchLabels``.

    Returns:
        Nothing when at least one selecting policy allows it (or there is no policy);
        else the first refusal of each selecting policy, by policy name, or one refusal
        saying that no policy selects it.
    """
    if not policies:
        return []

    labels = namespaces.get(certificate.namespace, {})
    selecting = [p for p in policies if selects(p.selector, certificate, labels)]
    if not selecting:
        return [_not_selected(policies, certificate)]

    refusals = []
    for policy in sorted(selecting, key=lambda p: p.name):
        first = next(_denials(policy, certificate), None)
        if first is None:
            log.debug("%s: allowed by CertificateRequestPolicy %s", certificate.key, policy.name)
            return []
        field, reason = first
        message = f"denied by CertificateRequestPolicy {policy.name}: {reason}"
        refusals.append(Refusal(policy.name, field, message))
    return refusals


def selects(
    selector: PolicySelector, certificate: CertificateSpec, labels: Mapping[str, str]
) -> bool:
    """Whether a policy's selector takes in a request; ``labels`` are its namespace's."""
    ref = certificate.issuer_ref
    wanted = (
        (selector.issuer_name, ref.name),
        (selector.issuer_kind, ref.kind),
        (selector.issuer_group, ref.group),
    )
    if any(pattern is not None and not matches(pattern, value) for pattern, value in wanted):
        return False

    spaces = selector.namespace_names
    if spaces is not None and not any(matches(p, certificate.namespace) for p in spaces):
        return False
    wanted_labels = selector.namespace_labels or {}
    return all(labels.get(key) == value for key, value in wanted_labels.items())


def matches(pattern: str, value: str) -> bool:
    """approver-policy's wildcard match: ``*`` stands for any run of characters, even none."""
    return _glob(pattern).fullmatch(value) is not None


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _not_selected(
    policies: Sequence[CertificateRequestPolicy], certificate: CertificateSpec
) -> Refusal:
    ref = certificate.issuer_ref
    listed = sorted(p.name for p in policies)
    shown = ", ".join(listed[:5]) + (f" and {len(listed) - 5} more" if len(listed) > 5 else "")
    message = (
        f"{NOT_SELECTED} (issuerRef {ref.kind}/{ref.name} in namespace {certificate.namespace};"
        f" policies: {shown})"
    )
    return Refusal("", ("spec", "issuerRef"), message)


# --- one policy ---------------------------------------------------------------------------------

Denial = tuple[FieldPath, str]
Requested = list[tuple[FieldPath, str]]
"""The values a request carries for one policy field, each with the manifest field it is at."""

_LITERAL_OIDS = {
    NameOID.COMMON_NAME: "commonName",
    NameOID.ORGANIZATION_NAME: "organizations",
    NameOID.COUNTRY_NAME: "countries",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "organizationalUnits",
    NameOID.LOCALITY_NAME: "localities",
    NameOID.STATE_OR_PROVINCE_NAME: "provinces",
    NameOID.STREET_ADDRESS: "streetAddresses",
    NameOID.POSTAL_CODE: "postalCodes",
    NameOID.SERIAL_NUMBER: "serialNumber",
}


def _denials(policy: CertificateRequestPolicy, certificate: CertificateSpec) -> Iterator[Denial]:
    """Everything ``policy`` refuses in the request, in approver-policy's order of fields."""
    allowed, request = policy.allowed, certificate.request
    subject = _requested_subject(certificate)

    yield from _values("commonName", subject.pop("commonName"), allowed.common_name)
    for name, requested, entry in (
        ("dnsNames", request.dns_names, allowed.dns_names),
        ("ipAddresses", request.ip_addresses, allowed.ip_addresses),
        ("uris", request.uris, allowed.uris),
        ("emailAddresses", request.email_addresses, allowed.email_addresses),
    ):
        yield from _values(name, [(("spec", name, v), v) for v in requested], entry)

    if request.is_ca and not allowed.is_ca:
        reason = "the policy does not set allowed.isCA: true"
        yield ("spec", "isCA"), f"isCA: true is not allowed ({reason})"
    for index, usage in enumerate(certificate.spec_usages):
        # Usages are compared as written, not as globs, as approver-policy does.
        if usage not in allowed.usages:
            choices = _choices(allowed.usages, "usages")
            yield ("spec", "usages", index), f"{_quoted(usage)} is not allowed ({choices})"

    for name, attribute in SUBJECT_FIELDS:
        entry = getattr(allowed.subject, attribute)
        yield from _values(f"subject.{name}", subject.pop(name), entry)
    for field, attribute in subject.get("unknown", []):
        yield field, f"{attribute} cannot be allowed by a CertificateRequestPolicy; remove it"

    yield from _constraint_denials(policy.constraints, certificate)


def _values(name: str, requested: Requested, entry: AllowedValues | None) -> Iterator[Denial]:
    """approver-policy's check of one allowed field against the values requested for it."""
    if entry is not None and entry.required and not requested:
        where = ("spec", *name.split("."))
        yield where, f"required by the policy (allowed.{name}), and the Certificate has none"

    patterns = entry.patterns if entry is not None else ()
    shape = _PATTERN_SHAPES.get(name, str)
    for field, value in requested:
        if not any(matches(shape(p), value) for p in patterns):
            what = "" if field[-1] != "literalSubject" else f"{name} "
            yield field, f"{what}{_quoted(value)} is not allowed ({_choices(patterns, name)})"


def _choices(patterns: Sequence[str], name: str) -> str:
    if not patterns:
        return f"the policy allows no {name}"
    return "allowed: " + ", ".join(_quoted(p) for p in patterns)


def _quoted(value: str) -> str:
    # Double quotes, as the values are written in YAML; repr() would pick single quotes.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _requested_subject(certificate: CertificateSpec) -> dict[str, Requested]:
    """The request's common name and subject attributes, by their allowed.subject name.

    With ``literalSubject`` every attribute comes from that one field; attributes a policy
    cannot name (a DC, a UID) are collected under ``unknown``, so they are refused rather
    than let through unchecked.
    """
    request = certificate.request
    found: dict[str, Requested] = {name: [] for name, _ in SUBJECT_FIELDS}
    found["commonName"] = []
    if request.literal_subject:
        return _literal_subject(request.literal_subject, found)

    if request.common_name:
        found["commonName"] = [(("spec", "commonName"), request.common_name)]
    for name, attribute in SUBJECT_FIELDS:
        value = getattr(request.subject, attribute)
        values = [value] if isinstance(value, str) and value else list(value or ())
        if name == "serialNumber":
            found[name] = [(("spec", "subject", name), v) for v in values]
        else:
            found[name] = [(("spec", "subject", name, i), v) for i, v in enumerate(values)]
    return found


def _literal_subject(text: str, found: dict[str, Requested]) -> dict[str, Requested]:
    field: FieldPath = ("spec", "literalSubject")
    unknown: Requested = []
    for attribute in x509.Name.from_rfc4514_string(text):
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.hex()
        name = _LITERAL_OIDS.get(attribute.oid)
        if name is None:
            unknown.append((field, f"attribute {attribute.rfc4514_attribute_name}"))
        else:
            found[name].append((field, value))
    return {**found, "unknown": unknown}


def _constraint_denials(
    constraints: PolicyConstraints, certificate: CertificateSpec
) -> Iterator[Denial]:
    duration, key = certificate.request.duration, certificate.private_key
    lasts = f"duration {durations.format(duration)}"
    if constraints.min_duration is not None and duration < constraints.min_duration:
        shortest = durations.format(constraints.min_duration)
        yield ("spec", "duration"), f"{lasts} is shorter than minDuration {shortest}"
    if constraints.max_duration is not None and duration > constraints.max_duration:
        longest = durations.format(constraints.max_duration)
        yield ("spec", "duration"), f"{lasts} is longer than maxDuration {longest}"

    algorithm = constraints.key_algorithm
    if algorithm is not None and key.algorithm != algorithm:
        reason = f"constraints.privateKey.algorithm is {algorithm}"
        yield (
            ("spec", "privateKey", "algorithm"),
            f"a {key.algorithm} key is not allowed ({reason})",
        )

    # An Ed25519 key has no size (the spec holds 0), so any minSize refuses it; a policy
    # that admits Ed25519 and bounds RSA sizes needs two policies.
    size = f"{key.algorithm} key size {key.size}"
    if key.algorithm == "Ed25519":
        size = "an Ed25519 key (no size)"
    where = ("spec", "privateKey", "size")
    if constraints.min_key_size is not None and key.size < constraints.min_key_size:
        yield where, f"{size} is below minSize {constraints.min_key_size}"
    if constraints.max_key_size is not None and key.size > constraints.max_key_size:
        yield where, f"{size} is above maxSize {constraints.max_key_size}"


# --- the shape of patterns ----------------------------------------------------------------------


def _dns_pattern(pattern: str) -> str:
    """A dnsNames glob in the form requested names take: lower case, punycode, no final dot.

    Labels holding ``*`` are only lower-cased: they are patterns, not names.
    """
    labels = pattern.strip().rstrip(".").split(".")
    return ".".join(_dns_label(label) for label in labels)


def _dns_label(label: str) -> str:
    if "*" in label:
        return label.lower()
    try:
        return names.dns_name(label)
    except ValueError:
        return label.lower()


def _ip_pattern(pattern: str) -> str:
    try:
        return str(ipaddress.ip_address(pattern.strip()))
    except ValueError:
        return pattern.strip().lower()


def _email_pattern(pattern: str) -> str:
    local, at, domain = pattern.strip().rpartition("@")
    return f"{local}@{_dns_pattern(domain)}" if at else pattern


_PATTERN_SHAPES: dict[str, Callable[[str], str]] = {
    "dnsNames": functools.lru_cache(maxsize=4096)(_dns_pattern),
    "ipAddresses": _ip_pattern,
    "emailAddresses": _email_pattern,
}

__all__ = ["NOT_SELECTED", "Refusal", "evaluate", "matches", "selects"]
