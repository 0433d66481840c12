"""The scheduling core: no I/O, no wire formats (DESIGN.md seams 1 and 2).

Frontends call ``Scheduler`` with bytes and Python values, hear about jobs through ``JobListener`` and
``Waker`` objects they hand in, and read its state only through snapshots (``snapshots.py``).
"""

from gearman_gateway.scheduler.core import (
    MAX_HANDLE_SIZE,
    MAX_UNIQUE_SIZE,
    POISON_DEATHS,
    ObservedScheduler,
    Scheduler,
    default_handle_prefix,
)
from gearman_gateway.scheduler.errors import (
    ArgumentTooLarge,
    JobNotFound,
    QueueFull,
    SchedulerError,
    ShuttingDown,
    StoreUnavailable,
)
from gearman_gateway.scheduler.function import Function
from gearman_gateway.scheduler.job import Job, JobState, Priority
from gearman_gateway.scheduler.listener import OUTCOMES, Clock, JobListener, JobObserver, Waker
from gearman_gateway.scheduler.snapshots import (
    PRIORITY_NAMES,
    FunctionSnapshot,
    JobSnapshot,
    SchedulerTotals,
    WorkerSnapshot,
)
from gearman_gateway.scheduler.worker import HELD, Held, Worker, WorkerState

__all__ = [
    "HELD",
    "MAX_HANDLE_SIZE",
    "MAX_UNIQUE_SIZE",
    "OUTCOMES",
    "POISON_DEATHS",
    "PRIORITY_NAMES",
    "ArgumentTooLarge",
    "Clock",
    "Function",
    "FunctionSnapshot",
    "Held",
    "Job",
    "JobListener",
    "JobNotFound",
    "JobObserver",
    "JobSnapshot",
    "JobState",
    "ObservedScheduler",
    "Priority",
    "QueueFull",
    "Scheduler",
    "SchedulerError",
    "SchedulerTotals",
    "ShuttingDown",
    "StoreUnavailable",
    "Waker",
    "Worker",
    "WorkerSnapshot",
    "WorkerState",
    "default_handle_prefix",
]
