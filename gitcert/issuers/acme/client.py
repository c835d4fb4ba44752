"""A typed layer over certbot's ``acme`` library: connection, account, polling, errors.

Why not ``ClientV2.poll_and_finalize``: it sleeps a fixed second between polls, so a run
of fifty orders spends minutes asleep. Here polls start at a fifth of a second, back off,
and honour Retry-After (RFC 8555 section 7.5.1), bounded by a deadline.

Every failure leaves this module as a :class:`~gitcert.errors.TemporaryIssuanceError`
(try later, perhaps after ``retry_after`` seconds) or a
:class:`~gitcert.errors.PermanentIssuanceError`; acme's exception types stay inside.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests
from acme import client as acme_client
from acme import errors as acme_errors
from acme import messages
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy import json_util, jwa, jwk
from urllib3.exceptions import InsecureRequestWarning

from gitcert import __version__
from gitcert.errors import PermanentIssuanceError, TemporaryIssuanceError
from gitcert.pki import PrivateKey

log = logging.getLogger(__name__)

T = TypeVar("T")

USER_AGENT = f"gitcert/{__version__}"
BAD_NONCE_RETRIES = 3
# RFC 8555 problem types after which the same request will not succeed later either.
_PERMANENT = {
    "badCSR",
    "badSignatureAlgorithm",
    "externalAccountRequired",
    "malformed",
    "rejectedIdentifier",
    "unsupportedContact",
    "unsupportedIdentifier",
    "invalidContact",
    "caa",
}


class Network(acme_client.ClientNetwork):
    """acme's transport, remembering the last response so errors can read Retry-After."""

    last_response: requests.Response | None = None

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response: requests.Response = super()._send_request(method, url, *args, **kwargs)
        self.last_response = response
        return response


def jwk_for(key: PrivateKey) -> tuple[jwk.JWK, jwa.JWASignature]:
    if isinstance(key, rsa.RSAPrivateKey):
        return jwk.JWKRSA(key=key), jwa.RS256
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size == 256:
        return jwk.JWKEC(key=key), jwa.ES256
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size == 384:
        return jwk.JWKEC(key=key), jwa.ES384
    raise PermanentIssuanceError("the ACME account key must be RSA or ECDSA P-256/P-384")


def retry_after(response: requests.Response | None, now: datetime) -> float | None:
    """Seconds the server asked us to wait (RFC 9110 Retry-After), if it did."""
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment.astimezone(UTC) - now).total_seconds())


@dataclass
class Connection:
    """One ACME client: a transport signing with the account key, and the directory."""

    net: Network
    client: acme_client.ClientV2
    server: str

    @classmethod
    def open(cls, server: str, key: PrivateKey, verify: bool | str) -> Connection:
        account_jwk, alg = jwk_for(key)
        # acme annotates verify_ssl as bool, but hands it to requests' ``verify``, which
        # also takes a CA bundle path: how caBundle reaches the TLS check.
        net = Network(account_jwk, alg=alg, verify_ssl=verify, user_agent=USER_AGENT)  # type: ignore[arg-type]
        if verify is False:
            # skipTLSVerify was asked for; say so once here instead of urllib3 warning on
            # every request.
            log.warning("not verifying the TLS certificate of %s (skipTLSVerify)", server)
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        directory = call(net, lambda: acme_client.ClientV2.get_directory(server, net), server)
        return cls(net, acme_client.ClientV2(directory, net), server)

    @property
    def directory(self) -> messages.Directory:
        return self.client.directory

    def call(self, func: Callable[[], T]) -> T:
        return call(self.net, func, self.server)

    def offers(self, resource: str) -> bool:
        """Whether the directory lists ``resource`` (e.g. renewalInfo, RFC 9773)."""
        return resource in self.directory.to_partial_json()

    def post_as_get(self, url: str) -> requests.Response:
        response: requests.Response = self.call(lambda: self.client._post_as_get(url))
        return response


def call(net: Network, func: Callable[[], T], server: str) -> T:
    """Run one ACME exchange, retrying badNonce, and translate failures.

    acme's transport already retries a badNonce once; RFC 8555 section 6.5 lets a client
    retry with the fresh nonce from the error, so a few more attempts are cheap and safe.
    """
    for attempt in range(BAD_NONCE_RETRIES + 1):
        try:
            return func()
        except messages.Error as error:
            if error.code == "badNonce" and attempt < BAD_NONCE_RETRIES:
                log.debug("badNonce from %s; retrying with the fresh nonce", server)
                continue
            raise translate(error, net.last_response) from error
        except acme_errors.ConflictError:
            raise
        except (requests.ConnectionError, requests.Timeout) as error:
            raise TemporaryIssuanceError(
                f"cannot reach the ACME server {server}: {error}"
            ) from error
        except acme_errors.Error as error:
            raise TemporaryIssuanceError(f"ACME exchange with {server} failed: {error}") from error
    raise AssertionError("unreachable")  # pragma: no cover


def translate(error: messages.Error, response: requests.Response | None) -> Exception:
    """An RFC 8555 problem document as a gitcert issuance error."""
    detail = error.detail or error.description or str(error)
    if error.code == "rateLimited":
        wait = retry_after(response, datetime.now(UTC))
        return TemporaryIssuanceError(f"rate limited by the ACME server: {detail}", wait)
    if error.code == "externalAccountRequired":
        return PermanentIssuanceError(
            "the ACME server requires External Account Binding: set "
            "spec.acme.externalAccountBinding (keyID and keySecretRef)"
        )
    if error.code in _PERMANENT:
        return PermanentIssuanceError(f"the ACME server refused ({error.code}): {detail}")
    return TemporaryIssuanceError(f"the ACME server answered {error.code or error.typ}: {detail}")


class NewOrder(messages.NewOrder):
    """newOrder with ARI's ``replaces`` (RFC 9773 section 5), which acme does not send."""

    replaces: str | None = json_util.field("replaces", omitempty=True)


class Poller:
    """Short, growing sleeps between polls, never past the deadline.

    Retry-After, when the server sends one, replaces the next sleep.
    """

    SCHEDULE = (0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.round = 0

    def wait(self, response: requests.Response | None = None) -> None:
        delay = self.SCHEDULE[min(self.round, len(self.SCHEDULE) - 1)]
        asked = retry_after(response, datetime.now(UTC))
        if asked is not None:
            delay = asked
        self.round += 1
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TemporaryIssuanceError("timed out waiting for the ACME server")
        time.sleep(min(delay, remaining))
