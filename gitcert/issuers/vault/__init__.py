"""The Vault issuer: CSRs signed by the PKI engine of HashiCorp Vault or OpenBao.

``spec.vault`` as cert-manager defines it: ``server``, ``path`` (``<mount>/sign/<role>``;
the mount may contain slashes), ``caBundle`` (base64 PEM) and ``namespace`` (the
``X-Vault-Namespace`` header). Auth methods:

- ``tokenSecretRef: {name, key}``: a token in a SOPS-encrypted Secret in the repo;
- ``appRole: {path, roleId, secretRef: {name, key}}``: the secret id in such a Secret;
- ``jwt: {path, role, tokenEnv | tokenFile}`` (gitcert's own): a JWT from an environment
  variable or a file, e.g. the OIDC token of a GitHub Actions job;
- no ``auth`` at all: the token in ``$VAULT_TOKEN``, as the vault and bao CLIs use it.

Keys stay local: gitcert sends the CSR to the ``sign`` endpoint and never calls ``issue``,
which would generate the key on the server. Vault decides what it signs through the role;
a refusal is a permanent failure carrying the server's words.

hvac is imported only by :mod:`.adapter`, and only when a certificate is signed or
revoked; validate and plan never load it.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from gitcert import pki
from gitcert.errors import ConfigError, PermanentIssuanceError
from gitcert.issuers.base import (
    IssuerContext,
    Located,
    SignedCertificate,
    SigningRequest,
    resource_namespace,
)
from gitcert.model import CertificateSpec, IssuerSpec, Subject

if TYPE_CHECKING:
    from gitcert.issuers.vault.adapter import SignedBundle, VaultClient

log = logging.getLogger(__name__)

TOKEN_ENV = "VAULT_TOKEN"
DEFAULT_TOKEN_KEY = "token"
DEFAULT_SECRET_ID_KEY = "secretId"
DEFAULT_JWT_PATH = "jwt"
SIGN = "/sign/"


# --- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenAuth:
    """A token as it is: from a Secret in the repo, or from ``$VAULT_TOKEN`` when None."""

    secret: tuple[str, str] | None = None


@dataclass(frozen=True)
class AppRoleAuth:
    path: str
    role_id: str
    secret: tuple[str, str]


@dataclass(frozen=True)
class JWTAuth:
    path: str
    role: str
    token_env: str | None
    token_file: str | None


Auth = TokenAuth | AppRoleAuth | JWTAuth


@dataclass(frozen=True)
class VaultSettings:
    """``spec.vault``, parsed; the schema has already checked its shape."""

    server: str
    mount: str
    role: str
    ca_bundle: bytes | None
    namespace: str | None
    auth: Auth

    @property
    def path(self) -> str:
        return f"{self.mount}{SIGN}{self.role}"

    @classmethod
    def from_spec(cls, config: Mapping[str, Any]) -> VaultSettings:
        mount, role = split_path(str(config["path"]))
        bundle = config.get("caBundle")
        return cls(
            server=str(config["server"]).rstrip("/"),
            mount=mount,
            role=role,
            ca_bundle=base64.b64decode(str(bundle)) if bundle else None,
            namespace=str(config["namespace"]) if config.get("namespace") else None,
            auth=_auth(config.get("auth") or {}),
        )


def split_path(path: str) -> tuple[str, str]:
    """``pki/int/sign/web`` → (``pki/int``, ``web``): the mount may contain slashes.

    Raises:
        PermanentIssuanceError: the path is not a sign endpoint.
    """
    mount, found, role = path.strip("/").rpartition(SIGN)
    if not found or not mount or not role or "/" in role:
        raise PermanentIssuanceError(
            f"spec.vault.path {path!r} is not <mount>/sign/<role>; gitcert sends CSRs to the "
            "sign endpoint only (never issue: private keys stay on the runner)"
        )
    return mount, role


def _auth(auth: Mapping[str, Any]) -> Auth:
    if "appRole" in auth:
        app = auth["appRole"]
        ref = app["secretRef"]
        secret = (str(ref["name"]), str(ref.get("key") or DEFAULT_SECRET_ID_KEY))
        return AppRoleAuth(str(app["path"]).strip("/"), str(app["roleId"]), secret)
    if "jwt" in auth:
        jwt = auth["jwt"]
        return JWTAuth(
            path=str(jwt.get("path") or DEFAULT_JWT_PATH).strip("/"),
            role=str(jwt["role"]),
            token_env=jwt.get("tokenEnv"),
            token_file=jwt.get("tokenFile"),
        )
    ref = auth.get("tokenSecretRef")
    if ref:
        return TokenAuth((str(ref["name"]), str(ref.get("key") or DEFAULT_TOKEN_KEY)))
    return TokenAuth()


# --- the plugin -------------------------------------------------------------------------------


class VaultIssuer:
    """One Vault Issuer or ClusterIssuer for one run; logs in once, on first use."""

    def __init__(self, spec: IssuerSpec, context: IssuerContext) -> None:
        self.spec = spec
        self.context = context
        self.namespace = resource_namespace(spec, context.config)
        self.settings = VaultSettings.from_spec(cast(Mapping[str, Any], spec.config))
        self._lock = threading.Lock()
        self._client: VaultClient | None = None

    @staticmethod
    def secret_dependencies(spec: IssuerSpec, namespace: str) -> Sequence[tuple[str, str]]:
        # Auth Secrets are written by people (sops), never by a Certificate.
        # TODO: report a missing token or secret id Secret at validate time; the reconciler
        # words that check for the ca issuer's secretName only, so it is found at apply.
        return ()

    @staticmethod
    def check_certificate(spec: IssuerSpec, certificate: CertificateSpec) -> list[Located]:
        """What the sign endpoint cannot do as asked: the role, not the request, decides
        the subject beyond the common name, and it never signs a CA."""
        request = certificate.request
        sign = str(spec.config.get("path", ""))
        found: list[Located] = []
        if request.is_ca:
            found.append(
                (
                    ("spec", "isCA"),
                    f"Vault's {sign} endpoint signs leaf certificates only; issue CAs "
                    "in Vault itself or with the ca issuer",
                )
            )
        if request.literal_subject:
            found.append((("spec", "literalSubject"), _role_decides(sign, "the subject")))
        if request.subject != Subject():
            found.append(
                (("spec", "subject"), _role_decides(sign, "subject fields other than commonName"))
            )
        # TODO: key usages are the role's too (key_usage, ext_key_usage), but the request
        # holds cert-manager's defaults when usages is not written, so an explicit list
        # cannot be told apart here; it is accepted, like cert-manager does.
        return found

    # --- signing ------------------------------------------------------------------------------

    def sign(self, request: SigningRequest) -> SignedCertificate:
        """Send the CSR to ``<mount>/sign/<role>``; return what came back, put in order."""
        client = self._logged_in()
        csr_pem = request.csr.public_bytes(serialization.Encoding.PEM).decode()
        bundle = client.sign(
            self.settings.mount,
            self.settings.role,
            csr_pem,
            _common_name(request.csr),
            _sign_params(request.certificate),
        )
        for warning in bundle.warnings:
            log.debug("%s: Vault warns: %s", request.certificate.key, warning)

        leaf, chain, anchor = assemble(bundle)
        _log_capped(request, leaf)
        log.info(
            "%s: signed by Vault at %s (serial %s)",
            request.certificate.key,
            self.settings.path,
            bundle.serial_number,
        )
        return SignedCertificate(
            certificate=leaf,
            chain=chain,
            ca=anchor,
            details={
                "vaultServer": self.settings.server,
                "vaultPath": self.settings.path,
                "vaultSerialNumber": bundle.serial_number,
            },
        )

    def revoke(self, certificate: x509.Certificate, reason: int) -> None:
        """Revoke at ``<mount>/revoke``. Vault's API takes no reason code: the CRL entry
        has none, and the reason is kept in gitcert's status record only."""
        serial = colon_hex(certificate.serial_number)
        revocation = self._logged_in().revoke(self.settings.mount, serial)
        log.info(
            "revoked serial %s at %s (state %s, reason code %d not sent: Vault takes none)",
            serial,
            self.settings.mount,
            revocation.state or "revoked",
            reason,
        )

    # --- auth ---------------------------------------------------------------------------------

    def _logged_in(self) -> VaultClient:
        """The client for this run, authenticated once; the certificates of a level share it."""
        from gitcert.issuers.vault.adapter import Endpoint, VaultClient

        with self._lock:
            if self._client is not None:
                return self._client
            settings = self.settings
            endpoint = Endpoint(settings.server, settings.namespace, settings.ca_bundle)
            client = VaultClient(endpoint, self._describe_auth())
            self._authenticate(client, settings.auth)
            log.info("logged in to Vault at %s with %s", settings.server, client.auth)
            self._client = client
            return client

    def _authenticate(self, client: VaultClient, auth: Auth) -> None:
        if isinstance(auth, AppRoleAuth):
            secret_id = self._secret(auth.secret)
            client.login_approle(auth.path, auth.role_id, secret_id)
        elif isinstance(auth, JWTAuth):
            client.login_jwt(auth.path, auth.role, _jwt(auth))
        elif auth.secret is not None:
            client.use_token(self._secret(auth.secret))
        else:
            token = os.environ.get(TOKEN_ENV, "").strip()
            if not token:
                raise ConfigError(
                    f"the Vault issuer {self.spec.key} has no auth and ${TOKEN_ENV} is not set"
                )
            client.use_token(token)

    def _secret(self, ref: tuple[str, str]) -> str:
        return self.context.secret_value(self.namespace, ref[0], ref[1]).decode().strip()

    def _describe_auth(self) -> str:
        """How error messages name the auth method: what an operator must go and check."""
        auth = self.settings.auth
        if isinstance(auth, AppRoleAuth):
            return f"appRole auth at auth/{auth.path}"
        if isinstance(auth, JWTAuth):
            source = f"${auth.token_env}" if auth.token_env else auth.token_file
            return f"jwt auth at auth/{auth.path} as role {auth.role} (token from {source})"
        if auth.secret is not None:
            return f"token auth (Secret {self.namespace}/{auth.secret[0]})"
        return f"token auth (${TOKEN_ENV})"


