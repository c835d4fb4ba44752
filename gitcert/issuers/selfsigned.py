"""The SelfSigned issuer: the certificate is signed by its own private key.

The usual first step of a private PKI: a SelfSigned ClusterIssuer signs a CA Certificate
(isCA: true), which a CA issuer then uses for everything else.
"""

from __future__ import annotations

from collections.abc import Sequence

from gitcert.errors import PermanentIssuanceError
from gitcert.issuers.base import IssuerContext, SignedCertificate, SigningRequest
from gitcert.model import IssuerSpec
from gitcert.pki import SigningTemplate, sign_certificate


class SelfSignedIssuer:
    def __init__(self, spec: IssuerSpec, context: IssuerContext) -> None:
        self.spec = spec

    @staticmethod
    def secret_dependencies(spec: IssuerSpec, namespace: str) -> Sequence[tuple[str, str]]:
        return ()

    def sign(self, request: SigningRequest) -> SignedCertificate:
        wanted = request.certificate.request
        # A certificate that signs others is found by its subject; an empty one would make
        # every certificate it issues name an empty issuer.
        if wanted.is_ca and len(request.csr.subject) == 0:
            raise PermanentIssuanceError("a self-signed CA needs a subject: set commonName")

        template = SigningTemplate(
            request=wanted, not_before=request.now, not_after=request.now + wanted.duration
        )
        cert = sign_certificate(request.csr, template, request.csr.subject, request.key)
        return SignedCertificate(certificate=cert, chain=(), ca=cert)
