"""The ACME issuer (RFC 8555): certificates from Let's Encrypt, Pebble or any ACME CA.

``spec.acme`` as cert-manager defines it (server, email, privateKeySecretRef, caBundle,
skipTLSVerify, externalAccountBinding, preferredChain, profile, solvers), with gitcert's
own solver kinds: HTTP-01 ``webroot``, ``standalone`` and ``exec``; DNS-01 ``rfc2136`` and
``exec``.

One order per Certificate, for all its names. Right after an order is placed, its URL and
the private key are journaled (the key SOPS-encrypted) on a side ref of the repo, so a run
killed before it commits resumes the same order next time instead of placing another.

The ``acme``, ``josepy`` and DNS libraries are imported only when a certificate is
actually ordered; validate and plan use :mod:`.selection` alone.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gitcert import pki
from gitcert.errors import PermanentIssuanceError, TemporaryIssuanceError
from gitcert.issuers.acme.selection import SolverSpec, needs_dns01, select, solver_specs
from gitcert.issuers.base import (
    IssuerContext,
    Located,
    SignedCertificate,
    SigningRequest,
    resource_namespace,
)
from gitcert.model import CertificateSpec, IssuerSpec
from gitcert.state import spec_digest

if TYPE_CHECKING:
    from acme import messages

    from gitcert.issuers.acme.client import Connection
    from gitcert.issuers.acme.solvers import Challenge, Solver

log = logging.getLogger(__name__)

ORDER_TIMEOUT = 300.0
ANNOTATION = "acme.gitcert.dev/"


class ACMEIssuer:
    def __init__(self, spec: IssuerSpec, context: IssuerContext) -> None:
        self.spec = spec
        self.context = context
        self.config = cast(Mapping[str, Any], spec.config)
        self.server = str(self.config["server"])
        self.namespace = resource_namespace(spec, context.config)
        self.solvers = solver_specs(self.config.get("solvers") or [])
        self._ca_file: str | None = None
        self._lock = threading.Lock()
        self._account: tuple[pki.PrivateKey, str] | None = None
        self._solvers: dict[int, Solver] = {}

    @staticmethod
    def secret_dependencies(spec: IssuerSpec, namespace: str) -> Sequence[tuple[str, str]]:
        # The account key is created on first use; nothing must be issued before.
        return ()

    @staticmethod
    def check_certificate(spec: IssuerSpec, certificate: CertificateSpec) -> list[Located]:
        """What an ACME CA cannot issue: names without a solver, wildcards over HTTP-01,
        identities other than DNS names and IP addresses."""
        specs = solver_specs(cast(Sequence[Mapping[str, Any]], spec.config.get("solvers") or []))
        request = certificate.request
        found: list[Located] = []
        for name in request.dns_names:
            reason = needs_dns01(specs, name)
            if reason:
                found.append((("spec", "dnsNames", name), reason))
        for address in request.ip_addresses:
            if select([s for s in specs if s.type == "http01"], address) is None:
                found.append(
                    (("spec", "ipAddresses", address), f"no http01 solver matches {address}")
                )
        for field, values in (("uris", request.uris), ("emailAddresses", request.email_addresses)):
            if values:
                found.append(
                    (("spec", field), "an ACME CA validates DNS names and IP addresses only")
                )
        if request.common_name and request.common_name.lower() not in request.dns_names:
            found.append((("spec", "commonName"), "with ACME, commonName must also be in dnsNames"))
        return found

    # --- account ------------------------------------------------------------------------------

    def _verify(self) -> bool | str:
        if self.config.get("skipTLSVerify"):
            return False
        bundle = self.config.get("caBundle")
        if not bundle:
            return True
        if self._ca_file is None:
            # requests wants a file. The bundle is public, so a temp file is harmless; it is
            # removed when the process exits (normally, on an error, or on SIGTERM).
            import atexit
            import os
            import tempfile

            with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as handle:
                handle.write(base64.b64decode(str(bundle)))
            self._ca_file = handle.name
            atexit.register(os.unlink, handle.name)
        return self._ca_file

    def _account_ref(self) -> Mapping[str, Any]:
        return self.config.get("privateKeySecretRef") or {}

    def account(self) -> tuple[pki.PrivateKey, str]:
        """The account key and URL, registered once per run (created on first use)."""
        with self._lock:
            if self._account is None:
                self._account = self._register()
            return self._account

    def _register(self) -> tuple[pki.PrivateKey, str]:
        from acme import errors as acme_errors
        from acme import messages

        from gitcert.issuers.acme.client import Connection

        name = str(self._account_ref()["name"])
        journal = f"account/{self.namespace}/{name}"
        key = self.context.private_key(self.namespace, name)
        created = key is None
        if key is None:
            # A key made by a run that was killed before committing owns that run's orders.
            saved = self.context.journal_load(journal)
            key = saved[1] if saved else ec.generate_private_key(ec.SECP256R1())
            self.context.journal_save(journal, {f"{ANNOTATION}server": self.server}, key)

        conn = Connection.open(self.server, key, self._verify())
        registration = messages.NewRegistration.from_data(
            email=self.config.get("email") or None,
            terms_of_service_agreed=True,
            external_account_binding=self._binding(conn),
        )
        try:
            url = conn.call(lambda: conn.client.new_account(registration)).uri
            log.info("registered ACME account %s at %s", url, self.server)
        except acme_errors.ConflictError as existing:
            url = existing.location

        if created:
            facts = {f"{ANNOTATION}account-uri": url, f"{ANNOTATION}server": self.server}
            self.context.store_private_key(self.namespace, name, key, facts)
        return key, url

    def _binding(self, conn: Connection) -> Any:
        from acme import messages

        binding = self.config.get("externalAccountBinding")
        if not binding:
            return None
        ref = binding["keySecretRef"]
        hmac_key = self.context.secret_value(self.namespace, ref["name"], ref.get("key", "secret"))
        algorithm = str(binding.get("keyAlgorithm", "HS256"))
        assert conn.net.key is not None
        return messages.ExternalAccountBinding.from_data(
            account_public_key=conn.net.key.public_key(),
            kid=str(binding["keyID"]),
            hmac_key=hmac_key.decode().strip(),
            directory=conn.directory,
            hmac_alg=algorithm,
        )

    def _connect(self) -> Connection:
        from acme import messages

        from gitcert.issuers.acme.client import Connection

        key, url = self.account()
        conn = Connection.open(self.server, key, self._verify())
        conn.net.account = messages.RegistrationResource(uri=url, body=messages.Registration())
        return conn

    # --- solvers ------------------------------------------------------------------------------

    def _solver(self, spec: SolverSpec) -> Solver:
        from gitcert.issuers.acme import solvers

        with self._lock:
            if spec.index in self._solvers:
                return self._solvers[spec.index]
        if spec.kind == "webroot":
            solver: Solver = solvers.WebrootSolver(spec.config)
        elif spec.kind == "standalone":
            solver = solvers.StandaloneSolver(spec.config)
        elif spec.kind == "exec":
            solver = solvers.ExecSolver(spec.type, spec.config)
        else:
            ref = spec.config.get("tsigSecretSecretRef")
            secret = None
            if ref:
                secret = self.context.secret_value(
                    self.namespace, ref["name"], ref.get("key", "secret")
                )
            solver = solvers.RFC2136Solver.from_config(spec.config, secret)
        with self._lock:
            return self._solvers.setdefault(spec.index, solver)

    # --- ordering -----------------------------------------------------------------------------

    def sign(self, request: SigningRequest) -> SignedCertificate:
        conn = self._connect()
        journal = str(request.certificate.key)
        digest = spec_digest(request.certificate)
        deadline = time.monotonic() + ORDER_TIMEOUT

        key, order = self._resume(conn, journal, digest, request)
        if key is None or order is None:
            key = request.key
            order = self._new_order(conn, request, key)
            self.context.journal_save(
                journal,
                {f"{ANNOTATION}order-url": order.uri, "gitcert.dev/spec-digest": digest},
                key,
            )
            log.info("%s: placed ACME order %s", request.certificate.key, order.uri)

        self._authorize(conn, order, deadline)
        chain = self._finalize(conn, order, deadline)
        leaf, *rest = pki.load_pem_chain(chain)
        return SignedCertificate(
            certificate=leaf,
            chain=tuple(c for c in rest if not pki.is_self_signed(c)),
            ca=None,
            key=key,
            renewal_time=self._renewal_info(conn, chain),
            details={"acmeOrderURL": str(order.uri), "acmeAccountURL": self.account()[1]}
            | (
                {"acmeReplaces": _cert_id(request.current)} if self._replaces(conn, request) else {}
            ),
        )

    def _resume(
        self, conn: Connection, journal: str, digest: str, request: SigningRequest
    ) -> tuple[pki.PrivateKey | None, messages.OrderResource | None]:
        """The journaled order of an interrupted run, if it is for this spec and still usable.

        An invalid order is never reused (RFC 8555 section 7.1.6: invalid is final).
        """
        from acme import messages

        saved = self.context.journal_load(journal)
        if saved is None:
            return None, None
        facts, key = saved
        url = facts.get(f"{ANNOTATION}order-url", "")
        if facts.get("gitcert.dev/spec-digest") != digest or not url:
            return key, None

        body = messages.Order.from_json(conn.post_as_get(url).json())
        if body.status == messages.STATUS_INVALID:
            log.info("%s: the journaled order is invalid; placing a new one", journal)
            return key, None
        authorizations = [
            conn.client._authzr_from_response(conn.post_as_get(u), uri=u)
            for u in body.authorizations
        ]
        # The journaled key goes with the order: it may already be finalized with its CSR.
        csr = pki.build_csr(request.certificate.request, key).public_bytes(
            serialization.Encoding.PEM
        )
        log.info("%s: resuming ACME order %s", journal, url)
        return key, messages.OrderResource(
            body=body, uri=url, authorizations=authorizations, csr_pem=csr
        )

    def _replaces(self, conn: Connection, request: SigningRequest) -> bool:
        return request.current is not None and conn.offers("renewalInfo")

    def _new_order(
        self, conn: Connection, request: SigningRequest, key: pki.PrivateKey
    ) -> messages.OrderResource:
        from acme import messages

        from gitcert.issuers.acme.client import NewOrder

        profile = self.config.get("profile")
        offered = conn.directory.meta.profiles
        if profile and offered and profile not in offered:
            choices = ", ".join(sorted(offered))
            raise PermanentIssuanceError(
                f"the ACME server offers no profile {profile!r}; it offers: {choices}"
            )

        wanted = request.certificate.request
        identifiers = [
            messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in wanted.dns_names
        ]
        identifiers += [
            messages.Identifier(typ=messages.IDENTIFIER_IP, value=ip) for ip in wanted.ip_addresses
        ]
        replaces = _cert_id(request.current) if self._replaces(conn, request) else None
        order = NewOrder(identifiers=identifiers, profile=profile or None, replaces=replaces)

        response = conn.call(lambda: conn.client._post(conn.directory["newOrder"], order))
        body = messages.Order.from_json(response.json())
        authorizations = [
            conn.client._authzr_from_response(conn.post_as_get(u), uri=u)
            for u in body.authorizations
        ]
        csr = pki.build_csr(wanted, key).public_bytes(serialization.Encoding.PEM)
        return messages.OrderResource(
            body=body,
            uri=response.headers.get("Location"),
            authorizations=authorizations,
            csr_pem=csr,
        )

    def _authorize(self, conn: Connection, order: messages.OrderResource, deadline: float) -> None:
        """Solve every pending authorization of ``order``; all are validated in parallel."""
        from acme import messages

        from gitcert.issuers.acme.client import Poller

        presented: list[tuple[Solver, Challenge]] = []
        answers = []
        try:
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue
                if authz.body.status != messages.STATUS_PENDING:
                    raise TemporaryIssuanceError(
                        f"authorization for {authz.body.identifier.value} is {authz.body.status}"
                    )
                solver, challb, challenge = self._challenge(conn, authz)
                solver.present(challenge)
                presented.append((solver, challenge))
                answers.append((authz, challb))

            for solver in {id(s): s for s, _ in presented}.values():
                solver.wait_until_visible([c for s, c in presented if s is solver])
            for _, challb in answers:
                _answer(conn, challb)

            poller = Poller(deadline)
            waiting = [a for a, _ in answers]
            while waiting:
                still = []
                last = None
                for authz in waiting:
                    updated, last = _poll(conn, authz)
                    if updated.body.status == messages.STATUS_VALID:
                        continue
                    if updated.body.status == messages.STATUS_INVALID:
                        raise TemporaryIssuanceError(_failure(updated))
                    still.append(updated)
                waiting = still
                if waiting:
                    poller.wait(last)
        finally:
            for solver, challenge in presented:
                try:
                    solver.cleanup(challenge)
                except Exception as exc:  # cleanup must not hide the real outcome
                    log.warning("cleanup of %s failed: %s", challenge.identifier, exc)

    def _challenge(
        self, conn: Connection, authz: messages.AuthorizationResource
    ) -> tuple[Solver, messages.ChallengeBody, Challenge]:
        from acme import challenges

        from gitcert.issuers.acme.solvers import Challenge

        identifier = authz.body.identifier.value
        name = f"*.{identifier}" if authz.body.wildcard else identifier
        spec = select(self.solvers, name)
        if spec is None:
            raise PermanentIssuanceError(needs_dns01(self.solvers, name) or f"no solver for {name}")
        wanted = challenges.HTTP01 if spec.type == "http01" else challenges.DNS01
        challb = next((c for c in authz.body.challenges if isinstance(c.chall, wanted)), None)
        if challb is None:
            raise PermanentIssuanceError(
                f"the ACME server offers no {spec.type} challenge for {name}"
            )

        key = conn.net.key
        challenge = Challenge(
            identifier=name,
            token=challb.chall.encode("token"),
            key_authorization=challb.chall.key_authorization(key),
            dns_value=challb.chall.validation(key) if spec.type == "dns01" else "",
        )
        return self._solver(spec), challb, challenge

    def _finalize(self, conn: Connection, order: messages.OrderResource, deadline: float) -> str:
        """Finalize with the order's CSR and download the chain (preferredChain honoured)."""
        from acme import messages

        from gitcert.issuers.acme.client import Poller

        poller = Poller(deadline)
        finalized = False
        while True:
            response = conn.post_as_get(order.uri)
            body = messages.Order.from_json(response.json())
            if body.status == messages.STATUS_INVALID:
                problem = body.error.detail if body.error else "no reason given"
                raise TemporaryIssuanceError(f"the ACME order became invalid: {problem}")
            if body.status == messages.STATUS_READY and not finalized:
                conn.call(lambda: conn.client.begin_finalization(order))
                finalized = True
                continue
            if body.status == messages.STATUS_VALID and body.certificate:
                return self._download(conn, body.certificate)
            poller.wait(response)

    def _download(self, conn: Connection, url: str) -> str:
        response = conn.post_as_get(url)
        preferred = self.config.get("preferredChain")
        if not preferred:
            return str(response.text)
        chains = [str(response.text)]
        chains += [
            str(conn.post_as_get(link).text)
            for link in conn.client._get_links(response, "alternate")
        ]
        for chain in chains:
            top = pki.load_pem_chain(chain)[-1]
            names = {
                str(a.value)
                for n in (top.issuer, top.subject)
                for a in n.get_attributes_for_oid(NameOID.COMMON_NAME)
            }
            if preferred in names:
                return chain
        log.info("no chain matches preferredChain %r; using the default", preferred)
        return chains[0]

    def _renewal_info(self, conn: Connection, chain: str) -> datetime | None:
        """ARI (RFC 9773): a random instant in the suggested window, drawn once here."""
        if not conn.offers("renewalInfo"):
            return None
        try:
            moment, _ = conn.client.renewal_time(chain.encode())
        except Exception as exc:  # ARI is advisory: without it, the default renewal applies
            log.warning("could not fetch ACME renewal info: %s", exc)
            return None
        return moment.astimezone(UTC).replace(microsecond=0) if moment else None

    # --- revocation ---------------------------------------------------------------------------

    def revoke(self, certificate: x509.Certificate, reason: int) -> None:
        conn = self._connect()
        conn.call(lambda: conn.client.revoke(certificate, reason))


def _answer(conn: Connection, challb: messages.ChallengeBody) -> None:
    response = challb.response(conn.net.key)
    conn.call(lambda: conn.client.answer_challenge(challb, response))


def _poll(
    conn: Connection, authz: messages.AuthorizationResource
) -> tuple[messages.AuthorizationResource, Any]:
    result: tuple[messages.AuthorizationResource, Any] = conn.call(lambda: conn.client.poll(authz))
    return result


def _cert_id(cert: x509.Certificate | None) -> str:
    """The ARI certificate identifier: base64url(AKI keyIdentifier) "." base64url(serial)."""
    assert cert is not None
    from acme.client import _renewal_info_path_component

    return str(_renewal_info_path_component(cert))


def _failure(authz: messages.AuthorizationResource) -> str:
    name = authz.body.identifier.value
    for challb in authz.body.challenges:
        if challb.error is not None:
            return f"validation of {name} failed: {challb.error.detail or challb.error.typ}"
    return f"validation of {name} failed"
