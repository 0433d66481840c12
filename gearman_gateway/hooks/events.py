"""From jobs' ends and queue depths to hook events: which hooks want what, and the JSON they get.

``HookObserver`` is a ``JobObserver``: at the end of a reactor turn it matches each finished job's function
against the hooks' patterns (cached per name) and puts one JSON event per wanting hook into the outbox.
``queue_depth_over N`` is not on the job path at all: ``HooksService`` looks at the functions' snapshots
once a second and sends an event when a matching function's queued jobs go over N (again only after they
fell back to N or fewer). Functions that hooks submit jobs to are never hooked themselves (no loops).
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter
from fnmatch import fnmatchcase
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service

from gearman_gateway.hooks.config import QUEUE_DEPTH_OVER, Hook
from gearman_gateway.hooks.outbox import Outbox
from gearman_gateway.scheduler import PRIORITY_NAMES, JobObserver, Priority
from gearman_gateway.scheduler.listener import COMPLETE

if TYPE_CHECKING:
    from gearman_gateway.scheduler import Scheduler
    from gearman_gateway.scheduler.listener import Ended

#: How often queue depths are looked at (seconds).
DEPTH_INTERVAL = 1.0
_JOB, _OUTCOME = itemgetter(0), itemgetter(1)  # of an ``Ended``
_FUNCTION_NAME = attrgetter("function.name")

#: How often the ends of jobs become events (seconds): the delay an event may have before it is sent.
READ_INTERVAL = 0.1
#: Bytes of a job's exception data put in its event.
EXCEPTION_BYTES = 1000


#: Event ids: this process's random prefix and a counter (unique without a uuid4 per event).
_ID_PREFIX = uuid.uuid4().hex[:16]
_ids = itertools.count(1)


def new_id() -> str:
    return f"{_ID_PREFIX}-{next(_ids)}"


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


class HookObserver(JobObserver):
    """A lazy observer that reads only the ends its hooks want: the scheduler's ring marks them as it records
    them (``Observing.watch``: which outcomes of a function the hooks want is asked once per function, then
    cached, in C with the accelerator), and the first marked end not yet read schedules one read
    ``READ_INTERVAL`` later. So the job path pays no call per turn for hooks, and no timer runs while no
    hooked job ends. Per end, the hooks that want its function and outcome are looked up once per (function,
    outcome) and cached. Once the outbox is full (a dead receiver) the rest of the batch is counted as
    dropped, per function and outcome, and nothing is built."""

    lazy = True

    def __init__(self, hooks: list[Hook], outbox: Outbox, clock: Any = None) -> None:
        """``clock``: schedules the reads (the reactor); without it, ends are read only by ``read_ends``
        and when the ring would overwrite them."""
        self.hooks = [hook for hook in hooks if hook.events - {QUEUE_DEPTH_OVER}]
        self.outbox = outbox
        self.clock = clock
        self.targets = {hook.job for hook in hooks if hook.job is not None}
        self._matching: dict[bytes, list[Hook]] = {}
        self._wanting: dict[tuple[bytes, str], tuple[Hook, ...]] = {}  # (function, outcome) -> hooks
        self._observing: Any = None
        self._read_call: Any = None  # the scheduled read, if any
        self.closed = False

    def attached(self, observing: Any) -> None:
        self._observing = observing
        observing.watch(self, self.outcomes, self._hooked)

    def outcomes(self, function: Any) -> frozenset[str]:
        """The outcomes of ``function`` (a scheduler Function) that some hook wants an event for."""
        return frozenset(event for hook in self.matching(function.name) for event in hook.events)

    def _hooked(self) -> None:
        """A hooked job ended (the first since the last read): read it, with any others, in a moment."""
        if self.clock is not None and self._read_call is None and not self.closed:
            self._read_call = self.clock.callLater(READ_INTERVAL, self.read_ends)

    def read_ends(self) -> None:
        """The ends not read yet become events."""
        call, self._read_call = self._read_call, None
        if call is not None and call.active():
            call.cancel()
        if self._observing is not None:
            self._observing.hooks_read()
            self._observing.tell(self)

    def close(self) -> None:
        """The last ends become events; no read is scheduled any more (the server stops)."""
        self.closed = True
        self.read_ends()

    def read_ring(self, ring: Any, start: int, end: int) -> None:
        """Only the ends the ring marked as hooked."""
        self.jobs_finished(ring.view(start, end, True))

    def matching(self, function: bytes) -> list[Hook]:
        found = self._matching.get(function)
        if found is None:
            name = _text(function)
            found = [] if function in self.targets else [
                hook for hook in self.hooks if any(fnmatchcase(name, pattern) for pattern in hook.functions)
            ]  # fmt: skip
            if len(self._matching) < 10_000:
                self._matching[function] = found
        return found

    def wanting(self, function: bytes, outcome: str) -> tuple[Hook, ...]:
        """The hooks that want this function's ``outcome`` events."""
        key = (function, outcome)
        found = self._wanting.get(key)
        if found is None:
            found = tuple(hook for hook in self.matching(function) if outcome in hook.events)
            if len(self._wanting) < 10_000:
                self._wanting[key] = found
        return found

    def jobs_finished(self, ended: list[Ended]) -> None:
        outbox = self.outbox
        cached = self._wanting  # looked up inline: a method call per end would cost more than the rest
        for position, (job, outcome, data, _, now) in enumerate(ended):
            wanting = cached.get((job.function.name, outcome))
            if wanting is None:
                wanting = self.wanting(job.function.name, outcome)
            if not wanting:
                continue
            if outbox.full():  # a dead receiver: nothing can leave the outbox during this call
                self._drop(ended[position:])
                return
            event_id = new_id()
            started = job.started_at
            body = json.dumps(
                {
                    "event": outcome,
                    "id": event_id,
                    "time": now,
                    "function": _text(job.function.name),
                    "handle": _text(job.handle),
                    "unique": _text(job.unique),
                    "priority": PRIORITY_NAMES[job.priority],
                    "background": job.background,
                    "submitted": job.submitted_at,
                    "started": started or None,
                    "finished": now,
                    "wait": started - job.submitted_at if started else None,
                    "run": now - started if started else None,
                    "exception": _text(data[:EXCEPTION_BYTES]) if data is not None and outcome != COMPLETE else None,
                    "reason": job.reason or None,
                },
                separators=(",", ":"),
            ).encode()
            for hook in wanting:
                outbox.put(hook, outcome, event_id, body)

    def _drop(self, ended: list[Ended]) -> None:
        """These ends' events are dropped (the outbox is full): counted per function and outcome in C
        (``Counter`` over ``map``), then once per hook; nothing is built."""
        counts = Counter(zip(map(_FUNCTION_NAME, map(_JOB, ended)), map(_OUTCOME, ended), strict=True))
        for (function, outcome), count in counts.items():
            for hook in self.wanting(function, outcome):
                self.outbox.drop(hook, outcome, count)


