"""What the blocking and asyncio transports share: the loop's decisions, and the API's "steps".

Both transports run the same loop (``TransportBase.step``): connect the links the session wants, write
its output, then stop (the caller's condition holds, its deadline passed) or wait for input, at most
until the next link is due for a reconnect attempt.

Every waiting API method (``do``, ``run_tasks``, ``work`` ...) is written once, as a generator of steps:
it yields ``Wait(until, deadline)`` and gets back whether ``until()`` came true in time; an asyncio
worker's steps may also yield an awaitable (an async callback's result). ``BlockingTransport.drive`` and
``AsyncTransport.drive`` run such generators; that is the only place where blocking and asyncio differ.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from gearman_gateway.clientlib.links import Link
from gearman_gateway.clientlib.session import Session

#: Seconds a TCP connect may take before the server counts as down (a dead host does not refuse).
CONNECT_TIMEOUT = 5.0
#: Bytes asked of the kernel per read; results of several MiB arrive in a few reads.
READ_SIZE = 1 << 20


class TransportBase:
    """The transport loop's decisions; subclasses supply connecting, writing and waiting."""

    def __init__(
        self, session: Session, connect_timeout: float = CONNECT_TIMEOUT, tls: ssl.SSLContext | None = None
    ) -> None:
        self.session = session
        self.connect_timeout = connect_timeout
        self.tls = tls
        self.interrupted = False
        session.flush_hook = self.flush

    def step(self, until: Callable[[], bool], deadline: float | None) -> bool | float | None:
        """Start the connects the session wants and write its output; then True (``until()`` holds),
        False (deadline passed, or interrupted) or how long to wait for input (None: until something)."""
        for link in self.session.links_to_connect():
            self.begin_connect(link)
        self.flush()
        if until():
            return True
        if self.interrupted:
            self.interrupted = False
            return False
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return False
        limits = [t for t in (self.session.next_wakeup(), deadline) if t is not None]
        return max(0.0, min(limits) - now) if limits else None

    def begin_connect(self, link: Link) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError


@dataclass
class Wait:
    """A step of an API method: serve the connections until ``until()`` holds or ``deadline`` passes."""

    until: Callable[[], bool]
    deadline: float | None = None


T = TypeVar("T")
#: An API method's body: yields Wait (or, asyncio only, an awaitable) and finally returns its value.
Steps = Generator[Wait | Awaitable[Any], Any, T]
