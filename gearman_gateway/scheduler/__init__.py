"""The scheduling core: no I/O, no wire formats (DESIGN.md seams 1 and 2)."""

from gearman_gateway.scheduler.core import (
    MAX_HANDLE_SIZE,
    MAX_UNIQUE_SIZE,
    POISON_DEATHS,
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
from gearman_gateway.scheduler.listener import Clock, JobListener, Waker
from gearman_gateway.scheduler.worker import Worker, WorkerState

__all__ = [
    "MAX_HANDLE_SIZE",
    "MAX_UNIQUE_SIZE",
    "POISON_DEATHS",
    "ArgumentTooLarge",
    "Clock",
    "Function",
    "Job",
    "JobListener",
    "JobNotFound",
    "JobState",
    "Priority",
    "QueueFull",
    "Scheduler",
    "SchedulerError",
    "ShuttingDown",
    "StoreUnavailable",
    "Waker",
    "Worker",
    "WorkerState",
    "default_handle_prefix",
]
