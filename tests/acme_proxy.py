"""A thin test-only HTTPS front for Pebble, adding what Pebble 2.4 lacks.

Pebble 2.4 has no ARI (RFC 9773) and never rate-limits. This proxy serves the directory
with a ``renewalInfo`` URL of its own and answers renewal-info requests with a window the
test chooses; it can also answer ``newOrder`` with a ``rateLimited`` problem and a
Retry-After. Everything else in the directory still points at the real Pebble, so
accounts, orders, validation and issuance are Pebble's own.
"""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from tests.servers import Pebble, PebbleTLS


@dataclass
class ProxyState:
    pebble: Pebble
    url: str = ""
    window: tuple[datetime, datetime] | None = None
    rate_limit_seconds: int | None = None
    profiles: dict[str, str] | None = None
    renewal_info_requests: list[str] = field(default_factory=list)
    new_order_payloads: list[dict[str, Any]] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        content_type = "application/problem+json" if status >= 400 else "application/json"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/dir":
            directory = requests.get(
                state.pebble.directory_url, verify=str(state.pebble.ca_pem)
            ).json()
            if state.window is not None:
                directory["renewalInfo"] = f"{state.url}/renewalInfo"
            if state.rate_limit_seconds is not None:
                directory["newOrder"] = f"{state.url}/newOrder"
            if state.profiles is not None:
                directory.setdefault("meta", {})["profiles"] = state.profiles
            self._json(200, directory)
        elif self.path.startswith("/renewalInfo/") and state.window is not None:
            state.renewal_info_requests.append(self.path.removeprefix("/renewalInfo/"))
            start, end = state.window
            window = {
                "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            self._json(200, {"suggestedWindow": window}, {"Retry-After": "21600"})
        else:
            self._json(
                404, {"type": "urn:ietf:params:acme:error:malformed", "detail": "no such resource"}
            )

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        jws = json.loads(self.rfile.read(length) or b"{}")
        payload = jws.get("payload", "")
        padded = payload + "=" * (-len(payload) % 4)
        state.new_order_payloads.append(json.loads(base64.urlsafe_b64decode(padded) or b"{}"))
        self._json(
            429,
            {
                "type": "urn:ietf:params:acme:error:rateLimited",
                "detail": "too many new orders recently",
            },
            {"Retry-After": str(state.rate_limit_seconds)},
        )


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ProxyState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@contextmanager
def acme_proxy(pebble: Pebble, tls: PebbleTLS) -> Iterator[ProxyState]:
    """Serve the proxy over HTTPS with Pebble's own test certificate, on a free port."""
    state = ProxyState(pebble)
    server = _Server(state)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls.cert_pem), str(tls.key_pem))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
