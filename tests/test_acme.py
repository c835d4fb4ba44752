"""The ACME issuer against a real Pebble, with HTTP-01 and DNS-01 (BIND9 over RFC 2136).

Certificates are checked the way a client would: the chain Pebble returns must verify to
the root from Pebble's management API for the names requested.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from gitcert.sops import Sops
from tests.acme_proxy import ProxyState, acme_proxy
from tests.conftest import CertRepo, git
from tests.servers import Bind9, Challtestsrv, Pebble, PebbleTLS, free_port, start_pebble


def issuer(pebble: Pebble, solvers: list[dict[str, Any]], **extra: Any) -> str:
    spec = {
        "server": pebble.directory_url,
        "email": "ops@example.test",
        "caBundle": base64.b64encode(pebble.ca_pem.read_bytes()).decode(),
        "privateKeySecretRef": {"name": "pebble-account"},
        "solvers": solvers,
        **extra,
    }
    document = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": "pebble"},
        "spec": {"acme": spec},
    }
    return "---\n" + yaml.safe_dump(document, sort_keys=False)


def certificate(name: str, dns_names: list[str], namespace: str = "web") -> str:
    document = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "secretName": f"{name}-tls",
            "dnsNames": dns_names,
            "issuerRef": {"name": "pebble", "kind": "ClusterIssuer"},
        },
    }
    return "---\n" + yaml.safe_dump(document, sort_keys=False)


def standalone(pebble: Pebble) -> list[dict[str, Any]]:
    return [{"http01": {"standalone": {"address": "127.0.0.1", "port": pebble.http_port}}}]


def secret_values(repo: CertRepo, namespace: str, name: str) -> dict[str, str]:
    document = yaml.safe_load(repo.show(f"HEAD:secrets/{namespace}/{name}.yaml"))
    values: dict[str, str] = document["stringData"]
    return values


def status(repo: CertRepo, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(repo.show(f"HEAD:status/{namespace}/{name}.yaml"))[
        "status"
    ]
    return body


def assert_chains_to_pebble(pebble: Pebble, values: dict[str, str], name: str) -> x509.Certificate:
    leaf, *intermediates = x509.load_pem_x509_certificates(values["tls.crt"].encode())
    assert len(intermediates) == 1
    root = x509.load_pem_x509_certificate(pebble.root_pem().encode())
    verifier = PolicyBuilder().store(Store([root])).build_server_verifier(x509.DNSName(name))
    path = verifier.verify(leaf, intermediates)
    assert [c.subject for c in path][-1] == root.subject
    return leaf


def sealed_secret(repo: CertRepo, namespace: str, name: str, values: dict[str, str]) -> None:
    """Commit a Secret the way a user would: encrypted with sops, never in plaintext on disk."""
    path = f"secrets/{namespace}/{name}.yaml"
    document = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": values,
    }
    with Sops((repo.path / ".sops.yaml").read_bytes()) as sops:
        encrypted = sops.encrypt(yaml.safe_dump(document).encode(), path)
    repo.write(path, encrypted)


def apply(repo: CertRepo) -> Any:
    return repo.gitcert("apply", now=None)


def test_http01_standalone_issues_a_certificate_that_chains_to_pebbles_root(
    cert_repo: CertRepo, pebble_http01: Pebble
) -> None:
    cert_repo.write(
        "manifests/acme.yaml",
        issuer(pebble_http01, standalone(pebble_http01))
        + certificate("shop", ["shop.example.test", "www.shop.example.test"]),
    )
    cert_repo.commit()

    result = apply(cert_repo)
    assert result.exit_code == 0, result.output
    leaf = assert_chains_to_pebble(
        pebble_http01, secret_values(cert_repo, "web", "shop-tls"), "www.shop.example.test"
    )
    record = status(cert_repo, "web", "shop")
    assert record["issuerDetails"]["acmeOrderURL"].startswith("https://127.0.0.1:")
    assert record["serialNumber"] == format(leaf.serial_number, "x")

    account = yaml.safe_load(cert_repo.show("HEAD:secrets/cert-manager/pebble-account.yaml"))
    assert account["stringData"]["tls.key"].startswith("ENC[AES256_GCM,")
    assert account["metadata"]["annotations"]["acme.gitcert.dev/account-uri"].startswith("https://")

    head = cert_repo.head()
    again = apply(cert_repo)
    assert again.exit_code == 0 and "No changes" in again.output
    assert cert_repo.head() == head


class _Webroot(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webroot(tmp_path: Path, pebble_http01: Pebble) -> Iterator[Path]:
    """A plain web server on Pebble's HTTP-01 port, serving a directory."""
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a: _Webroot(*a, directory=str(root))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", pebble_http01.http_port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root
    server.shutdown()
    server.server_close()


