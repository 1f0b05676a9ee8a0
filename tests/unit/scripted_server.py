"""A scripted HTTPS (or plain HTTP) server on loopback for the request pool's tests: every
request it reads is recorded, and the test decides the answer and what the server does with the
connection after it (keep it, close it as an idle server would, reset it, hang).

Certificates come from sandbox/pki.py: one CA signs the server's certificate (valid for the
loopback names) and a client certificate, which the server asks for and records when
``require_client_cert`` is set. Every wait is bounded, so a test that goes wrong fails instead
of hanging.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from kubernetes import client as k8s

from sandbox.pki import issue_client_cert, issue_server_cert, make_ca, save

# No server-side wait may outlast this; a test still failing then fails rather than hangs.
WAIT = 10.0


@dataclass
class Seen:
    connection: int
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    sni: str | None
    client_cn: str | None


@dataclass
class Reply:
    """What the server sends (raw bytes) and then does with the connection: ``keep`` it,
    ``close`` it (FIN, no TLS close_notify), ``close_notify`` it, ``reset`` it (an RST in
    answer to the next request's bytes, which are never read), ``abort`` it (an RST soon after
    the data), ``hang`` (send nothing, hold it open until the server stops) or ``hold`` it open
    after the data. ``trickle``
    sends the data a byte at a time, that many seconds apart."""

    data: bytes = b""
    after: str = "keep"
    trickle: float = 0.0


def answer(
    status: int = 200,
    body: bytes = b"{}",
    *,
    reason: str = "OK",
    headers: dict[str, str] | None = None,
) -> bytes:
    head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if not any(k.lower() == "transfer-encoding" for k in headers or {}):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked(status: int, pieces: list[bytes]) -> bytes:
    head = answer(status, b"", headers={"Transfer-Encoding": "chunked"})
    return head + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@dataclass
class ScriptedServer:
    tmp_path: Path
    require_client_cert: bool = False
    tls: bool = True
    reply: Callable[[Seen], Reply] = field(default=lambda seen: Reply(answer()))

    def __post_init__(self) -> None:
        ca, ca_key = make_ca("connections-test-ca")
        self.ca_file = self.tmp_path / "ca.crt"
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.server_cert = self.tmp_path / "server.crt"
        self.server_key = self.tmp_path / "server.key"
        save(*issue_server_cert(ca, ca_key, "apiserver"), self.server_cert, self.server_key)
        self.client_cert = self.tmp_path / "client.crt"
        self.client_key = self.tmp_path / "client.key"
        save(*issue_client_cert(ca, ca_key, "podseidon-test"), self.client_cert, self.client_key)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(self.server_cert, self.server_key)
        if self.require_client_cert:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(self.ca_file)
        self._sni: dict[int, str | None] = {}
        self.context.sni_callback = self._record_sni
        self.seen: list[Seen] = []
        self.connections = 0
        self.handshake_failures = 0
        self.closed = threading.Semaphore(0)  # released once per connection the server ended
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._spawn(self._accept)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def configuration(self, *, client_cert: bool = False) -> k8s.Configuration:
        configuration = k8s.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.api_key = {"authorization": "secret-token"}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        if client_cert:
            configuration.cert_file = str(self.client_cert)
            configuration.key_file = str(self.client_key)
        return configuration

    def wait_closed(self, count: int = 1) -> None:
        for _ in range(count):
            assert self.closed.acquire(timeout=WAIT), "the server did not end a connection"

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(WAIT)
        self.listener.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _record_sni(self, sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        self._sni[id(sock)] = name

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._open.append(raw)
            self._spawn(self._serve, raw, number)

    def _serve(self, raw: socket.socket, number: int) -> None:
        raw.settimeout(WAIT)
        try:
            sock = self.context.wrap_socket(raw, server_side=True) if self.tls else raw
        except OSError:
            with self._lock:
                self.handshake_failures += 1
            raw.close()
            self.closed.release()
            return
        with self._lock:
            self._open.append(sock)
        sni = self._sni.pop(id(sock), None)
        peer = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
        client_cn = None
        if peer:
            client_cn = dict(item[0] for item in peer["subject"]).get("commonName")
        buffer = b""
        try:
            while not self._stop.is_set():
                request, buffer = _read_request(sock, buffer)
                if request is None:
                    return
                method, target, headers, body = request
                seen = Seen(number, method, target, headers, body, sni, client_cn)
                with self._lock:
                    self.seen.append(seen)
                reply = self.reply(seen)
                if reply.after == "hang":
                    self._stop.wait(WAIT)
                    return
                if reply.trickle:
                    for index in range(len(reply.data)):
                        sock.sendall(reply.data[index : index + 1])
                        if self._stop.wait(reply.trickle):
                            return
                else:
                    sock.sendall(reply.data)
                if reply.after == "hold":
                    self._stop.wait(WAIT)
                    return
                if reply.after == "abort":
                    # Give the client time to read the data: an RST overtakes unread bytes.
                    self._stop.wait(0.2)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if reply.after == "reset":
                    # Closing with unread bytes and no linger time sends an RST.
                    select.select([sock], [], [], WAIT)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if reply.after == "close_notify":
                    sock.settimeout(0.2)
                    with contextlib.suppress(OSError):
                        sock.unwrap()
                    return
                if reply.after == "close":
                    return
        except OSError:
            return
        finally:
            sock.close()
            self.closed.release()


def _read_request(
    sock: socket.socket, buffer: bytes
) -> tuple[tuple[str, str, dict[str, str], bytes] | None, bytes]:
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            return None, b""
        buffer += data
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(buffer) < length:
        data = sock.recv(65536)
        if not data:
            return None, b""
        buffer += data
    return (method, target, headers, buffer[:length]), buffer[length:]
