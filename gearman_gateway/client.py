"""Gearman clients with the classic API of the C, PHP and Perl libraries: ``Client`` and ``AsyncClient``.

    client = Client()                       # localhost:4730; or Client("h1,h2:4731")
    print(client.do("reverse", "Hello World!"))

Both speak to any Gearman server and share one sans-IO session (``clientlib.client_session``): only
waiting differs, on a selector for ``Client`` and on the event loop for ``AsyncClient``. With several
servers a job goes to the server its unique key hashes to and fails over to the next one.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, NamedTuple, TypeVar

from gearman_gateway.clientlib.api import AsyncEndpoint, BlockingEndpoint, Endpoint
from gearman_gateway.clientlib.client_session import CALLBACKS, ClientSession, Priority, Task, TaskState
from gearman_gateway.clientlib.errors import (
    GearmanConnectionError,
    GearmanError,
    GearmanTimeout,
    JobException,
    JobFailed,
    ServerError,
)
from gearman_gateway.clientlib.fields import to_bytes
from gearman_gateway.clientlib.links import Backoff
from gearman_gateway.clientlib.tls import client_context
from gearman_gateway.clientlib.transport import CONNECT_TIMEOUT, Steps, T, Wait

__all__ = [
    "AsyncClient",
    "Client",
    "GearmanConnectionError",
    "GearmanError",
    "GearmanTimeout",
    "JobException",
    "JobFailed",
    "JobStatus",
    "Priority",
    "ServerError",
    "Task",
    "TaskState",
]

Data = str | bytes
Callback = Callable[[Task], object]


class JobStatus(NamedTuple):
    """What GET_STATUS tells about a job handle (as ``job_status`` returns it in PHP)."""

    known: bool
    running: bool
    numerator: int
    denominator: int


def _callback_setter(event: str, doc: str) -> Callable[[_ClientAPI[Any, Any, Any, Any], Callback], None]:
    def set_fn(self: _ClientAPI[Any, Any, Any, Any], fn: Callback) -> None:
        self._session.callbacks[event] = fn

    set_fn.__name__ = set_fn.__qualname__ = f"set_{event}_fn"
    set_fn.__doc__ = doc
    return set_fn


def _task_adder(priority: Priority, background: bool) -> Callable[..., Task]:
    def add_task(
        self: _ClientAPI[Any, Any, Any, Any],
        function: Data,
        workload: Data = b"",
        unique: Data | None = None,
        context: Any = None,
    ) -> Task:
        task = self._session.new_job(function, workload, unique, priority, background, context)
        self._session.added.append(task)
        return task

    kind = {Priority.HIGH: "_high", Priority.LOW: "_low"}.get(priority, "")
    add_task.__name__ = add_task.__qualname__ = f"add_task{kind}{'_background' if background else ''}"
    add_task.__doc__ = (
        f"Add a {'background' if background else 'foreground'} {priority.name} priority job for run_tasks(); "
        "``unique`` defaults to a UUID, ``context`` is yours (``task.context``)."
    )
    return add_task


# What the waiting methods give back: the value itself (Client) or an awaitable of it (AsyncClient).
R = TypeVar("R")  # do*(): the result
H = TypeVar("H")  # do_*background(): the handle
S = TypeVar("S")  # job_status(): a JobStatus
N = TypeVar("N")  # run_tasks(): None


class _ClientAPI(Endpoint, Generic[R, H, S, N]):
    """The classic client API; the waiting methods are steps run by the subclass's transport."""

    def __init__(
        self,
        servers: str | Iterable[str] | None = None,
        *,
        timeout: float | None = None,
        exceptions: bool = False,
        client_id: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        backoff: Backoff | None = None,
        ssl_ca: str | None = None,
        ssl_cert: str | None = None,
        ssl_key: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        token: str | None = None,
    ) -> None:
        """``timeout``: seconds any do*() or run_tasks() may take (None waits for ever). ``exceptions``:
        ask servers to pass on WORK_EXCEPTION data (else a worker's exception reaches us as a failure).
        ``ssl_ca``/``ssl_cert``/``ssl_key`` (gear's names): any given, servers are reached over TLS, verified
        against ``ssl_ca`` (else the system's CAs), presenting the client certificate ``ssl_cert``;
        or ``ssl_context``, made as one likes.
        ``token``: a gearman-gateway identity's token, presented first on every connection."""
        session = ClientSession(
            exceptions=exceptions, client_id=to_bytes(client_id) if client_id else None, backoff=backoff
        )
        session.token = to_bytes(token) if token else None
        self._session: ClientSession = session
        self.timeout = timeout
        super().__init__(session, servers, connect_timeout, ssl_context or client_context(ssl_ca, ssl_cert, ssl_key))

    def set_timeout(self, seconds: float | None) -> None:
        """Seconds (not milliseconds as in C and PHP) any do*() or run_tasks() may take; None: no limit."""
        self.timeout = seconds

    # -- callbacks, as in the classic API: each is called with the task

    set_workload_fn = _callback_setter(
        "workload", "Called before a task is sent; str or bytes returned is its workload."
    )
    set_created_fn = _callback_setter("created", "Called when the server took the job (``task.handle`` is set).")
    set_data_fn = _callback_setter("data", "Called on each WORK_DATA (``task.data`` is the chunk).")
    set_warning_fn = _callback_setter("warning", "Called on each WORK_WARNING (``task.data`` is the warning).")
    set_status_fn = _callback_setter(
        "status", "Called on WORK_STATUS (``task.numerator``/``denominator``) and with a status query's answer."
    )
    set_complete_fn = _callback_setter("complete", "Called when the job completed (``task.data`` is the result).")
    set_exception_fn = _callback_setter(
        "exception", "Called on WORK_EXCEPTION (needs ``exceptions=True``); the fail callback follows."
    )
    set_fail_fn = _callback_setter(
        "fail", "Called when a job failed: WORK_FAIL, an exception, a server error, or no server reachable."
    )

    def clear_fn(self) -> None:
        """Remove every callback."""
        for name in CALLBACKS:
            self._session.callbacks.pop(name, None)

    # -- tasks: added now, submitted together by run_tasks()

    add_task = _task_adder(Priority.NORMAL, False)
    add_task_high = _task_adder(Priority.HIGH, False)
    add_task_low = _task_adder(Priority.LOW, False)
    add_task_background = _task_adder(Priority.NORMAL, True)
    add_task_high_background = _task_adder(Priority.HIGH, True)
    add_task_low_background = _task_adder(Priority.LOW, True)

    def add_task_status(self, handle: Data, context: Any = None) -> Task:
        """A status query for a job handle; its answer goes to the status callback (``task.known`` ...)."""
        task = self._session.new_status(handle, context)
        self._session.added.append(task)
        return task

    # -- methods that wait: written once as steps, run by the subclass's transport (_drive)

    def run_tasks(self) -> N:
        """Submit every added task and wait until all are done (callbacks run meanwhile).

        On timeout raises GearmanTimeout; the unfinished tasks stay under way, and a later run_tasks()
        goes on waiting for them."""
        return self._drive(self._run_tasks_steps())

    def job_status(self, handle: Data) -> S:
        """(known, running, numerator, denominator) of a job, asked of the server that created it
        (of each server in turn, for a handle this client did not submit)."""
        task = self._session.new_status(handle)
        task.use_callbacks = False
        return self._drive(self._one_steps(task, _status))

    def do(self, function: Data, workload: Data = b"", unique: Data | None = None) -> R:
        """Run a job and return its result; raises JobFailed, JobException, GearmanTimeout, ..."""
        return self._drive(self._one_steps(self._one(function, workload, unique, Priority.NORMAL, False), _result))

    def do_high(self, function: Data, workload: Data = b"", unique: Data | None = None) -> R:
        return self._drive(self._one_steps(self._one(function, workload, unique, Priority.HIGH, False), _result))

    def do_low(self, function: Data, workload: Data = b"", unique: Data | None = None) -> R:
        return self._drive(self._one_steps(self._one(function, workload, unique, Priority.LOW, False), _result))

    def do_background(self, function: Data, workload: Data = b"", unique: Data | None = None) -> H:
        """Queue a job and return its handle as soon as the server has it."""
        return self._drive(self._one_steps(self._one(function, workload, unique, Priority.NORMAL, True), _handle))

    def do_high_background(self, function: Data, workload: Data = b"", unique: Data | None = None) -> H:
        return self._drive(self._one_steps(self._one(function, workload, unique, Priority.HIGH, True), _handle))

    def do_low_background(self, function: Data, workload: Data = b"", unique: Data | None = None) -> H:
        return self._drive(self._one_steps(self._one(function, workload, unique, Priority.LOW, True), _handle))

    def _one(self, function: Data, workload: Data, unique: Data | None, priority: Priority, bg: bool) -> Task:
        task = self._session.new_job(function, workload, unique, priority, bg)
        task.use_callbacks = False  # as in the C library, do*() do not run the task callbacks
        return task

    def _run_tasks_steps(self) -> Steps[None]:
        tasks, self._session.added = self._session.added, []
        deadline = self._start(tasks)
        finished = yield Wait(lambda: not self._session.active, deadline)
        self._after_wait(finished, [])

    def _one_steps(self, task: Task, outcome: Callable[[Task], T]) -> Steps[T]:
        deadline = self._start([task])
        finished = yield Wait(lambda: task.done, deadline)
        self._after_wait(finished, [task])
        return outcome(task)

    def _start(self, tasks: list[Task]) -> float | None:
        """Submit; return the deadline for the wait."""
        if not self._session.links:
            self.add_server()
        for task in tasks:
            self._session.submit(task)
        return None if self.timeout is None else time.monotonic() + self.timeout

    def _after_wait(self, finished: bool, give_up: list[Task]) -> None:
        """Re-raise a callback's exception; on timeout cancel ``give_up`` and raise GearmanTimeout."""
        error = self._session.take_callback_error()
        if not finished:
            for task in give_up:
                self._session.cancel(task)
        if error is not None:
            raise error
        if not finished:
            raise GearmanTimeout(f"not finished after {self.timeout} s")


def _result(task: Task) -> bytes:
    task.raise_for_state()
    return task.result or b""


def _handle(task: Task) -> str:
    task.raise_for_state()
    return task.handle or ""


def _status(task: Task) -> JobStatus:
    task.raise_for_state()
    return JobStatus(task.known, task.running, task.numerator, task.denominator)


class Client(_ClientAPI[bytes, str, JobStatus, None], BlockingEndpoint):
    """Blocking client. Connections open when first needed and stay open until ``close()``.
    One Client per thread: it is not safe to share between threads."""


class AsyncClient(_ClientAPI[Awaitable[bytes], Awaitable[str], Awaitable[JobStatus], Awaitable[None]], AsyncEndpoint):
    """asyncio client: ``await client.do(...)``, ``await client.run_tasks()``; otherwise as Client.
    Several coroutines may await the same AsyncClient at once."""
