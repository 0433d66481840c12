"""The client's protocol logic, sans-IO: tasks, their packets, the replies, and fail-over.

Each task goes to the server its unique key hashes to, so that every client sends the same unique to
the same server and coalescing still works with several servers. When that server cannot be reached, or
its connection drops before the job finished, the task moves on to the next server in the ring (a
foreground job is submitted again, with the same unique); only when every server failed does it end in
an error. Replies to requests come back in order on a connection (JOB_CREATED, STATUS_RES, OPTION_RES or
ERROR, one per request), so each link keeps the FIFO of requests awaiting a reply; WORK_* packets carry
the job handle and are matched through it.
"""

from __future__ import annotations

import enum
import uuid
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from gearman_gateway.clientlib.errors import (
    GearmanConnectionError,
    GearmanTimeout,
    JobException,
    JobFailed,
    ServerError,
)
from gearman_gateway.clientlib.fields import JobFields, text, to_bytes
from gearman_gateway.clientlib.links import Address, Backoff, Link
from gearman_gateway.clientlib.session import Session, log
from protocols.binary.packets import Packet

#: How many handles of submitted jobs remember which server gave them (for job_status). Bounded because
#: a long-lived client may submit millions of background jobs.
MAX_REMEMBERED_HANDLES = 65536


class Priority(enum.IntEnum):
    HIGH = 0
    NORMAL = 1
    LOW = 2


_SUBMIT = {
    (Priority.HIGH, False): Packet.SUBMIT_JOB_HIGH,
    (Priority.NORMAL, False): Packet.SUBMIT_JOB,
    (Priority.LOW, False): Packet.SUBMIT_JOB_LOW,
    (Priority.HIGH, True): Packet.SUBMIT_JOB_HIGH_BG,
    (Priority.NORMAL, True): Packet.SUBMIT_JOB_BG,
    (Priority.LOW, True): Packet.SUBMIT_JOB_LOW_BG,
}


class TaskState(enum.Enum):
    NEW = "new"  # added, not yet submitted
    QUEUED = "queued"  # sent (or waiting for its server), no reply yet
    CREATED = "created"  # JOB_CREATED came: a foreground job runs; a background task is done
    COMPLETE = "complete"  # WORK_COMPLETE (or, for a status query, STATUS_RES)
    FAILED = "failed"  # WORK_FAIL
    EXCEPTION = "exception"  # WORK_EXCEPTION
    ERROR = "error"  # the server refused it, or no server could be reached
    CANCELLED = "cancelled"  # given up by the caller (a timeout)


class TaskKind(enum.Enum):
    JOB = "job"
    STATUS = "status"


CALLBACKS = ("workload", "created", "data", "warning", "status", "complete", "exception", "fail")


class Task(JobFields):
    """A job as the client sees it, or a status query: what was asked and every answer so far.

    Callbacks get the task; ``data`` is the payload of the event being reported (a data chunk, a warning,
    the result), ``result`` the WORK_COMPLETE payload, ``chunks`` every WORK_DATA payload.
    """

    def __init__(
        self,
        kind: TaskKind,
        function: bytes = b"",
        workload: bytes = b"",
        unique: bytes = b"",
        priority: Priority = Priority.NORMAL,
        background: bool = False,
        context: Any = None,
        handle: bytes = b"",
    ) -> None:
        self.kind = kind
        self._function = function
        self.workload = workload
        self._unique = unique
        self.priority = priority
        self.background = background
        self.context = context
        self._handle = handle
        self.state = TaskState.NEW
        self.done = False
        self.data = b""
        self.result: bytes | None = None
        self.chunks: list[bytes] = []
        self.warnings: list[bytes] = []
        self.exception: bytes | None = None
        self.error: BaseException | None = None
        self.numerator = 0
        self.denominator = 0
        self.known = False
        self.running = False
        self.server: Address | None = None
        #: False for do*(): the classic API runs them without the client's callbacks.
        self.use_callbacks = True
        self._link: Link | None = None
        self._tried: set[int] = set()

    def __repr__(self) -> str:
        return f"<Task {self.kind.value} {self.function!r} {self.state.value} handle={self.handle}>"

    @property
    def failed(self) -> bool:
        return self.state in (TaskState.FAILED, TaskState.EXCEPTION, TaskState.ERROR, TaskState.CANCELLED)

    def raise_for_state(self) -> None:
        """Raise what went wrong, if anything did: the one place do*() turn outcomes into exceptions."""
        if self.state is TaskState.EXCEPTION:
            raise JobException(self)
        if self.state is TaskState.FAILED:
            raise JobFailed(self)
        if self.state is TaskState.CANCELLED:
            raise GearmanTimeout(f"{self.function}: no result in time")
        if self.error is not None:
            raise self.error
        if not self.done:
            raise GearmanTimeout(f"{self.function}: not finished")


