"""The reactor `gearmand` runs on: Twisted's epoll reactor with two hot-path changes.

1. Poll results are dispatched straight to ``_doReadOrWrite`` instead of through ``log.callWithLogger``
   (three wrapper calls per socket event that only attach a log prefix), and a plain "readable" event,
   the usual one, straight to ``doRead``.
2. Turns in which no timed call is due and nothing was queued from another thread (most turns of a
   busy server, where a timeout or two is usually pending) skip Twisted's timed-call bookkeeping, and a
   TCP server connection's read goes to its protocol without the ``_dataReceived`` step: fewer Python
   calls per turn and per read.
3. A TCP server connection keeps only what serving needs: Twisted's log prefix, repr, peer host name, write
   list and bound ``fileno`` are made when first used or not kept at all, and a connection that comes to
   need more (it closes, its writes back up, it reads large packets) becomes a ``_GrownServer`` first, so
   that idle connections never pay for what other connections once needed (about 480 bytes less per idle
   connection than Twisted's in a long-running server; thousands of idle workers are the usual Gearman
   deployment).
4. Callbacks registered with ``call_after_poll`` run once after each batch of poll events, before the
   next poll: the binary frontend flushes every connection's replies there, one send per connection per
   reactor turn, however many reads produced them; the scheduler answers held grabs and wakes workers
   there just before (``first``). ``call_after_next_poll`` waits one turn more, without blocking in the
   poll: a lone acknowledgement waits there for its job's result.

5. A plain frontend port accepts on a C thread too from its first burst of connects on
   (``gearman_gateway/_acceptor.c``, ``_Port._start_thread``): bursts no longer overflow the kernel's accept
   queue while the reactor waits for a CPU (docs/architecture.md, "Accepting").

Embedders may use any reactor: without ``call_after_poll`` the frontend falls back to ``callLater(0)``.
Install before anything imports ``twisted.internet.reactor``.
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import select
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import address, main, tcp
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.posixbase import _NO_FILEDESC

from gearman_gateway import accel

_READABLE = select.EPOLLIN
_EXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)
_WOULD_BLOCK = (errno.EAGAIN, errno.EWOULDBLOCK)
_DONTWAIT = socket.MSG_DONTWAIT
#: A listening socket's TCP_INFO says how many connections wait in its accept queue (``tcpi_unacked``).
_TCP = socket.IPPROTO_TCP
_TCP_INFO = getattr(socket, "TCP_INFO", -1)
_QUEUED = struct.Struct("=24xI").unpack_from
_QUEUED_END = 28
#: Twisted's longest poll timeout (seconds that fit epoll_wait's milliseconds in a C int).
_LONGEST_POLL = 2147483

log = logging.getLogger("gearman_gateway.reactor")


class _MadeWhenRead:
    """An attribute most connections never read: made from the connection when first read, then kept as an
    ordinary attribute (assigning it works as usual)."""

    __slots__ = ("make", "name")

    def __init__(self, make: Callable[[Any], object]) -> None:
        self.make = make
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, connection: object, owner: type | None = None) -> object:
        if connection is None:
            return self
        value = self.make(connection)
        setattr(connection, self.name, value)  # through the connection's __setattr__ (see _Server)
        return value


#: What every connection sets; anything else makes it a ``_GrownServer`` (``_addressType``: IPv6 peers).
_LEAN_ATTRIBUTES = frozenset(
    (
        "reactor",
        "socket",
        "_fd",
        "protocol",
        "hostname",
        "server",
        "producer",
        "streamingProducer",
        "_addressType",
    )
)


class _Server(tcp.Server):
    """Twisted's server connection, lighter per connection, with ``doRead`` and ``_dataReceived`` in one.

    CPython (3.11) gives every instance room for each attribute name any instance of its class ever set:
    one connection that closed or buffered a write would make every later connection pay for the ten-odd
    attributes Twisted sets then. So a connection about to set one of those first becomes a
    ``_GrownServer``, which keeps its own list of names; the connections of this class keep only
    ``_LEAN_ATTRIBUTES``."""

    _tempDataLen = 0
    connected = 1  # until Twisted's connectionLost sets 0 (on the _GrownServer the connection is by then)
    # Twisted's write list: only connections whose socket was ever full write through Twisted (send_pieces)
    _tempDataBuffer = _MadeWhenRead(lambda connection: [])
    # the peer's (host, port, ...): its host is kept, the rest asked of the socket if ever needed
    client = _MadeWhenRead(lambda connection: connection._peer_address())
    logstr = _MadeWhenRead(lambda connection: connection._log_prefix())
    repstr = _MadeWhenRead(lambda connection: connection._describe())
    sessionno = _MadeWhenRead(lambda connection: connection._fd)  # only in log lines: the descriptor will do

    def __init__(
        self,
        sock: Any,
        protocol: Any,
        client: tuple[Any, ...],
        server: Any,
        sessionno: int,
        reactor: Any,
    ) -> None:
        """What ``tcp.Server.__init__`` keeps, less the strings it formats for every connection and the peer's
        port; peers that share an address share its string. Set without ``__setattr__``'s check: all lean."""
        _set = object.__setattr__
        _set(self, "reactor", reactor)
        _set(self, "socket", sock)
        if sock.timeout != 0.0:  # the accept thread's sockets are non-blocking already (accept4)
            sock.setblocking(False)
        _set(self, "_fd", sock.fileno())
        _set(self, "protocol", protocol)
        if len(client) != 2:
            _set(self, "_addressType", address.IPv6Address)
        host = client[0]
        _set(self, "hostname", sys.intern(host) if type(host) is str else host)
        _set(self, "server", server)
        watch = getattr(reactor, "watch_new_reader", None)
        if watch is None:
            self.startReading()
        else:
            watch(self, self._fd)

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        """Twisted's (through its TLS mixin), in one step for the usual case: every frontend connection
        registers itself as the push producer of its new transport."""
        if streaming and self.producer is None and not self.disconnected and not self.TLS:
            object.__setattr__(self, "producer", producer)
            object.__setattr__(self, "streamingProducer", True)
        else:
            super().registerProducer(producer, streaming)

    @property
    def peer_host(self) -> str:
        """The peer's host, without making the address object ``getPeer`` returns."""
        return self.hostname

    def _peer_address(self) -> tuple[Any, ...]:
        try:
            rest = self.socket.getpeername()[1:]
        except (AttributeError, OSError):  # closed meanwhile
            rest = (0, 0, 0)[: 3 if self._addressType is address.IPv6Address else 1]
        return (self.hostname, *rest)

    def _log_prefix(self) -> str:
        protocol = getattr(self, "protocol", None)  # gone after the close
        return f"{self._getLogPrefix(protocol)},{self._fd},{self.hostname}"

    def _describe(self) -> str:
        protocol = getattr(self, "protocol", None)
        return f"<{type(protocol).__name__} fd {self._fd} on {getattr(self.server, '_realPortNumber', '?')}>"

    def __setattr__(self, name: str, value: object) -> None:
        if name not in _LEAN_ATTRIBUTES and type(self) is _Server:
            object.__setattr__(self, "__class__", _GrownServer)
            # the class change leaves a dict that still shares the lean class's table of names, which a new
            # name would join: a copy of its own instead
            object.__setattr__(self, "__dict__", {**self.__dict__})
        object.__setattr__(self, name, value)

    def fileno(self) -> int:
        """The socket's descriptor; -1 once it is closed (one int shared with the reactor's tables)."""
        return self._fd

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        if "socket" in self.__dict__:
            # what is made when read must be made while the socket and protocol still exist: anyone may ask
            # for the peer's address or the repr after the close
            self.client, self.logstr, self.repstr  # noqa: B018
            # Twisted's connectionLost unregisters through, then deletes, an instance attribute ``fileno``
            self.fileno = self.socket.fileno  # type: ignore[method-assign]
        super().connectionLost(reason)

    def _closeSocket(self, orderly: bool) -> None:  # noqa: N802
        self._fd = -1
        super()._closeSocket(orderly)

    def doRead(self) -> object:  # noqa: N802
        if self._fd < 0:
            return _NO_FILEDESC
        try:
            data = self.socket.recv(self.bufferSize)
        except OSError as error:
            return None if error.args[0] in _WOULD_BLOCK else main.CONNECTION_LOST
        if not data:
            # a frontend's connection takes the EOF itself (``peer_closed``: it closes through ``close_lean``);
            # anything else, as Twisted (the reactor's ``_disconnectSelectable``)
            ended = getattr(self.protocol, "peer_closed", None)
            if ended is None:
                return main.CONNECTION_DONE
            ended()
            return None
        self.protocol.dataReceived(data)
        return None

    def close_lean(self, reason: Any) -> None:
        """Close now, as Twisted's ``connectionLost`` does (once; the protocol's ``connectionLost`` last), for a
        connection with nothing buffered in Twisted. Twisted's way formats the log prefix and repr and asks
        the socket for the peer's address (made then in case they are asked for after the close), makes the
        connection a ``_GrownServer`` and unregisters the descriptor three times; here the descriptor leaves
        the reactor's tables once and the connection becomes a ``_ClosedServer``. Its peer's address after
        this close has port 0 (``FrontendConnection`` keeps the host it needs)."""
        reactor = self.reactor
        forget = getattr(reactor, "forget", None)
        if type(self) is not _Server or forget is None or "socket" not in self.__dict__:
            self.stopReading()
            self.stopWriting()
            self.connectionLost(reason)
            return
        forget(self._fd)
        object.__setattr__(self, "_fd", -1)
        producer = self.producer
        if producer is not None:
            producer.stopProducing()
        sock = self.socket
        try:
            sock.shutdown(2)  # as Twisted: a FIN, then the close (an unread request's RST comes after the FIN)
        except OSError:
            pass
        sock.close()
        kept = self.__dict__
        protocol = kept.pop("protocol")  # as Twisted deletes it: it keeps this transport (a cycle)
        del kept["socket"]
        kept.pop("producer", None)
        object.__setattr__(self, "__class__", _ClosedServer)
        protocol.connectionLost(reason)


