"""What the memcached frontend shares across its connections: counters, the flags of submitted jobs, and
``stats`` in memcached's ``STAT name value`` shape (general, and ``stats gearman``: a line per function)."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gearman_gateway.version import __version__

if TYPE_CHECKING:
    from gearman_gateway.results import ResultCache
    from gearman_gateway.scheduler import Scheduler

#: What ``version`` answers: memcached's release first (libmemcached parses major.minor.micro from it).
VERSION = f"1.6.18-gearman-gateway-{__version__}"

#: The memcached flags of this many most recent submits are remembered by job handle, so that a worker
#: taking a job with ``get`` sees the flags it was submitted with. Jobs run by Gearman workers never
#: collect theirs: the bound keeps those from piling up.
MAX_FLAGS = 100_000

#: The counters each session keeps itself (``MemcachedSession``'s attributes of these names).
SESSION_COUNTS = ("cmd_get", "cmd_set", "cmd_touch", "get_hits", "get_misses")

#: ``stats`` groups of memcached's that have nothing to say here: answered with an empty list, not ERROR
#: (tools ask for them).
EMPTY_GROUPS = frozenset({b"items", b"slabs", b"sizes", b"conns", b"settings", b"extstore", b"detail"})


@dataclass
class Shared:
    """One per listening frontend."""

    clock: Any
    started: float = 0.0
    counters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("curr_connections", "total_connections", "cmd_get", "cmd_set", "cmd_touch", "get_hits", "get_misses"), 0
        )
    )
    flags: OrderedDict[bytes, int] = field(default_factory=OrderedDict)

    #: the live connections' sessions, whose own counts (``SESSION_COUNTS``) are added in by ``totals``
    sessions: set[Any] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.started = self.clock.seconds()

    def retire(self, session: Any) -> None:
        """A connection ends: its counts join the totals (once)."""
        if session in self.sessions:
            self.sessions.discard(session)
            counters = self.counters
            for name in SESSION_COUNTS:
                counters[name] += getattr(session, name)

    def totals(self) -> dict[str, int]:
        """The counters, the live connections' counts included."""
        totals = dict(self.counters)
        for session in self.sessions:
            for name in SESSION_COUNTS:
                totals[name] += getattr(session, name)
        return totals

    def remember_flags(self, handle: bytes, flags: int) -> None:
        book = self.flags
        book[handle] = flags
        if len(book) > MAX_FLAGS:
            book.popitem(last=False)

    def take_flags(self, handle: bytes) -> int:
        return self.flags.pop(handle, 0)

    def peek_flags(self, handle: bytes) -> int:
        return self.flags.get(handle, 0)


def stats(
    group: tuple[bytes, ...],
    shared: Shared,
    scheduler: Scheduler,
    results: ResultCache | None,
    view: Callable[[bytes], bytes | None] = bytes,
) -> Iterable[tuple[str | bytes, object]] | None:
    """The lines of ``stats [group]``; None for a group we do not know (memcached answers ERROR). ``view``:
    a function's name as the caller sees it, None to leave it out (a tenant's, ``Grant.outside``)."""
    if not group:
        return general(shared, scheduler, results)
    if group == (b"gearman",):
        return per_function(scheduler, view)
    if group[0] in EMPTY_GROUPS:
        return []
    return None


def general(shared: Shared, scheduler: Scheduler, results: ResultCache | None) -> list[tuple[str, object]]:
    now = shared.clock.seconds()
    totals = scheduler.totals()
    cache = results.stats if results is not None else {}
    lines: list[tuple[str, object]] = [
        ("pid", os.getpid()),
        ("uptime", int(now - shared.started)),
        ("time", int(now)),
        ("version", VERSION),
        ("pointer_size", 64),
        *shared.totals().items(),
        ("curr_items", len(results) if results is not None else 0),
        ("bytes", results.memory if results is not None else 0),
        ("limit_maxbytes", results.max_memory if results is not None else 0),
        ("evictions", cache.get("evictions", 0)),
        ("expired_unfetched", cache.get("expired", 0)),
        ("total_items", cache.get("stored", 0)),
        ("gearman_jobs", totals.jobs),
        ("gearman_running", totals.running),
        ("gearman_workers", totals.workers),
        ("gearman_dead_letters", totals.dead_letters),
    ]
    return lines


def per_function(scheduler: Scheduler, view: Callable[[bytes], bytes | None] = bytes) -> list[tuple[bytes, object]]:
    lines: list[tuple[bytes, object]] = []
    for fn in scheduler.function_snapshots():
        name = view(fn.name)
        if name is None:
            continue
        lines.append((name + b":queued", sum(fn.queued)))
        lines.append((name + b":running", fn.running))
        lines.append((name + b":workers", fn.workers))
    return lines
