"""Twisted adapter for the memcached frontend: one ``MemcachedProtocol`` per socket, around a sans-IO
``MemcachedSession``. It moves bytes, keeps the connection in the registry, and closes a connection that
stalls in the middle of a request (``read_timeout``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IHalfCloseableProtocol
from zope.interface import implementer

from protocols.connection import FrontendFactory, SessionConnection
from protocols.memcached.session import MemcachedSession
from protocols.memcached.stats import Shared

if TYPE_CHECKING:
    from protocols import FrontendContext

log = logging.getLogger("gearman_gateway.memcached")


@implementer(IHalfCloseableProtocol)
class MemcachedProtocol(SessionConnection):
    label = "memcached connection"

    def __init__(self, factory: MemcachedFactory) -> None:
        super().__init__(factory.context)
        self.factory = factory
        self.session: MemcachedSession | None = None
        self._stall: Any = None  # the timer closing a connection stuck in the middle of a request

    def started(self) -> None:
        factory = self.factory
        context = factory.context
        self.session = MemcachedSession(
            context.scheduler, context.results, context.reactor, context.options, factory.shared, self,
            context.access, self.peer,
        )  # fmt: skip
        self.dataReceived = self.session.receive_data  # type: ignore[method-assign]
        counters = factory.shared.counters
        counters["curr_connections"] += 1
        counters["total_connections"] += 1

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Bytes before ``started`` made the session (none come); from then on ``dataReceived`` is the
        session's ``receive_data`` itself (no call in between)."""
        if self.session is not None:
            self.session.receive_data(data)

    def partial_input(self, held: bool) -> None:
        """(The session's transport) part of a request is held: (re)start the stall timer; or not any more."""
        if held:
            if self._stall is None:
                self._stall = self.context.reactor.callLater(self.context.options.read_timeout, self._stalled)
            else:
                self._stall.reset(self.context.options.read_timeout)
        elif self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def readConnectionLost(self) -> None:  # noqa: N802
        """A half-close (``printf ... | nc``): what was sent is answered, then the connection closes."""
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        if self.session is not None:
            self.session.input_ended()

    def writeConnectionLost(self) -> None:  # noqa: N802
        self.transport.loseConnection()

    def _stalled(self) -> None:
        self._stall = None
        log.info("closing %s from %s: half a request, then nothing", self.label, self.peer)
        self.transport.abortConnection()

    def ended(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        session, self.session = self.session, None
        self.__dict__.pop("dataReceived", None)  # (the session's method: the session goes)
        if session is not None:
            self.factory.shared.counters["curr_connections"] -= 1
            session.connection_lost()

    # -- the session's Transport

    #: ``write(data)``: this turn's output, urgent (``BatchedOutput.queue`` itself: one call less per reply)
    write = SessionConnection.queue


class MemcachedFactory(FrontendFactory):
    protocol = MemcachedProtocol

    def __init__(self, context: FrontendContext) -> None:
        super().__init__(context)
        self.shared = Shared(context.reactor)
