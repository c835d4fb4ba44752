"""Keys, CSRs, certificate building, inspection, verification and renewal-time arithmetic.

Pure functions over :mod:`cryptography` objects. Nothing here reads files, runs sops or
talks to git; issuers and the reconciler call in with what they have gathered.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gitcert import names
from gitcert.clock import truncate
from gitcert.model import KeySpec, Request

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_CURVES: dict[int, ec.EllipticCurve] = {
    256: ec.SECP256R1(),
    384: ec.SECP384R1(),
    521: ec.SECP521R1(),
}

# cert-manager's usage names, split into the KeyUsage bits and the ExtendedKeyUsage OIDs.
KEY_USAGES = {
    "digital signature": "digital_signature",
    "signing": "digital_signature",
    "content commitment": "content_commitment",
    "key encipherment": "key_encipherment",
    "key agreement": "key_agreement",
    "data encipherment": "data_encipherment",
    "cert sign": "key_cert_sign",
    "crl sign": "crl_sign",
    "encipher only": "encipher_only",
    "decipher only": "decipher_only",
}
EXTENDED_KEY_USAGES = {
    "any": x509.ObjectIdentifier("2.5.29.37.0"),
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "s/mime": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec end system": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec tunnel": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec user": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft sgc": x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape sgc": x509.ObjectIdentifier("2.16.840.1.113730.4.1"),
}
ALL_USAGES = frozenset(KEY_USAGES) | frozenset(EXTENDED_KEY_USAGES)
_EKU_NAMES = {oid: name for name, oid in reversed(list(EXTENDED_KEY_USAGES.items()))}
_KU_NAMES = {attr: name for name, attr in reversed(list(KEY_USAGES.items()))}

_SUBJECT_OIDS = (
    ("organizations", NameOID.ORGANIZATION_NAME),
    ("countries", NameOID.COUNTRY_NAME),
    ("organizational_units", NameOID.ORGANIZATIONAL_UNIT_NAME),
    ("localities", NameOID.LOCALITY_NAME),
    ("provinces", NameOID.STATE_OR_PROVINCE_NAME),
    ("street_addresses", NameOID.STREET_ADDRESS),
    ("postal_codes", NameOID.POSTAL_CODE),
)


# --- keys ----------------------------------------------------------------------------------


def generate_key(spec: KeySpec) -> PrivateKey:
    if spec.algorithm == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=spec.size)
    if spec.algorithm == "ECDSA":
        return ec.generate_private_key(_CURVES[spec.size])
    return ed25519.Ed25519PrivateKey.generate()


def key_to_pem(key: PrivateKey, encoding: str) -> bytes:
    # PKCS#1 exists only for RSA; cert-manager writes EC keys as SEC1 ("EC PRIVATE KEY")
    # under PKCS1, and Ed25519 keys are always PKCS#8.
    if encoding == "PKCS8" or isinstance(key, ed25519.Ed25519PrivateKey):
        fmt = serialization.PrivateFormat.PKCS8
    else:
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def load_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError(f"unsupported private key type {type(key).__name__}")
    return key


def public_key_spec(public: object) -> tuple[str, int]:
    """(algorithm, size) of a public key, in cert-manager's spelling."""
    if isinstance(public, rsa.RSAPublicKey):
        return "RSA", public.key_size
    if isinstance(public, ec.EllipticCurvePublicKey):
        return "ECDSA", public.curve.key_size
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "Ed25519", 0
    return type(public).__name__, 0


def key_matches_spec(public: object, spec: KeySpec) -> bool:
    algorithm, size = public_key_spec(public)
    if algorithm != spec.algorithm:
        return False
    return algorithm == "Ed25519" or size == spec.size


def public_bytes(public: object) -> bytes:
    assert hasattr(public, "public_bytes")
    data: bytes = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def _signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384() if key.curve.key_size == 384 else hashes.SHA512()
    return hashes.SHA256()


# --- requests and certificates ------------------------------------------------------------


