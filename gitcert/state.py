"""Actual state: what is already issued in the repo, read without decrypting anything.

Two files per Certificate: the Secret (``secrets/<namespace>/<secretName>.yaml``) and the
status record (``status/<namespace>/<name>.yaml``). This module parses and renders both;
the formats are canonical, so rendering an unchanged object reproduces its bytes.

The status record caches the facts of the Secret it was written with, keyed by the
Secret's git blob id. When the blob in the tree is still that one, the facts are exact and
the Secret need not be parsed; a plan over many certificates reads only small files.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

import yaml

from gitcert import durations, pki
from gitcert.clock import format_instant, parse_instant
from gitcert.model import (
    CertificateSpec,
    Config,
    DesiredState,
    FileSource,
    IssuerSpec,
    KeySpec,
    ObjectKey,
    Request,
    Subject,
)
from gitcert.pki import CertFacts

log = logging.getLogger(__name__)

STATUS_API = "gitcert.dev/v1alpha1"
ANNOTATION = "cert-manager.io/"


def secret_path(config: Config, namespace: str, name: str) -> str:
    return f"{config.secrets_path}/{namespace}/{name}.yaml"


def status_path(config: Config, namespace: str, name: str) -> str:
    return f"{config.status_path}/{namespace}/{name}.yaml"


# --- YAML in and out -----------------------------------------------------------------------


class _Dumper(yaml.CSafeDumper):
    pass


def _str(dumper: _Dumper, value: str) -> yaml.ScalarNode:
    # PEM blocks and age envelopes read best (and diff line by line) as literal blocks.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(document: Mapping[str, Any]) -> bytes:
    text: str = yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1 << 16
    )
    return text.encode("utf-8")


def load(data: bytes) -> Any:
    return yaml.load(data, Loader=yaml.CSafeLoader)


# --- Secret ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretFacts:
    """What the checks need from a TLS Secret; ``certificate`` is None when tls.crt won't parse."""

    keys: tuple[str, ...]
    key_encrypted: bool
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    certificate: CertFacts | None
    certificate_error: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "keys": list(self.keys),
            "keyEncrypted": self.key_encrypted,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
        }
        if self.certificate_error:
            data["certificateError"] = self.certificate_error
        cert = self.certificate
        if cert is not None:
            data["certificate"] = {
                "notBefore": format_instant(cert.not_before),
                "notAfter": format_instant(cert.not_after),
                "serialNumber": cert.serial_number,
                "subject": cert.subject,
                "issuer": cert.issuer,
                "commonName": cert.common_name,
                "dnsNames": list(cert.dns_names),
                "ipAddresses": list(cert.ip_addresses),
                "uris": list(cert.uris),
                "emailAddresses": list(cert.email_addresses),
                "isCA": cert.is_ca,
                "usages": list(cert.usages),
                "keyAlgorithm": cert.key_algorithm,
                "keySize": cert.key_size,
                "subjectKeyId": cert.subject_key_id,
                "authorityKeyId": cert.authority_key_id,
            }
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SecretFacts:
        cert = data.get("certificate")
        facts = None
        if cert is not None:
            facts = CertFacts(
                not_before=parse_instant(cert["notBefore"]),
                not_after=parse_instant(cert["notAfter"]),
                serial_number=str(cert["serialNumber"]),
                subject=cert["subject"],
                issuer=cert["issuer"],
                common_name=cert["commonName"],
                dns_names=tuple(cert["dnsNames"]),
                ip_addresses=tuple(cert["ipAddresses"]),
                uris=tuple(cert["uris"]),
                email_addresses=tuple(cert["emailAddresses"]),
                is_ca=bool(cert["isCA"]),
                usages=tuple(cert["usages"]),
                key_algorithm=cert["keyAlgorithm"],
                key_size=int(cert["keySize"]),
                subject_key_id=cert.get("subjectKeyId", ""),
                authority_key_id=cert.get("authorityKeyId", ""),
            )
        return cls(
            keys=tuple(data["keys"]),
            key_encrypted=bool(data["keyEncrypted"]),
            labels=dict(data["labels"]),
            annotations=dict(data["annotations"]),
            certificate=facts,
            certificate_error=data.get("certificateError", ""),
        )


def secret_values(document: Mapping[str, Any]) -> dict[str, str]:
    """tls.crt, tls.key and ca.crt from ``stringData``, or base64 ``data`` when written so."""
    import base64

    values: dict[str, str] = {}
    for key, value in (document.get("data") or {}).items():
        encoded = str(value)
        values[key] = encoded if encoded.startswith("ENC[") else base64.b64decode(encoded).decode()
    values.update({k: str(v) for k, v in (document.get("stringData") or {}).items()})
    return values


