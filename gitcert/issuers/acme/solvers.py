"""ACME challenge solvers, and the choice of solver for each name (cert-manager's selectors).

HTTP-01 (RFC 8555 section 8.3): ``webroot`` writes the key authorization under a
directory a web server already serves; ``standalone`` serves it from gitcert itself;
``exec`` calls a command. DNS-01 (section 8.4): ``rfc2136`` adds the TXT record with a
TSIG-signed dynamic update (RFC 2136, RFC 8945) and waits until the zone's authoritative
servers answer it; ``exec`` calls a command.

Every solver can ``present`` and ``cleanup``; cleanup runs after success and failure alike.
"""

from __future__ import annotations

import base64
import http.server
import logging
import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.tsig
import dns.tsigkeyring
import dns.update

from gitcert import durations
from gitcert.errors import TemporaryIssuanceError

log = logging.getLogger(__name__)

EXEC_TIMEOUT = 120
DEFAULT_PROPAGATION_TIMEOUT = 120.0
TSIG_ALGORITHMS = {
    "HMACMD5": dns.tsig.HMAC_MD5,
    "HMACSHA1": dns.tsig.HMAC_SHA1,
    "HMACSHA256": dns.tsig.HMAC_SHA256,
    "HMACSHA512": dns.tsig.HMAC_SHA512,
}


@dataclass(frozen=True)
class Challenge:
    """What a solver must publish for one authorization."""

    identifier: str
    token: str
    key_authorization: str
    dns_value: str
    """For DNS-01: the base64url SHA-256 of the key authorization."""

    @property
    def dns_name(self) -> str:
        return f"_acme-challenge.{self.identifier.removeprefix('*.')}"


class Solver(Protocol):
    type: str

    def present(self, challenge: Challenge) -> None: ...

    def cleanup(self, challenge: Challenge) -> None: ...

    def wait_until_visible(self, challenges: Sequence[Challenge]) -> None: ...


# --- HTTP-01 ----------------------------------------------------------------------------------

WELL_KNOWN = "/.well-known/acme-challenge/"


class WebrootSolver:
    type = "http01"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.root = Path(str(config["path"]))

    def _file(self, challenge: Challenge) -> Path:
        return self.root / ".well-known" / "acme-challenge" / challenge.token

    def present(self, challenge: Challenge) -> None:
        target = self._file(challenge)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(challenge.key_authorization, encoding="ascii")
        log.debug("webroot: wrote %s", target)

    def cleanup(self, challenge: Challenge) -> None:
        self._file(challenge).unlink(missing_ok=True)

    def wait_until_visible(self, challenges: Sequence[Challenge]) -> None:
        return None


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    server: _TokenServer

    def do_GET(self) -> None:
        token = self.path.removeprefix(WELL_KNOWN) if self.path.startswith(WELL_KNOWN) else None
        answer = self.server.tokens.get(token or "")
        if answer is None:
            self.send_error(404)
            return
        body = answer.encode("ascii")
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("standalone: %s", format % args)


class _TokenServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _TokenHandler)
        self.tokens: dict[str, str] = {}
        self.users = 0


class StandaloneSolver:
    """Serves tokens from gitcert itself; one listener per address, shared by all orders."""

    type = "http01"
    _servers: ClassVar[dict[tuple[str, int], _TokenServer]] = {}
    _lock = threading.Lock()

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.address = (str(config.get("address", "0.0.0.0")), int(config.get("port", 80)))

    def present(self, challenge: Challenge) -> None:
        with self._lock:
            server = self._servers.get(self.address)
            if server is None:
                try:
                    server = _TokenServer(self.address)
                except OSError as exc:
                    raise TemporaryIssuanceError(
                        f"cannot serve HTTP-01 on {self.address[0]}:{self.address[1]}: {exc}"
                    ) from exc
                threading.Thread(target=server.serve_forever, daemon=True).start()
                self._servers[self.address] = server
                log.info("serving HTTP-01 tokens on %s:%d", *self.address)
            server.users += 1
            server.tokens[challenge.token] = challenge.key_authorization

    def cleanup(self, challenge: Challenge) -> None:
        with self._lock:
            server = self._servers.get(self.address)
            if server is None:
                return
            server.tokens.pop(challenge.token, None)
            server.users -= 1
            if server.users <= 0:
                del self._servers[self.address]
                server.shutdown()
                server.server_close()

    def wait_until_visible(self, challenges: Sequence[Challenge]) -> None:
        return None


