"""Twisted adapter for the HTTP frontend: one ``HttpProtocol`` per socket, around a sans-IO ``HttpSession``.

It only moves bytes: socket reads go to the session, the session's output goes to the socket. It also
keeps the connection in the registry (admin ``workers``, ``--max-connections``, shutdown) and stops a
client that does not read its responses from making the server buffer without bound.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from twisted.internet import tcp
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from protocols.http.api import HttpApi
from protocols.http.metrics import HttpStats
from protocols.http.session import HttpSession

if TYPE_CHECKING:
    from protocols import FrontendContext

log = logging.getLogger("gearman_gateway.http")


@implementer(IPushProducer)
class HttpProtocol(Protocol):
    def __init__(self, factory: HttpFactory) -> None:
        self.factory = factory
        self.session: HttpSession | None = None
        self.fd = -1
        self.peer = "?"
        self._paused_bytes = -1  # written since the socket's buffer filled up; -1: not paused
        self._session_paused = False  # the session holds pipelined requests back
        self._socket = None  # the raw socket, for direct sends (plain TCP only)

    def connectionMade(self) -> None:  # noqa: N802
        transport = self.transport
        self.fd = transport.getHandle().fileno()
        self.peer = getattr(transport.getPeer(), "host", "?")
        connections = self.factory.context.connections
        if not connections.admit(self):
            log.warning("refusing HTTP connection from %s: %d connections open (limit)", self.peer, len(connections))
            transport.abortConnection()
            return
        if isinstance(transport, tcp.Server):
            self._socket = transport.socket
        transport.setTcpNoDelay(True)
        transport.registerProducer(self, True)
        self.session = HttpSession(self.factory.context, self.factory.api, self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.session is not None:
            self.session.receive_data(data)

    def connectionLost(self, reason: object = None) -> None:  # noqa: N802
        session, self.session = self.session, None
        if session is not None:
            self.factory.context.connections.remove(self)
            session.connection_lost()

    # -- the session's Transport

    def write(self, data: bytes) -> None:
        if self._paused_bytes >= 0:
            self._paused_bytes += len(data)
            if self._paused_bytes > self.factory.context.settings.max_output_buffer:
                log.warning("closing HTTP connection from %s: it stopped reading its response", self.peer)
                self.abort()
                return
        transport = self.transport
        sock = self._socket
        if sock is not None and not transport.dataBuffer and not transport._tempDataBuffer:
            # nothing unsent: straight to the socket, saving two epoll updates and a reactor turn
            try:
                sent = sock.send(data)
            except OSError:  # full, or broken: Twisted's own write handles both properly
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def close(self) -> None:
        """Also what shutdown calls (ConnectionInfo): queued output goes out first."""
        self.transport.loseConnection()

    def abort(self) -> None:
        self.transport.abortConnection()

    def pause_reading(self) -> None:
        self._session_paused = True
        self.transport.stopReading()

    def resume_reading(self) -> None:
        self._session_paused = False
        if self._paused_bytes < 0 and self.session is not None:
            self.transport.startReading()

    # -- admin `workers`

    def describe(self) -> tuple[int, str, bytes, list[bytes]]:
        return self.fd, self.peer, b"-", []

    # -- IPushProducer: the socket's send buffer is full, or has drained

    def pauseProducing(self) -> None:  # noqa: N802
        if self._paused_bytes < 0:
            self._paused_bytes = 0
            self.transport.stopReading()

    def resumeProducing(self) -> None:  # noqa: N802
        if self._paused_bytes >= 0:
            self._paused_bytes = -1
            if self.session is not None and not self._session_paused:
                self.transport.startReading()

    def stopProducing(self) -> None:  # noqa: N802
        pass


class HttpFactory(Factory):
    protocol = HttpProtocol

    def __init__(self, context: FrontendContext) -> None:
        self.context = context
        self.api = HttpApi(context, HttpStats())

    def buildProtocol(self, addr: object) -> HttpProtocol:  # noqa: N802
        return HttpProtocol(self)
