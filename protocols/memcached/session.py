"""One memcached connection, sans-IO: bytes in, scheduler calls and result-cache reads, reply bytes out.

The codec (``codec.Decoder``) turns bytes into events; this session gives each event its meaning here
(``keys`` says what a key names) and answers in the dialect the request came in (``replies``):

- ``set``/``add``/``prepend``/``append`` of ``<function>[/<unique>]`` submit a background job (normal, normal,
  high, low priority); the answer waits for the job's acknowledgement (a durable store's commit);
- ``get <function>`` takes work as a worker (``/open``: held until ``/close`` or a ``set .../close`` with
  the result; ``/abort`` or a lost connection give it back as a lost worker's job); ``get
  <function>/<unique>`` reads the result cache; ``/t=<ms>`` waits;
- ``delete``, ``touch``/``gat``, ``flush_all``, ``stats``, ``version`` and the meta and binary forms of them.

Requests are answered in order: while one waits (a ``/t=`` wait, a store commit) the ones after it wait
behind it, unparsed events kept here (reading pauses past ``MAX_QUEUED_EVENTS``).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gearman_gateway.results import expiry
from gearman_gateway.scheduler import JobListener, Priority, SchedulerError
from gearman_gateway.scheduler.errors import ArgumentTooLarge
from gearman_gateway.scheduler.worker import HELD
from gearman_gateway.security import PERMISSION_DENIED, Access, Denied, Grant
from gearman_gateway.turns import end_of_turn
from protocols.memcached import core, keys, replies, text
from protocols.memcached.codec import Decoder, PlainSet, as_event
from protocols.memcached.core import MAX_QUEUED_EVENTS, PENDING, PyCore, _Pending
from protocols.memcached.events import (
    Arithmetic,
    Delete,
    Error,
    Event,
    FlushAll,
    Get,
    MetaDelete,
    MetaGet,
    MetaNoop,
    MetaSet,
    Noop,
    Quit,
    Stats,
    Store,
    Touch,
    Verbosity,
    Version,
)
from protocols.memcached.replies import DeleteOutcome, Item, StoreOutcome
from protocols.memcached.stats import VERSION, Shared, stats

if TYPE_CHECKING:
    from gearman_gateway.results import Result, ResultCache
    from gearman_gateway.scheduler import Job, Scheduler
    from gearman_gateway.scheduler.worker import Worker
    from protocols.memcached.options import MemcachedOptions

#: How early (seconds) a wait timer may fire and still count as on time: a clock's float sums differ.
_TIMER_SLACK = 1e-6

#: The priority each storage command submits with: ``prepend`` jumps the queue, ``append`` joins its tail.
PRIORITIES = {"set": Priority.NORMAL, "add": Priority.NORMAL, "prepend": Priority.HIGH, "append": Priority.LOW}

#: (``Priority.NORMAL``, without the enum's attribute look-up per plain set)
_NORMAL = int(Priority.NORMAL)

#: The key a ``set`` of a token goes to (``_authenticate``).
AUTH_KEY = b"_auth"
BAD_KEY = "bad key: <function>[/<unique>][/option] expected"
OPTION_MISUSE = "that key option does not go with this command"
ALREADY_OPEN = "a job of this function is already open on this connection: /close or /abort it first"
QUEUE_DELETE_OFF = "deleting a whole queue is turned off (memcached.allow_queue_delete)"


class Transport(Protocol):
    """What a session needs from the connection it runs on."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...  # after what was written has gone out
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...

    # optional: ``partial_input(held)``, told after each read while part of a request is held, and once when
    # none is any more (the adapter's stall timer)


class _Ack(JobListener):
    """A submit's acknowledgement: the reply once the job is queued (and committed), or refused."""

    __slots__ = ("event", "reply", "then")

    def __init__(self, event: Store | MetaSet) -> None:
        self.event = event
        self.reply: bytes | None = None
        self.then: Callable[[bytes], None] | None = None

    def job_created(self, job: Job) -> None:
        self._answer(replies.store_reply(self.event, StoreOutcome.STORED))

    def job_rejected(self, job: Job, error: SchedulerError) -> None:
        self._answer(replies.error_reply(self.event, error.text))

    def _answer(self, reply: bytes) -> None:
        if self.then is not None:
            self.then(reply)
        else:
            self.reply = reply


@dataclass(slots=True)
class _Retrieval:
    """A ``get`` of several keys being answered, one key after the other."""

    event: Get | MetaGet
    keys: tuple[bytes, ...]
    items: list[Item | None] = field(default_factory=list)


