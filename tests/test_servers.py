"""The real-server fixtures work: Pebble over HTTPS, challtestsrv DNS, BIND9 with TSIG updates.

Every test sends real traffic to servers it started on 127.0.0.1, and the ACME tests issue
real certificates through Pebble with HTTP-01 (names resolved by challtestsrv) and DNS-01
(TXT records written into BIND9 by RFC 2136), which is the path gitcert's ACME issuer takes.
"""

from __future__ import annotations

import datetime
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import dns.name
import dns.tsig
import dns.tsigkeyring
import dns.update
import josepy as jose
import pytest
import requests
from acme import challenges, client, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import tests.servers as servers
from tests.servers import (
    Bind9,
    Challtestsrv,
    Pebble,
    PebbleTLS,
    dns_answers,
    free_port,
    http_session,
    make_tsig_secret,
    pid_exists,
    serve_http01,
    start_bind9,
    start_challtestsrv,
    start_pebble,
)

pytestmark = pytest.mark.pebble

Publish = Callable[[messages.ChallengeBody, str, jose.jwk.JWK], None]


# --- a minimal ACME client over the acme library --------------------------------------------------


def acme_client(pebble: Pebble) -> tuple[client.ClientV2, jose.jwk.JWK]:
    """An acme client for ``pebble`` with a fresh EC account key (no account yet)."""
    key = jose.jwk.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(key, alg=jose.jwa.ES256, verify_ssl=str(pebble.ca_pem))
    net.session.trust_env = False
    directory = client.ClientV2.get_directory(pebble.directory_url, net)
    return client.ClientV2(directory, net), key


def register(acme: client.ClientV2) -> messages.RegistrationResource:
    """Create an account that agrees to the terms."""
    return acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))


def make_csr(names: list[str]) -> bytes:
    """A PEM CSR with ``names`` as SANs and a throwaway EC key."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    csr = builder.add_extension(sans, critical=False).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def wait_valid(acme: client.ClientV2, authzr: messages.AuthorizationResource) -> None:
    """Poll an authorization quickly until it leaves ``pending``; it must end ``valid``."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        authzr, _ = acme.poll(authzr)
        if authzr.body.status != messages.STATUS_PENDING:
            assert authzr.body.status == messages.STATUS_VALID, authzr.body.to_json()
            return
        time.sleep(0.05)
    raise TimeoutError("authorization still pending")


def issue(
    acme: client.ClientV2,
    key: jose.jwk.JWK,
    names: list[str],
    kind: type[challenges.Challenge],
    publish: Publish,
) -> list[x509.Certificate]:
    """Order ``names``, publish each ``kind`` challenge, answer, finalize; return the chain."""
    order = acme.new_order(make_csr(names))
    for authzr in order.authorizations:
        challb = next(c for c in authzr.body.challenges if isinstance(c.chall, kind))
        publish(challb, authzr.body.identifier.value, key)
        acme.answer_challenge(challb, challb.response(key))
        wait_valid(acme, authzr)
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=30)
    order = acme.finalize_order(order, deadline)
    return x509.load_pem_x509_certificates(order.fullchain_pem.encode())


def issue_with_new_account(
    pebble: Pebble, names: list[str], kind: type[challenges.Challenge], publish: Publish
) -> list[x509.Certificate]:
    """``issue`` with a fresh account on ``pebble``."""
    acme, key = acme_client(pebble)
    register(acme)
    chain = issue(acme, key, names, kind, publish)
    acme.net.session.close()
    return chain


def sans(cert: x509.Certificate) -> list[str]:
    """The DNS names of a certificate."""
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return sorted(ext.value.get_values_for_type(x509.DNSName))


@pytest.fixture
def http01(pebble_http01: Pebble) -> Iterator[servers.Http01Responder]:
    """An HTTP-01 responder on the port Pebble's VA connects to."""
    with serve_http01(pebble_http01.http_port) as responder:
        yield responder


def http01_publisher(responder: servers.Http01Responder) -> Publish:
    """Publish HTTP-01 key authorizations through ``responder``."""

    def publish(challb: messages.ChallengeBody, name: str, key: jose.jwk.JWK) -> None:
        responder.add(challb.chall.path, challb.validation(key))

    return publish


# --- Pebble ---------------------------------------------------------------------------------------


def test_pebble_directory_answers_over_https_with_the_generated_ca(pebble_http01: Pebble) -> None:
    with http_session(str(pebble_http01.ca_pem)) as session:
        directory = session.get(pebble_http01.directory_url, timeout=5).json()
    assert {"newAccount", "newNonce", "newOrder", "revokeCert"} <= set(directory)
    assert directory["newOrder"].startswith("https://127.0.0.1:")
    with http_session(True) as session, pytest.raises(requests.exceptions.SSLError):
        session.get(pebble_http01.directory_url, timeout=5)


