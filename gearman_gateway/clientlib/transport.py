"""What the blocking and asyncio transports share: when to stop waiting, and the API's "steps".

Both transports run the same loop: connect the links the session wants, write its output, then
``decide``: stop (the caller's condition holds, or its deadline passed) or wait for input, at most until
the next link is due for a reconnect attempt.

Every waiting API method (``do``, ``run_tasks``, ``work`` ...) is written once, as a generator of steps:
it yields ``Wait(until, deadline)`` and gets back whether ``until()`` came true in time; an asyncio
worker's steps may also yield an awaitable (an async callback's result). ``BlockingTransport.drive`` and
``AsyncTransport.drive`` run such generators; that is the only place where blocking and asyncio differ.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from gearman_gateway.clientlib.session import Session

#: Seconds a TCP connect may take before the server counts as down (a dead host does not refuse).
CONNECT_TIMEOUT = 5.0
#: Bytes asked of the kernel per read; results of several MiB arrive in a few reads.
READ_SIZE = 1 << 20

#: decide() says: the condition holds / the deadline passed.
DONE = "done"
EXPIRED = "expired"


def decide(session: Session, until: Callable[[], bool], deadline: float | None) -> float | str | None:
    """DONE, EXPIRED, or how long to wait for input (None: until something happens)."""
    if until():
        return DONE
    now = time.monotonic()
    if deadline is not None and now >= deadline:
        return EXPIRED
    limits = [t for t in (session.next_wakeup(), deadline) if t is not None]
    return max(0.0, min(limits) - now) if limits else None


@dataclass
class Wait:
    """A step of an API method: serve the connections until ``until()`` holds or ``deadline`` passes."""

    until: Callable[[], bool]
    deadline: float | None = None


T = TypeVar("T")
#: An API method's body: yields Wait (or, asyncio only, an awaitable) and finally returns its value.
Steps = Generator[Wait | Awaitable[Any], Any, T]
