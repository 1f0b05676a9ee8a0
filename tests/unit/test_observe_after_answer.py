"""The webhook records a review's observations after its answer is written (webhook/wsgi.py)."""

from __future__ import annotations

import threading

import pytest

from webhook import observer
from webhook.observer import after_answer


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    @after_answer
    def phase(self, name: str, seconds: float) -> None:
        self.calls.append((name, seconds))

    @after_answer
    def broken(self) -> None:
        raise RuntimeError("metric file gone")


def test_calls_are_made_at_once_outside_a_deferring_thread() -> None:
    recorder = Recorder()
    recorder.phase("parse", 0.1)
    assert recorder.calls == [("parse", 0.1)]


def test_calls_wait_for_flush_and_other_threads_are_not_held() -> None:
    recorder = Recorder()
    queued = observer.deferring()
    try:
        recorder.phase("parse", 0.1)
        other = threading.Thread(target=recorder.phase, args=("index", 0.2))
        other.start()
        other.join(5)
        assert recorder.calls == [("index", 0.2)]  # not deferring there
    finally:
        observer.flush(queued)
    assert recorder.calls == [("index", 0.2), ("parse", 0.1)]
    recorder.phase("response", 0.3)  # no longer deferring
    assert recorder.calls[-1] == ("response", 0.3)


def test_keyword_arguments_are_queued_too() -> None:
    recorder = Recorder()
    queued = observer.deferring()
    recorder.phase(name="index", seconds=0.2)
    assert recorder.calls == []
    observer.flush(queued)
    assert recorder.calls == [("index", 0.2)]


def test_a_failing_observation_does_not_lose_the_others(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    queued = observer.deferring()
    recorder.broken()
    recorder.phase("quota", 0.4)
    observer.flush(queued)
    assert recorder.calls == [("quota", 0.4)]
    assert "metric file gone" in caplog.text


def test_a_request_never_closed_is_flushed_by_the_next_one() -> None:
    recorder = Recorder()
    observer.deferring()
    recorder.phase("parse", 0.1)
    queued = observer.deferring()  # the next request on this thread
    assert recorder.calls == [("parse", 0.1)]
    observer.flush(queued)


def test_the_wsgi_entry_point_observes_after_close(monkeypatch: pytest.MonkeyPatch) -> None:
    from webhook import wsgi

    recorder = Recorder()
    closed: list[bool] = []

    class Response:
        def __iter__(self):
            return iter([b"answer"])

        def close(self) -> None:
            closed.append(True)

    def django(environ, start_response):
        recorder.phase("parse", 0.1)
        return Response()

    observed: list[float] = []
    monkeypatch.setattr(wsgi, "django_application", django)
    monkeypatch.setattr(wsgi, "_SERVER", type("S", (), {"observe": staticmethod(observed.append)}))
    body = wsgi.application({"REQUEST_METHOD": "POST"}, lambda *a: None)
    assert list(body) == [b"answer"]
    assert recorder.calls == [] and observed == []  # the answer is out before any of it
    body.close()
    assert closed == [True] and recorder.calls == [("parse", 0.1)] and len(observed) == 1