class HooksService(Service):
    """Watches queue depths for ``queue_depth_over`` hooks; stops the outbox at the server's stop."""

    name = "hooks"

    def __init__(
        self, hooks: list[Hook], outbox: Outbox, scheduler: Scheduler, reactor: Any, observer: HookObserver
    ) -> None:
        self.observer = observer
        self.depth_hooks = [hook for hook in hooks if QUEUE_DEPTH_OVER in hook.events]
        self.outbox = outbox
        self.scheduler = scheduler
        self.reactor = reactor
        self.targets = {hook.job for hook in hooks if hook.job is not None}
        self._over: set[tuple[int, bytes]] = set()  # (hook, function) over its threshold, already told
        self._loop: Any = None

    def startService(self) -> None:  # noqa: N802
        super().startService()
        from twisted.internet.task import LoopingCall

        if self.depth_hooks:
            self._loop = LoopingCall(self.check_depths)
            self._loop.clock = self.reactor
            self._loop.start(DEPTH_INTERVAL, now=False)

    def stopService(self) -> Any:  # noqa: N802
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self.observer.close()  # the last ends, before the outbox stops
        return self.outbox.stop()

    def check_depths(self) -> None:
        now = self.reactor.seconds()
        for function in self.scheduler.function_snapshots():
            if function.name in self.targets:
                continue
            queued = sum(function.queued)
            name = _text(function.name)
            for hook in self.depth_hooks:
                if not any(fnmatchcase(name, pattern) for pattern in hook.functions):
                    continue
                key = (hook.index, function.name)
                assert hook.queue_depth_over is not None
                if queued <= hook.queue_depth_over:
                    self._over.discard(key)
                    continue
                if key in self._over:
                    continue
                self._over.add(key)
                event_id = new_id()
                body = json.dumps(
                    {
                        "event": QUEUE_DEPTH_OVER,
                        "id": event_id,
                        "time": now,
                        "function": name,
                        "queued": queued,
                        "queued_by_priority": dict(zip(PRIORITY_NAMES, function.queued, strict=True)),
                        "threshold": hook.queue_depth_over,
                        "running": function.running,
                        "workers": function.workers,
                    },
                    separators=(",", ":"),
                ).encode()
                self.outbox.put(hook, QUEUE_DEPTH_OVER, event_id, body)


def submitter(scheduler: Scheduler) -> Any:
    """How the outbox submits a hook's background job: unique = the event's id, so a retried delivery whose
    first job is still queued joins it instead of making a second one."""

    def submit(function: bytes, data: bytes, unique: bytes) -> None:
        scheduler.submit(function, data, unique=unique, priority=Priority.NORMAL, background=True)

    return submit
