"""A worker's registration and sleep state, as the scheduler sees it."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from gearman_gateway.scheduler.function import Function
    from gearman_gateway.scheduler.job import Job
    from gearman_gateway.scheduler.listener import Waker


class WorkerState(IntEnum):
    AWAKE = 0  # grabbing; will hear NO_JOB before it sleeps
    SLEEPING = 1  # sent PRE_SLEEP, waits for a NOOP
    NOOP_SENT = 2  # woken, has not grabbed yet


class Ability(NamedTuple):
    """One registered function: how many times CAN_DO named it, and its CAN_DO_TIMEOUT in ms (0: none).
    A tuple, so that the usual registration (once, no timeout) is one shared value, not an object per worker."""

    count: int
    timeout_ms: int


#: What a plain CAN_DO registers.
ONCE = Ability(1, 0)

#: The jobs of a worker that never ran one (most idle workers): shared, and read-only so that it stays empty.
NO_JOBS: Mapping[bytes, Job] = MappingProxyType({})


class Worker:
    """Created by ``Scheduler.add_worker``; the frontend calls scheduler methods with it."""

    __slots__ = ("waker", "abilities", "jobs", "state", "holding", "registered", "__weakref__")

    def __init__(self, waker: Waker) -> None:
        self.waker = waker
        self.abilities: dict[Function, Ability] = {}  # registration order
        self.jobs: dict[bytes, Job] = NO_JOBS  # type: ignore[assignment]  # handle -> job it runs (made by its first)
        self.state = WorkerState.AWAKE
        self.holding = False  # its grab found nothing and waits for the end of the turn (Scheduler.grab)
        self.registered = True  # until Scheduler.remove_worker

    def function_names(self) -> list[bytes]:
        """Registered names, newest first and repeated per registration, as gearmand's `workers` shows."""
        names: list[bytes] = []
        for function, ability in reversed(self.abilities.items()):
            names.extend([function.name] * ability.count)
        return names
