"""The scheduler's state for its job observers, in one object.

The Scheduler holds it in one attribute, ``_observing``, None while nobody observes: the job path then pays
one attribute test per transition and reads no clock (CPython 3.11 keeps at most 29 instance attributes
inline, see ``DiedJobs``; tests/unit/test_scheduler.py checks the Scheduler's count).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gearman_gateway.scheduler.job import Job
    from gearman_gateway.scheduler.listener import Ended, JobObserver
    from gearman_gateway.scheduler.worker import Worker

log = logging.getLogger(__name__)


class Observing:
    """The observers, this turn's finished jobs and the clock as first read in this turn.

    With a ``turn_end`` the clock is read once per reactor turn (jobs of one turn share a time) and the
    turn's ends are told to the observers in one call at its end; without one, per transition, at once."""

    __slots__ = ("observers", "ended", "turn_now", "last_seq", "_read", "_turn_end", "submit")

    def __init__(
        self,
        observers: tuple[JobObserver, ...],
        read: Callable[[], float],
        turn_end: Callable[[Callable[[], None]], None] | None,
    ) -> None:
        self.observers = observers
        self.ended: list[Ended] = []
        self.submit: Callable[..., Any] | None = None  # the observed scheduler's own class's (add_observer)
        self.turn_now = 0.0  # 0.0: not read yet in this turn
        self.last_seq = 0  # the newest job stamped at submit (ObservedScheduler.submit)
        self._read = read
        self._turn_end = turn_end

    def now(self) -> float:
        """The clock, read at most once per turn (the first read arms the end-of-turn call)."""
        now = self.turn_now
        if now:
            return now
        now = self._read()
        if self._turn_end is not None:
            self.turn_now = now
            self._turn_end(self._at_turn_end)
        return now

    def stamp(self, job: Job) -> None:
        """A new job: its submit time, and no start yet."""
        job.submitted_at = self.turn_now or self.now()
        job.started_at = 0.0

    def end(self, job: Job, outcome: str, data: bytes | None, worker: Worker | None) -> None:
        """The job ended: the observers hear it at the end of the turn, with the turn's other ends."""
        self.ended.append((job, outcome, data, worker, self.turn_now or self.now()))
        if self._turn_end is None:
            self.flush()

    def _at_turn_end(self) -> None:
        self.turn_now = 0.0
        if self.ended:
            self.flush()

    def flush(self) -> None:
        ended, self.ended = self.ended, []
        for observer in self.observers:
            try:
                observer.jobs_finished(ended)
            except Exception:
                log.exception("job observer %r failed", observer)
