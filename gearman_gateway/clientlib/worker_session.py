"""The worker's protocol logic, sans-IO: register, grab, sleep, wake, and report results.

A worker holds a connection to every server and takes jobs from all of them, one job at a time (the
classic API: ``work()`` runs one job). At most one GRAB_JOB_UNIQ is outstanding across the links, so
two servers never hand us a job each at once. A link answering NO_JOB is sent PRE_SLEEP and left alone
until its server sends NOOP; nothing is polled. After a job, the grab goes first to the other links that
are awake, then back to the one that gave the job, so a busy server does not starve the others.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gearman_gateway.clientlib.errors import WORK_FAIL, WorkFail
from gearman_gateway.clientlib.fields import JobFields, to_bytes
from gearman_gateway.clientlib.links import Address, Backoff, Link
from gearman_gateway.clientlib.session import Session
from protocols.binary.packets import Packet

log = logging.getLogger("gearman_gateway.worker")


class Phase(enum.Enum):
    OFFLINE = "offline"  # not connected
    IDLE = "idle"  # connected, should be asked for a job
    GRABBING = "grabbing"  # GRAB_JOB_UNIQ sent, waiting for JOB_ASSIGN_UNIQ or NO_JOB
    SLEEPING = "sleeping"  # PRE_SLEEP sent: the server will NOOP when there is work
    BUSY = "busy"  # gave us the job we are running


class WorkerLink(Link):
    def __init__(self, address: Address, index: int) -> None:
        super().__init__(address, index)
        self.phase = Phase.OFFLINE


@dataclass
class Function:
    name: bytes
    callback: Callable[..., Any]
    #: Seconds the server lets one job run before re-queueing it (CAN_DO_TIMEOUT); None for no limit.
    timeout: float | None = None

    def registration(self) -> tuple[int, tuple[bytes, ...]]:
        if self.timeout is None or self.timeout <= 0:
            return Packet.CAN_DO, (self.name,)
        return Packet.CAN_DO_TIMEOUT, (self.name, b"%d" % max(1, round(self.timeout * 1000)))


class Job(JobFields):
    """A job assigned to this worker; its ``send_*`` methods report to the server that assigned it."""

    def __init__(
        self, session: WorkerSession, link: WorkerLink, handle: bytes, function: bytes, unique: bytes, workload: bytes
    ) -> None:
        self._session = session
        self._link = link
        self._generation = link.generation
        self._handle = handle
        self._function = function
        self._unique = unique
        self.workload = workload
        self.server = link.address
        self.finished = False

    def __repr__(self) -> str:
        return f"<Job {self.function_name!r} {self.handle} from {self.server}>"

    @property
    def connection_lost(self) -> bool:
        """The server that assigned it went away: it has re-queued the job, and results would be dropped."""
        return self._link.generation != self._generation

    def send_data(self, data: str | bytes) -> None:
        """A partial result (WORK_DATA), passed on to the waiting clients."""
        self._session.job_packet(self, Packet.WORK_DATA, self._handle, to_bytes(data, "data"))

    def send_warning(self, data: str | bytes) -> None:
        self._session.job_packet(self, Packet.WORK_WARNING, self._handle, to_bytes(data, "warning"))

    def send_status(self, numerator: int, denominator: int) -> None:
        """Progress, ``numerator`` of ``denominator`` done (clients see it, and so does GET_STATUS)."""
        self._session.job_packet(self, Packet.WORK_STATUS, self._handle, b"%d" % numerator, b"%d" % denominator)

    def send_complete(self, data: str | bytes = b"") -> None:
        """Finish with a result now (the callback's return value is then ignored)."""
        self._session.job_packet(self, Packet.WORK_COMPLETE, self._handle, to_bytes(data, "result"), final=True)

    def send_fail(self) -> None:
        self._session.job_packet(self, Packet.WORK_FAIL, self._handle, final=True)

    def send_exception(self, data: str | bytes) -> None:
        self._session.job_packet(self, Packet.WORK_EXCEPTION, self._handle, to_bytes(data, "exception"), final=True)


class WorkerSession(Session):
    link_class = WorkerLink
    links: list[WorkerLink]  # type: ignore[assignment]

    def __init__(self, *, client_id: bytes | None = None, backoff: Backoff | None = None) -> None:
        super().__init__(backoff)
        self.client_id = client_id
        self.functions: dict[bytes, Function] = {}
        #: The job assigned and not yet finished (one at a time); ``ready`` until take_job() hands it out.
        self.current: Job | None = None
        self._ready: Job | None = None
        self._last = -1  # index of the link that gave the last job

    # -- functions

    def add_function(self, name: str | bytes, callback: Callable[..., Any], timeout: float | None = None) -> None:
        function = Function(to_bytes(name, "function name"), callback, timeout)
        if not function.name or b"\x00" in function.name:
            raise ValueError(f"bad function name {function.name!r}")
        self.functions[function.name] = function
        for link in self.links:
            if link.up:
                ptype, args = function.registration()
                link.send(ptype, *args)
                if link.phase is Phase.SLEEPING:
                    link.phase = Phase.IDLE  # jobs already queued for it would not wake us
        self._grab_next()

    def remove_function(self, name: str | bytes) -> None:
        key = to_bytes(name, "function name")
        if self.functions.pop(key, None) is not None:
            for link in self.links:
                if link.up:
                    link.send(Packet.CANT_DO, key)

    def set_client_id(self, client_id: bytes) -> None:
        self.client_id = client_id
        for link in self.links:
            if link.up:
                link.send(Packet.SET_CLIENT_ID, client_id)

    # -- jobs

    def has_job(self) -> bool:
        return self._ready is not None

    def take_job(self) -> Job | None:
        job, self._ready = self._ready, None
        return job

    def finish(self, job: Job, outcome: object) -> None:
        """Report a callback's return value: bytes or str is the result, WORK_FAIL fails the job."""
        if job.finished:
            return
        if outcome is WORK_FAIL:
            job.send_fail()
        elif outcome is None:
            job.send_complete(b"")
        elif isinstance(outcome, str | bytes | bytearray | memoryview):
            job.send_complete(outcome)
        else:
            self.fail(job, TypeError(f"a worker callback must return bytes or str, not {type(outcome).__name__}"))

    def fail(self, job: Job, error: BaseException) -> None:
        """Report a callback's exception: WorkFail is WORK_FAIL, anything else WORK_EXCEPTION."""
        if job.finished:
            return
        if isinstance(error, WorkFail):
            job.send_fail()
        else:
            log.warning("%s raised %s: %s", job, type(error).__name__, error, exc_info=error)
            job.send_exception(f"{type(error).__name__}: {error}")

    def abandon(self, job: Job) -> None:
        """Drop a job without a word (its server is gone and has re-queued it); take the next one."""
        if not job.finished:
            self.job_packet(job, 0, final=True)

    def job_packet(self, job: Job, ptype: int, *args: bytes, final: bool = False) -> None:
        """Send one WORK_* packet for ``job`` now; ``final`` ends the job and asks for the next one."""
        if job.finished:
            raise RuntimeError(f"{job} is already finished")
        link = job._link
        if ptype and not job.connection_lost:
            link.send(ptype, *args)
        if final:
            job.finished = True
            if self.current is job:
                self.current = None
            if link.phase is Phase.BUSY and not job.connection_lost:
                link.phase = Phase.IDLE
            self._grab_next()
        self.flush_hook()

    def _grab_next(self) -> None:
        """Ask one awake link for a job, unless a job or a grab is already under way."""
        if self.current is not None or not self.functions:
            return
        links = self.links
        if any(link.phase is Phase.GRABBING for link in links):
            return
        count = len(links)
        for step in range(1, count + 1):
            link = links[(self._last + step) % count]
            if link.phase is Phase.IDLE:
                link.send(Packet.GRAB_JOB_UNIQ)
                link.phase = Phase.GRABBING
                return

    # -- link life cycle and packets

    def on_up(self, link: WorkerLink) -> None:  # type: ignore[override]
        self.present_token(link)
        if self.client_id:
            link.send(Packet.SET_CLIENT_ID, self.client_id)
        for function in self.functions.values():
            ptype, args = function.registration()
            link.send(ptype, *args)
        link.phase = Phase.IDLE
        self._grab_next()

    def on_down(self, link: WorkerLink) -> None:  # type: ignore[override]
        link.phase = Phase.OFFLINE
        if self._ready is not None and self._ready._link is link:
            self._ready = None  # never started; the server re-queues it
            self.current = None
        self._grab_next()

    def on_close(self) -> None:
        for link in self.links:
            link.phase = Phase.OFFLINE
        self.current = self._ready = None

    def handle(self, link: WorkerLink, ptype: int, args: list[bytes]) -> None:  # type: ignore[override]
        if ptype == Packet.NO_JOB:
            if link.phase is Phase.GRABBING:
                link.send(Packet.PRE_SLEEP)
                link.phase = Phase.SLEEPING
                self._grab_next()
        elif ptype == Packet.NOOP:
            if link.phase is Phase.SLEEPING:
                link.phase = Phase.IDLE
                self._grab_next()
        elif ptype in (Packet.JOB_ASSIGN_UNIQ, Packet.JOB_ASSIGN_ALL, Packet.JOB_ASSIGN):
            if link.phase is not Phase.GRABBING:
                log.warning(
                    "%s assigned a job we did not ask for: %s", link.address, args[0].decode("utf-8", "replace")
                )
                return
            handle, function = args[0], args[1]
            unique = args[2] if ptype != Packet.JOB_ASSIGN else b""
            link.phase = Phase.BUSY
            self._last = link.index
            self.current = self._ready = Job(self, link, handle, function, unique, args[-1])
        elif ptype == Packet.ERROR:
            log.warning("%s: error %s", link.address, b" ".join(args).decode("utf-8", "replace"))