class ClientLink(Link):
    """A link plus the client's bookkeeping for it."""

    def __init__(self, address: Address, index: int) -> None:
        super().__init__(address, index)
        self.unsent: list[Task] = []
        #: One entry per request sent, in order; None for requests whose reply matters to no task.
        self.awaiting: deque[Task | None] = deque()
        #: Foreground jobs created on this connection, by handle (several when submits coalesced).
        self.running: dict[bytes, list[Task]] = {}
        #: For coalesced handles: how many copies of non-final events have been handed out.
        self.turns: dict[bytes, int] = {}

    def take_tasks(self) -> list[Task]:
        """Every task that was riding on this link, which it can no longer serve."""
        tasks = list(self.unsent)
        tasks += [t for t in self.awaiting if t is not None]
        for group in self.running.values():
            tasks += group
        self.unsent.clear()
        self.awaiting.clear()
        self.running.clear()
        self.turns.clear()
        return tasks


class ClientSession(Session):
    link_class = ClientLink
    links: list[ClientLink]  # type: ignore[assignment]

    def __init__(
        self, *, exceptions: bool = False, client_id: bytes | None = None, backoff: Backoff | None = None
    ) -> None:
        super().__init__(backoff)
        self.exceptions = exceptions
        self.client_id = client_id
        self.callbacks: dict[str, Callable[[Task], object]] = {}
        #: Submitted and unfinished tasks, in submission order.
        self.active: dict[Task, None] = {}
        #: Tasks added with add_task*() and not yet submitted by run_tasks().
        self.added: list[Task] = []
        self.callback_error: BaseException | None = None
        self._origins: OrderedDict[bytes, int] = OrderedDict()

    # -- building tasks

    def new_job(
        self,
        function: str | bytes,
        workload: str | bytes,
        unique: str | bytes | None,
        priority: Priority,
        background: bool,
        context: Any = None,
    ) -> Task:
        name = to_bytes(function, "function name")
        key = to_bytes(unique, "unique") if unique is not None else str(uuid.uuid4()).encode()
        if b"\x00" in name or b"\x00" in key:
            raise ValueError("function names and unique keys cannot contain NUL bytes")
        if not name:
            raise ValueError("a function name is required")
        return Task(TaskKind.JOB, name, to_bytes(workload, "workload"), key, priority, background, context)

    def new_status(self, handle: str | bytes, context: Any = None) -> Task:
        return Task(TaskKind.STATUS, context=context, handle=to_bytes(handle, "handle"))

    # -- submitting

    def submit(self, task: Task) -> None:
        task.state = TaskState.QUEUED
        self.active[task] = None
        self._route(task)

    def cancel(self, task: Task) -> None:
        """Stop waiting for ``task`` (its caller gave up); replies still due are matched and dropped."""
        if task.done:
            return
        link = task._link
        if isinstance(link, ClientLink):
            if task in link.unsent:
                link.unsent.remove(task)
            group = link.running.get(task._handle)
            if group and task in group:
                group.remove(task)
                if not group:
                    del link.running[task._handle]
        task.state = TaskState.CANCELLED
        task.done = True
        self.active.pop(task, None)

    def _order(self, task: Task) -> list[ClientLink]:
        """Servers to try, best first: a job's ring starts where its unique hashes to."""
        links = self.links
        if task.kind is TaskKind.STATUS:
            origin = self._origins.get(task._handle)
            return [links[origin]] if origin is not None and origin < len(links) else list(links)
        start = zlib.crc32(task._unique) % len(links) if links else 0
        return links[start:] + links[:start]

    def _route(self, task: Task) -> None:
        now = self.clock()
        candidates = [link for link in self._order(task) if link.index not in task._tried]
        if not candidates:
            tried = [self.links[i] for i in sorted(task._tried)]
            reasons = ", ".join(f"{link.address} ({_why(link)})" for link in tried)
            what = "no server could run the job" if any(link.lost for link in tried) else "no server could be reached"
            error = GearmanConnectionError(f"{what}: {reasons or 'none configured'}")
            self._finish(task, TaskState.ERROR, error)
            return
        link = next((c for c in candidates if c.usable(now)), candidates[0])
        if not link.usable(now):
            link.retry_at = now  # every server left is resting after a failure: try anyway rather than fail
        task._link = link
        task.server = link.address
        if link.up:
            self._send(link, task)
        else:
            link.unsent.append(task)

    def _send(self, link: ClientLink, task: Task) -> None:
        if task.kind is TaskKind.STATUS:
            link.send(Packet.GET_STATUS, task._handle)
        else:
            if "workload" in self.callbacks:
                supplied = self._fire("workload", task)
                if supplied is not None:
                    task.workload = to_bytes(supplied, "workload")  # type: ignore[arg-type]
            link.send(_SUBMIT[task.priority, task.background], task._function, task._unique, task.workload)
        link.awaiting.append(task)

    # -- link life cycle

    def wants(self, link: Link) -> bool:
        return bool(link.unsent)  # type: ignore[attr-defined]

    def on_up(self, link: ClientLink) -> None:  # type: ignore[override]
        if self.present_token(link):
            link.awaiting.append(None)
        if self.exceptions:
            link.send(Packet.OPTION_REQ, b"exceptions")
            link.awaiting.append(None)
        if self.client_id:
            link.send(Packet.SET_CLIENT_ID, self.client_id)
        tasks, link.unsent = link.unsent, []
        for task in tasks:
            self._send(link, task)

    def on_down(self, link: ClientLink) -> None:  # type: ignore[override]
        for task in link.take_tasks():
            if task.done:
                continue
            task._tried.add(link.index)
            task._handle = task._handle if task.kind is TaskKind.STATUS else b""
            task.state = TaskState.QUEUED
            self._route(task)

    def on_close(self) -> None:
        for link in self.links:
            link.take_tasks()
        for task in list(self.active):
            self.cancel(task)

    # -- replies

    def handle(self, link: ClientLink, ptype: int, args: list[bytes]) -> None:  # type: ignore[override]
        if ptype in _WORK_PACKETS:
            self._work_packet(link, ptype, args)
        elif ptype in _REPLIES:
            task = link.awaiting.popleft() if link.awaiting else None
            if task is None or task.done:
                if ptype == Packet.ERROR:
                    log.warning("%s: error %s", link.address, b" ".join(args).decode("utf-8", "replace"))
                return
            getattr(self, _REPLIES[ptype])(link, task, args)

    def _job_created(self, link: ClientLink, task: Task, args: list[bytes]) -> None:
        task._handle = handle = args[0]
        task.state = TaskState.CREATED
        self._origins[handle] = link.index
        self._origins.move_to_end(handle)
        if len(self._origins) > MAX_REMEMBERED_HANDLES:
            self._origins.popitem(last=False)
        if not task.background:
            link.running.setdefault(handle, []).append(task)
        self._fire("created", task)
        if task.background:
            self._finish(task, TaskState.CREATED)

    def _status_res(self, link: ClientLink, task: Task, args: list[bytes]) -> None:
        task.known = args[1] == b"1"
        task.running = args[2] == b"1"
        task.numerator = _number(args[3])
        task.denominator = _number(args[4])
        if not task.known and task._handle not in self._origins:
            # a handle from elsewhere: ask the other servers before saying it is unknown
            task._tried.add(link.index)
            if any(other.index not in task._tried for other in self.links):
                self._route(task)
                return
        self._finish(task, TaskState.COMPLETE)

    def _error(self, link: ClientLink, task: Task, args: list[bytes]) -> None:
        code, message = (text(a) for a in args)
        self._finish(task, TaskState.ERROR, ServerError(code, message))

    def _ignore(self, link: ClientLink, task: Task, args: list[bytes]) -> None:
        return None

    def _work_packet(self, link: ClientLink, ptype: int, args: list[bytes]) -> None:
        handle = args[0]
        tasks = link.running.get(handle)
        if tasks is None and ptype == Packet.WORK_FAIL and handle.endswith(b"\x00"):
            handle = handle[:-1]  # gearmand 1.1 sends WORK_FAIL "handle\0" for an exception
            tasks = link.running.get(handle)
        if not tasks:
            return
        if ptype in (Packet.WORK_COMPLETE, Packet.WORK_FAIL, Packet.WORK_EXCEPTION):
            del link.running[handle]  # the job is over for every task on it; later copies find nothing
            link.turns.pop(handle, None)
        elif len(tasks) > 1:
            # Submits coalesced on one connection are attached once each, and servers send every event
            # once per attachment (gearmand does): give each copy to the next task, so each gets one.
            turn = link.turns.get(handle, 0)
            link.turns[handle] = turn + 1
            tasks = [tasks[turn % len(tasks)]]
        for task in list(tasks):
            if ptype == Packet.WORK_DATA:
                task.data = args[1]
                task.chunks.append(args[1])
                self._fire("data", task)
            elif ptype == Packet.WORK_WARNING:
                task.data = args[1]
                task.warnings.append(args[1])
                self._fire("warning", task)
            elif ptype == Packet.WORK_STATUS:
                task.numerator = _number(args[1])
                task.denominator = _number(args[2])
                self._fire("status", task)
            elif ptype == Packet.WORK_COMPLETE:
                task.data = task.result = args[1]
                self._finish(task, TaskState.COMPLETE)
            elif ptype == Packet.WORK_EXCEPTION:
                task.data = task.exception = args[1]
                self._finish(task, TaskState.EXCEPTION)
            else:
                self._finish(task, TaskState.FAILED)

    # -- endings and callbacks

    def _finish(self, task: Task, state: TaskState, error: BaseException | None = None) -> None:
        task.state = state
        task.error = error
        task.done = True
        self.active.pop(task, None)
        if state is TaskState.COMPLETE:
            self._fire("status" if task.kind is TaskKind.STATUS else "complete", task)
        elif state is TaskState.EXCEPTION:
            self._fire("exception", task)
            self._fire("fail", task)
        elif state in (TaskState.FAILED, TaskState.ERROR):
            self._fire("fail", task)

    def _fire(self, event: str, task: Task) -> object:
        """Run a user callback; an exception it raises is kept and re-raised to the caller of run_tasks."""
        callback = self.callbacks.get(event)
        if callback is None or not task.use_callbacks:
            return None
        try:
            return callback(task)
        except BaseException as error:  # noqa: BLE001 - re-raised by the API once the session is consistent
            if self.callback_error is None:
                self.callback_error = error
            return None

    def take_callback_error(self) -> BaseException | None:
        error, self.callback_error = self.callback_error, None
        return error


def _why(link: Link) -> str:
    if link.lost:
        return f"connection lost: {_reason(link.last_error) if link.last_error else 'closed by the server'}"
    return _reason(link.last_error)


def _reason(error: BaseException | None) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) if error else "connection closed"


def _number(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


_WORK_PACKETS = frozenset(
    {
        Packet.WORK_DATA,
        Packet.WORK_WARNING,
        Packet.WORK_STATUS,
        Packet.WORK_COMPLETE,
        Packet.WORK_FAIL,
        Packet.WORK_EXCEPTION,
    }
)
#: Packets that answer the oldest request awaiting a reply, and their handlers.
_REPLIES = {
    Packet.JOB_CREATED: "_job_created",
    Packet.STATUS_RES: "_status_res",
    Packet.ERROR: "_error",
    Packet.OPTION_RES: "_ignore",
}