def test_pebble_tls_material_stays_in_the_tmp_dir(
    pebble_tls: PebbleTLS, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert tmp_path_factory.getbasetemp() in pebble_tls.key_pem.parents
    assert pebble_tls.key_pem.stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in pebble_tls.ca_pem.parent.iterdir()) == [
        "ca.pem",
        "cert.pem",
        "key.pem",
    ]
    ca = x509.load_pem_x509_certificate(pebble_tls.ca_pem.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "PRIVATE KEY" not in pebble_tls.ca_pem.read_text()


def test_pebble_root_is_served_as_pem(pebble_http01: Pebble) -> None:
    root = x509.load_pem_x509_certificate(pebble_http01.root_pem().encode())
    assert "Pebble Root CA" in root.subject.rfc4514_string()
    intermediate = x509.load_pem_x509_certificate(pebble_http01.intermediate_pem().encode())
    intermediate.verify_directly_issued_by(root)


def test_http01_issuance_through_challtestsrv_and_revocation(
    pebble_http01: Pebble, http01: servers.Http01Responder
) -> None:
    acme, key = acme_client(pebble_http01)
    register(acme)
    names = ["web.example.test", "www.example.test"]
    chain = issue(acme, key, names, challenges.HTTP01, http01_publisher(http01))
    leaf, intermediate = chain[0], chain[1]
    assert sans(leaf) == names
    leaf.verify_directly_issued_by(intermediate)
    root = x509.load_pem_x509_certificate(pebble_http01.root_pem().encode())
    intermediate.verify_directly_issued_by(root)
    assert any(p.startswith("/.well-known/acme-challenge/") for p in http01.requests_seen)
    assert pebble_http01.cert_status(leaf.serial_number)["Status"] == "Valid"
    acme.revoke(leaf, 4)
    status = pebble_http01.cert_status(f"{leaf.serial_number:x}")
    assert (status["Status"], status["Reason"]) == ("Revoked", 4)
    acme.net.session.close()


def test_validity_seconds_sets_the_certificate_lifetime(
    tmp_path: Path, pebble_tls: PebbleTLS, challtestsrv: Challtestsrv
) -> None:
    port = free_port()
    dns_port = challtestsrv.dns_port
    with (
        start_pebble(
            tmp_path, tls=pebble_tls, dns_port=dns_port, http_port=port, validity_seconds=300
        ) as pebble,
        serve_http01(port) as responder,
    ):
        publish = http01_publisher(responder)
        leaf = issue_with_new_account(pebble, ["short.example.test"], challenges.HTTP01, publish)[0]
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime == datetime.timedelta(seconds=299)  # notAfter is inclusive (RFC 5280)


def test_pebble_eab_requires_and_accepts_the_generated_key(pebble_eab: Pebble) -> None:
    acme, key = acme_client(pebble_eab)
    assert acme.directory.meta.external_account_required
    with pytest.raises(messages.Error, match="externalAccountRequired"):
        register(acme)
    eab = messages.ExternalAccountBinding.from_data(
        account_public_key=key.public_key(),
        kid=pebble_eab.eab_kid,
        hmac_key=pebble_eab.eab_hmac_key,
        directory=acme.directory,
    )
    new = messages.NewRegistration.from_data(
        terms_of_service_agreed=True, external_account_binding=eab
    )
    assert acme.new_account(new).body.status == "valid"
    acme.net.session.close()


def test_pebble_without_eab_has_no_eab_key(pebble_http01: Pebble) -> None:
    assert pebble_http01.eab_keys == {}
    with pytest.raises(ValueError, match="without EAB"):
        _ = pebble_http01.eab_kid


# --- challtestsrv ---------------------------------------------------------------------------------


def test_challtestsrv_resolves_every_name_to_loopback_ipv4_only(challtestsrv: Challtestsrv) -> None:
    assert challtestsrv.query_a("foo.example.test") == ["127.0.0.1"]
    assert challtestsrv.query_a("anything.else.invalid") == ["127.0.0.1"]
    assert dns_answers(challtestsrv.dns_port, "foo.example.test", "AAAA") == []
    assert dns_answers(challtestsrv.dns_port, "foo.example.test", "A", tcp=True) == ["127.0.0.1"]


def test_challtestsrv_serves_txt_until_cleared(challtestsrv: Challtestsrv) -> None:
    host = "_acme-challenge.foo.example.test"
    assert challtestsrv.query_txt(host) == []
    challtestsrv.set_txt(host, "first")
    challtestsrv.set_txt(host + ".", "second")
    assert challtestsrv.query_txt(host) == ["first", "second"]
    challtestsrv.clear_txt(host)
    assert challtestsrv.query_txt(host) == []


# --- BIND9 ----------------------------------------------------------------------------------------


def test_bind9_is_authoritative_for_the_zone_with_a_wildcard(bind9: Bind9) -> None:
    assert bind9.query_a("example.test") == ["127.0.0.1"]
    assert bind9.query_a("ns.example.test") == ["127.0.0.1"]
    assert bind9.query_a("web.example.test") == ["127.0.0.1"]
    assert dns_answers(bind9.port, "example.test", "NS", tcp=True) == ["ns.example.test."]


def test_bind9_accepts_a_tsig_signed_update(bind9: Bind9) -> None:
    update = bind9.signed_update()
    update.replace("_acme-challenge.web.example.test.", 60, "TXT", '"token-value"')
    assert bind9.send(update) == "NOERROR"
    assert bind9.query_txt("_acme-challenge.web.example.test") == ["token-value"]
    update = bind9.signed_update()
    update.delete("_acme-challenge.web.example.test.", "TXT")
    assert bind9.send(update) == "NOERROR"
    assert bind9.query_txt("_acme-challenge.web.example.test") == []


def test_bind9_refuses_an_unsigned_update(bind9: Bind9) -> None:
    update = dns.update.UpdateMessage(bind9.zone)
    update.add("_acme-challenge.web.example.test.", 60, "TXT", '"forged"')
    assert bind9.send(update) == "REFUSED"
    assert bind9.query_txt("_acme-challenge.web.example.test") == []


def test_bind9_rejects_an_update_signed_with_another_secret(bind9: Bind9) -> None:
    keyring = dns.tsigkeyring.from_text({bind9.tsig_key_name: ("hmac-sha256", make_tsig_secret())})
    update = dns.update.UpdateMessage(
        bind9.zone,
        keyring=keyring,
        keyname=dns.name.from_text(bind9.tsig_key_name),
        keyalgorithm="hmac-sha256",
    )
    update.add("_acme-challenge.web.example.test.", 60, "TXT", '"forged"')
    with pytest.raises(dns.tsig.PeerBadSignature):
        bind9.send(update)
    assert bind9.query_txt("_acme-challenge.web.example.test") == []


def test_dns01_issuance_through_bind9(pebble_dns01: Pebble, bind9: Bind9) -> None:
    def publish(challb: messages.ChallengeBody, name: str, key: jose.jwk.JWK) -> None:
        update = bind9.signed_update()
        record = challb.chall.validation_domain_name(name) + "."
        update.add(record, 60, "TXT", f'"{challb.validation(key)}"')
        assert bind9.send(update) == "NOERROR"

    names = ["dns.example.test", "*.wild.example.test"]
    leaf = issue_with_new_account(pebble_dns01, names, challenges.DNS01, publish)[0]
    assert sans(leaf) == sorted(names)


# --- process lifecycle ----------------------------------------------------------------------------


def test_every_server_process_is_gone_after_its_context_exits(
    tmp_path: Path, pebble_tls: PebbleTLS
) -> None:
    with (
        start_challtestsrv(tmp_path / "c") as cts,
        start_bind9(tmp_path / "b") as bind,
        start_pebble(tmp_path / "p1", tls=pebble_tls, dns_port=cts.dns_port, http_port=1) as p1,
        start_pebble(tmp_path / "p2", tls=pebble_tls, dns_port=bind.port, http_port=1) as p2,
    ):
        pids = [cts.pid, bind.pid, p1.pid, p2.pid]
        assert all(pid_exists(pid) for pid in pids)
        assert int((tmp_path / "b" / "named.pid").read_text()) == bind.pid
    assert not any(pid_exists(pid) for pid in pids)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port held open on both TCP (listening) and UDP by this test."""
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", tcp.getsockname()[1]))
        yield tcp.getsockname()[1]


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[bytes]]:
    """Every process tests.servers spawns during the test, in order."""
    processes: list[subprocess.Popen[bytes]] = []
    real_spawn = servers.spawn

    def recording_spawn(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        processes.append(real_spawn(*args, **kwargs))
        return processes[-1]

    monkeypatch.setattr(servers, "spawn", recording_spawn)
    return processes


def hand_out_first(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make tests.servers.free_port return ``port`` once, then real free ports."""
    real_free_port, first = servers.free_port, [port]

    def fake_free_port(*, udp: bool = False) -> int:
        return first.pop() if first else real_free_port(udp=udp)

    monkeypatch.setattr(servers, "free_port", fake_free_port)


@pytest.mark.parametrize("server", ["bind9", "challtestsrv", "pebble"])
def test_a_taken_port_is_retried_and_the_loser_stopped(
    server: str,
    taken_port: int,
    spawned: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    pebble_tls: PebbleTLS,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    starts: dict[str, Callable[[], AbstractContextManager[Any]]] = {
        "bind9": lambda: start_bind9(tmp_path),
        "challtestsrv": lambda: start_challtestsrv(tmp_path),
        "pebble": lambda: start_pebble(tmp_path, tls=pebble_tls, dns_port=1, http_port=1),
    }
    hand_out_first(taken_port, monkeypatch)
    with starts[server]() as started:
        assert len(spawned) == 2
        assert spawned[0].returncode is not None
        assert started.pid == spawned[1].pid
    assert spawned[1].returncode is not None
