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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

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


@dataclass(frozen=True)
class SignedCertificate:
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    """Intermediates, the leaf's issuer first; never the self-signed root."""
    ca: x509.Certificate | None
    """The trust anchor written to ca.crt, when the issuer knows one."""


@dataclass(frozen=True)
class KeyPair:
    """A certificate chain and its private key, read from a Secret in the repo."""

    chain: tuple[x509.Certificate, ...]
    key: PrivateKey
    ca: x509.Certificate | None


class IssuerContext(Protocol):
    """What the reconciler lends an issuer: settings, and Secrets decrypted on demand."""

    config: Config

    def keypair(self, namespace: str, secret_name: str) -> KeyPair:
        """The chain and key in a Secret, as of this run (including what it just issued).

        Raises:
            TemporaryIssuanceError: the Secret is missing, or its key does not match.
        """
        ...


class Issuer(Protocol):
    """One Issuer or ClusterIssuer, bound to the run's context."""

    def sign(self, request: SigningRequest) -> SignedCertificate: ...


class IssuerPlugin(Protocol):
    """The class registered under the entry point."""

    def __call__(self, spec: IssuerSpec, context: IssuerContext) -> Issuer: ...

    @staticmethod
    def secret_dependencies(spec: IssuerSpec, namespace: str) -> Sequence[tuple[str, str]]:
        """Secrets ``(namespace, name)`` the issuer reads; they are issued before its users."""
        ...


def resource_namespace(spec: IssuerSpec, config: Config) -> str:
    """Where an issuer's own Secrets live: its namespace, or the cluster resource namespace."""
    return config.cluster_resource_namespace if spec.is_cluster else spec.key.namespace
