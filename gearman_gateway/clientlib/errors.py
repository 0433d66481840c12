"""Exceptions of the client library, and the marker a worker callback returns to fail its job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from gearman_gateway.clientlib.client_session import Task


class GearmanError(Exception):
    """Base of every error the client library raises."""


class GearmanConnectionError(GearmanError, ConnectionError):
    """No server could be reached for a request (each one was tried)."""


class GearmanTimeout(GearmanError, TimeoutError):
    """The caller's time limit passed before the job (or jobs) finished."""


class ServerError(GearmanError):
    """The server answered a request with an ERROR packet (e.g. a full queue, a too long unique)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


class JobFailed(GearmanError):
    """The worker failed the job (WORK_FAIL), or the server dropped it."""

    def __init__(self, task: Task, message: str = "job failed") -> None:
        super().__init__(f"{task.function}: {message} (handle {task.handle})")
        self.task = task


class JobException(JobFailed):
    """The worker raised and reported an exception (WORK_EXCEPTION; needs the ``exceptions`` option)."""

    def __init__(self, task: Task) -> None:
        data = task.exception or b""
        super().__init__(task, "exception: " + data.decode("utf-8", "replace"))
        self.data = data


class WorkFail(Exception):
    """Raise in a worker callback to fail the job with WORK_FAIL (any other exception is WORK_EXCEPTION)."""


class _WorkFailMarker:
    """The type of ``WORK_FAIL``: a callback returns it to fail its job, as GEARMAN_WORK_FAIL in C."""

    _instance: _WorkFailMarker | None = None

    def __new__(cls) -> _WorkFailMarker:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "WORK_FAIL"


WORK_FAIL: Final = _WorkFailMarker()
