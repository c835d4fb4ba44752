"""Real test servers on loopback: Pebble (ACME CA), pebble-challtestsrv (mock DNS) and BIND9.

Importable helpers only, no tests. Each server is started by a context manager that picks
free 127.0.0.1 ports, writes its configuration into a scratch directory, waits until the
server answers, and on exit stops it by pid (SIGTERM, then SIGKILL after a timeout) and
waits for it to exit. A start that loses a port race (the server logs "address already in
use" and exits) is retried on fresh ports.

Nothing here talks to anything but the servers it started: every server listens on
127.0.0.1 only, Pebble always resolves through ``-dnsserver`` (never the system
resolver), BIND runs with ``notify no``, ``recursion no`` and no rndc channel, and proxy
variables are removed from the environment of the servers and of our HTTP clients.
All private keys (TLS, TSIG) are generated at run time and written only under the
scratch directory the caller gives (the pytest tmp dir).
"""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
START_ATTEMPTS = 5
PORT_CLASH = ("address already in use", "address in use", "unable to listen on any")
PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}

T = TypeVar("T")


class ServerStartError(RuntimeError):
    """A test server exited or did not become ready; the message carries its log tail."""


class PortClashError(ServerStartError):
    """The server exited because one of its ports was taken; retry on other ports."""


# --- ports, waiting, processes --------------------------------------------------------------------


def free_port(*, udp: bool = False) -> int:
    """Return a TCP port that is free on 127.0.0.1 (and free for UDP too when ``udp``)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = int(s.getsockname()[1])
        if not udp or _udp_port_free(port):
            return port
    raise RuntimeError("no free loopback port found")


def _udp_port_free(port: int) -> bool:
    """Tell whether a UDP socket can bind 127.0.0.1:port right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def pid_exists(pid: int) -> bool:
    """Tell whether a process with this pid exists (signal 0 probe, nothing is sent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without proxy variables, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    env.update(overrides or {})
    return env


def http_session(verify: str | bool = True) -> requests.Session:
    """A requests session that ignores proxy settings from the environment."""
    session = requests.Session()
    session.trust_env = False
    session.verify = verify
    return session


def tcp_ready(port: int, host: str = LOOPBACK) -> bool:
    """Tell whether a TCP connection to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ready(url: str, verify: str | bool = True) -> bool:
    """Tell whether ``url`` answers with any HTTP status now (TLS checked against ``verify``)."""
    with http_session(verify) as session:
        try:
            session.get(url, timeout=0.5).close()
        except requests.RequestException:
            return False
    return True


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float = START_TIMEOUT,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    what: str = "server",
) -> None:
    """Poll ``ready`` until it is true; fail at the deadline, or early if ``proc`` exits or
    logs a port clash (challtestsrv logs "address already in use" and keeps running).
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            _raise_exited(what, proc.returncode, log_path)
        _check_port_clash(what, log_path)
        if ready():
            _check_port_clash(what, log_path)
            return
        if time.monotonic() > deadline:
            raise ServerStartError(f"{what} not ready after {timeout} s\n{_log_tail(log_path)}")
        time.sleep(0.02)


def wait_for_tcp(port: int, *, host: str = LOOPBACK, timeout: float = START_TIMEOUT) -> None:
    """Wait until host:port accepts TCP connections, or raise at the deadline."""
    wait_until(lambda: tcp_ready(port, host), timeout=timeout, what=f"{host}:{port}")


def wait_for_http(url: str, *, verify: str | bool = True, timeout: float = START_TIMEOUT) -> None:
    """Wait until ``url`` answers HTTP(S) with any status, or raise at the deadline."""
    wait_until(lambda: http_ready(url, verify), timeout=timeout, what=url)


def _log_text(log_path: Path | None) -> str:
    """A server's whole log so far ("" when there is none yet)."""
    if log_path is None or not log_path.exists():
        return ""
    return log_path.read_text(errors="replace")


def _log_tail(log_path: Path | None, lines: int = 30) -> str:
    """The last lines of a server log, for error messages."""
    return "\n".join(_log_text(log_path).splitlines()[-lines:])