def test_http01_webroot(cert_repo: CertRepo, pebble_http01: Pebble, webroot: Path) -> None:
    solvers = [{"http01": {"webroot": {"path": str(webroot)}}}]
    cert_repo.write(
        "manifests/acme.yaml",
        issuer(pebble_http01, solvers) + certificate("blog", ["blog.example.test"]),
    )
    cert_repo.commit()

    result = apply(cert_repo)
    assert result.exit_code == 0, result.output
    assert_chains_to_pebble(
        pebble_http01, secret_values(cert_repo, "web", "blog-tls"), "blog.example.test"
    )
    # The token files are cleaned up after validation.
    assert list((webroot / ".well-known" / "acme-challenge").iterdir()) == []


def rfc2136(bind9: Bind9) -> list[dict[str, Any]]:
    return [
        {
            "dns01": {
                "rfc2136": {
                    "nameserver": f"127.0.0.1:{bind9.port}",
                    "tsigKeyName": bind9.tsig_key_name,
                    "tsigAlgorithm": "HMACSHA256",
                    "tsigSecretSecretRef": {"name": "tsig", "key": "secret"},
                },
                "propagationTimeout": "30s",
            }
        }
    ]


def test_dns01_rfc2136_wildcard_and_apex_in_one_certificate(
    cert_repo: CertRepo, pebble_dns01: Pebble, bind9: Bind9
) -> None:
    sealed_secret(cert_repo, "cert-manager", "tsig", {"secret": bind9.tsig_secret})
    cert_repo.write(
        "manifests/acme.yaml",
        issuer(pebble_dns01, rfc2136(bind9))
        + certificate("wild", ["example.test", "*.example.test"]),
    )
    cert_repo.commit()

    result = apply(cert_repo)
    assert result.exit_code == 0, result.output
    values = secret_values(cert_repo, "web", "wild-tls")
    leaf = assert_chains_to_pebble(pebble_dns01, values, "anything.example.test")
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == ["*.example.test", "example.test"]
    assert bind9.query_txt("_acme-challenge.example.test") == []


def test_a_wildcard_with_only_http01_solvers_is_refused_at_validate(
    cert_repo: CertRepo, pebble_http01: Pebble
) -> None:
    cert_repo.write(
        "manifests/acme.yaml",
        issuer(pebble_http01, standalone(pebble_http01))
        + certificate("wild", ["example.test", "*.example.test"]),
    )
    cert_repo.commit()
    for command in ("validate", "plan"):
        result = cert_repo.gitcert(command)
        assert result.exit_code == 1
        assert (
            "manifests/acme.yaml:28: spec.dnsNames[1]: *.example.test is a wildcard, which only "
            "DNS-01 can validate, and no dns01 solver matches it; add a dns01 solver "
            "(rfc2136 or exec)"
        ) in result.output


def test_external_account_binding(cert_repo: CertRepo, pebble_eab: Pebble) -> None:
    cert_repo.write(
        "manifests/acme.yaml",
        issuer(pebble_eab, standalone(pebble_eab)) + certificate("eab", ["eab.example.test"]),
    )
    cert_repo.commit()
    refused = apply(cert_repo)
    assert refused.exit_code == 1
    assert "the ACME server requires External Account Binding" in refused.output

    sealed_secret(cert_repo, "cert-manager", "eab", {"secret": pebble_eab.eab_hmac_key})
    binding = {"keyID": pebble_eab.eab_kid, "keySecretRef": {"name": "eab", "key": "secret"}}
    cert_repo.write(
        "manifests/acme.yaml",
        issuer(pebble_eab, standalone(pebble_eab), externalAccountBinding=binding)
        + certificate("eab", ["eab.example.test"]),
    )
    cert_repo.commit()
    result = apply(cert_repo)
    assert result.exit_code == 0, result.output
    assert_chains_to_pebble(
        pebble_eab, secret_values(cert_repo, "web", "eab-tls"), "eab.example.test"
    )


