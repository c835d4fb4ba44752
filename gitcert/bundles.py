"""Trust bundles in the style of trust-manager: sources combined, checked, written per namespace.

A Bundle's sources (inline PEM, a key of a Secret or ConfigMap in the repo, a file, the
public CA set of the pinned ``certifi`` package) are parsed strictly: only CERTIFICATE
blocks, so a private key pasted by mistake fails its source instead of being
redistributed. Certificates are de-duplicated by the SHA-256 of their DER and sorted by
it, so the same set always renders to the same bytes, whatever the order of the sources.

Targets: a ConfigMap (and/or a Secret) per selected namespace under ``bundles/``, plain PEM
files, and JKS / PKCS#12 trust stores, all byte-for-byte deterministic. A source may keep
the certificates it used to hold until a date (``keepPreviousUntil``), so consumers trust
old and new CA during a rotation; the bundle's status record remembers them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from gitcert import state
from gitcert.clock import format_instant, parse_instant
from gitcert.errors import GitcertError
from gitcert.model import BundleSource, BundleSpec, Config, DesiredState, TrustStore

log = logging.getLogger(__name__)

HASH_ANNOTATION = "trust.cert-manager.io/hash"
BUNDLE_LABEL = "trust.cert-manager.io/bundle"
_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")

Reader = Callable[[str], bytes | None]


class SourceError(GitcertError):
    """A Bundle source that cannot be used; the message names the bundle and the source."""


# --- parsing ---------------------------------------------------------------------------------


def parse_certificates(text: str, where: str) -> list[x509.Certificate]:
    """Every certificate in PEM ``text``; anything but CERTIFICATE blocks is an error.

    CRLF line endings, text between blocks and a missing final newline are tolerated, as
    in the PEM files people actually have.

    Raises:
        SourceError: naming ``where`` and what is wrong.
    """
    text = text.replace("\r\n", "\n")
    certificates = []
    for match in _BEGIN.finditer(text):
        label = match.group(1)
        if label == "TRUSTED CERTIFICATE":
            raise SourceError(
                f"{where}: holds a TRUSTED CERTIFICATE block (OpenSSL's trust format); "
                "convert it with `openssl x509 -in FILE` to a plain CERTIFICATE"
            )
        if label != "CERTIFICATE":
            article = "an" if label[0] in "AEIOU" else "a"
            raise SourceError(
                f"{where}: holds {article} {label} block; a bundle takes only certificates"
            )
    for match in _BLOCK.finditer(text):
        try:
            der = base64.b64decode("".join(match.group(2).split()), validate=True)
            with warnings.catch_warnings():
                # Old roots in public sets carry odd serials; they still identify themselves.
                warnings.simplefilter("ignore")
                certificates.append(x509.load_der_x509_certificate(der))
        except (ValueError, binascii.Error) as exc:
            raise SourceError(f"{where}: a CERTIFICATE block does not parse: {exc}") from exc
    if not certificates:
        raise SourceError(f"{where}: holds no certificate")
    return certificates


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


# --- status: what a bundle held, and what it keeps for a while ----------------------------------


@dataclass(frozen=True)
class Retained:
    pem: str
    until: datetime
    source: str = ""
    """The source (as described) that used to hold it: its keepPreviousUntil rules."""


@dataclass
class BundleStatus:
    sources: dict[str, list[str]] = field(default_factory=dict)
    """PEM certificates each source (by its description) held at the last build."""
    retained: list[Retained] = field(default_factory=list)
    default_cas: str = ""
    """The certifi version the default CAs came from."""

    def to_json(self) -> dict[str, Any]:
        return {
            "sources": dict(sorted(self.sources.items())),
            "retained": [
                {"pem": r.pem, "until": format_instant(r.until), "source": r.source}
                for r in self.retained
            ],
            "defaultCAsVersion": self.default_cas,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BundleStatus:
        return cls(
            sources={k: list(v) for k, v in (data.get("sources") or {}).items()},
            retained=[
                Retained(r["pem"], parse_instant(r["until"]), r.get("source", ""))
                for r in data.get("retained", [])
            ],
            default_cas=str(data.get("defaultCAsVersion", "")),
        )


def status_path(config: Config, name: str) -> str:
    # Bundles are cluster-scoped; "_bundles" cannot clash with a namespace name.
    return f"{config.status_path}/_bundles/{name}.yaml"


def load_status(read: Reader, config: Config, name: str) -> BundleStatus:
    data = read(status_path(config, name))
    if data is None:
        return BundleStatus()
    try:
        return BundleStatus.from_json(json.loads(data)["status"])
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring the unreadable status record of Bundle %s", name)
        return BundleStatus()


def render_status(name: str, status: BundleStatus) -> bytes:
    document = {
        "apiVersion": state.STATUS_API,
        "kind": "BundleStatus",
        "metadata": {"name": name},
        "status": status.to_json(),
    }
    return (json.dumps(document, indent=2) + "\n").encode()


# --- sources -----------------------------------------------------------------------------------


@dataclass
class Built:
    """A bundle's certificates after every source, filter and overlap is applied."""

    certificates: list[x509.Certificate]
    status: BundleStatus
    notes: list[str]


