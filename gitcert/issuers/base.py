"""The issuer plugin interface: what an issuer receives, returns and raises.

An issuer turns a CSR into a signed certificate and its chain. It raises
:class:`~gitcert.errors.TemporaryIssuanceError` for "try again later" and
:class:`~gitcert.errors.PermanentIssuanceError` for "this will not work as written"; the
reconciler records either as an outcome and carries on with the other certificates.

Plugins register under the ``gitcert.issuers`` entry-point group, keyed by the field name
under an Issuer's ``spec`` (``selfSigned``, ``ca``, ...), so third parties can add issuers
without touching gitcert.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from cryptography import x509

from gitcert.model import CertificateSpec, Config, IssuerSpec
from gitcert.pki import PrivateKey

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SigningRequest:
    """What an issuer gets. ``key`` is for in-process signers (SelfSigned) only: a plugin that
    talks to a server sends the CSR and nothing else."""

    certificate: CertificateSpec
    csr: x509.CertificateSigningRequest
    key: PrivateKey
    now: datetime
    current: x509.Certificate | None = None
    """The certificate this one replaces, if any (ACME ARI names it in the new order)."""


@dataclass(frozen=True)
class SignedCertificate:
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    """Intermediates, the leaf's issuer first; never the self-signed root."""
    ca: x509.Certificate | None
    """The trust anchor written to ca.crt, when the issuer knows one."""
    key: PrivateKey | None = None
    """Set when the certificate carries another key than the request's (a resumed order)."""
    renewal_time: datetime | None = None
    """A renewal time the issuer suggests (ACME ARI), drawn once; it overrides the default."""
    details: Mapping[str, str] = field(default_factory=dict)
    """Facts worth keeping in the status record (an ACME order URL, the account URL)."""


@dataclass(frozen=True)
class KeyPair:
    """A certificate chain and its private key, read from a Secret in the repo."""

    chain: tuple[x509.Certificate, ...]
    key: PrivateKey
    ca: x509.Certificate | None


class IssuerContext(Protocol):
    """What the reconciler lends an issuer: settings, Secrets decrypted on demand, and a
    journal that survives an interrupted run."""

    config: Config

    def keypair(self, namespace: str, secret_name: str) -> KeyPair:
        """The chain and key in a Secret, as of this run (including what it just issued).

        Raises:
            TemporaryIssuanceError: the Secret is missing, or its key does not match.
        """
        ...

    def private_key(self, namespace: str, secret_name: str) -> PrivateKey | None:
        """The decrypted tls.key of a Secret, or None when there is no such Secret."""
        ...

    def secret_value(self, namespace: str, secret_name: str, key: str) -> bytes:
        """One decrypted value of a Secret in the repo.

        Raises:
            PermanentIssuanceError: the Secret or the key does not exist.
        """
        ...

    def store_private_key(
        self, namespace: str, secret_name: str, key: PrivateKey, annotations: Mapping[str, str]
    ) -> None:
        """Write a Secret holding ``key`` as tls.key (encrypted) in this run's commit."""
        ...

    def journal_load(self, name: str) -> tuple[Mapping[str, str], PrivateKey] | None:
        """What :meth:`journal_save` kept under ``name`` in an earlier, unfinished run."""
        ...

    def journal_save(self, name: str, facts: Mapping[str, str], key: PrivateKey) -> None:
        """Durably keep ``facts`` and ``key`` (encrypted) now, before the run finishes."""
        ...


class Issuer(Protocol):
    """One Issuer or ClusterIssuer, bound to the run's context."""

    def sign(self, request: SigningRequest) -> SignedCertificate: ...


@runtime_checkable
class Revoker(Protocol):
    """An issuer that can revoke what it issued (ACME, Vault)."""

    def revoke(self, certificate: x509.Certificate, reason: int) -> None: ...


class IssuerPlugin(Protocol):
    """The class registered under the entry point."""

    def __call__(self, spec: IssuerSpec, context: IssuerContext) -> Issuer: ...

    @staticmethod
    def secret_dependencies(spec: IssuerSpec, namespace: str) -> Sequence[tuple[str, str]]:
        """Secrets ``(namespace, name)`` the issuer reads; they are issued before its users."""
        ...


Located = tuple[tuple[str | int, ...], str]
"""A problem with a field of a Certificate: the field's path, and what is wrong.

For list fields of names (``dnsNames``, ``ipAddresses``) the last element may be the
normalised name itself; the reconciler finds which list item the user wrote it as."""


def certificate_problems(
    plugin: IssuerPlugin, spec: IssuerSpec, certificate: CertificateSpec
) -> list[Located]:
    """What a plugin says a Certificate asks that its issuer cannot do (validate and plan).

    Plugins opt in with a static ``check_certificate(spec, certificate)``.
    """
    check = getattr(plugin, "check_certificate", None)
    return list(check(spec, certificate)) if check is not None else []


def resource_namespace(spec: IssuerSpec, config: Config) -> str:
    """Where an issuer's own Secrets live: its namespace, or the cluster resource namespace."""
    return config.cluster_resource_namespace if spec.is_cluster else spec.key.namespace