KILLER = """\
#!/bin/sh
# HTTP-01 exec hook: publish into the webroot; the first time, kill gitcert (our parent)
# after the order exists and before anything is committed.
action=$1 token=$3 keyauth=$4
dir="{webroot}/.well-known/acme-challenge"
if [ "$action" = present ]; then
  mkdir -p "$dir" && printf %s "$keyauth" > "$dir/$token"
  if [ ! -e "{marker}" ]; then touch "{marker}"; kill -9 $PPID; fi
else
  rm -f "$dir/$token"
fi
"""


def kill_during_ordering(cert_repo: CertRepo, pebble: Pebble, webroot: Path, tmp: Path) -> str:
    """Run apply in a process that an HTTP-01 exec hook kills with SIGKILL after the order is
    placed; return the order URL the killed run journaled."""
    hook = tmp / "hook.sh"
    hook.write_text(KILLER.format(webroot=webroot, marker=tmp / "killed"))
    hook.chmod(0o755)
    cert_repo.write(
        "manifests/acme.yaml",
        issuer(pebble, [{"http01": {"exec": {"command": [str(hook)]}}}])
        + certificate("api", ["api.example.test"]),
    )
    head = cert_repo.commit()

    killed = subprocess.run(
        [sys.executable, "-m", "gitcert", "apply", "--repo", str(cert_repo.path)],
        capture_output=True,
        env=os.environ,
        timeout=120,
    )
    assert killed.returncode == -9
    assert cert_repo.head() == head
    journal = yaml.safe_load(
        git(cert_repo.path, "show", "refs/gitcert/journal:Certificate/web/api.yaml")
    )
    assert journal["stringData"]["tls.key"].startswith("ENC[AES256_GCM,")
    url: str = journal["metadata"]["annotations"]["acme.gitcert.dev/order-url"]
    return url


def test_a_run_killed_after_ordering_resumes_the_same_order(
    cert_repo: CertRepo, pebble_http01: Pebble, webroot: Path, tmp_path: Path
) -> None:
    order_url = kill_during_ordering(cert_repo, pebble_http01, webroot, tmp_path)

    result = apply(cert_repo)
    assert result.exit_code == 0, result.output
    assert status(cert_repo, "web", "api")["issuerDetails"]["acmeOrderURL"] == order_url
    assert_chains_to_pebble(
        pebble_http01, secret_values(cert_repo, "web", "api-tls"), "api.example.test"
    )
    # Committed, so nothing is left to resume.
    listing = git(cert_repo.path, "ls-tree", "-r", "--name-only", "refs/gitcert/journal")
    assert listing == ""


def test_revoke_then_reissue(cert_repo: CertRepo, pebble_http01: Pebble) -> None:
    cert_repo.write(
        "manifests/acme.yaml",
        issuer(pebble_http01, standalone(pebble_http01)) + certificate("old", ["old.example.test"]),
    )
    cert_repo.commit()
    assert apply(cert_repo).exit_code == 0
    serial = status(cert_repo, "web", "old")["serialNumber"]

    result = cert_repo.gitcert("revoke", "old", "--reason", "keyCompromise", now=None)
    assert result.exit_code == 0, result.output
    assert pebble_http01.cert_status(serial)["Status"] == "Revoked"
    record = status(cert_repo, "web", "old")
    assert (record["revokedSerialNumber"], record["revocationReason"]) == (serial, "keyCompromise")

    plan = json.loads(cert_repo.gitcert("plan", "--format", "json", now=None).output)
    assert [(c["name"], c["action"], c["reason"]) for c in plan["changes"]] == [
        ("old", "reissue", "Revoked")
    ]


