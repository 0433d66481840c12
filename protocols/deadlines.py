"""Many timeouts of one length (an HTTP connection's idle timeout, a request's wait for a worker), with one
reactor call pending for all of them.

A reactor ``DelayedCall`` per timeout costs an object, a heap push and a cancel per request, and keeps the
reactor's timed-call bookkeeping busy on every turn. Timeouts of one length expire in the order they were
armed, so an ordered dict is their queue: arming and cancelling are O(1), and one call, due at the earliest
deadline, expires what is due and asks to be called again for the next. Sans-IO: the clock is handed in
(the reactor, or ``twisted.internet.task.Clock`` in tests).
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

log = logging.getLogger("gearman_gateway.deadlines")


class Deadlines:
    """Timeouts of ``timeout`` seconds, each under a key: ``arm`` (again: from now), ``cancel``."""

    __slots__ = ("clock", "timeout", "_due", "_call")

    def __init__(self, clock: Any, timeout: float) -> None:
        self.clock = clock
        self.timeout = timeout
        self._due: OrderedDict[object, tuple[float, Callable[[], None]]] = OrderedDict()
        self._call: Any = None  # the clock's pending call, if any

    def arm(self, key: object, callback: Callable[[], None]) -> None:
        """``callback`` in ``timeout`` seconds unless cancelled or armed again first."""
        due = self._due
        due.pop(key, None)
        due[key] = (self.clock.seconds() + self.timeout, callback)
        if self._call is None:
            self._call = self.clock.callLater(self.timeout, self._expire)

    def cancel(self, key: object) -> None:
        self._due.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def __len__(self) -> int:
        return len(self._due)

    def _expire(self) -> None:
        self._call = None
        due = self._due
        now = self.clock.seconds()
        while due:
            key = next(iter(due))
            deadline, callback = due[key]
            if deadline > now:
                self._call = self.clock.callLater(deadline - now, self._expire)
                return
            del due[key]
            try:
                callback()
            except Exception:  # one callback's failure must not strand the other timeouts
                log.exception("timeout callback %r failed", callback)


#: Per clock (by a weak reference, which hashes and compares as its clock while that lives; the entry goes
#: with the clock): its ``Deadlines`` per timeout. A dict of weak references rather than a
#: ``WeakKeyDictionary``, whose ``get`` is a Python call: this is looked up per HTTP request.
_registry: dict[weakref.ref[Any], dict[float, Deadlines]] = {}


def _forget(ref: weakref.ref[Any]) -> None:
    _registry.pop(ref, None)


def deadlines(clock: Any, timeout: float) -> Deadlines:
    """The clock's one ``Deadlines`` for ``timeout``, shared by every connection that uses it."""
    per_clock = _registry.get(weakref.ref(clock))
    if per_clock is None:
        per_clock = _registry[weakref.ref(clock, _forget)] = {}
    found = per_clock.get(timeout)
    if found is None:
        found = per_clock[timeout] = Deadlines(clock, timeout)
    return found