def _check_port_clash(what: str, log_path: Path | None) -> None:
    """Raise PortClashError if the server's log says one of its ports was taken."""
    if any(marker in _log_text(log_path).lower() for marker in PORT_CLASH):
        raise PortClashError(f"{what} could not bind a port\n{_log_tail(log_path)}")


def _raise_exited(what: str, returncode: int, log_path: Path | None) -> None:
    """Raise PortClashError or ServerStartError for a server that exited during start-up."""
    clash = any(marker in _log_text(log_path).lower() for marker in PORT_CLASH)
    error = PortClashError if clash else ServerStartError
    raise error(f"{what} exited with status {returncode} during start-up\n{_log_tail(log_path)}")


def executable(name: str) -> str:
    """The path of a server binary: on PATH, else in /usr/sbin (named; often not on PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin")
    if found is None:
        raise ServerStartError(f"{name} not found: run scripts/setup-venv test (apt packages)")
    return found


def spawn(
    argv: list[str], *, log_path: Path, env: Mapping[str, str] | None = None, cwd: Path
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr going to ``log_path`` (overwritten)."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=clean_env(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """Stop a process we started, by its pid: SIGTERM, then SIGKILL; wait until it exited."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


def launch(
    argv: list[str],
    *,
    ready: Callable[[], bool],
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    what: str,
) -> subprocess.Popen[bytes]:
    """Spawn a server and wait until ``ready``; stop it again if it never gets there."""
    proc = spawn(argv, log_path=log_path, env=env, cwd=cwd)
    try:
        wait_until(ready, proc=proc, log_path=log_path, what=what)
    except BaseException:
        stop_process(proc)
        raise
    return proc


def retry_on_port_clash(start: Callable[[], T], attempts: int = START_ATTEMPTS) -> T:
    """Call ``start`` until it does not raise PortClashError (it picks fresh ports each time)."""
    for attempt in range(attempts):
        try:
            return start()
        except PortClashError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# --- DNS queries ----------------------------------------------------------------------------------


def dns_query(
    port: int, name: str, rdtype: str, *, tcp: bool = False, timeout: float = 2.0
) -> dns.message.Message:
    """Send one query for ``name``/``rdtype`` to 127.0.0.1:port and return the response."""
    query = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(query, LOOPBACK, port=port, timeout=timeout)
    return dns.query.udp(query, LOOPBACK, port=port, timeout=timeout)


def dns_answers(port: int, name: str, rdtype: str, *, tcp: bool = False) -> list[str]:
    """The answer records of type ``rdtype`` for ``name`` from 127.0.0.1:port, as text."""
    wanted = dns.rdatatype.from_text(rdtype)
    response = dns_query(port, name, rdtype, tcp=tcp)
    return [rd.to_text() for rrset in response.answer if rrset.rdtype == wanted for rd in rrset]


def txt_values(port: int, name: str, *, tcp: bool = False) -> list[str]:
    """The TXT strings for ``name`` from 127.0.0.1:port (each record's chunks joined)."""
    response = dns_query(port, name, "TXT", tcp=tcp)
    records = [rd for rrset in response.answer if rrset.rdtype == dns.rdatatype.TXT for rd in rrset]
    return sorted(b"".join(rd.strings).decode() for rd in records)


def _dns_ready(port: int, name: str, rdtype: str) -> bool:
    """Tell whether 127.0.0.1:port answers ``name`` over TCP (refused fast if down), then UDP."""
    try:
        dns_query(port, name, rdtype, tcp=True, timeout=0.5)
        dns_query(port, name, rdtype, timeout=0.5)
    except (OSError, dns.exception.Timeout):
        return False
    return True


# --- TLS material for Pebble ----------------------------------------------------------------------


@dataclass(frozen=True)
class PebbleTLS:
    """A throwaway CA (key kept in memory only) and a server cert for localhost/127.0.0.1/::1.

    ``ca_pem`` is what clients trust; ``cert_pem``/``key_pem`` are Pebble's HTTPS identity.
    """

    ca_pem: Path
    cert_pem: Path
    key_pem: Path


