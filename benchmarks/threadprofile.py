"""Where the controllers' threads spend their CPU, by stage (decode, transform, index, ...).

``StageProfiler.install()`` gives every thread started afterwards a profile hook
(``threading.setprofile``) that keeps a stack of *stages*: a stage is entered when one of its
entry functions is called (or, for C functions such as ``orjson.loads``, when the builtin is
called) and left when that call returns. The thread's own CPU clock (``time.thread_time``) is
read at every stage change and the time charged to the innermost stage, so nested stages do not
overlap and their sum is the thread's CPU. Time outside every stage is charged to ``other``.

The hook runs on every Python call, which slows the threads down 2-4x and charges its own cost
to the stage it interrupts (most to stages that make many small calls): read the shares, and
take absolute figures from an unprofiled run.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

OTHER = "other"


class _ThreadStages:
    """The stage stack and the CPU charged per stage of one thread."""

    def __init__(self, profiler: StageProfiler, name: str) -> None:
        self.profiler = profiler
        self.name = name
        self.spent: dict[str, float] = {}
        self.stack: list[tuple[str, Any]] = []
        self.last = time.thread_time()

    def _switch(self) -> None:
        now = time.thread_time()
        stage = self.stack[-1][0] if self.stack else OTHER
        self.spent[stage] = self.spent.get(stage, 0.0) + now - self.last
        self.last = now

    def hook(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            stage = self.profiler.stage_of_code(frame.f_code)
            if stage is not None:
                self._switch()
                self.stack.append((stage, frame.f_code))
        elif event == "return":
            stack = self.stack
            if stack and stack[-1][1] is frame.f_code:
                self._switch()
                stack.pop()
        elif event == "c_call":
            stage = self.profiler.builtins.get(id(arg))
            if stage is not None:
                self._switch()
                self.stack.append((stage, arg))
        elif event in ("c_return", "c_exception"):
            stack = self.stack
            if stack and stack[-1][1] is arg:
                self._switch()
                stack.pop()


class StageProfiler:
    """Charges each profiled thread's CPU to stages.

    ``functions``: stage name -> (file name suffix, function name) pairs of its entry functions;
    ``builtins``: stage name -> C functions (e.g. ``orjson.loads``) that enter it.
    """

    def __init__(
        self,
        functions: dict[str, Iterable[tuple[str, str]]],
        builtins: dict[str, Iterable[Callable[..., Any]]] | None = None,
    ) -> None:
        self._wanted = {
            (suffix, name): stage for stage, pairs in functions.items() for suffix, name in pairs
        }
        self._codes: dict[Any, str | None] = {}
        self.builtins = {id(f): stage for stage, fs in (builtins or {}).items() for f in fs}
        self._keep = [f for fs in (builtins or {}).values() for f in fs]  # ids stay valid
        self._threads: list[_ThreadStages] = []
        self._lock = threading.Lock()

    def stage_of_code(self, code: Any) -> str | None:
        try:
            return self._codes[code]
        except KeyError:
            pass
        found = None
        for (suffix, name), stage in self._wanted.items():
            if code.co_name == name and code.co_filename.endswith(suffix):
                found = stage
                break
        self._codes[code] = found
        return found

    def _bootstrap(self, frame: Any, event: str, arg: Any) -> None:
        stages = _ThreadStages(self, threading.current_thread().name)
        with self._lock:
            self._threads.append(stages)
        sys.setprofile(stages.hook)
        stages.hook(frame, event, arg)

    def install(self) -> None:
        """Profile every thread started from now on (the calling thread is left alone)."""
        threading.setprofile(self._bootstrap)

    def uninstall(self) -> None:
        threading.setprofile(None)  # type: ignore[arg-type]

    def snapshot(self) -> dict[str, dict[str, float]]:
        """CPU-seconds per stage so far, by thread name (threads of one name summed). The
        segment a thread is in when this is called is not counted yet."""
        out: dict[str, dict[str, float]] = {}
        with self._lock:
            threads = list(self._threads)
        for stages in threads:
            into = out.setdefault(stages.name, {})
            for stage, seconds in list(stages.spent.items()):
                into[stage] = into.get(stage, 0.0) + seconds
        return out


def window(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """What each thread spent per stage between two snapshots."""
    out: dict[str, dict[str, float]] = {}
    for name, stages in after.items():
        old = before.get(name, {})
        out[name] = {s: v - old.get(s, 0.0) for s, v in stages.items() if v - old.get(s, 0.0)}
    return out


def grouped(
    snap: dict[str, dict[str, float]], group_of: Callable[[str], str]
) -> dict[str, dict[str, float]]:
    """Stages summed per thread group."""
    out: dict[str, dict[str, float]] = {}
    for name, stages in snap.items():
        into = out.setdefault(group_of(name), {})
        for stage, seconds in stages.items():
            into[stage] = into.get(stage, 0.0) + seconds
    return out
