"""What every frontend's Twisted connection shares: admission against the connection limit, socket
options, output batched per reactor turn (``protocols.output``) and written straight to the socket, and
bounded output for peers that stop reading.

A frontend subclasses ``FrontendConnection`` (after its sans-IO session class, if the session is the same
object) and fills in ``started``, ``ended``, ``describe`` and, if it pauses reading for reasons of its own,
``wants_reading``. Its output goes through ``queue`` (``BatchedOutput``).
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any

from twisted.internet import main, tcp
from twisted.internet.interfaces import ILoggingContext, IProtocol, IPushProducer
from twisted.internet.protocol import Factory
from twisted.python import failure
from zope.interface import implementer

from gearman_gateway.ratelog import limits_log
from protocols import first_byte
from protocols.output import BatchedOutput, write_batch

if TYPE_CHECKING:
    from protocols import FrontendContext

log = logging.getLogger("gearman_gateway.connection")

#: Pieces sent with one sendmsg(); more are joined first (the kernel's IOV_MAX is 1024).
SENDMSG_MAX = 64

#: Why a connection closed in ``close_now`` (one object: Twisted's own default reason is also shared).
_CLOSED = failure.Failure(main.CONNECTION_DONE)

_KEEPALIVE_OPTIONS = ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT")


def socket_options(context: FrontendContext) -> list[tuple[int, int, int]]:
    """What every accepted socket gets: no Nagle delay (replies are whole), and TCP keepalive when
    configured (it finds peers that died silently: their lost NOOPs made gearmand's jobs stick)."""
    options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    settings = context.settings
    if settings.keepalive:
        options.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
        values = (settings.keepalive_idle, settings.keepalive_interval, settings.keepalive_count)
        for option, value in zip(_KEEPALIVE_OPTIONS, values, strict=True):
            if value > 0 and hasattr(socket, option):
                options.append((socket.IPPROTO_TCP, getattr(socket, option), value))
    return options


def set_socket_options(sock: Any, context: FrontendContext) -> None:
    for level, name, value in socket_options(context):
        sock.setsockopt(level, name, value)


class FrontendFactory(Factory):
    """Every frontend's factory: one ``protocol`` (a ``FrontendConnection`` class, built with the factory)
    per accepted socket. Server's reactor (``gearman_gateway.reactor``) builds them through
    ``build_connection``, without the address object Twisted makes per accept, and sets
    ``inherited_socket_options`` once on the listening socket, where Linux's accepted sockets inherit them
    from (saving two to five system calls per connection)."""

    protocol: Any

    def __init__(self, context: FrontendContext) -> None:
        self.context = context

    def build_connection(self) -> Any:
        return self.protocol(self)

    def buildProtocol(self, addr: object) -> Any:  # noqa: N802
        return self.protocol(self)

    def inherited_socket_options(self) -> list[tuple[int, int, int]]:
        return socket_options(self.context)

    def closed_unread(self) -> None:
        """Our reactor accepted a socket whose peer closed before sending a byte, and closed it without
        building a connection: counted as accepted all the same."""
        self.context.connections.accepted_total += 1


@implementer(IProtocol, ILoggingContext, IPushProducer)
class FrontendConnection(BatchedOutput):
    """One accepted socket. ``open`` is true from admission until the connection is lost.

    Twisted's protocol interface, written out instead of inherited from ``twisted.internet.protocol.Protocol``,
    whose instances carry a per-instance dict: with ``__slots__`` an idle worker's connection object takes
    about 60 bytes less (thousands of idle workers are the usual Gearman deployment). The slots of this
    class are declared by the concrete class (``__slots__ = FrontendConnection.SLOTS``), so that it can
    also derive from a sans-IO session class with slots of its own (``BinaryConnection``); a subclass
    without ``__slots__`` simply gets a dict."""

    __slots__ = ()
    SLOTS = ("context", "transport", "open", "fd", "peer", "_socket", "_paused_bytes")

    label = "connection"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A half-closeable subclass (one with ``readConnectionLost``) hears our reactor's EOF there too:
        ``peer_closed`` is bound to it once, here, so no frontend can forget it and the EOF path pays no
        test per call."""
        super().__init_subclass__(**kwargs)
        half_close = cls.__dict__.get("readConnectionLost")
        if half_close is not None and "peer_closed" not in cls.__dict__:
            cls.peer_closed = half_close  # type: ignore[method-assign]

    def __init__(self, context: FrontendContext) -> None:
        try:
            batch = context.write_batch  # FrontendContext's, made once
        except AttributeError:  # a context of another kind (tests, embedders)
            batch = write_batch(context.reactor)
        BatchedOutput.__init__(self, batch)
        self.init_connection(context)

    def init_connection(self, context: FrontendContext) -> None:
        """``__init__`` less the output's part, for a class whose session sets that up (``BinaryConnection``)."""
        self.context = context
        self.transport: Any = None
        self.open = False
        self.fd = -1
        self.peer = "?"
        self._socket: socket.socket | None = None  # the raw socket, for direct sends (plain TCP only)
        self._paused_bytes = -1  # output since the socket's buffer filled up; -1: not paused

    # -- lifecycle

    def makeConnection(self, transport: object) -> None:  # noqa: N802
        """Twisted's, less the ``connected`` flag it keeps per connection (``open`` says more)."""
        self.transport = transport
        self.connectionMade()

    @property
    def connected(self) -> int:
        return int(self.open)

    def logPrefix(self) -> str:  # noqa: N802
        return self.__class__.__name__

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """A frontend's bytes; it overrides this."""

    @property
    def peer_is_local(self) -> bool:
        """Asked only by admin commands that only local peers may run: worked out then, not kept."""
        peer = self.peer.removeprefix("::ffff:")  # IPv4 peers of a listener on "::"
        return peer.startswith("127.") or peer in ("::1", "localhost")

    def connectionMade(self) -> None:  # noqa: N802
        transport = self.transport
        tcp_connection = isinstance(transport, tcp.Server)  # ours (gearman_gateway.reactor) or Twisted's
        if tcp_connection:
            # what set-up needs is at hand: the reactor's own int for the descriptor where it keeps one, and
            # the peer's host (gearmand's reactor's: one string for all peers on one address)
            self.fd = getattr(transport, "_fd", None) or transport.socket.fileno()
            self.peer = transport.hostname
        else:  # TLS (its wrapper hands ``fileno`` on to the TCP transport under it), or another transport
            fileno = getattr(transport, "fileno", None)
            self.fd = fileno() if fileno is not None else transport.getHandle().fileno()
            self.peer = getattr(transport.getPeer(), "host", "?")
        context = self.context
        if not context.connections.admit(self):  # counted and logged there
            transport.abortConnection()
            return
        self.open = True
        if context.settings.first_byte_timeout:
            first_byte.watch(self)
        if tcp_connection:
            self._socket = transport.socket
            if not getattr(transport.server, "socket_options_inherited", False):
                set_socket_options(transport.socket, context)
        else:
            transport.setTcpNoDelay(True)
            if context.settings.keepalive:
                transport.setTcpKeepAlive(True)
                # the TLS wrapper's getHandle is its OpenSSL connection (no socket); ``socket`` reaches the TCP one
                set_socket_options(getattr(transport, "socket", None) or transport.getHandle(), context)
        transport.registerProducer(self, True)
        self.started()

    def connectionLost(self, reason: object = None) -> None:  # noqa: N802
        if not self.open:
            return
        self.open = False
        self._out = None  # close_output's (without the call)
        context = self.context
        context.connections.remove(self)
        if context.settings.first_byte_timeout:
            first_byte.unwatch(self)
        self.ended()

    def started(self) -> None:
        """The connection was admitted."""

    def ended(self) -> None:
        """The connection is gone (called once, only for admitted connections)."""

    def describe(self) -> tuple[int, str, bytes, list[bytes]]:
        return self.fd, self.peer, b"-", []

    def close(self) -> None:
        """Close after what is queued has gone out (shutdown calls this on every connection)."""
        if self.open:
            self.flush()
            self.transport.loseConnection()

    def close_now(self) -> None:
        """``close``, and when what was queued has all gone out in that write, the socket too, in this
        turn: Twisted's ``loseConnection`` would first wait a turn for the socket to be writable (two epoll
        updates and a poll per connection). Only where the caller expects ``ended`` to run within the
        call: a peer's EOF, an HTTP response after which HTTP closes."""
        if not self.open:
            return
        if self._out:
            self.flush()
        transport = self.transport
        if self.open and self._socket is not None and not transport.dataBuffer and not transport._tempDataLen:
            close_lean = getattr(transport, "close_lean", None)  # our reactor's (gearman_gateway.reactor)
            if close_lean is not None:
                close_lean(_CLOSED)
                return
            transport.stopReading()
            transport.stopWriting()
            transport.connectionLost(_CLOSED)
        else:
            self.transport.loseConnection()

    def peer_closed(self) -> None:
        """The peer's EOF, from our reactor's connections (Twisted's reactor calls ``connectionLost``, or
        ``readConnectionLost`` of a half-closeable protocol, instead): the connection closes in this turn
        with what Twisted would give it (``close_lean``), or as Twisted's where the transport has more to
        do. A half-closeable subclass (``IHalfCloseableProtocol``) gets its ``readConnectionLost`` here
        instead (``__init_subclass__``)."""
        transport = self.transport
        if self.open and not transport.dataBuffer and not transport._tempDataLen:
            transport.close_lean(_CLOSED)
        else:
            transport.stopReading()
            transport.stopWriting()
            transport.connectionLost(_CLOSED)

    # -- output

    def count_output(self, size: int) -> bool:
        """Account for output while the peer is not reading; False when it passed the limit and the
        connection was closed (a peer that stops reading cannot make the server buffer without bound)."""
        if self._paused_bytes < 0:
            return True
        self._paused_bytes += size
        if self._paused_bytes <= self.context.settings.max_output_buffer:
            return True
        self.context.connections.closed["max_output_buffer"] += 1
        limits_log.warning(
            "max_output_buffer",
            "closing %s from %s: it stopped reading and its output passed the limit (--max-output-buffer)",
            self.label,
            self.peer,
        )
        self.transport.abortConnection()
        self.connectionLost()
        return False

    def write_pieces(self, out: list[bytes]) -> None:
        """``BatchedOutput``'s write: ``out`` in order, straight to the socket when Twisted holds nothing
        unsent for it (saving two epoll updates and a reactor turn per reply), whatever is left through
        Twisted. Nothing after a close's last write; counted while the peer is not reading."""
        transport = self.transport
        if not self.open or transport.disconnecting:
            return
        if self._paused_bytes >= 0 and not self.count_output(sum(map(len, out))):
            return
        sock = self._socket
        if sock is not None and not transport.dataBuffer and not transport._tempDataLen:
            try:
                if len(out) == 1:
                    data = out[0]
                    sent = sock.send(data)
                    if sent == len(data):  # the usual case: all of it went
                        return
                elif len(out) <= SENDMSG_MAX:
                    sent = sock.sendmsg(out)
                    if sent == sum(map(len, out)):  # all of it went: no piece-by-piece accounting
                        return
                else:
                    out = [b"".join(out)]
                    sent = sock.send(out[0])
            except OSError:  # full (EAGAIN) or broken: Twisted's own write handles both properly
                sent = 0
            if sent:
                index = 0
                while index < len(out) and sent >= len(out[index]):
                    sent -= len(out[index])
                    index += 1
                if index == len(out):
                    return
                out = out[index:]
                if sent:
                    out[0] = out[0][sent:]
        transport.writeSequence(out)

    # -- IPushProducer: the socket's send buffer filled up, or drained

    def pauseProducing(self) -> None:  # noqa: N802
        """Stop reading the peer's requests until it reads our replies."""
        if self._paused_bytes < 0:
            self._paused_bytes = 0
            self.transport.stopReading()

    def resumeProducing(self) -> None:  # noqa: N802
        if self._paused_bytes >= 0:
            self._paused_bytes = -1
            if self.open and self.wants_reading():
                self.transport.startReading()

    def stopProducing(self) -> None:  # noqa: N802
        pass

    def wants_reading(self) -> bool:
        """Whether reading may resume once output drains (a subclass may hold requests back)."""
        return True

    @property
    def output_paused(self) -> bool:
        return self._paused_bytes >= 0


class SessionConnection(FrontendConnection):
    """A connection around a sans-IO ``session`` that may hold requests back (pipelined requests behind
    one that waits) and asks to stop reading meanwhile; reading resumes when both the session and the
    socket's output allow. Subclasses have a dict (no ``__slots__``): they are not the binary hot path."""

    session: Any = None
    _session_paused = False

    def pause_reading(self) -> None:
        self._session_paused = True
        self.transport.stopReading()

    def resume_reading(self) -> None:
        self._session_paused = False
        if not self.output_paused and self.session is not None:
            self.transport.startReading()

    def wants_reading(self) -> bool:
        return self.session is not None and not self._session_paused