def secret_facts(data: bytes) -> SecretFacts:
    """Parse a Secret file into facts; a file that is not YAML has no usable keys."""
    try:
        document = load(data)
    except yaml.YAMLError as exc:
        return SecretFacts((), False, {}, {}, None, f"not YAML: {exc}")
    if not isinstance(document, Mapping):
        return SecretFacts((), False, {}, {}, None, "not a Secret object")

    values = secret_values(document)
    metadata = document.get("metadata") or {}
    cert, error = None, ""
    if values.get("tls.crt"):
        try:
            chain = pki.load_pem_chain(values["tls.crt"])
            cert = pki.inspect(chain[0]) if chain else None
            error = "" if chain else "tls.crt holds no PEM certificate"
        except ValueError as exc:
            error = f"tls.crt does not parse: {exc}"
    return SecretFacts(
        keys=tuple(sorted(k for k, v in values.items() if v)),
        key_encrypted=str(values.get("tls.key", "")).startswith("ENC["),
        labels=dict(metadata.get("labels") or {}),
        annotations=dict(metadata.get("annotations") or {}),
        certificate=cert,
        certificate_error=error,
    )


def managed_annotations(spec: CertificateSpec) -> dict[str, str]:
    """cert-manager's annotations on an issued Secret, so tooling that reads them keeps working."""
    request = spec.request
    annotations = {
        f"{ANNOTATION}alt-names": ",".join(request.dns_names),
        f"{ANNOTATION}certificate-name": spec.name,
        f"{ANNOTATION}common-name": request.common_name,
        f"{ANNOTATION}email-sans": ",".join(request.email_addresses),
        f"{ANNOTATION}ip-sans": ",".join(request.ip_addresses),
        f"{ANNOTATION}issuer-group": spec.issuer_ref.group,
        f"{ANNOTATION}issuer-kind": spec.issuer_ref.kind,
        f"{ANNOTATION}issuer-name": spec.issuer_ref.name,
        f"{ANNOTATION}uri-sans": ",".join(request.uris),
    }
    return annotations


def desired_metadata(
    spec: CertificateSpec, cert_annotations: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and annotations the Secret should carry: the template's, then the managed ones."""
    annotations = {**spec.annotations, **cert_annotations}
    labels = {**spec.labels, "controller.cert-manager.io/fao": "true"}
    return dict(sorted(labels.items())), dict(sorted(annotations.items()))


def render_secret(
    spec: CertificateSpec,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    values: Mapping[str, str],
    sops_metadata: Mapping[str, Any] | None,
) -> bytes:
    """The canonical Secret file. ``values`` holds tls.crt, ca.crt and tls.key (encrypted)."""
    document = secret_document(
        spec.secret_name,
        spec.namespace,
        labels,
        annotations,
        "kubernetes.io/tls",
        {key: values.get(key, "") for key in ("ca.crt", "tls.crt", "tls.key")},
    )
    return render_document(document, sops_metadata)


def secret_document(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    type_: str,
    string_data: Mapping[str, str],
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": type_,
        "stringData": dict(string_data),
    }


def render_document(document: Mapping[str, Any], sops_metadata: Mapping[str, Any] | None) -> bytes:
    """A Secret document in gitcert's canonical form, with its sops block when encrypted."""
    body = dict(document)
    if sops_metadata is not None:
        body["sops"] = dict(sops_metadata)
    # No header comment: sops warns about comments in files it decrypts.
    return dump(body)


# --- status ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """The record of one Certificate; every field optional so partial records still load."""

    revision: int = 0
    last_issuance_reason: str = ""
    not_before: datetime | None = None
    not_after: datetime | None = None
    renewal_time: datetime | None = None
    serial_number: str = ""
    issuer: Mapping[str, str] = field(default_factory=dict)
    request: Request | None = None
    private_key: KeySpec | None = None
    secret_blob: str = ""
    secret_facts: SecretFacts | None = None
    failed_attempts: int = 0
    last_failure_time: datetime | None = None
    last_failure_reason: str = ""
    last_failure_message: str = ""
    failed_spec_digest: str = ""
    retry_after: datetime | None = None
    suggested_renewal_time: datetime | None = None
    """An issuer's renewal time for this serial (ACME ARI), drawn once; overrides the rule."""
    issuer_details: Mapping[str, str] = field(default_factory=dict)
    revoked_serial: str = ""
    revocation_reason: str = ""
    revoked_at: datetime | None = None

    def with_failure(
        self, now: datetime, reason: str, message: str, digest: str, retry: datetime
    ) -> Status:
        return replace(
            self,
            failed_attempts=self.failed_attempts + 1,
            last_failure_time=now,
            last_failure_reason=reason,
            last_failure_message=message,
            failed_spec_digest=digest,
            retry_after=retry,
        )


def request_to_json(request: Request) -> dict[str, Any]:
    subject = {
        k: list(v) if isinstance(v, tuple) else v for k, v in asdict(request.subject).items() if v
    }
    data: dict[str, Any] = {
        "commonName": request.common_name,
        "literalSubject": request.literal_subject,
        "subject": subject,
        "dnsNames": list(request.dns_names),
        "ipAddresses": list(request.ip_addresses),
        "uris": list(request.uris),
        "emailAddresses": list(request.email_addresses),
        "duration": durations.format(request.duration),
        "isCA": request.is_ca,
        "usages": list(request.usages),
    }
    return {k: v for k, v in data.items() if v not in ("", [], {}) or k == "isCA"}


def request_from_json(data: Mapping[str, Any]) -> Request:
    subject: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in (data.get("subject") or {}).items()
    }
    return Request(
        common_name=data.get("commonName", ""),
        literal_subject=data.get("literalSubject", ""),
        subject=Subject(**subject),
        dns_names=tuple(data.get("dnsNames", ())),
        ip_addresses=tuple(data.get("ipAddresses", ())),
        uris=tuple(data.get("uris", ())),
        email_addresses=tuple(data.get("emailAddresses", ())),
        duration=durations.parse(data.get("duration", "2160h")),
        is_ca=bool(data.get("isCA", False)),
        usages=tuple(data.get("usages", ())),
    )


