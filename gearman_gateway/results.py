"""The result cache: what finished background jobs with a unique returned, by (function, unique).

gearmand throws a background job's result away; "how do I get the result of a background job" is a
standing Gearman question. The scheduler hands every background job that has a unique to this cache's
listener (``Scheduler.observer``), whatever frontend submitted it, so the memcached frontend's ``get`` and
the HTTP frontend's ``/_gearman/results/<function>/<unique>`` can serve it. Nothing here reads the
scheduler's internals: only the ``JobListener`` events and the job's function name and unique.

Bounded twice: by memory (least recently used results go first once the values and keys pass
``max_memory``) and by time (a result lives ``ttl`` seconds from the job's completion, or what its
submitter asked for). A failed job is kept too, as a failure with its exception text, so that a client
can tell "failed" from "still running".
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gearman_gateway.scheduler.listener import JobListener

if TYPE_CHECKING:
    from gearman_gateway.scheduler.job import Job
    from gearman_gateway.scheduler.listener import Clock

Key = tuple[bytes, bytes]  # (function, unique)

#: Default memory bound of the cache: values and keys, plus ENTRY_OVERHEAD each.
DEFAULT_MAX_MEMORY = 64 * 1024 * 1024
#: Default lifetime of a result, counted from its job's completion (an hour: long enough to collect a
#: result after a retry loop, short enough that an unbounded stream of uniques does not pin memory).
DEFAULT_TTL = 3600.0
#: What one entry costs beyond its bytes (the entry object, its key tuple, the dict slot), roughly: counted
#: so that a flood of empty results is bounded too.
ENTRY_OVERHEAD = 200
#: memcached reads an exptime over 30 days as an absolute Unix time, not a count of seconds.
RELATIVE_LIMIT = 60 * 60 * 24 * 30
#: No wish of a submitter's: memcached flags 0, the default TTL.
_NO_WISH: tuple[int, float | None] = (0, None)
#: Submitters' wishes (flags, TTL) remembered for jobs not finished yet, at most this many: a job dropped
#: without a word (its worker gone for good) must not leave its wish behind for ever.
MAX_EXPECTED = 100_000


@dataclass(slots=True)
class Result:
    """A finished job's outcome: its data (WORK_COMPLETE) or, when ``failed``, its exception text (empty
    for a plain WORK_FAIL); ``flags`` are the memcached flags its submitter sent (0 from other frontends)."""

    data: bytes
    flags: int
    expires: float  # clock time; 0: never
    failed: bool = False
    size: int = 0
    cas: int = 0


def expiry(now: float, exptime: float) -> float | None:
    """memcached's reading of an exptime: 0 never, up to 30 days relative, beyond that an absolute Unix time
    (assumed to be on the same clock). None: already past (an item born expired)."""
    if exptime == 0:
        return 0.0
    if exptime < 0:
        return None
    at = exptime if exptime > RELATIVE_LIMIT else now + exptime
    return at if at > now else None


class ResultCache(JobListener):
    """Results by (function, unique), LRU by memory and expiring by TTL; the scheduler's observer."""

    __slots__ = (
        "clock",
        "max_memory",
        "ttl",
        "memory",
        "_entries",
        "_expected",
        "_waiters",
        "_cas",
        "stored",
        "evictions",
        "expired",
        "hits",
        "misses",
    )

    def __init__(self, clock: Clock, max_memory: int = DEFAULT_MAX_MEMORY, ttl: float = DEFAULT_TTL) -> None:
        self.clock = clock
        self.max_memory = max_memory
        self.ttl = ttl
        self.memory = 0
        self._entries: OrderedDict[Key, Result] = OrderedDict()  # least recently used first
        self._expected: dict[Key, tuple[int, float | None]] = {}  # flags, ttl (None: the default)
        self._waiters: dict[Key, list[Callable[[Result], None]]] = {}
        self._cas = 0
        #: counters (``stats``)
        self.stored = self.evictions = self.expired = self.hits = self.misses = 0

    @property
    def stats(self) -> dict[str, int]:
        """The counters by name: stored, evictions, expired, hits, misses."""
        return {
            "stored": self.stored,
            "evictions": self.evictions,
            "expired": self.expired,
            "hits": self.hits,
            "misses": self.misses,
        }

    # -- the scheduler's side (JobListener)

    def job_complete(self, job: Job, data: bytes) -> None:
        key = (job.function.name, job.unique)
        flags, ttl = self._expected.pop(key, _NO_WISH)
        self._keep(key, data, flags, ttl, False)

    def job_fail(self, job: Job) -> None:
        self._finish(job, b"", failed=True)

    def job_exception(self, job: Job, data: bytes) -> None:
        self._finish(job, data, failed=True)

    def _finish(self, job: Job, data: bytes, failed: bool) -> None:
        key = (job.function.name, job.unique)
        flags, ttl = self._expected.pop(key, _NO_WISH)
        self._keep(key, data, flags, ttl, failed)

    # -- what a frontend calls

    def expect(self, key: Key, flags: int, ttl: float | None) -> None:
        """A submitter's flags and TTL (seconds from completion; None: the default) for the job of ``key``,
        submitted again: the result of its last run goes (``forget``), its next one replaces it."""
        old = self._entries.pop(key, None)
        if old is not None:
            self.memory -= old.size
        expected = self._expected
        if len(expected) >= MAX_EXPECTED and key not in expected:
            del expected[next(iter(expected))]
        expected[key] = (flags, ttl)

    def put(self, key: Key, data: bytes, *, flags: int = 0, ttl: float | None = None, failed: bool = False) -> None:
        """Keep ``data`` as the result of ``key`` (replacing an older one), and answer its waiters."""
        self._keep(key, data, flags, ttl, failed)

    def _keep(self, key: Key, data: bytes, flags: int, ttl: float | None, failed: bool) -> None:
        now = self.clock.seconds()
        if ttl is None:
            expires: float | None = now + self.ttl if self.ttl > 0 else 0.0
        else:
            expires = expiry(now, ttl)
        self._cas = cas = self._cas + 1
        size = len(data) + len(key[0]) + len(key[1]) + ENTRY_OVERHEAD
        result = Result(data, flags, expires or 0.0, failed, size, cas)
        entries = self._entries
        old = entries.pop(key, None)  # (``forget``)
        if old is not None:
            self.memory -= old.size
        waiters = self._waiters.pop(key, None) if self._waiters else None
        if expires is not None and size <= self.max_memory:
            entries[key] = result
            self.memory += size
            self.stored += 1
            if self.memory > self.max_memory:
                self._evict()
        if waiters:
            for waiter in waiters:
                waiter(result)

    def get(self, key: Key) -> Result | None:
        """The result of ``key`` (a failure too: check ``failed``), most recently used from now on."""
        result = self._entries.get(key)
        if result is not None and result.expires and result.expires <= self.clock.seconds():
            self.forget(key)
            self.expired += 1
            result = None
        if result is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return result

    def get_or_wait(self, key: Key, waiter: Callable[[Result], None]) -> Result | None:
        """``get``, and on a miss ``wait``: one call for a client's wait for a result that is usually not
        there yet."""
        result = self._entries.get(key)
        if result is not None:
            if not result.expires or result.expires > self.clock.seconds():
                self._entries.move_to_end(key)
                self.hits += 1
                return result
            result = self.get(key)  # expired: forgotten, counted
        else:
            self.misses += 1
        if result is None:  # (``wait``, without the call)
            waiters = self._waiters.get(key)
            if waiters is None:
                self._waiters[key] = [waiter]
            else:
                waiters.append(waiter)
        return result

    def ttl_left(self, result: Result) -> int:
        """Seconds ``result`` has left; -1: it never expires."""
        if not result.expires:
            return -1
        return max(0, int(result.expires - self.clock.seconds()))

    def touch(self, key: Key, exptime: float) -> Result | None:
        """Give a kept result a new lifetime (memcached's reading of ``exptime``); None: not kept. An exptime
        already past forgets it, as memcached does."""
        result = self.get(key)
        if result is None:
            return None
        expires = expiry(self.clock.seconds(), exptime)
        if expires is None:
            self.forget(key)
        else:
            result.expires = expires
        return result

    def forget(self, key: Key) -> bool:
        result = self._entries.pop(key, None)
        if result is None:
            return False
        self.memory -= result.size
        return True

    def clear(self) -> None:
        """``flush_all``: every result goes (never a job)."""
        self._entries.clear()
        self.memory = 0

    def __len__(self) -> int:
        return len(self._entries)

    def wait(self, key: Key, waiter: Callable[[Result], None]) -> None:
        """Call ``waiter`` once with the result of ``key`` when it comes (unless ``unwait`` comes first)."""
        waiters = self._waiters.get(key)
        if waiters is None:
            self._waiters[key] = [waiter]
        else:
            waiters.append(waiter)

    def unwait(self, key: Key, waiter: Callable[[Result], None]) -> None:
        """``waiter`` stops waiting for ``key`` (equal, not identical: a bound method made again will do)."""
        current = self._waiters.get(key)
        if current is not None and waiter in current:
            current.remove(waiter)
            if not current:
                del self._waiters[key]

    def _evict(self) -> None:
        entries = self._entries
        while self.memory > self.max_memory and entries:
            _, oldest = entries.popitem(last=False)
            self.memory -= oldest.size
            self.evictions += 1