def build(
    bundle: BundleSpec,
    desired: DesiredState,
    read: Reader,
    now: datetime,
    coming: Collection[str] = (),
) -> Built:
    """Resolve, check, de-duplicate and order the certificates of ``bundle``.

    ``coming`` names Secrets (in the trust namespace) that this run is about to issue: a
    plan made before they exist shows them as coming rather than as an error.

    Raises:
        SourceError: a source is unusable, or nothing is left; the message says which.
    """
    previous = load_status(read, desired.config, bundle.name)
    status = BundleStatus(retained=_still_kept(previous.retained, bundle, now))
    notes: list[str] = []
    found: dict[str, x509.Certificate] = {}

    for index, source in enumerate(bundle.sources):
        where = f"{bundle.source}: Bundle {bundle.name} spec.sources[{index}] ({source.describe()})"
        if source.kind == "secret" and source.name in coming:
            notes.append(f"{where} is issued by this run; the bundle is rebuilt after it")
            continue
        resolved = _resolve(source, desired, read, where, status)
        certificates = _filtered(bundle, resolved, where, now, notes)
        pems = sorted(state_pem(c) for c in certificates)
        _overlap(source, previous, pems, status, now)
        status.sources[source.describe()] = pems
        found.update((fingerprint(c), c) for c in certificates)

    for kept in status.retained:
        cert = x509.load_pem_x509_certificate(kept.pem.encode())
        found.setdefault(fingerprint(cert), cert)

    if not found and not coming:
        reasons = f" ({'; '.join(notes)})" if notes else ""
        raise SourceError(
            f"Bundle {bundle.name}: no certificate is left{reasons}; "
            "its targets are kept as they are"
        )
    ordered = [found[key] for key in sorted(found)]
    return Built(ordered, status, notes)


def state_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _resolve(
    source: BundleSource, desired: DesiredState, read: Reader, where: str, status: BundleStatus
) -> list[x509.Certificate]:
    if source.kind == "inLine":
        return parse_certificates(source.text, where)
    if source.kind == "useDefaultCAs":
        import certifi

        status.default_cas = certifi.__version__
        return parse_certificates(certifi.contents(), where)
    if source.kind == "file":
        data = read(source.path)
        if data is None:
            raise SourceError(f"{where}: no such file in the repo")
        return parse_certificates(data.decode("utf-8", "replace"), where)
    if source.kind == "configMap":
        namespace = desired.config.cluster_resource_namespace
        values = desired.config_maps.get((namespace, source.name))
        if values is None or source.key not in values:
            raise SourceError(
                f"{where}: no ConfigMap {namespace}/{source.name} with key {source.key}"
            )
        return parse_certificates(values[source.key], where)
    return _secret(source, desired.config, read, where)