class _GrownServer(_Server):
    """A connection that needed more than ``_LEAN_ATTRIBUTES`` (closing, buffered writes, large reads)."""

    __setattr__ = object.__setattr__  # grown already: its attributes are set at C speed (a dozen in a close)


class _ClosedServer(_Server):
    """A connection closed by ``close_lean``: what Twisted's close leaves, as class attributes (no class
    change into ``_GrownServer`` and no dict of its own for them)."""

    connected = 0
    disconnected = 1
    producer = None
    client = _MadeWhenRead(lambda connection: (connection.hostname, 0))

    def __setattr__(self, name: str, value: object) -> None:
        if name not in _LEAN_ATTRIBUTES:  # rare after a close: a dict of its own first (see _Server)
            object.__setattr__(self, "__dict__", {**self.__dict__})
        object.__setattr__(self, name, value)

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        """Closed already."""

    def readConnectionLost(self, reason: Any) -> None:  # noqa: N802
        """Closed already."""

    def close_lean(self, reason: Any) -> None:
        """Closed already."""

    def doRead(self) -> object:  # noqa: N802
        return _NO_FILEDESC


class _ListeningSocket(socket.socket):
    """Hands accepted connections out as the C sockets under ``socket.socket`` (48 bytes, not tracked by
    the garbage collector, against 88): the transport only calls their C methods."""

    __slots__ = ()

    def accept(self) -> tuple[Any, Any]:
        fd, address = self._accept()  # type: ignore[attr-defined]
        return _socket.socket(self.family, self.type, self.proto, fileno=fd), address


