"""A worker's registration and sleep state, as the scheduler sees it."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, IntEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from gearman_gateway.scheduler.function import Function
    from gearman_gateway.scheduler.job import Job
    from gearman_gateway.scheduler.listener import Waker


class Held(Enum):
    """The type of ``HELD``."""

    HELD = "held"


#: What ``Scheduler.grab`` returns for a grab it holds: the answer (a job, or none) comes later, through
#: ``Waker.grabbed``. A constant, so a grab allocates nothing to say so.
HELD = Held.HELD


class WorkerState(IntEnum):
    AWAKE = 0  # grabbing; will hear NO_JOB before it sleeps
    SLEEPING = 1  # sent PRE_SLEEP, waits for a NOOP
    NOOP_SENT = 2  # woken, has not grabbed yet
    GONE = 3  # removed (Scheduler.remove_worker): its connection closed


class Ability(NamedTuple):
    """One registered function: how many times CAN_DO named it, and its CAN_DO_TIMEOUT in ms (0: none).
    A tuple, so that the usual registration (once, no timeout) is one shared value, not an object per worker."""

    count: int
    timeout_ms: int


#: What a plain CAN_DO registers.
ONCE = Ability(1, 0)

#: The jobs of a worker that never ran one (most idle workers): shared, and read-only so that it stays empty.
NO_JOBS: Mapping[bytes, Job] = MappingProxyType({})

#: The registration table of a worker that registered nothing: shared (``RegistrationTables`` never changes
#: a table this small in place).
NO_ABILITIES: dict[Function, Ability] = {}

#: Workers with at most this many functions share one table per distinct registration; a longer table is the
#: worker's own and changes in place (copying it on every CAN_DO would cost time growing with its square).
SHARED_TABLE_MAX = 16


class RepeatedRegistrations(dict["Function", Ability]):
    """The table of a worker that registered some function more than once. gearmand keeps one entry per
    CAN_DO and lists them newest first in ``workers`` (CAN_DO resize, thumb, resize shows ``resize thumb
    resize``); this table keeps that sequence beside the usual one entry per function. Rare, so never shared."""

    __slots__ = ("sequence",)

    def __init__(self, table: Mapping[Function, Ability], sequence: list[Function]) -> None:
        super().__init__(table)
        self.sequence = sequence  # every registration, oldest first


class RegistrationTables:
    """Workers' registration tables (``Worker.abilities``), shared between workers that registered the same
    functions the same way: a pool of identical workers, the usual deployment, holds one table instead of
    one each (224 bytes per idle worker). What keeps sharing safe: a table of at most ``SHARED_TABLE_MAX``
    entries is never changed in place; a change builds the new table and takes the shared one equal to it."""

    __slots__ = ("_shared",)

    def __init__(self) -> None:
        # (function, ability) pairs in registration order -> [the table, how many workers hold it]
        self._shared: dict[tuple[tuple[Function, Ability], ...], list[Any]] = {}

    def __len__(self) -> int:
        return len(self._shared)

    def set(self, worker: Worker, fn: Function, ability: Ability) -> None:
        table = worker.abilities
        if type(table) is RepeatedRegistrations:  # the worker's own: changed in place, as a long table
            table[fn] = ability
            table.sequence.append(fn)
            return
        if fn in table:  # a second registration of a function: from now on the sequence is kept
            repeated = RepeatedRegistrations(table, [*table, fn])
            repeated[fn] = ability
            self._leave(table)
            worker.abilities = repeated
            return
        if len(table) > SHARED_TABLE_MAX:
            table[fn] = ability
            return
        changed = dict(table)
        changed[fn] = ability
        self._leave(table)
        worker.abilities = self._share(changed)

    def remove(self, worker: Worker, fn: Function) -> Ability:
        """Every registration of ``fn`` (CANT_DO drops them all, as gearmand does)."""
        table = worker.abilities
        if type(table) is RepeatedRegistrations:
            ability = table.pop(fn)
            sequence = [other for other in table.sequence if other is not fn]
            if len(sequence) > len(table):  # some function is still registered more than once
                table.sequence = sequence
            else:  # one registration each again: a plain table, in the same order, shared if small
                worker.abilities = self._share(dict(table))
            return ability
        if len(table) > SHARED_TABLE_MAX:
            ability = table.pop(fn)
            if len(table) <= SHARED_TABLE_MAX:
                worker.abilities = self._share(table)  # small now: from here on shared, never changed
            return ability
        changed = dict(table)
        ability = changed.pop(fn)
        self._leave(table)
        worker.abilities = self._share(changed)
        return ability

    def _share(self, table: dict[Function, Ability]) -> dict[Function, Ability]:
        if not table:
            return NO_ABILITIES
        if len(table) > SHARED_TABLE_MAX:
            return table
        key = tuple(table.items())
        entry = self._shared.get(key)
        if entry is None:
            entry = self._shared[key] = [table, 0]
        entry[1] += 1
        return entry[0]

    def _leave(self, table: dict[Function, Ability]) -> None:
        if not table or type(table) is not dict or len(table) > SHARED_TABLE_MAX:
            return  # empty, or a worker's own table (RepeatedRegistrations, or a long one): never shared
        key = tuple(table.items())
        entry = self._shared.get(key)
        if entry is not None and entry[0] is table:
            entry[1] -= 1
            if not entry[1]:
                del self._shared[key]


class Worker:
    """Created by ``Scheduler.add_worker``; the frontend calls scheduler methods with it."""

    __slots__ = ("waker", "abilities", "jobs", "state", "holding")

    def __init__(self, waker: Waker) -> None:
        self.waker = waker
        # registration order; shared with workers that registered the same way (RegistrationTables)
        self.abilities: dict[Function, Ability] = NO_ABILITIES
        self.jobs: dict[bytes, Job] = NO_JOBS  # type: ignore[assignment]  # handle -> job it runs (made by its first)
        self.state = WorkerState.AWAKE
        # its grab is held (Scheduler.grab): True until a job comes or the turn ends; a PENDING job it claimed,
        # until that job's commit; False: no grab waits for an answer
        self.holding: bool | Job = False

    def function_names(self) -> list[bytes]:
        """Registered names, newest first and repeated per registration, as gearmand's `workers` shows."""
        table = self.abilities
        if type(table) is RepeatedRegistrations:
            return [function.name for function in reversed(table.sequence)]
        return [function.name for function in reversed(table)]
