"""A controllable HTTPS admission webhook for integration tests.

`CaptureWebhook` serves HTTPS on a loopback port from a background thread, with its own
self-signed CA, records every AdmissionReview it receives (path with query, body, time) and
answers as the test says: allow, deny with a code/message/reason, answer late, answer with
an HTTP error or garbage, or be down (`stop()` frees the port, so calls are refused).

    with CaptureWebhook(tmp_path) as hook:
        hook.answer_with(deny("no", code=429))
        ... register hook.url("/cell-a") with hook.ca_bundle, delete a pod ...
        assert hook.reviews()[0].review["request"]["operation"] == "DELETE"
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sandbox.pki import issue_server_cert, make_ca

__all__ = [
    "ALLOW",
    "Answer",
    "CaptureWebhook",
    "Received",
    "deny",
    "make_ca",
]


@dataclass(frozen=True)
class Answer:
    """How to answer one review. `raw` replaces the AdmissionReview with a verbatim body."""

    allowed: bool = True
    code: int | None = None
    message: str = ""
    reason: str = ""
    delay: float = 0.0
    http_status: int = 200
    raw: bytes | None = None
    content_type: str = "application/json"
    uid: str | None = None  # answer with this uid instead of the request's


ALLOW = Answer()


def deny(message: str = "", code: int | None = None, reason: str = "") -> Answer:
    return Answer(allowed=False, code=code, message=message, reason=reason)


@dataclass(frozen=True)
class Received:
    path: str  # path and query, e.g. "/cell-a?timeout=2s"
    review: dict[str, Any]
    at: float  # time.monotonic() on arrival
    host: str  # the Host header
    peer: tuple[str, int] | None = None  # the caller's address: one per connection

    @property
    def request(self) -> dict[str, Any]:
        return self.review["request"]


# --- certificates -----------------------------------------------------------------------------


# The test webhook's certificates only need to outlive one test session.
_ONE_DAY = datetime.timedelta(days=1)


def pem_bundle(cert: x509.Certificate) -> str:
    """A certificate as a webhook clientConfig.caBundle (base64 of the PEM)."""
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()


# --- the server -------------------------------------------------------------------------------


@dataclass
class CaptureWebhook:
    """See the module docstring. `dns_names` are extra names the certificate is valid for
    (e.g. `NAME.NAMESPACE.svc` for a clientConfig.service)."""

    workdir: Path
    dns_names: Sequence[str] = ()
    port: int = 0
    _answer: Callable[[Received], Answer] = field(default=lambda received: ALLOW)
    _received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ca, ca_key = make_ca("capture-webhook-ca", validity=_ONE_DAY)
        cert, key = issue_server_cert(
            ca, ca_key, "capture-webhook", self.dns_names, validity=_ONE_DAY
        )
        self.ca_bundle = pem_bundle(ca)
        self.cert_file = self.workdir / "webhook.crt"
        self.key_file = self.workdir / "webhook.key"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    # -- control ---------------------------------------------------------------------------

    def answer_with(self, answer: Answer | Callable[[Received], Answer]) -> None:
        """Answer every following review with `answer`, or with `answer(received)`."""
        self._answer = answer if callable(answer) else (lambda received: answer)

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def reviews(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.reviews()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.reviews()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._runner is not None

    def start(self) -> CaptureWebhook:
        """Listen (again) on `port`; the first start picks a free one."""
        if self.running:
            return self
        loop = asyncio.new_event_loop()
        started: list[BaseException | None] = []
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
                started.append(None)
            except BaseException as exc:  # reported to start()'s caller
                started.append(exc)
            ready.set()
            if started[0] is None:
                loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="capture-webhook", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("capture webhook did not start")
        if started[0] is not None:
            self._thread.join()
            raise started[0]
        return self

    def stop(self) -> None:
        """Close the port: later calls are refused. Recorded reviews are kept."""
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(self._runner), self._loop).result(10)
        self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> CaptureWebhook:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _listen(self) -> None:
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=ctx)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        self._runner = runner

    @staticmethod
    async def _shutdown(runner: web.AppRunner) -> None:
        await runner.cleanup()
        # Handlers still answering late are abandoned, like a webhook that went down.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            review = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return web.Response(status=400, text="not JSON")
        peername = request.transport.get_extra_info("peername") if request.transport else None
        peer = (str(peername[0]), int(peername[1])) if peername else None
        received = Received(request.path_qs, review, time.monotonic(), request.host, peer)
        with self._lock:
            self._received.append(received)
        answer = self._answer(received)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if answer.raw is not None:
            return web.Response(
                status=answer.http_status, body=answer.raw, content_type=answer.content_type
            )
        response: dict[str, Any] = {
            "uid": answer.uid if answer.uid is not None else review["request"]["uid"],
            "allowed": answer.allowed,
        }
        if not answer.allowed:
            result: dict[str, Any] = {}
            if answer.code is not None:
                result["code"] = answer.code
            if answer.message:
                result["message"] = answer.message
            if answer.reason:
                result["reason"] = answer.reason
            response["status"] = result
        body = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": response,
        }
        return web.Response(
            status=answer.http_status, body=orjson.dumps(body), content_type="application/json"
        )