class _WorkerWaker:
    """The scheduler's way to answer one of this connection's per-function workers: a waiting ``get`` holds
    its grab (``Scheduler.hold``), and the scheduler hands it the next job of its function as it is queued."""

    __slots__ = ("session", "function")

    def __init__(self, session: SessionMethods, function: bytes) -> None:
        self.session = session
        self.function = function

    def wake(self) -> None:  # these workers hold their grabs and never sleep: no NOOP comes
        pass

    def grabbed(self, job: Job | None) -> None:
        """With a job (already running on the worker): taken at the end of the turn (``_take_handed``), as the
        scheduler may be handing it over from inside a submit whose submitter still has work to do. With
        nothing: the wait ends as a miss (``_handed_nothing``)."""
        session = self.session
        if job is None:
            session._handed_nothing(self.function)
            return
        session._handed_job = job
        session._on_timeout = None  # the wait is over: its timer only disarms
        session._end_of_turn(session._take_handed)


#: The session's own attributes (besides the core's, ``core.CORE_ATTRIBUTES``): slots, as an instance of this
#: many attributes (over CPython's 30 shared keys) would have a dict of its own, and every ``self.`` look-up
#: on the request path would pay for it.
SESSION_ATTRIBUTES = (
    "_deadline",
    "_end_of_turn",
    "_handed_job",
    "_last_set",
    "_on_timeout",
    "_open",
    "_timer",
    "_timer_due",
    "_waiting",
    "_waiting_error",
    "_waiting_result",
    "_waiting_run",
    "_workers",
    "access",
    "clock",
    "cmd_get",
    "cmd_set",
    "cmd_touch",
    "get_hits",
    "get_misses",
    "grant",
    "options",
    "peer",
    "results",
    "scheduler",
    "shared",
)


