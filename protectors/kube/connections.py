"""Kept-alive HTTP/1.1 connections to one API server, on the standard library alone.

Every non-watch request of the product (``transport.send`` for ``KubeClient``, and the webhook's
``BoundedClient``) goes through a ``ConnectionPool`` of this module instead of urllib3. A status
PUT of a 10 KB PodProtector cost about 0.48 ms of client CPU through urllib3 and costs 0.24 ms
here (sandbox apiserver over TLS on loopback); the aggregator spends over half its reconcile in
that request and the webhook's status write sits on the path of every protected deletion. What
is left is what the exchange needs: the request line, headers and body built as one buffer and
written with one ``sendall`` (``http.client`` writes headers and body separately, which wakes
the server twice: about 0.03 ms longer per PUT), and ``http.client.HTTPResponse`` to read the
answer (Content-Length, chunked, ``Connection``).

TLS follows the kubernetes ``Configuration`` as its urllib3 pool does: the CA file (certifi's
bundle without one), the client certificate, ``verify_ssl``, ``assert_hostname`` and
``tls_server_name``. A proxy is not spoken here: ``pool_for`` answers None for a client whose
requests go through one, and callers keep urllib3 for it.

Timeouts: a number is the whole exchange's deadline (TCP connect, TLS handshake, writing and
every read of the answer each get what is left of it), so even a peer that trickles bytes cannot
hold a request past it; a ``(connect, read)`` pair bounds the connect (and handshake and write)
and each read, as urllib3 does. Failures come out as ``OSError`` (``TimeoutError`` for a
timeout, ``ssl.SSLError`` for TLS) or ``http.client.HTTPException`` for a malformed answer.
Two steps are not cut short, as with urllib3: resolving the server's name (``getaddrinfo`` takes
no timeout; a kubeconfig naming its server by IP address never waits on it), and a body larger
than the socket's buffers written to a peer that reads it slowly (each ``send`` gets what is
left, but may be followed by another; a status write fits the buffers).

Nothing is retried but one case: a request on a connection taken from the idle list that fails
before a single byte of the answer arrived (the server closed the idle connection: EOF, reset,
broken pipe) is sent once more on a new connection. The server never answered, so a PUT or
POST there is no repeat of a write it acknowledged.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import re
import socket
import ssl
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import certifi
import urllib3
from kubernetes import client as k8s_client
from urllib3.util.ssl_match_hostname import CertificateError, match_hostname

__all__ = ["Answer", "ConnectionPool", "Timeout", "pool_for"]

# A total deadline in seconds, or (connect, read), or None for no bound at all.
Timeout = float | tuple[float, float] | None

# As http.client: these methods send a Content-Length even without a body, so a server never
# waits for a body that is not coming.
_EXPECTS_BODY = frozenset({"POST", "PUT", "PATCH"})
# http.client refuses these in a request target and header fields; a stray CR or LF in a
# configured header (an impersonated user, say) must not become a second header or request.
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_BAD_VALUE = re.compile(r"[\x00\r\n]")
_BAD_NAME = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
# The answer of a status PUT is the whole object: room for most of one in a single recv.
_READ_BUFFER = 32768
# What a server that closed an idle connection looks like to the next request on it.
_PEER_CLOSED: tuple[type[BaseException], ...] = (
    BrokenPipeError,
    ConnectionResetError,  # http.client.RemoteDisconnected (an empty status line) is one
    ConnectionAbortedError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


class Answer(NamedTuple):
    status: int
    reason: str
    data: bytes


class _Stale(Exception):
    """The reused connection was closed by the server before it answered."""


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


class _Reader(io.RawIOBase):
    """The answer's bytes off the socket, counting them (a failure before the first one may be
    retried) and, under a deadline, giving each recv only what is left of it."""

    def __init__(self, sock: socket.socket, deadline: float | None) -> None:
        self._sock = sock
        self._deadline = deadline
        self.received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._deadline is not None:
            self._sock.settimeout(_left(self._deadline))
        count = self._sock.recv_into(buffer)
        self.received += count
        return count

    def makefile(self, mode: str) -> io.BufferedReader:
        # HTTPResponse asks its "socket" for a file; this reader is that socket.
        return io.BufferedReader(self, _READ_BUFFER)


class _Connection:
    __slots__ = ("idle_since", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.idle_since = 0.0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _file_stamp(path: str | None) -> tuple[int, int, int] | None:
    if not path:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None  # loading it will say what is wrong
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class ConnectionPool:
    """Kept-alive connections to the API server of one ``Configuration``; safe to share between
    threads (a connection serves one request at a time, any thread may take it next)."""

    def __init__(self, configuration: k8s_client.Configuration, *, size: int) -> None:
        url = urlsplit(configuration.host)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) server URL: {configuration.host!r}")
        self._configuration = configuration
        self._tls = url.scheme == "https"
        self._host = url.hostname
        default_port = 443 if self._tls else 80
        self._port = url.port or default_port
        host = self._host if ":" not in self._host else f"[{self._host}]"
        if self._port != default_port:
            host += f":{self._port}"
        self._host_header = f"Host: {host}\r\nAccept-Encoding: identity\r\n"
        # A server URL with a path (a proxy in front of the API server) prefixes every request.
        self._base_path = url.path.rstrip("/")
        self._size = size
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._context: tuple[Any, ssl.SSLContext, str | None] | None = None
        _ALL_POOLS.add(self)

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: Timeout = None,
    ) -> Answer:
        """One exchange: ``target`` is the path and query under the server URL. Raises OSError
        (TimeoutError when the time ran out) or http.client.HTTPException; never retries but
        on an idle connection the server had closed."""
        deadline: float | None = None
        phases: tuple[float | None, float | None] = (None, None)
        if isinstance(timeout, tuple):
            phases = timeout
        elif timeout is not None:
            deadline = time.monotonic() + timeout
            _left(deadline)
        message = self._message(method, target, headers, body)
        connection = self._take()
        if connection is not None:
            try:
                return self._exchange(connection, method, message, deadline, phases, True)
            except _Stale:
                # The server closes idle connections after a while: those idle longer are gone too.
                self._drop_idle(connection.idle_since)
        connection = self._connect(deadline, phases[0])
        return self._exchange(connection, method, message, deadline, phases, False)

    def clear(self) -> None:
        """Close the idle connections (those in use are closed or kept when they finish)."""
        self._drop_idle(float("inf"))

    def _message(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> bytes:
        target = self._base_path + target
        if _BAD_TARGET.search(target) or _BAD_TARGET.search(method):
            raise http.client.InvalidURL(f"can't send {method} {target!r}")
        head = [f"{method} {target} HTTP/1.1\r\n", self._host_header]
        if body is not None:
            head.append(f"Content-Length: {len(body)}\r\n")
        elif method in _EXPECTS_BODY:
            head.append("Content-Length: 0\r\n")
        for name, value in headers.items():
            value = str(value)
            if _BAD_NAME.search(name) or _BAD_VALUE.search(value):
                raise ValueError(f"invalid header {name!r}: {value!r}")
            head.append(f"{name}: {value}\r\n")
        head.append("\r\n")
        encoded = "".join(head).encode("latin-1")
        return encoded + body if body else encoded

    def _exchange(
        self,
        connection: _Connection,
        method: str,
        message: bytes,
        deadline: float | None,
        phases: tuple[float | None, float | None],
        reused: bool,
    ) -> Answer:
        sock = connection.sock
        reader = _Reader(sock, deadline)
        try:
            # Without a deadline, urllib3's phases: the write under the connect timeout, each
            # read of the answer under the read timeout.
            sock.settimeout(_left(deadline) if deadline is not None else phases[0])
            sock.sendall(message)
            if deadline is None:
                sock.settimeout(phases[1])
            response = http.client.HTTPResponse(reader, method=method)  # type: ignore[arg-type]
            response.begin()
            data = response.read()
        except BaseException as error:
            connection.close()
            if reused and reader.received == 0 and isinstance(error, _PEER_CLOSED):
                raise _Stale from error
            raise
        if response.will_close:
            connection.close()
        else:
            self._give_back(connection)
        return Answer(response.status, response.reason, data)

    def _take(self) -> _Connection | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def _give_back(self, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        with self._lock:
            if len(self._idle) < self._size:
                self._idle.append(connection)
                return
        connection.close()

    def _drop_idle(self, idle_since: float) -> None:
        with self._lock:
            gone = [c for c in self._idle if c.idle_since <= idle_since]
            self._idle = [c for c in self._idle if c.idle_since > idle_since]
        for connection in gone:
            connection.close()

    def _after_fork(self) -> None:
        # The child shares the parent's sockets (and their TLS state): never write on them.
        self._lock = threading.Lock()
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _connect(self, deadline: float | None, connect_timeout: float | None) -> _Connection:
        sock = _open_socket(self._host, self._port, deadline, connect_timeout)
        if not self._tls:
            return _Connection(sock)
        try:
            context, asserted = self._tls_context()
            if deadline is not None:
                sock.settimeout(_left(deadline))
            sock = context.wrap_socket(sock, server_hostname=self._server_hostname())
            if asserted is not None:
                try:
                    match_hostname(sock.getpeercert(), asserted)  # type: ignore[arg-type]
                except CertificateError as error:
                    raise ssl.SSLCertVerificationError(str(error)) from None
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)

    def _server_hostname(self) -> str:
        name = getattr(self._configuration, "tls_server_name", None) or self._host
        # An IPv6 zone (fe80::1%eth0) is for routing: ssl would take the whole as a DNS name.
        return name.split("%", 1)[0] if ":" in name else name

    def _tls_context(self) -> tuple[ssl.SSLContext, str | None]:
        """The context for a new connection, and the name to match the certificate against
        when it is not the one the context checks. Built again when the configuration or a
        file it names changed, as urllib3 (which builds one per connection) would see it."""
        c = self._configuration
        ca_file = c.ssl_ca_cert or certifi.where()
        key = (
            bool(c.verify_ssl),
            ca_file,
            c.cert_file,
            c.key_file,
            c.assert_hostname,
            _file_stamp(ca_file),
            _file_stamp(c.cert_file),
            _file_stamp(c.key_file),
        )
        cached = self._context
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        # The settings urllib3 gives its own contexts, so a server accepted there is here.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
        if sys.version_info >= (3, 13):  # as ssl.create_default_context() there
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
        context.post_handshake_auth = True
        context.hostname_checks_common_name = False
        context.set_alpn_protocols(["http/1.1"])
        keylog = os.path.expandvars(os.environ.get("SSLKEYLOGFILE", ""))
        if keylog:
            context.keylog_filename = keylog
        context.load_verify_locations(cafile=ca_file)
        if c.cert_file:
            context.load_cert_chain(c.cert_file, c.key_file)
        asserted: str | None = None
        if not c.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif c.assert_hostname is False:
            context.check_hostname = False
        elif isinstance(c.assert_hostname, str) and c.assert_hostname:
            # ssl checks the name it sends as SNI; urllib3 matches this one instead.
            context.check_hostname = False
            asserted = str(c.assert_hostname).strip("[]")
        self._context = (key, context, asserted)
        return context, asserted


def _open_socket(
    host: str, port: int, deadline: float | None, connect_timeout: float | None
) -> socket.socket:
    """socket.create_connection, but every address tried gets what is left of the deadline,
    not the whole of it again."""
    error: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(_left(deadline) if deadline is not None else connect_timeout)
            sock.connect(address)
            return sock
        except OSError as failure:
            sock.close()
            error = failure
            if deadline is not None and deadline <= time.monotonic():
                break
    raise error or OSError(f"no address for {host}")


_ALL_POOLS: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pool in list(_ALL_POOLS):
        pool._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


# ApiClient -> its pool, or None when its requests go through a proxy.
_POOLS: weakref.WeakKeyDictionary[k8s_client.ApiClient, ConnectionPool | None] = (
    weakref.WeakKeyDictionary()
)
_POOLS_LOCK = threading.Lock()


def uses_proxy(api_client: k8s_client.ApiClient) -> bool:
    """Whether the client's requests go through a proxy (its urllib3 manager decided: the
    configuration names one and ``no_proxy`` does not exempt the server)."""
    return type(api_client.rest_client.pool_manager) is not urllib3.PoolManager


def pool_for(api_client: k8s_client.ApiClient) -> ConnectionPool | None:
    """The pool shared by every request of ``api_client`` (None: use its urllib3 manager,
    which speaks to the proxy). Sized as the client's own urllib3 pool."""
    try:
        return _POOLS[api_client]
    except KeyError:
        pass
    with _POOLS_LOCK:
        if api_client in _POOLS:
            return _POOLS[api_client]
        pool = None
        if not uses_proxy(api_client):
            configuration = api_client.configuration
            pool = ConnectionPool(configuration, size=configuration.connection_pool_maxsize or 4)
        _POOLS[api_client] = pool
        return pool
