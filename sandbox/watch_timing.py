"""When a watch ends and when it gets BOOKMARKs, by default as kube-apiserver v1.24 does.

kube-apiserver ends a watch that asked for ``timeoutSeconds`` after exactly that long; one that
did not (or asked for 0) after a random time in [min-request-timeout, 2 * min-request-timeout)
(``--min-request-timeout``, 1800 s by default), so clients must resume on their own. Its watch
cache sends a watch that allows bookmarks one about every minute, and one 2 s before the watch's
deadline so the client can resume from a fresh resourceVersion. Tests that cannot wait a minute
for a bookmark ask for a shorter interval explicitly; 0 turns bookmarks off (quiet watches).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# kube-apiserver's defaults (--min-request-timeout; the watch cache's bookmark frequency).
MIN_REQUEST_TIMEOUT = 1800.0
BOOKMARK_INTERVAL = 60.0
# The watch cache's last bookmark comes this long before the watch's deadline.
BOOKMARK_BEFORE_DEADLINE = 2.0


@dataclass(frozen=True)
class WatchTiming:
    bookmark_interval: float = BOOKMARK_INTERVAL
    min_request_timeout: float = MIN_REQUEST_TIMEOUT

    def deadline(self, now: float, timeout_seconds: int | None) -> float | None:
        """When a watch opened at ``now`` ends (None: never, if min-request-timeout is 0)."""
        if timeout_seconds:
            return now + timeout_seconds
        if self.min_request_timeout <= 0:
            return None
        return now + self.min_request_timeout * (1 + random.random())

    def next_bookmark(self, now: float, deadline: float | None) -> float | None:
        """When the next BOOKMARK is due (None: no more bookmarks on this watch)."""
        if self.bookmark_interval <= 0:
            return None
        due = now + self.bookmark_interval
        if deadline is not None:
            before_end = deadline - BOOKMARK_BEFORE_DEADLINE
            if before_end < due:
                return before_end if before_end > now else None
        return due
