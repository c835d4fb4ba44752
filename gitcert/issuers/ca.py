"""The CA issuer: certificates signed by a CA whose key pair is a Secret in the repo.

The CA's Secret is read from ``secrets/<namespace>/<secretName>.yaml`` (the issuer's
namespace, or the cluster resource namespace for a ClusterIssuer) and its key decrypted
with sops, once per run. The Secret may itself be issued earlier in the same run.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509

from gitcert import pki
from gitcert.errors import PermanentIssuanceError
from gitcert.issuers.base import (
    IssuerContext,
    KeyPair,
    SignedCertificate,
    SigningRequest,
    resource_namespace,
)
from gitcert.model import CertificateSpec, IssuerSpec


class CAIssuer:
    def __init__(self, spec: IssuerSpec, context: IssuerContext) -> None:
        self.spec = spec
        self.context = context
        self.namespace = resource_namespace(spec, context.config)
        self.secret_name = str(spec.config["secretName"])
        self._chain_of: KeyPair | None = None
        self._chain_without_root: tuple[x509.Certificate, ...] = ()

    @staticmethod
    def secret_dependencies(spec: IssuerSpec, namespace: str) -> Sequence[tuple[str, str]]:
        return ((namespace, str(spec.config["secretName"])),)

    @staticmethod
    def check_writer(spec: IssuerSpec, writer: CertificateSpec) -> str | None:
        """A CA issuer's Secret must come from a CA Certificate."""
        if writer.request.is_ca:
            return None
        return (
            f"Secret {writer.namespace}/{writer.secret_name} is written by {writer.key}, "
            "which is not a CA (set isCA: true on it)"
        )

    def sign(self, request: SigningRequest) -> SignedCertificate:
        pair = self.context.keypair(self.namespace, self.secret_name)
        ca = pair.chain[0]
        if not _is_ca(ca):
            raise PermanentIssuanceError(
                f"Secret {self.namespace}/{self.secret_name} holds "
                f"{ca.subject.rfc4514_string() or 'a certificate with an empty subject'}, "
                "which is not a CA certificate (basicConstraints CA:FALSE)"
            )

        # Like cert-manager, never outlive the CA: a leaf valid past its issuer is useless.
        wanted = request.certificate.request
        not_after = min(request.now + wanted.duration, ca.not_valid_after_utc)
        if not_after <= request.now:
            raise PermanentIssuanceError(f"the CA {ca.subject.rfc4514_string()} has expired")
        template = pki.SigningTemplate(request=wanted, not_before=request.now, not_after=not_after)
        cert = pki.sign_certificate(request.csr, template, ca.subject, pair.key, ca.public_key())

        anchor = pair.ca or pair.chain[-1]
        return SignedCertificate(certificate=cert, chain=self._chain(pair), ca=anchor)

    def _chain(self, pair: KeyPair) -> tuple[x509.Certificate, ...]:
        """The CA's chain without a self-signed root: worked out once per run, not per leaf.

        Threads may race to fill it; they compute the same value, so that is harmless.
        """
        if self._chain_of is not pair:
            self._chain_without_root = tuple(c for c in pair.chain if not pki.is_self_signed(c))
            self._chain_of = pair
        return self._chain_without_root


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False
