"""The only module that imports hvac: typed calls to Vault's (or OpenBao's) HTTP API.

hvac has no type hints and answers with plain dicts; everything leaving this module is a
frozen dataclass or a string, and every failure is one of gitcert's issuance errors:

- the server refusing the request (400, 404) or denying it (403) is permanent: it will not
  change until the spec or Vault's configuration does;
- no answer (connection refused, timeout, TLS trouble), 429 and 5xx are temporary.

A 403 carries no reason beyond "permission denied", so the message names the auth method
that produced the token: that is the first thing an operator checks.

Each call makes its own hvac client, because the reconciler signs certificates of one
issuer from several threads and a ``requests.Session`` is not promised to be thread-safe.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import hvac
import hvac.exceptions
import requests

from gitcert.errors import PermanentIssuanceError, TemporaryIssuanceError

log = logging.getLogger(__name__)

TIMEOUT = 30.0
"""Seconds to wait for Vault on each request; signing takes milliseconds."""

# Only statuses a caller may act on differently are named; hvac maps the rest itself.
_TEMPORARY: Mapping[type[hvac.exceptions.VaultError], str] = {
    hvac.exceptions.RateLimitExceeded: "429 rate limited",
    hvac.exceptions.InternalServerError: "500 internal error",
    hvac.exceptions.VaultNotInitialized: "501 not initialized",
    hvac.exceptions.BadGateway: "502 bad gateway",
    hvac.exceptions.VaultDown: "503 sealed or unavailable",
    hvac.exceptions.UnexpectedError: "an unexpected status",
}
_MULTI_ERROR = re.compile(r"^\d+ errors? occurred:\s*", re.MULTILINE)
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
_SSL = re.compile(r"\[SSL: \w+\] ([^('\"]+)")


@dataclass(frozen=True)
class Endpoint:
    """Where Vault is and how to trust it."""

    server: str
    namespace: str | None = None
    ca_bundle: bytes | None = None
    """PEM CA certificates for an https server; None trusts the system's CAs."""


@dataclass(frozen=True)
class SignedBundle:
    """What ``<mount>/sign/<role>`` returned, as PEM text."""

    certificate: str
    issuing_ca: str
    ca_chain: tuple[str, ...]
    serial_number: str
    """Colon-separated hex, as Vault writes serial numbers."""
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Revocation:
    revocation_time: int
    """Seconds since the epoch, as Vault recorded it."""
    state: str


