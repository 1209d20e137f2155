"""A real HTTP webhook receiver on 127.0.0.1 for the tests: it records what arrives and answers
as told (2xx, 500, a redirect, slowly, with a huge body), and can go down and come back on the
same port."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HUGE_BODY_BYTES = 20 * 1024 * 1024


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """``behaviour``: "ok", "500", "302", "slow" (sleeps past the timeout), "huge"."""

    port: int = 0
    behaviour: str = "ok"
    slow_seconds: float = 5.0
    tls: tuple[str, str] | None = None  # (certificate file, key file): serve https
    received: list[Received] = field(default_factory=list)
    huge_bytes_sent: int = 0
    huge_done: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def https_url(self, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                receiver.answer(self)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        behaviour = self.behaviour
        try:
            if behaviour == "slow":
                time.sleep(self.slow_seconds)
            if behaviour == "500":
                self._reply(handler, 500, b"internal error")
            elif behaviour == "302":
                handler.send_response(302)
                handler.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
            elif behaviour == "huge":
                self._huge(handler)
            else:
                self._reply(handler, 200, b"thanks")
        except OSError:
            pass  # the client hung up (a timeout, or it read enough of a huge body)

    def _reply(self, handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _huge(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(HUGE_BODY_BYTES))
        handler.end_headers()
        chunk = b"x" * 65536
        try:
            for _ in range(HUGE_BODY_BYTES // len(chunk)):
                handler.wfile.write(chunk)
                self.huge_bytes_sent += len(chunk)
        finally:
            self.huge_done.set()

    def stop(self) -> None:
        """Go down (the port stays ours to come back on: nothing listens meanwhile)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ids(self) -> list[str]:
        with self._lock:
            return [r.headers["webhook-id"] for r in self.received]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def self_signed(directory: Path, name: str) -> tuple[str, str]:
    """A certificate for ``name`` (also its CA: add it to WEBHOOK_CA_BUNDLE) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)