def _name(common_name: str) -> x509.Name:
    """An X.509 name with just a common name."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    """A certificate builder valid from an hour ago for two days."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def _ca_cert(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """A self-signed CA certificate for ``key``."""
    usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    return (
        _builder("gitcert test Pebble TLS CA", _name("gitcert test Pebble TLS CA"), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )


def _server_cert(
    key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    """A TLS server certificate for localhost, 127.0.0.1 and ::1 issued by ``ca``."""
    names = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    return (
        _builder("localhost", ca.subject, key)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def make_pebble_tls(directory: Path) -> PebbleTLS:
    """Generate the TLS CA and server cert into ``directory`` (mode 0700; key.pem 0600)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _ca_cert(ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _server_cert(key, ca, ca_key)
    tls = PebbleTLS(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    tls.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pkcs8 = serialization.PrivateFormat.PKCS8
    nokey = serialization.NoEncryption()
    _write_private(tls.key_pem, key.private_bytes(serialization.Encoding.PEM, pkcs8, nokey))
    return tls


# --- Pebble ---------------------------------------------------------------------------------------

PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}


@dataclass(frozen=True)
class Pebble:
    """A running Pebble ACME server on 127.0.0.1.

    ``http_port`` is where Pebble's VA connects for HTTP-01 (on whatever address the
    identifier resolves to through ``dns_port``); ``eab_keys`` maps kid to base64url HMAC key.
    """

    directory_url: str
    management_url: str
    ca_pem: Path
    http_port: int
    tls_port: int
    dns_port: int
    pid: int
    config_path: Path
    log_path: Path
    eab_keys: dict[str, str] = field(default_factory=dict)
    validity_seconds: int | None = None

    @property
    def eab_kid(self) -> str:
        """The (first) EAB key id; raises if this Pebble does not require EAB."""
        return next(iter(self._eab()))

    @property
    def eab_hmac_key(self) -> str:
        """The (first) EAB HMAC key, base64url without padding."""
        return next(iter(self._eab().values()))

    def _eab(self) -> dict[str, str]:
        """The EAB keys, or an error when EAB is not configured."""
        if not self.eab_keys:
            raise ValueError("this Pebble was started without EAB keys")
        return self.eab_keys

    def _get(self, path: str) -> requests.Response:
        """GET a management API path, TLS verified against ``ca_pem``."""
        with http_session(str(self.ca_pem)) as session:
            return session.get(f"{self.management_url}{path}", timeout=5)

    def root_pem(self) -> str:
        """The PEM of Pebble's current root (regenerated at every Pebble start)."""
        response = self._get("/roots/0")
        response.raise_for_status()
        return response.text

    def intermediate_pem(self) -> str:
        """The PEM of Pebble's current intermediate."""
        response = self._get("/intermediates/0")
        response.raise_for_status()
        return response.text

    def cert_status(self, serial: str | int) -> dict[str, Any]:
        """Pebble's status JSON for a serial (hex string or int), e.g. {"Status": "Revoked"}."""
        serial_hex = f"{serial:x}" if isinstance(serial, int) else serial
        response = self._get(f"/cert-status-by-serial/{serial_hex}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def log(self) -> str:
        """Pebble's output so far."""
        return self.log_path.read_text(errors="replace")


def _pebble_config(
    tls: PebbleTLS,
    ports: dict[str, int],
    eab_keys: Mapping[str, str] | None,
    validity_seconds: int | None,
) -> dict[str, Any]:
    """Pebble's JSON configuration, loopback only."""
    config: dict[str, Any] = {
        "listenAddress": f"{LOOPBACK}:{ports['acme']}",
        "managementListenAddress": f"{LOOPBACK}:{ports['management']}",
        "certificate": str(tls.cert_pem),
        "privateKey": str(tls.key_pem),
        "httpPort": ports["http"],
        "tlsPort": ports["tls"],
        "ocspResponderURL": "",
        "externalAccountBindingRequired": bool(eab_keys),
    }
    if eab_keys:
        config["externalAccountMACKeys"] = dict(eab_keys)
    if validity_seconds is not None:
        config["certificateValidityPeriod"] = validity_seconds
    return {"pebble": config}


def _launch_pebble(
    tmp_dir: Path,
    tls: PebbleTLS,
    *,
    dns_port: int,
    http_port: int,
    eab_keys: Mapping[str, str] | None,
    validity_seconds: int | None,
    env: Mapping[str, str] | None,
) -> tuple[Pebble, subprocess.Popen[bytes]]:
    """One attempt at starting Pebble on fresh ports; returns once /dir answers."""
    ports = {"acme": free_port(), "management": free_port(), "tls": free_port(), "http": http_port}
    config_path = tmp_dir / "pebble-config.json"
    config = _pebble_config(tls, ports, eab_keys, validity_seconds)
    config_path.write_text(json.dumps(config, indent=2))
    dns_server = f"{LOOPBACK}:{dns_port}"
    argv = [executable("pebble"), "-config", str(config_path), "-dnsserver", dns_server]
    argv.append("-strict=false")  # "-strict false" would set strict and end flag parsing
    directory_url = f"https://{LOOPBACK}:{ports['acme']}/dir"
    management_url = f"https://{LOOPBACK}:{ports['management']}"
    verify = str(tls.ca_pem)

    def ready() -> bool:
        return http_ready(directory_url, verify) and http_ready(management_url, verify)

    log_path = tmp_dir / "pebble.log"
    env = {**PEBBLE_ENV, **(env or {})}
    proc = launch(argv, ready=ready, log_path=log_path, cwd=tmp_dir, env=env, what="pebble")
    pebble = Pebble(
        directory_url=directory_url,
        management_url=management_url,
        ca_pem=tls.ca_pem,
        http_port=http_port,
        tls_port=ports["tls"],
        dns_port=dns_port,
        pid=proc.pid,
        config_path=config_path,
        log_path=log_path,
        eab_keys=dict(eab_keys or {}),
        validity_seconds=validity_seconds,
    )
    return pebble, proc


@contextmanager
def start_pebble(
    tmp_dir: Path,
    *,
    dns_port: int,
    http_port: int,
    tls: PebbleTLS | None = None,
    eab_keys: Mapping[str, str] | None = None,
    validity_seconds: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[Pebble]:
    """Run Pebble resolving through 127.0.0.1:``dns_port``; stop it on exit.

    ``tls`` defaults to fresh material under ``tmp_dir/tls``. ``env`` overrides
    PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0 and PEBBLE_AUTHZREUSE=0.
    """
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tls = tls or make_pebble_tls(tmp_dir / "tls")
    pebble, proc = retry_on_port_clash(
        lambda: _launch_pebble(
            tmp_dir,
            tls,
            dns_port=dns_port,
            http_port=http_port,
            eab_keys=eab_keys,
            validity_seconds=validity_seconds,
            env=env,
        )
    )
    try:
        yield pebble
    finally:
        stop_process(proc)


def make_eab_key() -> tuple[str, str]:
    """A fresh EAB key id and HMAC key (32 random bytes, base64url without padding)."""
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return f"kid-{secrets.token_hex(4)}", key


# --- pebble-challtestsrv --------------------------------------------------------------------------


@dataclass(frozen=True)
class Challtestsrv:
    """A running pebble-challtestsrv: DNS on 127.0.0.1:``dns_port`` answering A 127.0.0.1
    for every name (no AAAA), TXT records managed through ``management_url``.
    """

    dns_port: int
    management_url: str
    pid: int
    log_path: Path

    def _post(self, route: str, body: dict[str, str]) -> None:
        """POST a JSON body to a management route; raise on an HTTP error."""
        with http_session() as session:
            response = session.post(f"{self.management_url}/{route}", json=body, timeout=5)
            response.raise_for_status()

    def set_txt(self, host: str, value: str) -> None:
        """Add a TXT value for ``host`` (values accumulate until ``clear_txt``)."""
        self._post("set-txt", {"host": _fqdn(host), "value": value})

    def clear_txt(self, host: str) -> None:
        """Remove every TXT value of ``host``."""
        self._post("clear-txt", {"host": _fqdn(host)})

    def query_a(self, name: str) -> list[str]:
        """The A records this server answers for ``name``."""
        return dns_answers(self.dns_port, name, "A")

    def query_txt(self, name: str) -> list[str]:
        """The TXT strings this server answers for ``name``."""
        return txt_values(self.dns_port, name)


def _fqdn(name: str) -> str:
    """``name`` with a trailing dot."""
    return name if name.endswith(".") else f"{name}."


def _launch_challtestsrv(tmp_dir: Path) -> tuple[Challtestsrv, subprocess.Popen[bytes]]:
    """One attempt at starting challtestsrv on fresh ports; returns once DNS answers."""
    dns_port, management_port = free_port(udp=True), free_port()
    argv = [executable("pebble-challtestsrv"), "-defaultIPv4", LOOPBACK, "-defaultIPv6", ""]
    argv += ["-dns01", f"{LOOPBACK}:{dns_port}", "-http01", "", "-https01", ""]
    argv += ["-tlsalpn01", "", "-management", f"{LOOPBACK}:{management_port}"]
    management_url = f"http://{LOOPBACK}:{management_port}"

    def ready() -> bool:
        return http_ready(management_url) and _dns_ready(dns_port, "ready.test.", "A")

    log_path = tmp_dir / "challtestsrv.log"
    proc = launch(argv, ready=ready, log_path=log_path, cwd=tmp_dir, what="challtestsrv")
    return Challtestsrv(dns_port, management_url, proc.pid, log_path), proc


@contextmanager
def start_challtestsrv(tmp_dir: Path) -> Iterator[Challtestsrv]:
    """Run pebble-challtestsrv with only its DNS and management servers; stop it on exit."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    server, proc = retry_on_port_clash(lambda: _launch_challtestsrv(tmp_dir))
    try:
        yield server
    finally:
        stop_process(proc)


# --- BIND9 ----------------------------------------------------------------------------------------

ZONE_FILE = """\
$TTL 60
@    IN SOA ns.{zone}. hostmaster.{zone}. 1 60 60 600 60
@    IN NS  ns.{zone}.
@    IN A   127.0.0.1
ns   IN A   127.0.0.1
*    IN A   127.0.0.1
"""

NAMED_CONF = """\
key "{key_name}" {{
    algorithm {algorithm};
    secret "{secret}";
}};
options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    lock-file "{dir}/named.lock";
    session-keyfile "{dir}/session.key";
    managed-keys-directory "{dir}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-transfer {{ none; }};
}};
controls {{ }};
zone "{zone}" {{
    type primary;
    file "{dir}/{zone}.zone";
    journal "{dir}/{zone}.zone.jnl";
    allow-update {{ key "{key_name}"; }};
}};
"""


@dataclass(frozen=True)
class Bind9:
    """A running BIND9 on 127.0.0.1:``port`` (UDP+TCP), authoritative for ``zone``.

    The zone has SOA, NS, A records for the apex and ns, and ``* A 127.0.0.1`` (so names
    also resolve for HTTP-01; per RFC 4592 a name stops matching the wildcard once a
    record exists below it, e.g. ``_acme-challenge.<name>``). Dynamic updates are allowed
    only when TSIG-signed with ``tsig_key_name``/``tsig_algorithm``/``tsig_secret`` (base64).
    """

    port: int
    zone: str
    tsig_key_name: str
    tsig_algorithm: str
    tsig_secret: str
    pid: int
    directory: Path
    log_path: Path
    host: str = LOOPBACK

    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        """A dnspython keyring holding the TSIG key."""
        return dns.tsigkeyring.from_text(
            {self.tsig_key_name: (self.tsig_algorithm, self.tsig_secret)}
        )

    def signed_update(self) -> dns.update.UpdateMessage:
        """An empty dynamic update for the zone, to be TSIG-signed when sent."""
        return dns.update.UpdateMessage(
            self.zone,
            keyring=self.keyring(),
            keyname=dns.name.from_text(self.tsig_key_name),
            keyalgorithm=self.tsig_algorithm,
        )

    def send(self, message: dns.message.Message) -> str:
        """Send a message over TCP to this server; return the response rcode's name."""
        response = dns.query.tcp(message, self.host, port=self.port, timeout=5)
        return dns.rcode.to_text(response.rcode())

    def query_txt(self, name: str) -> list[str]:
        """The TXT strings this server answers for ``name``."""
        return txt_values(self.port, name)

    def query_a(self, name: str) -> list[str]:
        """The A records this server answers for ``name``."""
        return dns_answers(self.port, name, "A")

    def log(self) -> str:
        """named's output so far."""
        return self.log_path.read_text(errors="replace")


def make_tsig_secret() -> str:
    """A fresh 256-bit TSIG secret, base64 (what ``tsig-keygen -a hmac-sha256`` makes)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _write_bind_config(directory: Path, zone: str, key_name: str, secret: str, port: int) -> Path:
    """Write named.conf (0600, it holds the TSIG secret) and a fresh zone file; drop journals."""
    (directory / f"{zone}.zone").write_text(ZONE_FILE.format(zone=zone))
    (directory / f"{zone}.zone.jnl").unlink(missing_ok=True)
    conf = NAMED_CONF.format(
        key_name=key_name,
        algorithm="hmac-sha256",
        secret=secret,
        dir=directory,
        port=port,
        zone=zone,
    )
    conf_path = directory / "named.conf"
    _write_private(conf_path, conf.encode())
    return conf_path


def _launch_bind9(
    directory: Path, zone: str, key_name: str, secret: str
) -> tuple[Bind9, subprocess.Popen[bytes]]:
    """One attempt at starting named on a fresh port; returns once the zone answers."""
    port = free_port(udp=True)
    conf_path = _write_bind_config(directory, zone, key_name, secret, port)
    argv = [executable("named"), "-g", "-4", "-c", str(conf_path), "-p", str(port)]
    log_path = directory / "named.log"

    def ready() -> bool:
        return _dns_ready(port, f"{zone}.", "SOA")

    proc = launch(argv, ready=ready, log_path=log_path, cwd=directory, what="named")
    bind = Bind9(port, zone, key_name, "hmac-sha256", secret, proc.pid, directory, log_path)
    return bind, proc


@contextmanager
def start_bind9(
    tmp_dir: Path, *, zone: str = "example.test", key_name: str = "gitcert-test."
) -> Iterator[Bind9]:
    """Run named authoritative for ``zone`` with TSIG-only dynamic updates; stop it on exit."""
    tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = make_tsig_secret()
    bind, proc = retry_on_port_clash(lambda: _launch_bind9(tmp_dir, zone, key_name, secret))
    try:
        yield bind
    finally:
        stop_process(proc)


# --- HTTP-01 responder ----------------------------------------------------------------------------


class Http01Responder:
    """A tiny HTTP server on 127.0.0.1:port serving ``/.well-known/acme-challenge/`` tokens.

    ``tokens`` maps the request path to the body; ``requests_seen`` lists paths asked for.
    """

    def __init__(self, port: int) -> None:
        self.tokens: dict[str, str] = {}
        self.requests_seen: list[str] = []
        responder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                responder.requests_seen.append(self.path)
                body = responder.tokens.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write((body or "").encode())

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output quiet."""

        self.server = http.server.ThreadingHTTPServer((LOOPBACK, port), Handler)
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        """Serve until shut down, noticing the shutdown request within 50 ms."""
        self.server.serve_forever(poll_interval=0.05)

    def add(self, path: str, body: str) -> None:
        """Serve ``body`` at ``path`` (e.g. ``challb.chall.path``)."""
        self.tokens[path] = body


@contextmanager
def serve_http01(port: int) -> Iterator[Http01Responder]:
    """Run an Http01Responder on 127.0.0.1:port for the duration of the block."""
    responder = Http01Responder(port)
    responder.thread.start()
    try:
        yield responder
    finally:
        responder.server.shutdown()
        responder.server.server_close()
        responder.thread.join()