class VaultClient:
    """One Vault server as one auth method sees it: log in once, then sign and revoke.

    ``auth`` describes the auth method for error messages ("token auth (VAULT_TOKEN)").
    """

    def __init__(self, endpoint: Endpoint, auth: str) -> None:
        self.endpoint = endpoint
        self.auth = auth
        self._token = ""
        self._verify: bool | str = True
        if endpoint.ca_bundle:
            self._verify = _trust_file(self, endpoint.ca_bundle)

    # --- auth ---------------------------------------------------------------------------------

    def use_token(self, token: str) -> None:
        """Authenticate with a token as it is (token auth)."""
        self._token = token

    def login_approle(self, mount: str, role_id: str, secret_id: str) -> None:
        """POST auth/<mount>/login with a role id and secret id; keep the client token."""
        with self._translated(f"log in at auth/{mount}", login=True):
            answer = self._hvac().auth.approle.login(
                role_id, secret_id, use_token=False, mount_point=mount
            )
        self._token = _client_token(answer)

    def login_jwt(self, mount: str, role: str, jwt: str) -> None:
        """POST auth/<mount>/login with a role and a signed JWT; keep the client token."""
        with self._translated(f"log in at auth/{mount}", login=True):
            answer = self._hvac().auth.jwt.jwt_login(role, jwt, use_token=False, path=mount)
        self._token = _client_token(answer)

    # --- PKI ----------------------------------------------------------------------------------

    def sign(
        self, mount: str, role: str, csr_pem: str, common_name: str, params: Mapping[str, object]
    ) -> SignedBundle:
        """POST <mount>/sign/<role>: a certificate for our CSR (the key never leaves us)."""
        with self._translated(f"sign at {mount}/sign/{role}"):
            answer = self._hvac().secrets.pki.sign_certificate(
                name=role,
                csr=csr_pem,
                common_name=common_name,
                extra_params=dict(params),
                mount_point=mount,
            )
        data = _data(answer, f"{mount}/sign/{role}")
        return SignedBundle(
            certificate=str(data["certificate"]),
            issuing_ca=str(data.get("issuing_ca") or ""),
            ca_chain=tuple(str(pem) for pem in data.get("ca_chain") or ()),
            serial_number=str(data.get("serial_number") or ""),
            warnings=tuple(str(w) for w in answer.get("warnings") or ()),
        )

    def revoke(self, mount: str, serial_number: str) -> Revocation:
        """POST <mount>/revoke for a colon-hex serial number."""
        with self._translated(f"revoke serial {serial_number} at {mount}"):
            answer = self._hvac().secrets.pki.revoke_certificate(serial_number, mount_point=mount)
        data = _data(answer, f"{mount}/revoke")
        return Revocation(int(data.get("revocation_time") or 0), str(data.get("state") or ""))

    # --- mechanics ----------------------------------------------------------------------------

    def _hvac(self) -> Any:
        # token="" (not None): hvac would otherwise fall back to $VAULT_TOKEN or
        # ~/.vault-token, and which token is used must be the configured auth method's.
        return hvac.Client(
            url=self.endpoint.server,
            token=self._token,
            verify=self._verify,
            timeout=TIMEOUT,
            namespace=self.endpoint.namespace or None,
        )

    @contextmanager
    def _translated(self, action: str, *, login: bool = False) -> Iterator[None]:
        """Turn hvac's and requests' exceptions into gitcert's, worded for an operator."""
        try:
            yield
        except requests.exceptions.RequestException as exc:
            raise TemporaryIssuanceError(
                f"cannot reach Vault at {self.endpoint.server}: {_network_reason(exc)}"
            ) from exc
        except tuple(_TEMPORARY) as exc:
            raise TemporaryIssuanceError(
                f"Vault answered {_TEMPORARY[type(exc)]} to {action}: {_said(exc)}"
            ) from exc
        except hvac.exceptions.VaultError as exc:
            if login:
                raise PermanentIssuanceError(
                    f"Vault login with {self.auth} failed: {_said(exc)}"
                ) from exc
            if isinstance(exc, hvac.exceptions.Forbidden):
                raise PermanentIssuanceError(
                    f"permission denied for {self.auth}: may not {action}"
                ) from exc
            raise PermanentIssuanceError(f"Vault refused to {action}: {_said(exc)}") from exc
        log.debug("%s: done (%s)", action, self.auth)


def _data(answer: Any, path: str) -> Mapping[str, Any]:
    """The ``data`` of a JSON answer; anything else means we did not talk to Vault."""
    if not isinstance(answer, Mapping) or not isinstance(answer.get("data"), Mapping):
        raise TemporaryIssuanceError(f"Vault's answer to {path} has no data")
    data: Mapping[str, Any] = answer["data"]
    return data


def _client_token(answer: Any) -> str:
    auth = answer.get("auth") if isinstance(answer, Mapping) else None
    if not isinstance(auth, Mapping) or not auth.get("client_token"):
        raise PermanentIssuanceError("Vault's login answer carries no client token")
    return str(auth["client_token"])


def _said(exc: hvac.exceptions.VaultError) -> str:
    """What the server said, on one line; Vault wraps some errors as "1 error occurred"."""
    errors = exc.errors or ([exc.args[0]] if exc.args and exc.args[0] else [])
    if isinstance(errors, str):
        errors = [errors]
    items = []
    for error in errors:
        text = _MULTI_ERROR.sub("", str(error))
        items += [part.strip(" \t*") for part in text.splitlines() if part.strip(" \t*")]
    return "; ".join(items) or "no reason given"


def _network_reason(exc: requests.exceptions.RequestException) -> str:
    """The useful end of requests' nested messages: "Connection refused", "timed out"."""
    if isinstance(exc, requests.exceptions.Timeout):
        return f"no answer within {TIMEOUT:g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        ssl = _SSL.search(str(exc))
        return f"TLS failed: {ssl.group(1).strip() if ssl else type(exc).__name__}"
    found = _ERRNO.search(str(exc))
    return found.group(1).strip() if found else type(exc).__name__


def _trust_file(owner: object, pem: bytes) -> str:
    """A private file holding ``pem`` for requests (it takes only paths), removed with
    ``owner``. The bundle is public; the file exists only because requests needs one."""
    directory = tempfile.mkdtemp(prefix="gitcert-vault-")
    path = os.path.join(directory, "ca.pem")
    with open(path, "wb") as handle:
        handle.write(pem)
    weakref.finalize(owner, shutil.rmtree, directory, True)
    return path