def subject_name(request: Request) -> x509.Name:
    if request.literal_subject:
        return x509.Name.from_rfc4514_string(request.literal_subject)
    attributes = []
    for attr, oid in _SUBJECT_OIDS:
        for value in getattr(request.subject, attr):
            attributes.append(x509.NameAttribute(oid, value))
    if request.subject.serial_number:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, request.subject.serial_number))
    if request.common_name:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, request.common_name))
    return x509.Name(attributes)


def general_names(request: Request) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = [x509.DNSName(n) for n in request.dns_names]
    result += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in request.ip_addresses]
    result += [x509.UniformResourceIdentifier(u) for u in request.uris]
    result += [x509.RFC822Name(e) for e in request.email_addresses]
    return result


def build_csr(request: Request, key: PrivateKey) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject_name(request))
    sans = general_names(request)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, _signature_hash(key))


def _key_usage(usages: Sequence[str], is_ca: bool) -> x509.KeyUsage:
    flags = {attr: False for attr in set(KEY_USAGES.values())}
    for usage in usages:
        if usage in KEY_USAGES:
            flags[KEY_USAGES[usage]] = True
    if is_ca:
        flags["key_cert_sign"] = True
    return x509.KeyUsage(**flags)


@dataclass(frozen=True)
class SigningTemplate:
    """Everything a local signer needs beyond the CSR itself."""

    request: Request
    not_before: datetime
    not_after: datetime


def sign_certificate(
    csr: x509.CertificateSigningRequest,
    template: SigningTemplate,
    issuer_name: x509.Name,
    issuer_key: PrivateKey,
    issuer_public: object | None = None,
) -> x509.Certificate:
    """Sign ``csr`` with ``issuer_key``, taking names from the CSR and the rest from the spec."""
    request = template.request
    public = csr.public_key()
    issuer_public = issuer_public if issuer_public is not None else issuer_key.public_key()

    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(template.not_before)
        .not_valid_after(template.not_after)
        .add_extension(x509.BasicConstraints(ca=request.is_ca, path_length=None), critical=True)
        .add_extension(_key_usage(request.usages, request.is_ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),  # type: ignore[arg-type]
            critical=False,
        )
    )

    ekus = [EXTENDED_KEY_USAGES[u] for u in request.usages if u in EXTENDED_KEY_USAGES]
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(dict.fromkeys(ekus))), False)

    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        # RFC 5280 4.2.1.6: the SAN extension is critical when the subject is empty.
        builder = builder.add_extension(sans, critical=len(csr.subject) == 0)
    except x509.ExtensionNotFound:
        pass

    return builder.sign(issuer_key, _signature_hash(issuer_key))


def cert_to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_pem_chain(text: str | bytes) -> list[x509.Certificate]:
    data = text.encode("ascii") if isinstance(text, str) else text
    if b"-----BEGIN" not in data:
        return []
    return x509.load_pem_x509_certificates(data)


def is_self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, Exception):
        return False
    return True


# --- inspection ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CertFacts:
    """What the checks need to know about an issued certificate, read once from its DER."""

    not_before: datetime
    not_after: datetime
    serial_number: str
    subject: str
    issuer: str
    common_name: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    uris: tuple[str, ...]
    email_addresses: tuple[str, ...]
    is_ca: bool
    usages: tuple[str, ...]
    key_algorithm: str
    key_size: int
    subject_key_id: str = ""
    authority_key_id: str = ""


def _key_ids(cert: x509.Certificate) -> tuple[str, str]:
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    except x509.ExtensionNotFound:
        ski = ""
    try:
        aki_value = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        aki = aki_value.key_identifier.hex() if aki_value.key_identifier else ""
    except x509.ExtensionNotFound:
        aki = ""
    return ski, aki


