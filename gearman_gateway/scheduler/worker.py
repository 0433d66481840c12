"""A worker's registration and sleep state, as the scheduler sees it."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gearman_gateway.scheduler.function import Function
    from gearman_gateway.scheduler.job import Job
    from gearman_gateway.scheduler.listener import Waker


class WorkerState(IntEnum):
    AWAKE = 0  # grabbing; will hear NO_JOB before it sleeps
    SLEEPING = 1  # sent PRE_SLEEP, waits for a NOOP
    NOOP_SENT = 2  # woken, has not grabbed yet


class Ability:
    """One registered function: how many times CAN_DO named it, and its CAN_DO_TIMEOUT in ms (0: none)."""

    __slots__ = ("count", "timeout_ms")

    def __init__(self, timeout_ms: int) -> None:
        self.count = 1
        self.timeout_ms = timeout_ms


class Worker:
    """Created by ``Scheduler.add_worker``; the frontend calls scheduler methods with it."""

    __slots__ = ("waker", "abilities", "jobs", "state", "holding", "__weakref__")

    def __init__(self, waker: Waker) -> None:
        self.waker = waker
        self.abilities: dict[Function, Ability] = {}  # registration order
        self.jobs: dict[bytes, Job] = {}  # handle -> job this worker runs
        self.state = WorkerState.AWAKE
        self.holding = False  # its grab found nothing and waits for the end of the turn (Scheduler.grab)

    def function_names(self) -> list[bytes]:
        """Registered names, newest first and repeated per registration, as gearmand's `workers` shows."""
        names: list[bytes] = []
        for function, ability in reversed(self.abilities.items()):
            names.extend([function.name] * ability.count)
        return names