class ExecSolver:
    """Calls ``command present|cleanup ...``; the command's stderr is shown when it fails.

    HTTP-01 arguments: identifier, token, key authorization. DNS-01 arguments: the record
    name (``_acme-challenge.<name>``, no trailing dot) and the TXT value.
    """

    def __init__(self, challenge_type: str, config: Mapping[str, Any]) -> None:
        self.type = challenge_type
        self.command = [str(part) for part in config["command"]]

    def _run(self, action: str, challenge: Challenge) -> None:
        if self.type == "http01":
            args = [challenge.identifier, challenge.token, challenge.key_authorization]
        else:
            args = [challenge.dns_name, challenge.dns_value]
        try:
            result = subprocess.run(
                [*self.command, action, *args],
                capture_output=True,
                text=True,
                timeout=EXEC_TIMEOUT,
                check=False,
                env={**os.environ, "GITCERT_CHALLENGE_TYPE": self.type},
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TemporaryIssuanceError(f"{self.type} exec hook failed to run: {exc}") from exc
        if result.returncode != 0:
            tail = (result.stderr.strip().splitlines() or [""])[-1]
            raise TemporaryIssuanceError(
                f"{self.type} exec hook `{action}` exited {result.returncode}: {tail}"
            )

    def present(self, challenge: Challenge) -> None:
        self._run("present", challenge)

    def cleanup(self, challenge: Challenge) -> None:
        self._run("cleanup", challenge)

    def wait_until_visible(self, challenges: Sequence[Challenge]) -> None:
        return None


# --- DNS-01 over RFC 2136 -----------------------------------------------------------------------


@dataclass
class RFC2136Solver:
    """TXT records by TSIG-signed dynamic update, then a check on the authoritative servers."""

    host: str
    port: int
    keyring: dict[dns.name.Name, dns.tsig.Key] | None
    key_name: dns.name.Name | None
    algorithm: dns.name.Name
    propagation_timeout: float
    type: str = "dns01"
    _zones: dict[str, dns.name.Name] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], tsig_secret: bytes | None) -> RFC2136Solver:
        host, _, port = str(config["nameserver"]).rpartition(":")
        if not host:
            host, port = str(config["nameserver"]), "53"
        algorithm = TSIG_ALGORITHMS[str(config.get("tsigAlgorithm", "HMACMD5")).upper()]
        key_name = (
            dns.name.from_text(str(config["tsigKeyName"])) if config.get("tsigKeyName") else None
        )
        keyring = None
        if key_name is not None and tsig_secret is not None:
            secret = base64.b64decode(tsig_secret.strip())
            keyring = {key_name: dns.tsig.Key(key_name, secret, algorithm)}
        timeout = config.get("propagationTimeout")
        return cls(
            host=host.strip("[]"),
            port=int(port),
            keyring=keyring,
            key_name=key_name,
            algorithm=algorithm,
            propagation_timeout=durations.parse(timeout).total_seconds()
            if timeout
            else DEFAULT_PROPAGATION_TIMEOUT,
        )

    def _query(self, query: dns.message.Message, host: str | None = None) -> dns.message.Message:
        try:
            return dns.query.tcp(query, host or self.host, port=self.port, timeout=5)
        except (OSError, dns.exception.DNSException) as exc:
            raise TemporaryIssuanceError(
                f"DNS server {host or self.host}:{self.port} did not answer: {exc}"
            ) from exc

    def zone(self, fqdn: str) -> dns.name.Name:
        """The zone holding ``fqdn``: the owner of the SOA the nameserver reports."""
        if fqdn in self._zones:
            return self._zones[fqdn]
        name = dns.name.from_text(fqdn)
        while True:
            answer = self._query(dns.message.make_query(name, dns.rdatatype.SOA))
            for rrset in (*answer.answer, *answer.authority):
                if rrset.rdtype == dns.rdatatype.SOA:
                    self._zones[fqdn] = rrset.name
                    return rrset.name
            if name == dns.name.root:
                raise TemporaryIssuanceError(f"no DNS zone found for {fqdn} at {self.host}")
            name = name.parent()

    def _update(self, challenge: Challenge, add: bool) -> None:
        fqdn = challenge.dns_name + "."
        update = dns.update.UpdateMessage(
            self.zone(fqdn),
            keyring=self.keyring,
            keyname=self.key_name,
            keyalgorithm=self.algorithm,
        )
        if add:
            update.add(fqdn, 60, "TXT", f'"{challenge.dns_value}"')
        else:
            update.delete(fqdn, "TXT", f'"{challenge.dns_value}"')
        response = self._query(update)
        if response.rcode() != dns.rcode.NOERROR:
            raise TemporaryIssuanceError(
                f"RFC 2136 update of {fqdn} refused by {self.host}:{self.port}: "
                f"{dns.rcode.to_text(response.rcode())}"
            )

    def present(self, challenge: Challenge) -> None:
        self._update(challenge, add=True)
        log.debug("rfc2136: added TXT %s", challenge.dns_name)

    def cleanup(self, challenge: Challenge) -> None:
        self._update(challenge, add=False)
        log.debug("rfc2136: removed TXT %s", challenge.dns_name)

    def _authoritative(self, zone: dns.name.Name) -> list[str]:
        """Addresses of the zone's NS hosts, asked of the configured server; it if none."""
        hosts = []
        answer = self._query(dns.message.make_query(zone, dns.rdatatype.NS))
        for rrset in answer.answer:
            for ns in rrset:
                a = self._query(dns.message.make_query(ns.target, dns.rdatatype.A))
                hosts += [r.address for rs in a.answer for r in rs if rs.rdtype == dns.rdatatype.A]
        return sorted(set(hosts)) or [self.host]

    def wait_until_visible(self, challenges: Sequence[Challenge]) -> None:
        deadline = time.monotonic() + self.propagation_timeout
        for challenge in challenges:
            fqdn = challenge.dns_name + "."
            for host in self._authoritative(self.zone(fqdn)):
                while not self._visible(host, fqdn, challenge.dns_value):
                    if time.monotonic() > deadline:
                        raise TemporaryIssuanceError(
                            f"TXT {fqdn} not visible on {host}:{self.port} after "
                            f"{self.propagation_timeout:.0f}s"
                        )
                    time.sleep(0.25)

    def _visible(self, host: str, fqdn: str, value: str) -> bool:
        answer = self._query(dns.message.make_query(fqdn, dns.rdatatype.TXT), host)
        texts = {
            b"".join(r.strings).decode()
            for rs in answer.answer
            for r in rs
            if rs.rdtype == dns.rdatatype.TXT
        }
        return value in texts