#: Connections one readable listening socket yields per reactor turn at most: the whole accept queue in the
#: usual case (a flood leaves the rest for the next turn, after the established connections' events).
ACCEPTS_PER_TURN = 256
#: Accepted sockets the accept thread keeps for the reactor at most (beyond, the kernel's queue waits).
ACCEPT_RING = 16384
_NONBLOCKING = getattr(socket, "SOCK_NONBLOCK", 0)
_NEVER = 1 << 62
_OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


def leave_to_reactor(backlog: int) -> tuple[int, int]:
    """What the accept thread leaves to the reactor (``_acceptor.c``'s ``few_queued``): fewer queued connects than
    a quarter of the backlog, at most 8; and after leaving them it looks away for 30 µs per backlog slot, at most
    2 ms (a wake-up per connect, or every 0.3 ms, cost the server 10-20 µs per HTTP request). So
    connects that come one at a time (a web client's requests) stay the reactor's, and the thread steps in
    long before the kernel's queue is full."""
    return max(1, min(8, backlog // 4)), min(2_000_000, backlog * 30_000)


class _AcceptSignal:
    """The accept thread's eventfd in the reactor: readable while accepted sockets wait in its ring."""

    __slots__ = ("fd", "port")

    def __init__(self, port: _Port, fd: int) -> None:
        self.port = port
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> None:  # noqa: N802
        self.port.take_accepted()

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        """The port closes the eventfd (its ``connectionLost``)."""

    def logPrefix(self) -> str:  # noqa: N802
        return "accept thread"


class _Port(tcp.Port):
    """Twisted's listening port, accepting the whole pending queue per turn.

    Twisted's own accepts as many connections per turn as it did the turn before (at least one, growing by
    20 when it used them all), so a burst of connects after a quiet spell is taken one or two per turn
    while the kernel's accept queue overflows (dropped SYNs, retried a second later). With a factory that
    builds connections without Twisted's address object (``build_connection``: every frontend's
    ``FrontendFactory``) each accept also skips that object and Twisted's per-turn log buffering; the socket
    options the factory names are set once on the listening socket, which accepted sockets inherit; and a
    socket is read before its connection is built, so that a peer that already closed without a word costs
    an accept, a read and a close (``_set_up``)."""

    transport = _Server
    #: the accept thread (``gearman_gateway._acceptor``), when it runs for this port
    acceptor: Any = None
    accept_failures = 0
    handed_over = False  # the reactor left the listening socket to the thread (out of descriptors)
    burst = _NEVER  # connects queued at once that start the accept thread (never, unless one is wanted)
    signal: _AcceptSignal
    thread_kind: tuple[int, int, int]

    def startListening(self) -> None:  # noqa: N802
        super().startListening()
        self._start_acceptor()

    def _start_acceptor(self) -> None:
        """An accept thread is wanted where it is built, the reactor is ours and the factory builds frontend
        connections (not a TLS port's wrapper, not ``GEARMAN_GATEWAY_PURE_PYTHON``). It starts at the first
        burst the reactor sees (``burst`` connects queued at once, ``doRead``): a second thread makes glibc
        lock every malloc and free (+0.2-0.4 % instructions per job, +1 % per HTTP request under callgrind),
        which a server whose clients keep their connections need not pay."""
        if (
            accel.acceptor is not None
            and getattr(self.reactor, "watch_exclusive", None) is not None
            and getattr(self.factory, "build_connection", None) is not None
        ):
            # half the backlog, at most 16: more than a web client's few concurrent requests queue (wrk or
            # ab with 8 connections: with the thread, +10 µs of server CPU per request on a quiet machine)
            self.burst = max(2, min(16, self.backlog // 2))

    def _start_thread(self) -> None:
        """Accept on a C thread too. Both the reactor and the thread watch the listening socket with
        ``EPOLLEXCLUSIVE``, the reactor first: a connect wakes the reactor when it sleeps in its poll (it
        accepts, as without the thread) and the thread only when the reactor is busy or waits for a CPU; the
        thread's sockets come through its eventfd (``_AcceptSignal``). Bursts of connects no longer overflow
        the kernel's accept queue while the reactor waits for a CPU (docs/architecture.md, "Accepting")."""
        self.burst = _NEVER
        module = accel.acceptor
        assert module is not None
        self.stopReading()
        fd = self.socket.fileno()
        self.reactor.watch_exclusive(self, fd)  # before the thread's epoll: the reactor is woken first when it sleeps
        try:
            leave, pause_ns = leave_to_reactor(self.backlog)
            acceptor = module.Acceptor(fd, ACCEPT_RING, leave=leave, pause_ns=pause_ns)
        except OSError as error:  # no thread or eventfd to be had: the reactor accepts alone
            log.warning("no accept thread for %r (%s): accepting in the reactor", self, error)
            return
        self.acceptor = acceptor
        family, kind, proto = self.accepted_kind
        self.thread_kind = (family, kind | _NONBLOCKING, proto)  # accept4 made them non-blocking
        self.signal = _AcceptSignal(self, acceptor.fileno())
        self.reactor.addReader(self.signal)

    def startReading(self) -> None:  # noqa: N802
        if self.acceptor is None:
            super().startReading()
            return
        self.reactor.watch_exclusive(self, self.socket.fileno())
        self.reactor.addReader(self.signal)

    def stopReading(self) -> None:  # noqa: N802
        super().stopReading()
        if self.acceptor is not None:
            self.reactor.removeReader(self.signal)

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        acceptor = self.acceptor
        if acceptor is None:
            super().connectionLost(reason)
            return
        acceptor.stop()  # before the listening socket closes under the thread's epoll
        try:
            super().connectionLost(reason)
        finally:
            self.acceptor = None
            acceptor.close()

    def _hand_over(self) -> None:
        """The reactor ran out of descriptors accepting: it stops watching the listening socket (level-triggered,
        it would be woken at once, again and again) and the thread takes over, backing off until an accept
        succeeds; then ``take_accepted`` watches the socket again."""
        tcp.Port.stopReading(self)
        self.handed_over = True
        self.acceptor.wake()

    def take_accepted(self) -> None:
        """What the accept thread queued, at most ``ACCEPTS_PER_TURN`` per turn (the rest stay signalled)."""
        acceptor = self.acceptor
        if acceptor is None:
            return
        if self.handed_over and not self.disconnecting:
            self.handed_over = False
            self.reactor.watch_exclusive(self, self.socket.fileno())
            acceptor.rewatch()  # after the reactor's again: the reactor stays the first woken
        build = self.factory.build_connection
        set_up = self._set_up
        kind = self.thread_kind
        for fd, client in acceptor.take(ACCEPTS_PER_TURN):
            set_up(build, fd, client, kind)
        failures = acceptor.failures
        if failures != self.accept_failures:
            self.accept_failures = failures
            log.warning(
                "accepting on %r: %s (%d times so far); the accept thread backs off and retries",
                self,
                os.strerror(acceptor.last_error),
                failures,
            )

    def createInternetSocket(self) -> socket.socket:  # noqa: N802
        listening = super().createInternetSocket()
        listening.__class__ = _ListeningSocket  # Twisted's socket, with its options, accepting lean sockets
        # what accepted sockets are made with (the socket's properties convert to enums on every read)
        self.accepted_kind = (int(listening.family), int(listening.type), listening.proto)
        options = getattr(self.factory, "inherited_socket_options", None)
        if options is not None:
            for level, name, value in options():
                listening.setsockopt(level, name, value)
            self.socket_options_inherited = True
        return listening

    def doRead(self) -> None:  # noqa: N802
        build = getattr(self.factory, "build_connection", None)
        if build is None:
            return super().doRead()
        accept = self.socket._accept  # the C accept: (descriptor, address), no Python socket object
        ask = self.socket.getsockopt
        accepted: deque[tuple[int, Any]] = deque()
        budget = ACCEPTS_PER_TURN
        while True:
            # the kernel's queue into ours before each set-up: a connection costs the set-up many times what
            # its accept costs, and connects that find the kernel's queue full are dropped (retried a second
            # later), while ours only waits. As many accepts as the kernel says are queued (TCP_INFO of a
            # listening socket), not one more that fails: an EAGAIN's exception costs more than the question
            try:
                queued = _QUEUED(ask(_TCP, _TCP_INFO, _QUEUED_END))[0]
            except OSError:  # cannot tell (not Linux): accept until the queue is empty
                queued = budget
            if queued >= self.burst:  # the first burst: from now on with the accept thread
                self._start_thread()
            asked = min(queued, budget)
            if not asked and budget == ACCEPTS_PER_TURN:
                asked = 1  # readable, yet none counted: see for ourselves, so that a readable socket never spins
            got = 0
            while got < asked:
                try:
                    accepted.append(accept())
                except BlockingIOError:  # empty (a queued connection may have been reset meanwhile)
                    break
                except OSError as error:  # EMFILE, EPERM, ECONNABORTED...: Twisted's handling, which logs and recovers
                    budget = got = 0
                    if self.acceptor is not None and error.errno in _OUT_OF_RESOURCES:
                        self._hand_over()  # the thread backs off and retries, where Twisted's loop would spin
                    else:
                        super().doRead()
                    break  # what was accepted before is still set up below
                got += 1
            budget -= got
            if not accepted:
                return None
            fd, client = accepted.popleft()
            self._set_up(build, fd, client, self.accepted_kind)
            if got < 2 and not accepted:
                # a lone connection, not a burst: what came during its set-up is the next poll's (the
                # listening socket stays readable), not worth a question every time
                return None

    def _set_up(self, build: Callable[[], Any], fd: int, client: Any, kind: tuple[int, int, int]) -> None:
        """One accepted socket's first read, then its connection. A peer that closed (or reset) before sending
        a byte is done with here: no connection, no epoll registration (a TCP health check, or a client
        that connects and gives up, costs an accept, a read and a close)."""
        sock = _socket.socket(*kind, fileno=fd)
        try:
            # its first bytes (or its EOF) are usually there already: read them now, not a poll later
            first: bytes | None = sock.recv(self.transport.bufferSize, _DONTWAIT)
        except BlockingIOError:
            first = None
        except OSError:  # reset before it sent anything
            first = b""
        if first == b"":
            sock.close()
            self.factory.closed_unread()
            return
        try:
            if len(client) == 4:  # IPv6: the scope id in the host, as Twisted does
                host = socket.getnameinfo(client, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)[0]
                client = (host, *client[1:])
            connection = build()
            number = self.sessionno
            self.sessionno = number + 1
            transport = self.transport(sock, connection, client, self, number, self.reactor)
            connection.makeConnection(transport)
        except Exception:  # one connection's failure must not stop the port
            log.exception("accepting a connection on %r", self)
            sock.close()
            return
        if first is not None and getattr(connection, "open", False):
            try:  # as doRead would hand it over
                connection.dataReceived(first)
            except BaseException as error:  # as Twisted: the application's error drops the connection
                log.exception("unhandled error reading %r", transport)
                self.reactor._disconnectSelectable(transport, error, True)


class _Descriptors(dict[int, None]):
    """The descriptors the reactor watches for reading (or writing), where Twisted keeps a set: a dict holds
    one in about 37 bytes, a set of thousands in 64 (it keeps its table at most a quarter full)."""

    __slots__ = ()

    def add(self, fd: int) -> None:
        self[fd] = None

    def remove(self, fd: int) -> None:
        del self[fd]


class GatewayReactor(EPollReactor):
    def __init__(self) -> None:
        super().__init__()
        # what Twisted registered already (its waker) carries over
        self._reads = _Descriptors.fromkeys(self._reads)  # type: ignore[assignment]
        self._writes = _Descriptors.fromkeys(self._writes)  # type: ignore[assignment]
        self._after_poll: list[Callable[[], None]] = []
        self._after_poll_first: list[Callable[[], None]] = []
        self._after_next_poll: list[Callable[[], None]] = []

    def watch_new_reader(self, selectable: Any, fd: int) -> None:
        """``addReader`` for a descriptor the reactor does not know yet (a connection just accepted), in one
        step instead of Twisted's three calls."""
        self._poller.register(fd, _READABLE)
        self._reads[fd] = None
        self._selectables[fd] = selectable

    def watch_exclusive(self, selectable: Any, fd: int) -> None:
        """``addReader`` with ``EPOLLEXCLUSIVE``, for a listening socket that an accept thread watches too: a
        connect wakes one of the two, this reactor first when it sleeps in its poll."""
        self._poller.register(fd, _READABLE | _EXCLUSIVE)
        self._reads[fd] = None
        self._selectables[fd] = selectable

    def forget(self, fd: int) -> None:
        """Stop watching ``fd`` (about to be closed) in one step: what ``removeReader`` and ``removeWriter``
        do together."""
        self._reads.pop(fd, None)
        self._writes.pop(fd, None)
        if self._selectables.pop(fd, None) is not None:
            self._poller.unregister(fd)

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> tcp.Port:  # noqa: N802
        listening = _Port(port, factory, backlog, interface, self)
        listening.startListening()
        return listening

    def mainLoop(self) -> None:  # noqa: N802
        """Twisted's loop, with ``runUntilCurrent`` and ``timeout`` only in turns that need them (a call is due,
        new or queued from a thread, or many were cancelled). As in
        Twisted's, anything raised out of a turn is logged and the loop goes on (stopping is
        ``reactor.stop``'s job, which runs the shutdown triggers)."""
        seconds = self.seconds
        while self._started:
            try:
                while self._started:
                    if self.threadCallQueue or self._newTimedCalls or self._pendingTimedCalls or self._justStopped:
                        # a timeout pends in most turns of a busy server: the bookkeeping only when a call is
                        # due, new or from a thread, or when many were cancelled (runUntilCurrent drops those)
                        if (
                            self._newTimedCalls
                            or self.threadCallQueue
                            or self._justStopped
                            or self._cancellations > 50
                            or (timeout := self._pendingTimedCalls[0].time - seconds()) <= 0
                        ):
                            self.runUntilCurrent()
                            timeout = self.timeout()
                        elif timeout > _LONGEST_POLL:
                            timeout = _LONGEST_POLL
                    else:
                        timeout = None
                    self.doIteration(timeout if self.running else 0)
            except BaseException:  # as Twisted's loop: even SystemExit is logged, and the loop goes on
                log.exception("unexpected error in the main loop")

    def call_after_poll(self, callback: Callable[[], None], first: bool = False) -> None:
        """``first``: before the callbacks registered without it (the scheduler's end of turn, which
        produces replies, runs before the write flush that sends them)."""
        (self._after_poll_first if first else self._after_poll).append(callback)

    def call_after_next_poll(self, callback: Callable[[], None]) -> None:
        """After the events of the poll that follows the current one (which will not block)."""
        self._after_next_poll.append(callback)

    def doPoll(self, timeout: float | None) -> None:  # noqa: N802
        if self._after_next_poll:
            self._after_poll.extend(self._after_next_poll)
            del self._after_next_poll[:]
        if self._after_poll or self._after_poll_first:
            timeout = 0  # callbacks are waiting (registered outside a poll): run them first
        else:
            timeout = -1 if timeout is None else timeout
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as error:
            if error.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        dispatch = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            if event == _READABLE:  # what _doReadOrWrite would do for it, without its general case
                try:
                    if type(selectable) is _Server or type(selectable) is _GrownServer:
                        why = selectable.doRead()  # which checks its descriptor itself
                    else:
                        why = selectable.doRead() if selectable.fileno() != -1 else _NO_FILEDESC
                except BaseException as error:  # as Twisted: the application's error drops the connection
                    log.exception("unhandled error reading %r", selectable)
                    why = error
                if why:
                    self._disconnectSelectable(selectable, why, True)
                continue
            try:
                dispatch(selectable, fd, event)
            except Exception:
                log.exception("unhandled error on %r", selectable)
        first = self._after_poll_first
        after = self._after_poll
        while first or after:
            callbacks = first[:] if first else after[:]
            del (first if first else after)[:]
            for callback in callbacks:
                try:
                    callback()
                except BaseException:  # the rest of this turn's callbacks (the write flush) still run
                    log.exception("unhandled error in %r", callback)

    doIteration = doPoll


def install(kind: str = "epoll") -> Any:
    """Install the reactor named by ``--reactor``: ours (``epoll``); Twisted's own epoll reactor unchanged
    (``twisted-epoll``: what the integration tests also run on, so that a Twisted upgrade that breaks ours is
    told apart from one that breaks the server); or Twisted's asyncio reactor on the standard asyncio loop or
    on uvloop (measured slower: docs/performance.md; the binary frontend's end of turn becomes
    ``callLater(0)`` there, as on ``twisted-epoll``). Raises RuntimeError when uvloop is asked for but
    missing."""
    from twisted.internet.main import installReactor

    if kind == "epoll":
        reactor: Any = GatewayReactor()
        installReactor(reactor)
        return reactor
    if kind == "twisted-epoll":
        reactor = EPollReactor()
        installReactor(reactor)
        return reactor
    import asyncio

    if kind == "uvloop":
        try:
            import uvloop  # type: ignore[import-not-found]
        except ImportError:
            raise RuntimeError("--reactor uvloop: uvloop is not installed (pip install uvloop)") from None
        loop = uvloop.new_event_loop()
    elif kind == "asyncio":
        loop = asyncio.new_event_loop()
    else:
        raise RuntimeError(f"unknown reactor {kind!r}")
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)
    from twisted.internet import reactor as installed

    return installed
