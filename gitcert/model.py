"""Frozen value objects for desired state: Certificates, Issuers and gitcert's Config.

Manifests are parsed into these once per run (:mod:`gitcert.manifests`); every later stage
reads them and none changes them. Identities are already normalised here, so equality of
two specs is equality of what they ask for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

CERT_MANAGER_GROUP = "cert-manager.io"
DEFAULT_DURATION = timedelta(days=90)

KeyAlgorithm = Literal["RSA", "ECDSA", "Ed25519"]
KeyEncoding = Literal["PKCS1", "PKCS8"]
RotationPolicy = Literal["Always", "Never"]
IssuerKind = Literal["Issuer", "ClusterIssuer"]


@dataclass(frozen=True)
class Source:
    """Where an object was written: a path in the repository and a 1-based line."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, order=True)
class ObjectKey:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if self.kind == "ClusterIssuer":
            return f"{self.kind}/{self.name}"
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class IssuerRef:
    name: str
    kind: IssuerKind = "Issuer"
    group: str = CERT_MANAGER_GROUP


@dataclass(frozen=True)
class KeySpec:
    algorithm: KeyAlgorithm = "ECDSA"
    size: int = 256
    encoding: KeyEncoding = "PKCS1"
    rotation_policy: RotationPolicy = "Always"

    def describe(self) -> str:
        return self.algorithm if self.algorithm == "Ed25519" else f"{self.algorithm}-{self.size}"


# Subject attributes: (their name in manifests, their name in the model).
SUBJECT_FIELDS = (
    ("organizations", "organizations"),
    ("countries", "countries"),
    ("organizationalUnits", "organizational_units"),
    ("localities", "localities"),
    ("provinces", "provinces"),
    ("streetAddresses", "street_addresses"),
    ("postalCodes", "postal_codes"),
    ("serialNumber", "serial_number"),
)


@dataclass(frozen=True)
class Subject:
    """X.509 subject attributes besides the common name, as cert-manager's ``subject``."""

    organizations: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    organizational_units: tuple[str, ...] = ()
    localities: tuple[str, ...] = ()
    provinces: tuple[str, ...] = ()
    street_addresses: tuple[str, ...] = ()
    postal_codes: tuple[str, ...] = ()
    serial_number: str = ""


@dataclass(frozen=True)
class Request:
    """What a certificate asks an issuer for: the part of a spec that a reissue depends on.

    Recorded in the status of every issued certificate, so a later run can say exactly which
    field changed.
    """

    common_name: str = ""
    literal_subject: str = ""
    subject: Subject = Subject()
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    email_addresses: tuple[str, ...] = ()
    duration: timedelta = DEFAULT_DURATION
    is_ca: bool = False
    usages: tuple[str, ...] = ()


@dataclass(frozen=True)
class CertificateSpec:
    key: ObjectKey
    source: Source
    secret_name: str
    issuer_ref: IssuerRef
    request: Request
    private_key: KeySpec = KeySpec()
    renew_before: timedelta | None = None
    renew_before_percentage: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    spec_usages: tuple[str, ...] = ()
    """``spec.usages`` as written, empty when left out: cert-manager copies exactly these into
    its CertificateRequest, which is what a CertificateRequestPolicy judges."""

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def name(self) -> str:
        return self.key.name


@dataclass(frozen=True)
class IssuerSpec:
    """An Issuer or ClusterIssuer; ``type`` is the key under ``spec`` (``selfSigned``, ``ca``)."""

    key: ObjectKey
    source: Source
    type: str
    config: Mapping[str, object]

    @property
    def is_cluster(self) -> bool:
        return self.key.kind == "ClusterIssuer"


@dataclass(frozen=True)
class GitSettings:
    remote: str = "origin"
    branch: str = "main"
    author_name: str = "gitcert"
    author_email: str = "gitcert@localhost"


@dataclass(frozen=True)
class AcmeLimits:
    """The ACME CA's rate limits that plan counts against (Let's Encrypt's by default)."""

    certificates_per_registered_domain: int = 50
    duplicate_certificates: int = 5
    window: timedelta = timedelta(days=7)
    fail: bool = False
    """Fail the plan (a pull request's check) instead of warning."""


@dataclass(frozen=True)
class Config:
    """gitcert.yaml: where things live in the cert repo and how to commit."""

    manifest_paths: tuple[str, ...] = ("manifests",)
    secrets_path: str = "secrets"
    status_path: str = "status"
    cluster_resource_namespace: str = "cert-manager"
    git: GitSettings = GitSettings()
    concurrency: int = 4
    bundles_path: str = "bundles"
    acme_limits: AcmeLimits = AcmeLimits()
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Declared namespaces and their labels (for Bundle namespaceSelectors)."""
    source: Source | None = None


@dataclass(frozen=True)
class BundleSource:
    """One entry of a Bundle's ``spec.sources``; ``kind`` is the key that names its type."""

    kind: str
    """``inLine``, ``useDefaultCAs``, ``secret``, ``configMap`` or ``file``."""
    name: str = ""
    key: str = ""
    path: str = ""
    text: str = ""
    keep_previous_until: datetime | None = None

    def describe(self) -> str:
        if self.kind in ("secret", "configMap"):
            return f"{self.kind} {self.name}/{self.key}"
        if self.kind == "file":
            return f"file {self.path}"
        return self.kind


