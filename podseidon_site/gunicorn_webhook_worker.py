"""gunicorn's threaded worker, keeping a kept-alive connection on its thread for a moment.

With the stock worker every request of a kept-alive connection makes a round trip: the
connection goes back to the main thread's poller after its answer (two system calls to switch
it to non-blocking and register it), the main thread wakes when the next request arrives,
takes it out of the poller again (two more) and hands it to a pool thread through the
executor's queue. kube-apiserver sends one DELETE's two or three reviews one after another on
the connection it just used, and a burst keeps every connection busy, so the next request is
usually there within a millisecond or two. Here the thread that answered waits up to
``LINGER_MILLIS`` for it and serves it at once; only a connection that stays quiet goes back
to the poller. The wait holds a thread, so it is only taken while fewer than half of the
worker's threads are in use.
"""

from __future__ import annotations

import select
import threading
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

# How long a thread waits on its connection for the next request after an answer.
LINGER_MILLIS = 20


class WebhookWorker(ThreadWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._busy = 0
        self._busy_lock = threading.Lock()

    def handle(self, conn: Any) -> tuple[bool, Any]:
        with self._busy_lock:
            self._busy += 1
        try:
            while True:
                keepalive, conn = super().handle(conn)
                if not (keepalive and self.alive and self._next_request_soon(conn)):
                    return keepalive, conn
        finally:
            with self._busy_lock:
                self._busy -= 1

    def _next_request_soon(self, conn: Any) -> bool:
        if self._busy * 2 > self.cfg.threads:
            return False
        sock = conn.sock
        pending = getattr(sock, "pending", None)
        if pending is not None and pending():
            return True  # already decrypted and buffered: poll() would not see it
        # poll(), not select(): a worker with many connections has descriptors past 1024.
        poller = select.poll()
        try:
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(LINGER_MILLIS))
        except (OSError, ValueError):  # closed meanwhile
            return False