def test_many_certificates_in_one_apply_share_the_standalone_server(
    cert_repo: CertRepo, pebble_http01: Pebble
) -> None:
    names = [f"svc{i}" for i in range(12)]
    cert_repo.write(
        "manifests/acme.yaml",
        issuer(pebble_http01, standalone(pebble_http01))
        + "".join(certificate(n, [f"{n}.example.test"]) for n in names),
    )
    cert_repo.write(
        "gitcert.yaml", "apiVersion: gitcert.dev/v1alpha1\nkind: Config\nspec:\n  concurrency: 12\n"
    )
    cert_repo.commit()

    started = time.monotonic()
    result = apply(cert_repo)
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert cert_repo.log()[0] == "gitcert: issue 12"
    # Sequential orders would cost at least 12 validation round trips; in parallel they
    # overlap. Generous bound: far below 12 seconds even on a slow machine.
    assert elapsed < 12, elapsed


@pytest.fixture
def proxy(pebble_http01: Pebble, pebble_tls: PebbleTLS) -> Iterator[ProxyState]:
    with acme_proxy(pebble_http01, pebble_tls) as state:
        yield state


def test_ari_window_sets_the_renewal_time_and_renewals_name_what_they_replace(
    cert_repo: CertRepo, pebble_http01: Pebble, proxy: ProxyState
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    proxy.window = (start, start + timedelta(days=2))
    manifest = issuer(pebble_http01, standalone(pebble_http01), server=f"{proxy.url}/dir")
    cert_repo.write("manifests/acme.yaml", manifest + certificate("ari", ["ari.example.test"]))
    cert_repo.commit()

    assert apply(cert_repo).exit_code == 0
    first = status(cert_repo, "web", "ari")
    suggested = datetime.fromisoformat(first["suggestedRenewalTime"])
    assert start <= suggested <= start + timedelta(days=2)
    leaf = x509.load_pem_x509_certificate(
        secret_values(cert_repo, "web", "ari-tls")["tls.crt"].encode()
    )
    cert_id = aki_serial_id(leaf)
    assert proxy.renewal_info_requests == [cert_id]

    # The time was drawn once: every plan shows the same one, and it decides.
    before = plan_at(cert_repo, suggested - timedelta(seconds=1))
    assert before == [("ari", "none", "UpToDate", first["suggestedRenewalTime"])]
    due = plan_at(cert_repo, suggested)
    assert due == [("ari", "renew", "RenewalDue", first["suggestedRenewalTime"])]

    result = cert_repo.gitcert("apply", now=first["suggestedRenewalTime"])
    assert result.exit_code == 0, result.output
    assert status(cert_repo, "web", "ari")["issuerDetails"]["acmeReplaces"] == cert_id


def aki_serial_id(cert: x509.Certificate) -> str:
    """RFC 9773 section 4.1, computed independently of gitcert."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier is not None
    serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 8) // 8, "big")
    encode = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")  # noqa: E731
    return f"{encode(aki.key_identifier)}.{encode(serial)}"


def plan_at(repo: CertRepo, moment: datetime) -> list[tuple[str, str, str, str]]:
    result = repo.gitcert("plan", "--format", "json", now=moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert result.exit_code == 0, result.output
    return [
        (c["name"], c["action"], c["reason"], c["renewalTime"])
        for c in json.loads(result.output)["changes"]
    ]


def test_rate_limited_orders_wait_for_retry_after(
    cert_repo: CertRepo, pebble_http01: Pebble, proxy: ProxyState
) -> None:
    proxy.rate_limit_seconds = 7200
    manifest = issuer(pebble_http01, standalone(pebble_http01), server=f"{proxy.url}/dir")
    cert_repo.write("manifests/acme.yaml", manifest + certificate("busy", ["busy.example.test"]))
    cert_repo.commit()

    started = datetime.now(UTC).replace(microsecond=0)
    result = apply(cert_repo)
    assert result.exit_code == 1
    assert "rate limited by the ACME server: too many new orders recently" in result.output
    record = status(cert_repo, "web", "busy")
    retry = datetime.fromisoformat(record["retryAfter"])
    assert started + timedelta(seconds=7200) <= retry <= started + timedelta(seconds=7210)
    assert len(proxy.new_order_payloads) == 1

    waiting = json.loads(cert_repo.gitcert("plan", "--format", "json", now=None).output)
    (change,) = waiting["changes"]
    assert change["action"] == "wait"
    assert "rate limited by the ACME server" in change["message"]
    assert change["message"].endswith(f"next attempt after {record['retryAfter']}")

    assert apply(cert_repo).exit_code == 0  # a waiting certificate places no order
    assert len(proxy.new_order_payloads) == 1


def test_bad_nonces_are_retried(
    cert_repo: CertRepo, tmp_path: Path, pebble_tls: PebbleTLS, challtestsrv: Challtestsrv
) -> None:
    # Pebble rejects 30% of good nonces; RFC 8555 6.5 lets clients retry with the new one.
    with start_pebble(
        tmp_path / "nonces",
        tls=pebble_tls,
        dns_port=challtestsrv.dns_port,
        http_port=free_port(),
        env={"PEBBLE_WFE_NONCEREJECT": "30"},
    ) as pebble:
        cert_repo.write(
            "manifests/acme.yaml",
            issuer(pebble, standalone(pebble))
            + "".join(certificate(f"n{i}", [f"n{i}.example.test"]) for i in range(3)),
        )
        cert_repo.commit()
        result = apply(cert_repo)
        assert result.exit_code == 0, result.output
        assert cert_repo.log()[0] == "gitcert: issue 3"


def test_skip_tls_verify_talks_to_an_untrusted_server(
    cert_repo: CertRepo, pebble_http01: Pebble
) -> None:
    manifest = issuer(pebble_http01, standalone(pebble_http01), skipTLSVerify=True)
    without_bundle = [line for line in manifest.splitlines() if "caBundle" not in line]
    cert_repo.write(
        "manifests/acme.yaml",
        "\n".join(without_bundle) + "\n" + certificate("plain", ["plain.example.test"]),
    )
    cert_repo.commit()
    result = apply(cert_repo)
    assert result.exit_code == 0, result.output


def test_preferred_chain_picks_the_alternate_root(
    cert_repo: CertRepo, tmp_path: Path, pebble_tls: PebbleTLS, challtestsrv: Challtestsrv
) -> None:
    with start_pebble(
        tmp_path / "alternates",
        tls=pebble_tls,
        dns_port=challtestsrv.dns_port,
        http_port=free_port(),
        env={"PEBBLE_ALTERNATE_ROOTS": "1"},
    ) as pebble:
        alternate = x509.load_pem_x509_certificate(pebble._get("/roots/1").text.encode())
        name = alternate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        cert_repo.write(
            "manifests/acme.yaml",
            issuer(pebble, standalone(pebble), preferredChain=name)
            + certificate("alt", ["alt.example.test"]),
        )
        cert_repo.commit()
        assert apply(cert_repo).exit_code == 0
        chain = x509.load_pem_x509_certificates(
            secret_values(cert_repo, "web", "alt-tls")["tls.crt"].encode()
        )
        assert chain[-1].issuer == alternate.subject
        chain[-1].verify_directly_issued_by(alternate)


def test_a_profile_the_server_does_not_offer_is_a_clear_error(
    cert_repo: CertRepo, pebble_http01: Pebble, proxy: ProxyState
) -> None:
    proxy.profiles = {"classic": "the usual", "tlsserver": "for servers"}
    manifest = issuer(
        pebble_http01, standalone(pebble_http01), server=f"{proxy.url}/dir", profile="shortlived"
    )
    cert_repo.write("manifests/acme.yaml", manifest + certificate("p", ["p.example.test"]))
    cert_repo.commit()
    result = apply(cert_repo)
    assert result.exit_code == 1
    assert (
        "the ACME server offers no profile 'shortlived'; it offers: classic, tlsserver"
        in result.output
    )


def test_the_profile_is_sent_with_the_order(
    cert_repo: CertRepo, pebble_http01: Pebble, proxy: ProxyState
) -> None:
    proxy.profiles = {"tlsserver": "for servers"}
    proxy.rate_limit_seconds = 60  # the proxy then answers newOrder itself and records it
    manifest = issuer(
        pebble_http01, standalone(pebble_http01), server=f"{proxy.url}/dir", profile="tlsserver"
    )
    cert_repo.write("manifests/acme.yaml", manifest + certificate("p", ["p.example.test"]))
    cert_repo.commit()
    apply(cert_repo)
    assert proxy.new_order_payloads == [
        {
            "identifiers": [{"type": "dns", "value": "p.example.test"}],
            "profile": "tlsserver",
        }
    ]


DNS_HOOK = """\
#!/usr/bin/env python3
# DNS-01 exec hook: publish the TXT record through challtestsrv's management API.
import json, sys, urllib.request
action, name, value = sys.argv[1:4]
route = "set-txt" if action == "present" else "clear-txt"
body = {"host": name + "."} | ({"value": value} if action == "present" else {})
request = urllib.request.Request("%s/" + route, data=json.dumps(body).encode(), method="POST")
urllib.request.urlopen(request, timeout=5).read()
with open("%s", "a") as log:
    log.write(f"{action} {name}\\n")
"""


def test_dns01_exec_hook_with_a_wildcard(
    cert_repo: CertRepo, pebble_http01: Pebble, challtestsrv: Challtestsrv, tmp_path: Path
) -> None:
    hook, calls = tmp_path / "dns-hook", tmp_path / "calls.log"
    hook.write_text(DNS_HOOK % (challtestsrv.management_url, calls))
    hook.chmod(0o755)
    solvers = [{"dns01": {"exec": {"command": [str(hook)]}}}]
    cert_repo.write(
        "manifests/acme.yaml",
        issuer(pebble_http01, solvers) + certificate("star", ["*.apps.example.test"]),
    )
    cert_repo.commit()
    result = apply(cert_repo)
    assert result.exit_code == 0, result.output
    assert calls.read_text().splitlines() == [
        "present _acme-challenge.apps.example.test",
        "cleanup _acme-challenge.apps.example.test",
    ]
    assert_chains_to_pebble(
        pebble_http01, secret_values(cert_repo, "web", "star-tls"), "x.apps.example.test"
    )


def test_an_invalid_journaled_order_is_never_reused(
    cert_repo: CertRepo, pebble_http01: Pebble, webroot: Path, tmp_path: Path
) -> None:
    from acme import client as acme_client
    from acme import errors as acme_errors
    from acme import messages
    from cryptography.hazmat.primitives import serialization
    from josepy import jwa, jwk

    from gitcert import sops

    order_url = kill_during_ordering(cert_repo, pebble_http01, webroot, tmp_path)

    # Fail the journaled order on purpose: nothing is served, then the challenge is answered.
    for token in (webroot / ".well-known" / "acme-challenge").iterdir():
        token.unlink()
    account = git(
        cert_repo.path, "show", "refs/gitcert/journal:account/cert-manager/pebble-account.yaml"
    )
    pem = subprocess.run(
        [sops.binary(), "decrypt", "--extract", '["stringData"]["tls.key"]', "--input-type",
         "yaml", "--output-type", "yaml", "--filename-override", "x.yaml"],
        input=account.encode(), capture_output=True, check=True,
    ).stdout  # fmt: skip
    key = jwk.JWKEC(key=serialization.load_pem_private_key(pem, None))
    net = acme_client.ClientNetwork(key, alg=jwa.ES256, verify_ssl=str(pebble_http01.ca_pem))
    client = acme_client.ClientV2(
        acme_client.ClientV2.get_directory(pebble_http01.directory_url, net), net
    )
    # The account exists: registering its key again answers with the account's URL.
    with pytest.raises(acme_errors.ConflictError) as existing:
        client.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    net.account = messages.RegistrationResource(
        uri=existing.value.location, body=messages.Registration()
    )
    order = messages.Order.from_json(client._post_as_get(order_url).json())
    authz = client._authzr_from_response(
        client._post_as_get(order.authorizations[0]), uri=order.authorizations[0]
    )
    challb = next(c for c in authz.body.challenges if c.chall.typ == "http-01")
    client.answer_challenge(challb, challb.response(key))
    deadline = time.monotonic() + 30
    while (
        messages.Order.from_json(client._post_as_get(order_url).json()).status
        != messages.STATUS_INVALID
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)

    result = apply(cert_repo)
    assert result.exit_code == 0, result.output
    reordered = status(cert_repo, "web", "api")["issuerDetails"]["acmeOrderURL"]
    assert reordered != order_url