def _jwt(auth: JWTAuth) -> str:
    """The JWT to log in with, read fresh: CI tokens are short-lived."""
    if auth.token_env:
        token = os.environ.get(auth.token_env, "").strip()
        if not token:
            raise ConfigError(f"jwt auth: the environment variable {auth.token_env} is not set")
        return token
    assert auth.token_file is not None
    try:
        with open(auth.token_file, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise PermanentIssuanceError(
            f"jwt auth: cannot read {auth.token_file}: {exc.strerror}"
        ) from exc
    if not token:
        raise PermanentIssuanceError(f"jwt auth: {auth.token_file} is empty")
    return token


# --- the request and the answer -----------------------------------------------------------------


def _common_name(csr: x509.CertificateSigningRequest) -> str:
    """The CSR's CN, else its first DNS name: Vault requires a common name by default."""
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names:
        return str(names[0].value)
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    dns = san.get_values_for_type(x509.DNSName)
    return dns[0] if dns else ""


def _sign_params(certificate: CertificateSpec) -> dict[str, object]:
    """The sign endpoint's fields besides the CSR, as cert-manager sends them."""
    request = certificate.request
    return {
        "alt_names": ",".join((*request.dns_names, *request.email_addresses)),
        "ip_sans": ",".join(request.ip_addresses),
        "uri_sans": ",".join(request.uris),
        "ttl": f"{int(request.duration.total_seconds())}s",
        # Otherwise Vault copies the common name into the SANs, and a certificate whose
        # names differ from the request fails verification.
        "exclude_cn_from_sans": True,
    }


def assemble(
    bundle: SignedBundle,
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...], x509.Certificate]:
    """The leaf, its intermediates (issuer first, no self-signed root) and the anchor.

    The chain is rebuilt from the leaf up through ``ca_chain`` and ``issuing_ca`` by
    signature, so an extra or misordered certificate from the server changes nothing. The
    anchor is the root when Vault knows it; otherwise the top of what it returned.

    Raises:
        ValueError: the certificate is not signed by the CA that Vault says issued it.
    """
    leaf = x509.load_pem_x509_certificate(bundle.certificate.encode())
    pool = _unique(
        cert for pem in (*bundle.ca_chain, bundle.issuing_ca) for cert in pki.load_pem_chain(pem)
    )

    path: list[x509.Certificate] = []
    child = leaf
    while not pki.is_self_signed(child):
        parent = next((c for c in pool if c not in path and _issued(child, c)), None)
        if parent is None:
            break
        path.append(parent)
        child = parent
    if not path:
        raise ValueError(
            f"Vault returned {leaf.subject.rfc4514_string()} without the CA that signed it "
            f"({leaf.issuer.rfc4514_string()})"
        )

    if pki.is_self_signed(path[-1]):
        return leaf, tuple(path[:-1]), path[-1]
    return leaf, tuple(path), path[-1]


def _issued(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _unique(certificates: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    """``certificates`` without repeats (by SHA-256 of DER), first occurrence kept."""
    seen: dict[bytes, x509.Certificate] = {}
    for cert in certificates:
        seen.setdefault(cert.fingerprint(hashes.SHA256()), cert)
    return list(seen.values())


def colon_hex(serial: int) -> str:
    """A serial number as Vault writes it: ``4a:0f:...``, big-endian, minimal length."""
    raw = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    return ":".join(f"{byte:02x}" for byte in raw)


def _log_capped(request: SigningRequest, leaf: x509.Certificate) -> None:
    """Tell the operator when the role's max_ttl shortened the certificate."""
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    wanted = request.certificate.request.duration
    if lifetime < wanted - pki.CLOCK_SKEW:
        log.info(
            "%s: Vault issued %s of the %s asked for (the role's max_ttl caps it)",
            request.certificate.key,
            lifetime,
            wanted,
        )


def _role_decides(sign: str, what: str) -> str:
    return f"the Vault role behind {sign} decides {what}; remove this field"
