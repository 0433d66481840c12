"""Twisted adapter for the HTTP frontend: one ``HttpProtocol`` per socket, around a sans-IO ``HttpSession``.

It only moves bytes: socket reads go to the session, the session's output goes to the socket, gathered
per reactor turn with every other connection's (``protocols.output``). It also keeps the connection in the
registry (admin ``workers``, ``--max-connections``, shutdown) and stops a client that does not read its
responses from making the server buffer without bound.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from protocols.connection import FrontendConnection, FrontendFactory, SessionConnection
from protocols.http.api import HttpApi
from protocols.http.metrics import HttpStats
from protocols.http.session import HttpSession

if TYPE_CHECKING:
    from protocols import FrontendContext

log = logging.getLogger("gearman_gateway.http")


class HttpProtocol(SessionConnection):
    label = "HTTP connection"

    def __init__(self, factory: HttpFactory) -> None:
        super().__init__(factory.context)
        self.factory = factory
        self.session: HttpSession | None = None

    def started(self) -> None:
        self.session = HttpSession(self.factory.context, self.factory.api, self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.session is not None:
            self.session.receive_data(data)

    def ended(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.connection_lost()

    # -- the session's Transport

    def write(self, data: bytes) -> None:
        self.queue(data)

    # the session closes after a response HTTP says to close after: the socket goes in this turn when the
    # response went out whole (a new connection per request is what gearmand's users do)
    close = FrontendConnection.close_now

    def write_last(self, data: bytes) -> None:
        """The last response: straight to the socket and closed, in this turn (through ``queue`` it would
        wait for the end of the turn's write batch only for ``close`` to flush it at once)."""
        if self.output_queued:
            self.queue(data)
        elif self.open:
            self.write_pieces([data])
        self.close_now()

    def abort(self) -> None:
        self.close_output()
        self.transport.abortConnection()


class HttpFactory(FrontendFactory):
    protocol = HttpProtocol

    def __init__(self, context: FrontendContext) -> None:
        super().__init__(context)
        self.api = HttpApi(context, HttpStats())