class SessionMethods:
    """A memcached connection's session, but for its per-read core (``receive_data``, ``_serve``,
    ``_finish``: protocols/memcached/core.py): ``MemcachedSession`` is these methods on the C core when it
    is built, ``PythonSession`` on the pure-Python one."""

    __slots__ = ()

    def __init__(
        self,
        scheduler: Scheduler,
        results: ResultCache | None,
        clock: Any,
        options: MemcachedOptions,
        shared: Shared,
        transport: Transport,
        access: Access | None = None,
        peer: str = "?",
    ) -> None:
        self.access = access if access is not None else Access()
        self.grant = self.access.anonymous  # until a ``set _auth`` shows a token
        self.peer = peer
        self.scheduler = scheduler
        self.results = results
        self.clock = clock
        self.options = options
        self.shared = shared
        # this connection's counts (``stats``: ``Shared.totals`` adds them up; one attribute each, not a shared
        # dict's entry, on the request path)
        self.cmd_get = self.cmd_set = self.cmd_touch = self.get_hits = self.get_misses = 0
        shared.sessions.add(self)
        self.transport = transport
        self._write = transport.write  # (bound once: a write per reply)
        # answers to requests ahead of a waiting one, held to leave with its answer (``_serve``, ``_finish``)
        self._ahead: bytes | None = None
        self._partial_input: Callable[[bool], None] | None = getattr(transport, "partial_input", None)
        self._held = False  # part of a request was held after the last read
        self.decoder = Decoder(max_value_size=options.max_value_size, plain=True)
        self._max_value = options.max_value_size
        self.closed = False
        self._events: deque[Any] = deque()  # requests behind a waiting one
        self._out: list[bytes] | None = None  # replies of the requests being served, written together
        self._busy = False  # a request is waiting for its answer
        self._paused = False
        self._running = False
        self._input_ended = False  # the peer half-closed: close once everything read is answered
        # one worker per function this connection takes work of, so that a grab takes only that function's
        self._workers: dict[bytes, Worker] = {}
        self._open: dict[bytes, Job] = {}  # the job each function has open here (get .../open)
        # the current wait: the retrieval it belongs to, and what it waits for (a result, or work)
        self._waiting_run: _Retrieval | bytes | None = None
        self._waiting_result: tuple[bytes, bytes] | None = None  # the result (its cache key) it waits for
        self._waiting_error = False  # ... read as a failure's text (``/error``)
        self._waiting: tuple[bytes, bool] | None = None  # work of this function (opened or not)
        self._timer: Any = None  # the connection's one wait timer (``_arm``)
        self._on_timeout: Callable[[], None] | None = None  # what the current wait does when it times out
        self._deadline = 0.0  # when it times out (clock seconds)
        self._timer_due = 0.0  # when the timer fires (clock seconds): no ``getTime()`` call per wait
        self._end_of_turn = end_of_turn(clock, first=True)
        self._handed_job: Job | None = None  # handed to the waiting get, taken at the end of the turn
        # the last plain set of a unique: its key bytes and result key, for the get of its result that follows
        self._last_set: tuple[bytes, tuple[bytes, bytes]] | None = None
        self._handlers: dict[type, Callable[[Any], bytes | _Pending]] = {
            Get: self._get,
            MetaGet: self._get,
            Store: self._store,
            MetaSet: self._store,
            Delete: self._delete,
            MetaDelete: self._delete,
            Touch: self._touch,
            Arithmetic: lambda event: replies.arithmetic_reply(event, None),
            FlushAll: self._flush_all,
            Version: lambda event: replies.version_reply(event, VERSION),
            Verbosity: replies.verbosity_reply,
            Stats: self._stats,
            Noop: replies.noop_reply,
            MetaNoop: replies.noop_reply,
        }

    # ------------------------------------------------------------------ bytes in, bytes out

    @property
    def partial(self) -> bool:
        """Part of a request is held (or being skipped): its rest must come, or the connection times out."""
        return self.decoder.holding

    def input_ended(self) -> None:
        """The peer sent its last byte (``printf ... | nc``): answer what it sent, then close. Waits for
        results go on; this connection takes no more work (its workers go, an open job goes back, a wait for
        work ends as a miss): a peer that stopped sending may be gone altogether, and a job handed to it
        would be lost (a plain ``get`` completes the job it takes)."""
        self._input_ended = True
        waiting = self._waiting is not None
        self._drop_workers()
        if waiting:
            self._wait_done(None)
        self._run()

    def connection_lost(self) -> None:
        """The peer went away: waits stop, and open jobs go back as a lost worker's (they run elsewhere)."""
        self.shared.retire(self)
        self.closed = True
        self._events.clear()
        self._stop_waiting()
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self._drop_workers()

    def _drop_workers(self) -> None:
        """This connection's workers go; the jobs open on them go back by the worker-failure rule. A job
        handed to a waiting get but not taken yet goes back to the head of its queue (as CANT_DO does)."""
        self._give_back()
        workers, self._workers = self._workers, {}
        self._open.clear()
        for worker in workers.values():
            self.scheduler.remove_worker(worker)
        self.access.detach(self.grant)

    # ------------------------------------------------------------------ identity and permissions

    def _key(self, raw: bytes, action: str, key: keys.Key | None = None) -> keys.Key | Denied | None:
        """A key as the scheduler knows it (a tenant's function prefixed), if the connection's identity may
        ``submit`` to its function (store, delete, read a result) or ``work`` on it (take, finish a job);
        else the refusal (None: not a key). ``key``: ``raw`` already parsed."""
        if key is None:
            key = keys.parse(raw)
        if key is None or b"\0" in raw:
            return None
        if self.grant.unrestricted:  # everything allowed, one namespace: the key as it is
            return key
        access = self.access
        try:
            if action == "submit":
                function = access.submit(self.grant, key.function, "memcached", self.peer)
            else:
                function = access.register(self.grant, key.function, "memcached", self.peer)
        except Denied as refusal:
            return refusal
        return key if function is key.function else dataclasses.replace(key, function=function)

    def take_identity(self, grant: Grant) -> Denied | None:
        """Become ``grant`` (a verified client certificate's identity, ``Access.identity_for_certificate``);
        a refusal (a cap reached) leaves the identity as it was."""
        try:
            self.grant = self.access.switch(self.grant, grant, "memcached", self.peer)
        except Denied as refusal:
            return refusal
        return None

    def _authenticate(self, event: Store | MetaSet) -> bytes:
        """``set _auth 0 0 N`` with ``<token>`` or memcached's SASL-less ``<name> <token>``: the connection
        becomes that identity (before it takes any work), or CLIENT_ERROR."""
        name, _, token = event.value.strip().rpartition(b" ")
        if self._workers:
            return replies.error_reply(event, "a token must come before the connection takes work", client=True)
        try:
            grant = self.access.authenticate(self.grant, token, "memcached", self.peer)
        except Denied as refusal:
            return replies.error_reply(event, refusal.text, client=True)
        if name and name.decode(errors="replace") != grant.name:
            self.access.detach(grant)
            self.grant = self.access.anonymous
            return replies.error_reply(event, "the token is not that identity's", client=True)
        self.grant = grant
        return replies.store_reply(event, StoreOutcome.STORED)

    def _run(self) -> None:
        """Serve the requests queued behind a wait that ended (or check the pause and a half-close)."""
        if self._running:
            return
        events = self._events
        if events and not self._busy and not self.closed:
            requests = list(events)
            events.clear()
            self._serve(requests)
        else:
            self._after_serving()

    def _after_serving(self) -> None:
        if self._paused and len(self._events) < MAX_QUEUED_EVENTS // 2 and not self.closed:
            self._paused = False
            self.transport.resume_reading()
        if self._input_ended and not self._busy and not self._events and not self.closed:
            self.closed = True
            self.transport.close()

    def _flush(self) -> None:
        """Write the replies gathered so far (before a write that must come after them)."""
        out = self._out
        if out:
            self.transport.write(b"".join(out))
            out.clear()

    def _answer(self, event: Event) -> bytes | _Pending:
        handler = self._handlers.get(type(event))
        if handler is not None:
            return handler(event)
        if isinstance(event, Error):
            if event.close:
                self._close(event.reply)
                return b""
            return b"" if event.noreply else event.reply
        if isinstance(event, Quit):
            self._close(replies.quit_reply(event))
            return b""
        return replies.error_reply(event, "not supported", client=True)

    def _close(self, last: bytes) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead:
            self.transport.write(ahead)
        self._flush()
        if last:
            self.transport.write(last)
        self.closed = True
        self.transport.close()

    # ------------------------------------------------------------------ retrievals

    def _get(self, event: Get | MetaGet) -> bytes | _Pending:
        if (
            type(event) is Get
            and event.opcode is None
            and event.exptime is None
            and len(event.keys) == 1
            and not event.with_cas  # (``gets``: its VALUE line carries the cas: the general way)
        ):
            return self._get_plain(event.keys[0])
        run = _Retrieval(event, event.keys if isinstance(event, Get) else (event.key,))
        self.cmd_get += len(run.keys)
        return self._retrieve(run)

    def _get_plain(self, raw: bytes) -> bytes | _Pending:
        """A text ``get`` of one key, no touch, no cas (what queue clients and workers send): no
        ``_Retrieval`` (a wait keeps the key itself), its answer formatted in one go."""
        self.cmd_get += 1
        last = self._last_set
        if last is not None and self.grant.unrestricted:
            # ``<function>/<unique>/t=<ms>`` after the set of ``<function>/<unique>`` (a client's wait for its
            # result): the set's parse serves, this new key is not parsed (what ``keys.parse`` would give)
            prefix = last[0]
            size = len(prefix)
            if raw[size : size + 3] == b"/t=" and raw[:size] == prefix:
                digits = raw[size + 3 :]
                if digits.isdigit() and len(digits) <= keys.MAX_WAIT_DIGITS:
                    # the result (not a failure's text): a hit, a miss, or a wait for it
                    results = self.results
                    if results is None:
                        self.get_misses += 1
                        return replies.TEXT_MISS
                    wait_ms = int(digits)
                    most = self.options.max_wait_ms
                    if wait_ms and most > 0:
                        result = results.get_or_wait(last[1], self._result_came)
                        if result is None:
                            self._waiting_run = raw
                            self._waiting_result = last[1]
                            self._waiting_error = False
                            self._arm((wait_ms if wait_ms < most else most) / 1000.0, self._result_timeout)
                            return PENDING
                    else:
                        result = results.get(last[1])
                    if result is None or result.failed:
                        self.get_misses += 1
                        return replies.TEXT_MISS
                    self.get_hits += 1
                    return replies.text_result(raw, result.flags, result.data)
        key = keys.parse(raw)
        if key is not None and not (key.unique or key.error or key.fail) and self.grant.unrestricted:
            outcome = self._work(key, raw)  # a worker's get (``_lookup``'s last case, without the call)
        else:
            outcome = self._lookup(raw, None, raw)
        if outcome is PENDING:
            return PENDING
        if type(outcome) is Item:
            self.get_hits += 1
            return replies.text_hit(raw, outcome)
        if outcome is None:
            self.get_misses += 1
            return replies.TEXT_MISS
        if type(outcome) is str:
            return text.client_error(outcome)
        self._wait(outcome, raw)  # type: ignore[arg-type]
        return PENDING

    def _retrieve(self, run: _Retrieval) -> bytes | _Pending:
        touch = run.event.exptime if isinstance(run.event, Get) else run.event.ttl
        while len(run.items) < len(run.keys):
            outcome = self._lookup(run.keys[len(run.items)], touch, run)
            if outcome is PENDING:
                return PENDING
            if isinstance(outcome, str):
                return replies.error_reply(run.event, outcome, client=True)
            if type(outcome) is keys.Key:
                self._wait(outcome, run)
                return PENDING
            self._count(outcome)  # type: ignore[arg-type]
            run.items.append(outcome)  # type: ignore[arg-type]
        if isinstance(run.event, MetaGet):
            return replies.meta_get_reply(run.event, run.items[0])
        return replies.get_reply(run.event, run.items)

    def _resume(self, run: _Retrieval | bytes, item: Item | None) -> None:
        if type(run) is bytes:  # what _get_plain began: one key, text, no touch
            if item is None:
                self.get_misses += 1
                self._finish(replies.TEXT_MISS)
            else:
                self.get_hits += 1
                self._finish(replies.text_hit(run, item))
            return
        assert isinstance(run, _Retrieval)
        self._count(item)
        run.items.append(item)
        reply = self._retrieve(run)
        if reply is not PENDING:
            self._finish(reply)  # type: ignore[arg-type]

    def _count(self, item: Item | None) -> None:
        if item is not None:
            self.get_hits += 1
        else:
            self.get_misses += 1

    def _lookup(
        self, raw: bytes, touch: int | None, run: _Retrieval | bytes
    ) -> Item | None | keys.Key | str | _Pending:
        """One key of ``run``: a hit, a miss, the key of a result to wait for, PENDING (a wait for work), or why
        it is refused."""
        key = keys.parse(raw)
        if key is None:
            return None
        if not self.grant.unrestricted or b"\0" in raw:  # else ``_key`` would answer ``key``
            key = self._key(raw, "submit" if key.unique or key.error else "work", key)  # type: ignore[assignment]
            if key is None or type(key) is Denied:
                return None if key is None else key.text  # type: ignore[attr-defined]
        assert isinstance(key, keys.Key)
        if key.unique or key.error:
            if key.open or key.close or key.abort or key.peek or key.fail:
                return OPTION_MISUSE
            return self._result(key, touch)
        if key.fail:
            return OPTION_MISUSE
        return self._work(key, run)

    def _result(self, key: keys.Key, touch: int | None) -> Item | None | keys.Key:
        results = self.results
        if results is None:
            return None
        result = results.get(key.result_key)
        if result is not None and touch is not None:
            result = results.touch(key.result_key, touch)
        if result is None:
            return key if key.wait_ms and self.options.max_wait_ms > 0 else None  # (``_maybe_wait``)
        return self._result_item(key.error, result)

    def _result_item(self, error: bool, result: Result) -> Item | None:
        """A result as a retrieval reads it (``error``: a failure's text; else only a success)."""
        if result.failed != error:
            return None
        expires = result.expires  # (``ResultCache.ttl_left``, without the call)
        ttl = max(0, int(expires - self.clock.seconds())) if expires else -1
        return Item(result.data, result.flags, result.cas, ttl)

    def _work(self, key: keys.Key, run: _Retrieval | bytes) -> Item | None | str | _Pending:
        """A worker's get: the job it takes, a miss, why not, or PENDING: ``run`` (a one-key text get stands
        for itself) waits for the next job, up to its ``t=`` capped by the configured maximum (its grab held:
        ``_WorkerWaker.grabbed`` answers it, or ``_work_timeout``)."""
        function = key.function
        if key.close:
            self._complete_open(function, b"")
        elif key.abort:
            self._abort_open(function)
        if key.peek:
            found = self.scheduler.next_job(function)
            if found is None:
                return None
            snapshot, data = found
            return Item(data, self.shared.peek_flags(snapshot.handle))
        if ((key.close or key.abort) and not key.open) or self._input_ended:
            return None
        if function in self._open:
            return ALREADY_OPEN
        worker = self._workers.get(function)
        if worker is None or not worker.abilities:
            worker = self._worker(function)
        wait_ms = key.wait_ms
        most = self.options.max_wait_ms
        if wait_ms and most > 0:
            job = self.scheduler.hold(worker)  # (its grab first)
            if job is HELD:
                self._waiting_run = run
                self._waiting = (function, key.open)
                self._arm((wait_ms if wait_ms < most else most) / 1000.0, self._work_timeout)
                return PENDING
        else:
            job = self.scheduler.grab(worker)  # none: the worker stays registered (gearmand's idle worker)
        if job is None:
            return None
        return self._took(function, worker, job, key.open)  # type: ignore[arg-type]

    # -- waiting

    def _wait(self, key: keys.Key, run: _Retrieval | bytes) -> None:
        """``run`` (a one-key text get stands for itself) waits for the result of ``key``, up to its ``t=``
        capped by the configured maximum; ``_wait_done`` resumes it (no closure per wait). (A wait for work is
        ``_work``'s.)"""
        assert self.results is not None
        self._waiting_run = run
        self._waiting_result = key.result_key
        self._waiting_error = key.error
        self.results.wait(key.result_key, self._result_came)
        self._arm(min(key.wait_ms, self.options.max_wait_ms) / 1000.0, self._result_timeout)  # type: ignore[type-var]

    def _result_came(self, result: Result) -> None:
        self._waiting_result = None  # the cache let go of its waiters
        run = self._waiting_run
        if type(run) is bytes and not self._waiting_error:  # a plain get: answered from the result itself
            self._on_timeout = self._waiting_run = None
            if result.failed:
                self.get_misses += 1
                self._finish(replies.TEXT_MISS)
            else:
                self.get_hits += 1
                data = result.data
                self._finish(replies.TEXT_RESULT % (run, result.flags, len(data), data))
            return
        self._wait_done(self._result_item(self._waiting_error, result))

    def _result_timeout(self) -> None:
        self._wait_done(None)

    def _wait_done(self, item: Item | None) -> None:
        """The wait is over (``item``: what it found, None: a miss): its retrieval goes on."""
        run = self._waiting_run
        if self._waiting_result is None:  # ``_stop_waiting`` without a result wait to take back
            self._on_timeout = self._waiting_run = self._waiting = None
        else:
            self._stop_waiting()
        if run is not None:
            self._resume(run, item)

    def _arm(self, seconds: float, on_timeout: Callable[[], None]) -> None:
        """Time the current wait out after ``seconds``. One timer per connection, moved but never cancelled
        while waits follow each other: a wait that ends early only disarms it (``_on_timeout``), and a timer
        that fires before the current wait's deadline sets itself again for the rest."""
        self._on_timeout = on_timeout
        self._deadline = deadline = self.clock.seconds() + seconds
        timer = self._timer
        if timer is None:
            self._timer = self.clock.callLater(seconds, self._timer_fired)
            self._timer_due = deadline
        elif self._timer_due > deadline:
            timer.reset(seconds)
            self._timer_due = deadline

    def _timer_fired(self) -> None:
        self._timer = None
        on_timeout = self._on_timeout
        if on_timeout is None or self.closed:
            return
        left = self._deadline - self.clock.seconds()
        if left > _TIMER_SLACK:
            self._timer = self.clock.callLater(left, self._timer_fired)
            self._timer_due = self._deadline
            return
        self._on_timeout = None
        on_timeout()

    def _stop_waiting(self) -> None:
        self._on_timeout = None
        self._waiting_run = None
        self._waiting = None
        result_key, self._waiting_result = self._waiting_result, None
        if result_key is not None and self.results is not None:
            self.results.unwait(result_key, self._result_came)

    def _work_timeout(self) -> None:
        """The wait for work is over: its held grab ends, answered with nothing (``_handed_nothing``)."""
        waiting = self._waiting
        if waiting is None or self.closed or self._handed_job is not None:
            return
        worker = self._workers.get(waiting[0])
        if worker is not None:
            self.scheduler.end_hold(worker)
        if self._waiting is waiting:  # its grab was not held any more
            self._wait_done(None)

    def _handed_nothing(self, function: bytes) -> None:
        """The scheduler answered the held grab of this connection's worker of ``function`` with nothing:
        the wait for it ends as a miss (``_WorkerWaker.grabbed``)."""
        waiting = self._waiting
        if waiting is not None and waiting[0] == function and self._handed_job is None:
            self._wait_done(None)

    def _take_handed(self) -> None:
        waiting = self._waiting
        if waiting is None or self.closed:
            self._give_back()  # never expected: nobody waits for it
            return
        job, self._handed_job = self._handed_job, None
        if job is None:
            return  # the connection's workers went meanwhile, and gave it back
        function, open_ = waiting
        run = self._waiting_run
        if type(run) is bytes and open_:  # a one-key text get of an open job (``_took``, ``_wait_done``,
            self._open[function] = job  # ``_resume``, without an ``Item``): its flags stay until it completes
            self._on_timeout = self._waiting_run = self._waiting = None
            self.get_hits += 1
            self._finish(replies.TEXT_RESULT % (run, self.shared.flags.get(job.handle, 0), len(job.data), job.data))
            return
        item = self._took(function, self._workers[function], job, open_)  # the worker stays while it is open
        if type(run) is bytes:  # a one-key text get: answered here (``_wait_done``, ``_resume``)
            self._on_timeout = self._waiting_run = self._waiting = None
            self.get_hits += 1
            self._finish(replies.text_hit(run, item))
        else:
            self._wait_done(item)

    def _give_back(self) -> None:
        """A job handed over but not taken goes back to the head of its queue (as CANT_DO gives it back)."""
        job, self._handed_job = self._handed_job, None
        if job is not None and job.worker is not None and job.worker is self._workers.get(job.function.name):
            self.scheduler.cant_do(job.worker, job.function.name)

    # ------------------------------------------------------------------ worker side

    def _worker(self, function: bytes) -> Worker:
        worker = self._workers.get(function)
        if worker is None:
            worker = self._workers[function] = self.scheduler.add_worker(_WorkerWaker(self, function))
        if not worker.abilities:
            self.scheduler.can_do(worker, function)
        return worker

    def _took(self, function: bytes, worker: Worker, job: Any, open_: bool) -> Item:
        flags = self.shared.flags  # (``Shared.peek_flags``/``take_flags``, without the calls)
        if open_:  # its flags stay until it completes: given back, it is taken again with them
            item = Item(job.data, flags.get(job.handle, 0))
            self._open[function] = job
        else:  # a plain get: the job is done when taken (Kestrel's at-most-once read)
            item = Item(job.data, flags.pop(job.handle, 0))
            self.scheduler.work_complete(worker, job.handle, b"")
        return item

    def _complete_open(self, function: bytes, data: bytes) -> bool:
        job = self._open.pop(function, None)
        if job is None:
            return False
        self.shared.flags.pop(job.handle, None)
        self.scheduler.work_complete(self._workers[function], job.handle, data)
        return True

    def _fail_open(self, function: bytes, text: bytes) -> bool:
        job = self._open.pop(function, None)
        if job is None:
            return False
        worker = self._workers[function]
        if text:
            self.scheduler.work_exception(worker, job.handle, text)
        else:
            self.scheduler.work_fail(worker, job.handle)
        return True

    def _abort_open(self, function: bytes) -> None:
        """The open job goes back by the rule for a worker that died with it (as a lost connection)."""
        if self._open.pop(function, None) is not None:
            self.scheduler.remove_worker(self._workers.pop(function))

    # ------------------------------------------------------------------ storage: submit, or a worker's result

    def _set_plain(self, request: PlainSet) -> bytes | _Pending:
        """A plain text ``set`` (from a plain decoder) of ``<function>`` or ``<function>/<unique>`` (what
        ``keys.parse`` reads as such, without its parse): a background submit, for an unrestricted identity on
        the memory queue, exptime 0; or a worker's ``<function>/close``. Anything else goes ``_store``. With
        ``noreply`` (pymemcache's default) nothing is answered, errors included, as memcached does."""
        raw, flags, exptime, value, noreply = request
        function, slash, unique = raw.partition(b"/")
        if slash:
            if unique == b"close" and function and self.grant.unrestricted:  # a worker's result
                self.cmd_set += 1
                if not self._complete_open(function, value):
                    return b"" if noreply else text.NOT_FOUND
                return b"" if noreply else text.STORED
            if not function or not unique or b"/" in unique or unique in keys.FLAGS or unique[:2] == b"t=":
                return self._store(as_event(request))
        elif raw == AUTH_KEY:
            return self._store(as_event(request))
        scheduler = self.scheduler
        if exptime or not self.grant.unrestricted or scheduler.store is not None:  # (a durable store: the
            return self._store(as_event(request))  # answer waits for the commit)
        self.cmd_set += 1
        try:
            job = scheduler.submit(function, value, unique, _NORMAL, True)
        except ArgumentTooLarge as error:
            return b"" if noreply else text.client_error(error.text)
        except SchedulerError as error:
            return b"" if noreply else text.server_error(error.text)
        if flags:
            self.shared.remember_flags(job.handle, flags)
        if unique:
            result_key = (function, unique)
            self._last_set = (raw, result_key)
            if self.results is not None:
                self.results.expect(result_key, flags, None)  # a new run: its old result goes
        return b"" if noreply else text.STORED

    def _store(self, event: Store | MetaSet) -> bytes | _Pending:
        self.cmd_set += 1
        if event.key == AUTH_KEY:
            return self._authenticate(event)
        raw = event.key
        key = parsed = keys.parse(raw)
        if parsed is not None and (not self.grant.unrestricted or b"\0" in raw):  # else: ``key`` as it is
            key = self._key(raw, "work" if parsed.close or parsed.fail else "submit", parsed)  # type: ignore[assignment]
        if key is None:
            return replies.error_reply(event, BAD_KEY, client=True)
        if type(key) is Denied:  # refused (CLIENT_ERROR), or a tenant's full queue (SERVER_ERROR)
            return replies.error_reply(event, key.text, client=key.code == PERMISSION_DENIED)
        assert isinstance(key, keys.Key)
        if key.close or key.fail:
            others = key.open or key.abort or key.peek or key.error or key.wait_ms is not None
            if key.unique or others or (key.close and key.fail):
                return replies.error_reply(event, OPTION_MISUSE, client=True)
            done = (self._complete_open if key.close else self._fail_open)(key.function, event.value)
            if done and type(event) is Store and event.opcode is None:
                reply = b"" if event.noreply else text.STORED
            else:
                reply = replies.store_reply(event, StoreOutcome.STORED if done else StoreOutcome.NOT_FOUND)
            return reply  # (a pipelined get that waits next: it leaves with its answer, ``_serve``)
        if key.has_options:
            return replies.error_reply(event, OPTION_MISUSE, client=True)
        command = event.command
        priority = PRIORITIES.get(command)
        if priority is None:  # replace, cas: there is never an item to replace
            return replies.store_reply(event, StoreOutcome.NOT_STORED)
        results = self.results
        if (
            command == "add"
            and key.unique
            and (
                self.scheduler.job_snapshot_by_unique(key.unique, key.function) is not None
                or (results is not None and results.get(key.result_key) is not None)
            )
        ):
            return replies.store_reply(event, StoreOutcome.NOT_STORED)  # what memcexist asks
        plain = type(event) is Store
        exptime = event.exptime if plain else event.ttl  # type: ignore[union-attr]
        if exptime and expiry(self.clock.seconds(), exptime) is None:
            return replies.store_reply(event, StoreOutcome.STORED)  # born expired: memcached stores nothing
        unique = key.unique
        flags = event.flags if plain else event.client_flags  # type: ignore[union-attr]
        scheduler = self.scheduler
        # with a durable store the answer waits for the commit; in memory the job is queued when submit returns
        ack = None if scheduler.store is None else _Ack(event)
        try:
            job = scheduler.submit(key.function, event.value, unique, priority, background=True, listener=ack)
        except ArgumentTooLarge as error:
            return replies.error_reply(event, error.text, client=True)
        except SchedulerError as error:
            return replies.error_reply(event, error.text)
        if flags:
            self.shared.remember_flags(job.handle, flags)
        if unique and results is not None:
            results.expect(key.result_key, flags, exptime or None)  # a new run: its old result goes
        if ack is None:
            if plain and event.opcode is None:  # type: ignore[union-attr]
                return b"" if event.noreply else text.STORED  # type: ignore[union-attr]
            return replies.store_reply(event, StoreOutcome.STORED)
        if ack.reply is not None:
            return ack.reply
        ack.then = self._finish
        return PENDING

    # ------------------------------------------------------------------ the other commands

    def _delete(self, event: Delete | MetaDelete) -> bytes:
        key = self._key(event.key, "submit")
        if type(key) is Denied:
            return replies.error_reply(event, key.text, client=True)
        if not isinstance(key, keys.Key) or key.has_options:
            return replies.delete_reply(event, DeleteOutcome.NOT_FOUND)
        scheduler = self.scheduler
        deleted = False
        if not key.unique:
            if not self.options.allow_queue_delete:
                return replies.error_reply(event, QUEUE_DELETE_OFF, client=True)
            try:  # other submitters' jobs too: an operator's cancel, not a submitter's
                self.access.admin(self.grant, "cancel", b"delete " + event.key, "memcached", self.peer)
            except Denied as refusal:
                return replies.error_reply(event, refusal.text, client=True)
            for snapshot in scheduler.job_snapshots():
                if snapshot.function == key.function and not snapshot.running:
                    deleted = scheduler.cancel(snapshot.handle) or deleted
        else:
            snapshot = scheduler.job_snapshot_by_unique(key.unique, key.function)
            if snapshot is not None and not snapshot.running:
                deleted = scheduler.cancel(snapshot.handle)  # its worker never sees it
            if self.results is not None:
                deleted = self.results.forget(key.result_key) or deleted  # a cancel leaves a failure
        return replies.delete_reply(event, DeleteOutcome.DELETED if deleted else DeleteOutcome.NOT_FOUND)

    def _touch(self, event: Touch) -> bytes:
        self.cmd_touch += 1
        key = self._key(event.key, "submit")
        result = None
        if isinstance(key, keys.Key) and key.unique and not key.has_options and self.results is not None:
            result = self.results.touch(key.result_key, event.exptime)
        item = None if result is None else Item(result.data, result.flags, result.cas)
        return replies.touch_reply(event, item)

    def _flush_all(self, event: FlushAll) -> bytes:
        """Results only: jobs are never flushed (``memcflush`` must not wipe a queue)."""
        if self.results is not None:
            if event.delay > 0:
                at = expiry(self.clock.seconds(), event.delay)
                self.clock.callLater(max(0.0, (at or 0) - self.clock.seconds()), self.results.clear)
            else:
                self.results.clear()
        return replies.flush_reply(event)

    def _stats(self, event: Stats) -> bytes:
        """``stats gearman`` names functions: an admin ``read``, and a tenant sees only its own."""
        if event.args == (b"gearman",):
            try:
                self.access.admin(self.grant, "read", b"stats gearman", "memcached", self.peer)
            except Denied as refusal:
                return replies.error_reply(event, refusal.text, client=True)
        lines = stats(event.args, self.shared, self.scheduler, self.results, self.grant.outside)
        return replies.stats_reply(event, lines)


class PythonSession(SessionMethods, PyCore):
    """The session on the pure-Python core (``core.PyCore``)."""

    __slots__ = SESSION_ATTRIBUTES


if core.Core is not None:

    class CSession(SessionMethods, core.Core):  # type: ignore[misc,valid-type]
        """The session on the C core (protocols/memcached/_core.c)."""

        __slots__ = SESSION_ATTRIBUTES

    MemcachedSession: type[SessionMethods] = CSession
else:  # pragma: no cover - depends on the build
    MemcachedSession = PythonSession