def _secret(
    source: BundleSource, config: Config, read: Reader, where: str
) -> list[x509.Certificate]:
    """A Secret's value from the repo, including one written earlier in this run."""
    namespace = config.cluster_resource_namespace
    data = read(state.secret_path(config, namespace, source.name))
    values = state.secret_values(state.load(data)) if data is not None else {}
    value = values.get(source.key)
    if value is None:
        raise SourceError(f"{where}: no Secret {namespace}/{source.name} with key {source.key}")
    if value.startswith("ENC["):
        raise SourceError(
            f"{where}: {source.key} is encrypted; a bundle reads only public keys such as ca.crt"
        )
    return parse_certificates(value, where)


def _filtered(
    bundle: BundleSpec,
    certificates: list[x509.Certificate],
    where: str,
    now: datetime,
    notes: list[str],
) -> list[x509.Certificate]:
    expired = [c for c in certificates if c.not_valid_after_utc <= now]
    if len(expired) == len(certificates):
        notes.append(f"{where} holds only expired certificates")
    if bundle.exclude_expired:
        certificates = [c for c in certificates if c not in expired]
    if bundle.exclude_non_ca:
        certificates = [c for c in certificates if is_ca(c)]
    return certificates


def _still_kept(retained: Sequence[Retained], bundle: BundleSpec, now: datetime) -> list[Retained]:
    """Replaced certificates still inside their overlap, by the sources' current settings.

    The date is read from the manifest on every run, not from when the rotation happened:
    shortening or removing keepPreviousUntil (say, after the old CA leaked) takes effect
    at once.
    """
    until = {s.describe(): s.keep_previous_until for s in bundle.sources}
    kept = []
    for entry in retained:
        limit = until.get(entry.source)
        if limit is not None and now < limit:
            kept.append(Retained(entry.pem, limit, entry.source))
    return kept


def _overlap(
    source: BundleSource,
    previous: BundleStatus,
    pems: list[str],
    status: BundleStatus,
    now: datetime,
) -> None:
    """Keep what a source used to hold until its keepPreviousUntil (a CA rotation)."""
    until = source.keep_previous_until
    if until is None or now >= until:
        return
    held = set(status.sources.get(source.describe(), [])) | set(pems)
    for pem in previous.sources.get(source.describe(), []):
        if pem not in held and all(r.pem != pem for r in status.retained):
            status.retained.append(Retained(pem, until, source.describe()))
            log.info(
                "keeping a replaced certificate of %s until %s",
                source.describe(),
                format_instant(until),
            )


# --- targets -----------------------------------------------------------------------------------


def selected_namespaces(bundle: BundleSpec, desired: DesiredState) -> list[str]:
    labels = bundle.target.namespace_labels
    if labels is None:
        return list(desired.namespaces)
    return [
        name
        for name, have in desired.namespaces.items()
        if all(have.get(k) == v for k, v in labels.items())
    ]


def render(bundle: BundleSpec, built: Built, desired: DesiredState) -> dict[str, bytes]:
    """Every file the bundle's targets consist of, by repo path."""
    pem = "".join(state_pem(c) for c in built.certificates)
    binary = _trust_stores(bundle, built.certificates)
    digest = content_hash(bundle, built.certificates)
    files: dict[str, bytes] = {}

    base = desired.config.bundles_path
    for namespace in selected_namespaces(bundle, desired):
        if bundle.target.config_map_key:
            document = _object("ConfigMap", bundle, namespace, digest)
            document["data"] = {bundle.target.config_map_key: pem}
            if binary:
                document["binaryData"] = {
                    k: base64.b64encode(v).decode() for k, v in binary.items()
                }
            files[f"{base}/{namespace}/{bundle.name}.yaml"] = state.dump(document)
        if bundle.target.secret_key:
            document = _object("Secret", bundle, namespace, digest)
            document["type"] = "Opaque"
            document["data"] = {
                bundle.target.secret_key: base64.b64encode(pem.encode()).decode(),
                **{k: base64.b64encode(v).decode() for k, v in binary.items()},
            }
            files[f"{base}/{namespace}/{bundle.name}.secret.yaml"] = state.dump(document)
    for path in bundle.target.files:
        files[path] = pem.encode()
    return files


def _object(kind: str, bundle: BundleSpec, namespace: str, digest: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {
            "name": bundle.name,
            "namespace": namespace,
            "labels": {BUNDLE_LABEL: bundle.name},
            "annotations": {HASH_ANNOTATION: digest},
        },
    }


