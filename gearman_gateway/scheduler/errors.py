"""Errors the scheduler raises; each carries gearmand's ERROR code and text, which frontends relay."""

from __future__ import annotations


class SchedulerError(Exception):
    code = "UNKNOWN_ERROR"

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class ArgumentTooLarge(SchedulerError):
    code = "ARGUMENT_TOO_LARGE"


class QueueFull(SchedulerError):
    code = "QUEUE_ERROR"


class StoreUnavailable(SchedulerError):
    code = "QUEUE_ERROR"


class JobNotFound(SchedulerError):
    code = "JOB_NOT_FOUND"


class ShuttingDown(SchedulerError):
    code = "QUEUE_ERROR"