def inspect(cert: x509.Certificate) -> CertFacts:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(names.dns_name(n) for n in san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
        uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
        emails = tuple(san.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        dns, ips, uris, emails = (), (), (), ()

    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False

    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    algorithm, size = public_key_spec(cert.public_key())
    ski, aki = _key_ids(cert)
    return CertFacts(
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial_number=format(cert.serial_number, "x"),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        common_name=str(cns[0].value) if cns else "",
        dns_names=names.canonical_set(dns),
        ip_addresses=tuple(sorted(set(ips), key=names.ip_sort_key)),
        uris=names.canonical_set(uris),
        email_addresses=names.canonical_set(emails),
        is_ca=is_ca,
        usages=_usages(cert),
        key_algorithm=algorithm,
        key_size=size,
        subject_key_id=ski,
        authority_key_id=aki,
    )


def _usages(cert: x509.Certificate) -> tuple[str, ...]:
    found: list[str] = []
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        for attr, name in _KU_NAMES.items():
            if attr in ("encipher_only", "decipher_only") and not ku.key_agreement:
                continue
            if getattr(ku, attr):
                found.append(name)
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        found += [_EKU_NAMES.get(oid, oid.dotted_string) for oid in eku]
    except x509.ExtensionNotFound:
        pass
    return tuple(sorted(set(found)))


# --- verification --------------------------------------------------------------------------


CLOCK_SKEW = timedelta(minutes=5)


def verify_issued(
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate],
    anchor: x509.Certificate | None,
    key: PrivateKey,
    request: Request,
    now: datetime,
) -> None:
    """Check a returned certificate before anything is written.

    The key must match, the names must be exactly those requested, the certificate must be
    valid now, and each certificate must be signed by the next one up to ``anchor``.

    Raises:
        ValueError: with a sentence saying which check failed.
    """
    if public_bytes(leaf.public_key()) != public_bytes(key.public_key()):
        raise ValueError("the issued certificate does not carry our public key")

    facts = inspect(leaf)
    wanted = (request.dns_names, request.ip_addresses, request.uris, request.email_addresses)
    got = (facts.dns_names, facts.ip_addresses, facts.uris, facts.email_addresses)
    if wanted != got:
        raise ValueError(f"the issued certificate names {got}, but we asked for {wanted}")

    # A remote CA's clock may run a little ahead of ours (Pebble stamps notBefore with
    # its own second); a certificate that starts within the skew counts as valid now.
    if not facts.not_before - CLOCK_SKEW <= now < facts.not_after:
        raise ValueError(
            f"the issued certificate is not valid now ({facts.not_before} to {facts.not_after})"
        )

    path = [leaf, *chain]
    if anchor is not None and path[-1].fingerprint(hashes.SHA256()) != anchor.fingerprint(
        hashes.SHA256()
    ):
        path.append(anchor)
    for child, parent in itertools.pairwise(path):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, Exception) as exc:
            raise ValueError(
                f"{child.subject.rfc4514_string()} is not signed by "
                f"{parent.subject.rfc4514_string()}: {exc}"
            ) from exc


# --- renewal time --------------------------------------------------------------------------

SHORT_LIVED = timedelta(days=10)


def renew_before(
    lifetime: timedelta, renew_before: timedelta | None, percentage: int | None
) -> timedelta:
    """How long before expiry to renew a certificate with the given actual lifetime.

    ``renewBefore`` wins when it is shorter than the lifetime; ``renewBeforePercentage`` is
    the share of the lifetime that may pass before renewing; otherwise renew when a third
    of the lifetime remains, or half of it for lifetimes of 10 days or less.
    """
    if renew_before is not None and renew_before < lifetime:
        return renew_before
    if percentage is not None:
        return lifetime * (100 - percentage) / 100
    if lifetime <= SHORT_LIVED:
        return lifetime / 2
    return lifetime / 3


def renewal_time(
    not_before: datetime,
    not_after: datetime,
    renew_before_: timedelta | None = None,
    percentage: int | None = None,
) -> datetime:
    """The instant renewal becomes due, truncated to whole seconds.

    Truncation matters: status records store whole seconds, and comparing a stored time
    with a finer computed one would make a certificate look due (or not) by a fraction.
    """
    lifetime = not_after - not_before
    return truncate(not_after - renew_before(lifetime, renew_before_, percentage))