def content_hash(bundle: BundleSpec, certificates: Sequence[x509.Certificate]) -> str:
    """What the targets are made of: the certificates and the trust-store options."""
    material = {
        "certificates": [fingerprint(c) for c in certificates],
        "jks": bundle.target.jks and [bundle.target.jks.key, bundle.target.jks.password],
        "pkcs12": bundle.target.pkcs12
        and [bundle.target.pkcs12.key, bundle.target.pkcs12.password],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _trust_stores(bundle: BundleSpec, certificates: Sequence[x509.Certificate]) -> dict[str, bytes]:
    stores = {}
    if bundle.target.jks is not None:
        stores[bundle.target.jks.key] = jks_store(certificates, bundle.target.jks.password)
    if bundle.target.pkcs12 is not None:
        stores[bundle.target.pkcs12.key] = pkcs12_store(certificates, bundle.target.pkcs12)
    return stores


def jks_store(certificates: Sequence[x509.Certificate], password: str) -> bytes:
    """A JKS trust store; entry timestamps come from the certificates, never from "now"."""
    import jks

    entries = []
    for cert in certificates:
        entry = jks.TrustedCertEntry.new(
            fingerprint(cert), cert.public_bytes(serialization.Encoding.DER)
        )
        entry.timestamp = int(cert.not_valid_before_utc.timestamp() * 1000)
        entries.append(entry)
    data: bytes = jks.KeyStore.new("jks", entries).saves(password)
    return data


def pkcs12_store(certificates: Sequence[x509.Certificate], store: TrustStore) -> bytes:
    """A PKCS#12 trust store. Without a password (trust-manager's default) it is built here,
    unencrypted and without a MAC, so the same certificates always give the same bytes;
    with one, the random salt makes every rendering differ, so it is rewritten only when
    the content hash changes."""
    if not store.password:
        return _passwordless_pkcs12(certificates)
    bags = [pkcs12.PKCS12Certificate(c, fingerprint(c).encode()) for c in certificates]
    encryption = serialization.BestAvailableEncryption(store.password.encode())
    return pkcs12.serialize_key_and_certificates(None, None, None, bags, encryption)


# A minimal DER writer for the one structure needed: PFX { version 3, authSafe: data {
# SafeContents of certBags (RFC 7292 4.2.5), each with a friendlyName and Java's
# trustedKeyUsage attribute, which makes Java treat the entry as a trust anchor } }.
_OID_DATA = "1.2.840.113549.1.7.1"
_OID_CERT_BAG = "1.2.840.113549.1.12.10.1.3"
_OID_X509 = "1.2.840.113549.1.9.22.1"
_OID_FRIENDLY_NAME = "1.2.840.113549.1.9.20"
_OID_JAVA_TRUSTED_USAGE = "2.16.840.1.113894.746875.1.1"
_OID_ANY_EKU = "2.5.29.37.0"


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    encoded = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(encoded)]) + encoded + body


def _seq(*items: bytes) -> bytes:
    return _der(0x30, b"".join(items))