@dataclass(frozen=True)
class TrustStore:
    key: str
    password: str


@dataclass(frozen=True)
class BundleTarget:
    config_map_key: str = ""
    secret_key: str = ""
    files: tuple[str, ...] = ()
    jks: TrustStore | None = None
    pkcs12: TrustStore | None = None
    namespace_labels: Mapping[str, str] | None = None
    """matchLabels of the namespaceSelector; None selects every namespace."""


@dataclass(frozen=True)
class BundleSpec:
    """A trust-manager Bundle (cluster-scoped): sources combined into targets."""

    name: str
    source: Source
    sources: tuple[BundleSource, ...]
    target: BundleTarget
    exclude_expired: bool = False
    exclude_non_ca: bool = False


# --- CertificateRequestPolicy (cert-manager's approver-policy) -----------------------------------


@dataclass(frozen=True)
class AllowedValues:
    """One entry of a policy's ``spec.allowed``: the globs a requested value must match.

    ``value`` (commonName, serialNumber) and ``values`` (the lists) both land in
    ``patterns``; an entry without any pattern allows no value at all.
    """

    patterns: tuple[str, ...] = ()
    required: bool = False


@dataclass(frozen=True)
class AllowedSubject:
    """``spec.allowed.subject``; None for an attribute the policy does not list."""

    organizations: AllowedValues | None = None
    countries: AllowedValues | None = None
    organizational_units: AllowedValues | None = None
    localities: AllowedValues | None = None
    provinces: AllowedValues | None = None
    street_addresses: AllowedValues | None = None
    postal_codes: AllowedValues | None = None
    serial_number: AllowedValues | None = None


@dataclass(frozen=True)
class PolicyAllowed:
    """``spec.allowed``: what a request may carry; None for a field the policy does not list."""

    common_name: AllowedValues | None = None
    dns_names: AllowedValues | None = None
    ip_addresses: AllowedValues | None = None
    uris: AllowedValues | None = None
    email_addresses: AllowedValues | None = None
    is_ca: bool = False
    usages: tuple[str, ...] = ()
    subject: AllowedSubject = AllowedSubject()


@dataclass(frozen=True)
class PolicyConstraints:
    """``spec.constraints``: bounds on the duration and the private key; None is unbounded."""

    min_duration: timedelta | None = None
    max_duration: timedelta | None = None
    key_algorithm: KeyAlgorithm | None = None
    min_key_size: int | None = None
    max_key_size: int | None = None


@dataclass(frozen=True)
class PolicySelector:
    """``spec.selector``: the requests a policy judges (globs); None selects everything."""

    issuer_name: str | None = None
    issuer_kind: str | None = None
    issuer_group: str | None = None
    namespace_names: tuple[str, ...] | None = None
    namespace_labels: Mapping[str, str] | None = None


@dataclass(frozen=True)
class CertificateRequestPolicy:
    """An approver-policy ``policy.cert-manager.io/v1alpha1`` CertificateRequestPolicy.

    Cluster-scoped, as in approver-policy. Judged by :mod:`gitcert.approval`.
    """

    name: str
    source: Source
    selector: PolicySelector
    allowed: PolicyAllowed = PolicyAllowed()
    constraints: PolicyConstraints = PolicyConstraints()


@dataclass(frozen=True)
class DesiredState:
    config: Config
    certificates: tuple[CertificateSpec, ...]
    issuers: Mapping[ObjectKey, IssuerSpec]
    bundles: tuple[BundleSpec, ...] = ()
    config_maps: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)
    """ConfigMaps written in the manifests, by (namespace, name): Bundle sources."""
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Every namespace of the repo, with its labels."""
    policies: tuple[CertificateRequestPolicy, ...] = ()
    """CertificateRequestPolicies, by name; once there is one, every request needs one's yes."""


class FileSource:
    """Read-only view of files at one commit; implemented by :mod:`gitcert.gitops`.

    Declared here so that the manifest and state readers can take a tree without importing
    git code (they sit beside gitops in the layering, not above it).
    """

    def read(self, path: str) -> bytes | None:
        """The blob at ``path``, or None when there is none."""
        raise NotImplementedError

    def walk(self, prefix: str) -> list[tuple[str, str]]:
        """``(path, blob id)`` of every file under ``prefix``, sorted by path."""
        raise NotImplementedError

    def blob_id(self, path: str) -> str | None:
        raise NotImplementedError

    def read_blob(self, blob_id: str) -> bytes:
        """The blob with this id, as :meth:`walk` reports them."""
        raise NotImplementedError