def spec_digest(spec: CertificateSpec, issuer: IssuerSpec | None = None) -> str:
    """A digest of everything that decides what gets issued; changes skip the backoff.

    With ``issuer``, its configuration counts too: fixing an issuer (an EAB binding, a
    solver) is as good a reason to try again at once as fixing the Certificate.
    """
    material: dict[str, Any] = {
        "request": request_to_json(spec.request),
        "privateKey": asdict(spec.private_key),
        "issuerRef": asdict(spec.issuer_ref),
    }
    if issuer is not None:
        material["issuer"] = {"type": issuer.type, "config": issuer.config}
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def _instant(value: datetime | None) -> str | None:
    return format_instant(value) if value is not None else None


def render_status(key: ObjectKey, status: Status) -> bytes:
    body: dict[str, Any] = {
        "revision": status.revision,
        "lastIssuanceReason": status.last_issuance_reason,
        "notBefore": _instant(status.not_before),
        "notAfter": _instant(status.not_after),
        "renewalTime": _instant(status.renewal_time),
        "serialNumber": status.serial_number,
        "issuerRef": dict(status.issuer),
        "request": request_to_json(status.request) if status.request else None,
        "privateKey": _key_json(status.private_key) if status.private_key else None,
        "failedIssuanceAttempts": status.failed_attempts,
        "lastFailureTime": _instant(status.last_failure_time),
        "lastFailureReason": status.last_failure_reason,
        "lastFailureMessage": status.last_failure_message,
        "failedSpecDigest": status.failed_spec_digest,
        "retryAfter": _instant(status.retry_after),
        "suggestedRenewalTime": _instant(status.suggested_renewal_time),
        "issuerDetails": dict(status.issuer_details),
        "revokedSerialNumber": status.revoked_serial,
        "revocationReason": status.revocation_reason,
        "revokedAt": _instant(status.revoked_at),
        "secret": {"blob": status.secret_blob, "facts": status.secret_facts.to_json()}
        if status.secret_facts
        else None,
    }
    document = {
        "apiVersion": STATUS_API,
        "kind": "CertificateStatus",
        "metadata": {"name": key.name, "namespace": key.namespace},
        "status": {k: v for k, v in body.items() if v not in (None, "", 0, {})},
    }
    # JSON is YAML too, and a plan over ten thousand certificates reads ten thousand of
    # these: json parses them some thirty times faster than a YAML constructor.
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def blob_id(data: bytes) -> str:
    """The git object id a blob of ``data`` gets (SHA-1 object format)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def issuer_record(spec: CertificateSpec) -> dict[str, str]:
    ref = spec.issuer_ref
    return {"name": ref.name, "kind": ref.kind, "group": ref.group}


def issued_status(
    spec: CertificateSpec,
    secret: bytes,
    *,
    revision: int,
    reason: str,
    suggested_renewal_time: datetime | None = None,
    details: Mapping[str, str] | None = None,
) -> Status:
    """The record of a certificate just issued into ``secret`` (its rendered file).

    The facts are read back from the file itself, so the record describes exactly the
    blob it names, which is what lets a later plan trust it instead of parsing the Secret.
    """
    facts = secret_facts(secret)
    cert = facts.certificate
    assert cert is not None, "an issued Secret always holds its certificate"
    return Status(
        revision=revision,
        last_issuance_reason=reason,
        not_before=cert.not_before,
        not_after=cert.not_after,
        renewal_time=suggested_renewal_time
        or pki.renewal_time(
            cert.not_before, cert.not_after, spec.renew_before, spec.renew_before_percentage
        ),
        serial_number=cert.serial_number,
        issuer=issuer_record(spec),
        request=spec.request,
        private_key=replace(spec.private_key, rotation_policy="Always"),
        secret_blob=blob_id(secret),
        secret_facts=facts,
        suggested_renewal_time=suggested_renewal_time,
        issuer_details=dict(details or {}),
    )


def _key_json(key: KeySpec) -> dict[str, Any]:
    return {"algorithm": key.algorithm, "size": key.size, "encoding": key.encoding}


def parse_status(data: bytes) -> Status | None:
    """A status record, or None when the file is unreadable (then it is simply rewritten)."""
    try:
        try:
            document = json.loads(data)
        except ValueError:  # edited by hand into other YAML: still readable, just slower
            document = load(data)
        return _status(document["status"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring an unreadable status record: %s", exc)
        return None


def _status(body: Mapping[str, Any]) -> Status:
    def instant(name: str) -> datetime | None:
        value = body.get(name)
        return parse_instant(str(value)) if value else None

    secret = body.get("secret") or {}
    key = body.get("privateKey")
    return Status(
        revision=int(body.get("revision", 0)),
        last_issuance_reason=body.get("lastIssuanceReason", ""),
        not_before=instant("notBefore"),
        not_after=instant("notAfter"),
        renewal_time=instant("renewalTime"),
        serial_number=str(body.get("serialNumber", "")),
        issuer=dict(body.get("issuerRef") or {}),
        request=request_from_json(body["request"]) if body.get("request") else None,
        private_key=KeySpec(algorithm=key["algorithm"], size=key["size"], encoding=key["encoding"])
        if key
        else None,
        secret_blob=secret.get("blob", ""),
        secret_facts=SecretFacts.from_json(secret["facts"]) if secret.get("facts") else None,
        failed_attempts=int(body.get("failedIssuanceAttempts", 0)),
        last_failure_time=instant("lastFailureTime"),
        last_failure_reason=body.get("lastFailureReason", ""),
        last_failure_message=body.get("lastFailureMessage", ""),
        failed_spec_digest=body.get("failedSpecDigest", ""),
        retry_after=instant("retryAfter"),
        suggested_renewal_time=instant("suggestedRenewalTime"),
        issuer_details=dict(body.get("issuerDetails") or {}),
        revoked_serial=str(body.get("revokedSerialNumber", "")),
        revocation_reason=str(body.get("revocationReason", "")),
        revoked_at=instant("revokedAt"),
    )


# --- the snapshot ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Actual:
    """What the repo holds for one Certificate. ``secret`` is None when there is no Secret."""

    secret: SecretFacts | None
    secret_blob: str | None
    status: Status | None


def gather(tree: FileSource, desired: DesiredState) -> dict[ObjectKey, Actual]:
    """Read the Secret and status of every Certificate once, before any decision is made."""
    config = desired.config
    secrets = dict(tree.walk(config.secrets_path))
    statuses = dict(tree.walk(config.status_path))
    snapshot: dict[ObjectKey, Actual] = {}
    parsed = 0

    for spec in desired.certificates:
        spath = secret_path(config, spec.namespace, spec.secret_name)
        status_blob = statuses.get(status_path(config, spec.namespace, spec.name))
        status = parse_status(tree.read_blob(status_blob)) if status_blob else None
        blob = secrets.get(spath)

        facts: SecretFacts | None = None
        if (
            blob is not None
            and status is not None
            and status.secret_blob == blob
            and status.secret_facts
        ):
            facts = status.secret_facts
        elif blob is not None:
            facts = secret_facts(tree.read(spath) or b"")
            parsed += 1
        snapshot[spec.key] = Actual(facts, blob, status)

    log.debug(
        "gathered %d certificates; %d secrets parsed, the rest from status", len(snapshot), parsed
    )
    return snapshot