def _set(*items: bytes) -> bytes:
    return _der(0x31, b"".join(sorted(items)))  # DER sorts SET OF members


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytes([parts[0] * 40 + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        body += bytes(reversed(chunk))
    return _der(0x06, body)


def _explicit(body: bytes) -> bytes:
    return _der(0xA0, body)


def _passwordless_pkcs12(certificates: Sequence[x509.Certificate]) -> bytes:
    bags = []
    for cert in certificates:
        value = _explicit(
            _seq(
                _oid(_OID_X509),
                _explicit(_der(0x04, cert.public_bytes(serialization.Encoding.DER))),
            )
        )
        alias = _der(0x1E, fingerprint(cert).encode("utf-16-be"))
        attributes = _set(
            _seq(_oid(_OID_FRIENDLY_NAME), _set(alias)),
            _seq(_oid(_OID_JAVA_TRUSTED_USAGE), _set(_oid(_OID_ANY_EKU))),
        )
        bags.append(_seq(_oid(_OID_CERT_BAG), value, attributes))
    authenticated_safe = _seq(_seq(_oid(_OID_DATA), _explicit(_der(0x04, _seq(*bags)))))
    return _seq(
        _der(0x02, b"\x03"), _seq(_oid(_OID_DATA), _explicit(_der(0x04, authenticated_safe)))
    )


# --- what changes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleChange:
    """One target file of a bundle: created, updated or unchanged, and which CAs move."""

    bundle: str
    path: str
    action: str
    added: tuple[tuple[str, str], ...]
    removed: tuple[tuple[str, str], ...]

    @property
    def message(self) -> str:
        """Each CA added and removed, by subject and fingerprint; counts when there are many
        (a first build adds the whole public set). The JSON plan always lists them all."""
        parts = [_moves("+", self.added), _moves("-", self.removed)]
        return "; ".join(p for p in parts if p) or "trust-store options changed"


def _moves(sign: str, moved: Sequence[tuple[str, str]]) -> str:
    if len(moved) > 6:
        verb = "adds" if sign == "+" else "removes"
        return f"{verb} {len(moved)} certificates"
    return "; ".join(f"{sign} {subject} (sha256 {digest[:16]})" for subject, digest in moved)


def changes(
    bundle: BundleSpec, built: Built, files: Mapping[str, bytes], read: Reader
) -> list[BundleChange]:
    """Compare rendered targets with what the repo holds now."""
    wanted = {fingerprint(c): c for c in built.certificates}
    found = []
    for path, data in sorted(files.items()):
        existing = read(path)
        if existing == data:
            continue
        held = _held(existing)
        added = tuple(sorted((_subject(c), f) for f, c in wanted.items() if f not in held))
        removed = tuple(sorted((s, f) for f, s in held.items() if f not in wanted))
        action = "create-bundle" if existing is None else "update-bundle"
        if (
            existing is not None
            and not added
            and not removed
            and _hash_of(existing) == _hash_of(data)
        ):
            continue  # same content; a passworded PKCS#12 would differ only by its salt
        found.append(BundleChange(bundle.name, path, action, added, removed))
    return found


def stale(
    paths: Iterable[str], read: Reader, expected: Collection[str], keep: Collection[str]
) -> list[BundleChange]:
    """Targets gitcert wrote that no Bundle wants any more: its namespace is no longer
    selected, or the Bundle is gone. Those of ``keep`` (Bundles that failed to build this
    time) stay, as every failed bundle keeps its previous targets."""
    found = []
    for path in paths:
        data = read(path)
        if path in expected or data is None:
            continue
        try:
            document = state.load(data)
        except ValueError:
            continue
        labels = ((document or {}).get("metadata") or {}).get("labels") or {}
        name = labels.get(BUNDLE_LABEL) if isinstance(labels, Mapping) else None
        if not name or name in keep:
            continue  # not a target gitcert made, or one it must keep
        held = tuple(sorted((subject, f) for f, subject in _held(data).items()))
        found.append(BundleChange(str(name), path, "delete-bundle", (), held))
    return found


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _held(data: bytes | None) -> dict[str, str]:
    """Fingerprint to subject of the certificates a target file holds now."""
    if data is None:
        return {}
    text = data.decode("utf-8", "replace")
    if not text.lstrip().startswith("-----BEGIN"):
        document = state.load(data) or {}
        values = {**(document.get("data") or {})}
        text = "".join(
            v if v.lstrip().startswith("-----BEGIN") else _b64_text(v) for v in values.values()
        )
    held = {}
    for match in _BLOCK.finditer(text):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # public roots with odd serials, as above
                der = base64.b64decode("".join(match.group(2).split()))
                cert = x509.load_der_x509_certificate(der)
        except ValueError:
            continue
        held[fingerprint(cert)] = _subject(cert)
    return held


def _b64_text(value: str) -> str:
    try:
        return base64.b64decode(value).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""


def _hash_of(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    marker = HASH_ANNOTATION + ": "
    index = text.find(marker)
    return text[index + len(marker) : index + len(marker) + 64] if index >= 0 else ""
