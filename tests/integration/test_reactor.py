"""gearmand's reactor (gearman_gateway/reactor.py) on real sockets: its lean turns still run timed calls and
calls from other threads, survive a failing callback, stop when asked, and its TCP connections deliver
every byte and the peer's close to their protocol."""

from __future__ import annotations

import _socket
import logging
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet import protocol
from twisted.internet.error import ConnectionDone

from gearman_gateway.config import make_settings
from gearman_gateway.connections import ConnectionRegistry
from gearman_gateway.reactor import GatewayReactor, _ClosedServer, _GrownServer, _Server
from protocols.connection import FrontendConnection, FrontendFactory


@pytest.fixture
def reactor() -> GatewayReactor:
    reactor = GatewayReactor()
    reactor.callLater(10, reactor.stop)  # a test that hangs fails instead of blocking the suite
    return reactor


def run(reactor: GatewayReactor) -> None:
    reactor.run(installSignalHandlers=False)


def test_timed_calls_and_calls_from_threads_run(reactor: GatewayReactor) -> None:
    seen: set[str] = set()

    def note(what: str) -> None:
        seen.add(what)
        if seen == {"timed", "thread"}:
            reactor.stop()

    reactor.callLater(0.01, note, "timed")
    reactor.callWhenRunning(threading.Thread(target=reactor.callFromThread, args=(note, "thread")).start)
    run(reactor)
    assert seen == {"timed", "thread"}


def test_timed_calls_run_when_due_behind_a_later_one_and_cancelled_ones_are_dropped(
    reactor: GatewayReactor,
) -> None:
    """With a far call pending, turns skip the timed-call bookkeeping until a call is due: calls added later
    (sooner, or moved sooner) still run on time, in order, and many cancelled calls are dropped from the
    heap although the first pending call is not due."""
    order: list[str] = []
    reactor.callLater(1000, order.append, "far")
    moved = reactor.callLater(500, order.append, "moved sooner")
    heap_sizes: list[int] = []

    def cancel_many() -> None:
        calls = [reactor.callLater(900, order.append, "cancelled") for _ in range(200)]

        def cancel() -> None:  # a turn later, when they are in the heap
            heap_sizes.append(len(reactor._pendingTimedCalls))
            for call in calls:
                call.cancel()
            reactor.call_after_next_poll(lambda: heap_sizes.append(len(reactor._pendingTimedCalls)))

        reactor.call_after_next_poll(cancel)

    def second() -> None:
        order.append("second")
        moved.reset(0.01)

    reactor.callLater(0.02, order.append, "first")
    reactor.callLater(0.05, second)
    reactor.callLater(0.03, cancel_many)
    reactor.callLater(0.3, reactor.stop)
    run(reactor)
    assert order == ["first", "second", "moved sooner"]
    assert len(heap_sizes) == 2 and heap_sizes[0] > 200 and heap_sizes[1] < 10, heap_sizes


def test_a_failing_after_poll_callback_is_logged_and_the_loop_goes_on(
    reactor: GatewayReactor, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def failing() -> None:
        raise RuntimeError("boom")

    def later() -> None:
        ran.append("later")
        reactor.stop()

    reactor.callWhenRunning(reactor.call_after_poll, failing)
    reactor.callLater(0.05, later)
    with caplog.at_level(logging.ERROR, logger="gearman_gateway.reactor"):
        run(reactor)
    assert ran == ["later"]
    assert any("boom" in (record.exc_text or "") or record.exc_info for record in caplog.records)


class Collect(protocol.Protocol):
    """Keeps what it receives; at the close, reports it and stops the reactor."""

    def __init__(self, done: list[tuple[bytes, object]]) -> None:
        self.data = b""
        self.done = done

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.data += data

    def connectionLost(self, reason: object = None) -> None:  # noqa: N802
        self.done.append((self.data, reason))
        self.transport.reactor.stop()  # type: ignore[union-attr]


def test_tcp_connections_deliver_every_byte_and_the_close(reactor: GatewayReactor) -> None:
    done: list[tuple[bytes, object]] = []
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(lambda: Collect(done)), interface="127.0.0.1")
    payload = bytes(range(256)) * 4096  # 1 MiB: many reads

    def client() -> None:
        with socket.create_connection(("127.0.0.1", port.getHost().port)) as sock:
            sock.sendall(payload)

    reactor.callWhenRunning(threading.Thread(target=client).start)
    run(reactor)
    port.stopListening()
    data, reason = done[0]
    assert data == payload
    assert reason.check(ConnectionDone)  # type: ignore[attr-defined]


def test_the_reactors_own_waker_is_among_its_readers(reactor: GatewayReactor) -> None:
    """The descriptor tables replaced at start keep what Twisted had registered (its waker), so it can be
    removed and added again as on any epoll reactor."""
    assert reactor.waker in reactor.getReaders()
    reactor.removeReader(reactor.waker)
    assert reactor.waker not in reactor.getReaders()
    reactor.addReader(reactor.waker)
    assert reactor.waker in reactor.getReaders()


def test_listen_tcp_uses_the_lean_transport(reactor: GatewayReactor) -> None:
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(protocol.Protocol), interface="127.0.0.1")
    try:
        assert port.transport is _Server
    finally:
        port.stopListening()


def test_anything_raised_by_an_after_poll_callback_is_logged_and_the_turn_goes_on(
    reactor: GatewayReactor, caplog: pytest.LogCaptureFixture
) -> None:
    """Even SystemExit: the callbacks after it in the same turn (the write flush) still run, and ``run``
    ends through ``stop`` with the shutdown triggers."""
    events: list[str] = []

    def leaving() -> None:
        raise SystemExit(3)

    def register() -> None:
        reactor.call_after_poll(leaving)
        reactor.call_after_poll(lambda: events.append("after"))

    reactor.addSystemEventTrigger("before", "shutdown", events.append, "shutdown")
    reactor.callWhenRunning(register)
    reactor.callLater(0.05, reactor.stop)
    with caplog.at_level(logging.ERROR, logger="gearman_gateway.reactor"):
        run(reactor)
    assert events == ["after", "shutdown"]
    assert any("unhandled error" in record.getMessage() for record in caplog.records)


class Inspect(protocol.Protocol):
    """Records what its lean transport holds at connection time (the second connection asks nothing until it
    is closed), then writes ``payload`` through Twisted's own buffered write (more than the socket takes at
    once) and closes."""

    def __init__(self, payload: bytes, seen: dict[str, object]) -> None:
        self.payload = payload
        self.seen = seen

    def connectionMade(self) -> None:  # noqa: N802
        transport = self.transport
        self.seen["kept"] = set(vars(transport))
        self.seen.setdefault("classes", []).append(type(transport))
        self.seen["socket class"] = type(transport.socket)  # type: ignore[union-attr]
        self.seen.setdefault("hosts", []).append(transport.peer_host)  # type: ignore[union-attr]
        self.seen.setdefault("ports", []).append(transport.socket.getpeername()[1])  # type: ignore[union-attr]
        if len(self.seen["hosts"]) == 2:  # type: ignore[arg-type]
            transport.write(self.payload)  # type: ignore[union-attr]
            transport.loseConnection()  # type: ignore[union-attr]
            return  # the second connection leaves the rest to be asked for after its close
        self.seen["repr"] = repr(transport)
        self.seen["prefix"] = transport.logPrefix()  # type: ignore[union-attr]
        self.seen["peer"] = transport.getPeer()  # type: ignore[union-attr]
        self.seen["fileno"] = transport.fileno()  # type: ignore[union-attr]
        transport.write(self.payload)  # type: ignore[union-attr]
        transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: object = None) -> None:  # noqa: N802
        transport = self.transport
        self.seen["fileno after"] = transport.fileno()  # type: ignore[union-attr]
        # asked for the first time after the close: made while the socket still was there
        self.seen.setdefault("peers after", []).append(transport.getPeer())  # type: ignore[union-attr]
        self.seen.setdefault("reprs after", []).append(repr(transport))
        self.seen.setdefault("classes after", []).append(type(transport))
        self.seen["closed"] = self.seen.get("closed", 0) + 1  # type: ignore[operator]
        if self.seen["closed"] == 2:
            self.transport.reactor.stop()  # type: ignore[union-attr]


def test_the_lean_transport_makes_what_it_does_not_keep_when_asked(reactor: GatewayReactor) -> None:
    """No log prefix, repr, peer address, write list or bound fileno is kept per connection (and its socket is
    the bare C one), yet each works when used, even first after the close (the peer's port, the repr); every
    byte of a buffered write arrives, the descriptor reads -1 after the close, and two peers on one address
    share its string."""
    payload = bytes(range(256)) * 32768  # 8 MiB: more than the socket buffers, so Twisted's write list is used
    seen: dict[str, object] = {}
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(lambda: Inspect(payload, seen)), interface="127.0.0.1")
    received: list[bytes] = []

    def client() -> None:
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", port.getHost().port)) as sock:
                chunks = []
                while chunk := sock.recv(1 << 20):
                    chunks.append(chunk)
                received.append(b"".join(chunks))

    reading = threading.Thread(target=client)
    reactor.callWhenRunning(reading.start)
    run(reactor)
    port.stopListening()
    reading.join(10)
    assert received == [payload, payload]
    assert not {"logstr", "repstr", "client", "_tempDataBuffer", "fileno", "sessionno"} & seen["kept"]  # type: ignore[operator]
    assert "Inspect" in seen["repr"]  # type: ignore[operator]
    assert "127.0.0.1" in seen["prefix"]  # type: ignore[operator]
    assert seen["peer"].host == "127.0.0.1"  # type: ignore[attr-defined]
    assert seen["peer"].port == seen["ports"][0]  # type: ignore[attr-defined,index]
    assert [peer.port for peer in seen["peers after"]] == seen["ports"]  # type: ignore[attr-defined]
    assert all("Inspect" in text for text in seen["reprs after"])  # type: ignore[attr-defined]
    assert seen["fileno"] > 2  # type: ignore[operator]
    assert seen["fileno after"] == -1
    first, second = seen["hosts"]  # type: ignore[misc]
    assert first is second
    # lean while open; what closing sets (and the write buffers) made them _GrownServers first
    assert seen["classes"] == [_Server, _Server] and seen["classes after"] == [_GrownServer, _GrownServer]
    assert seen["socket class"] is _socket.socket  # the C socket: 48 bytes, against socket.socket's 88


class Grow(protocol.Protocol):
    """Does what makes Twisted set attributes a lean connection does not keep, when its peer asks."""

    def __init__(self, made: list[object]) -> None:
        self.made = made

    def connectionMade(self) -> None:  # noqa: N802
        self.made.append(self.transport)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        transport: Any = self.transport
        if data == b"close":
            transport.loseConnection()
        elif data == b"write":
            transport.write(b"x" * (8 << 20))  # more than the socket takes: Twisted's buffers
        elif data == b"large":
            transport.bufferSize = 1 << 20  # as the binary frontend does for a large packet


#: Run in a fresh interpreter: what the transports of 200 idle connections cost, after the first few
#: connections closed, buffered a write and read large packets ("grow"), or with none of that before.
_LATER_CONNECTIONS_COST = """
import socket, sys, time, tracemalloc
from twisted.internet import protocol
from gearman_gateway.config import make_settings
from gearman_gateway.connections import ConnectionRegistry
from gearman_gateway.reactor import GatewayReactor, _ClosedServer, _GrownServer, _Server
from protocols.connection import FrontendConnection, FrontendFactory
from tests.integration.test_reactor import Grow
reactor = GatewayReactor()
made = []
port = reactor.listenTCP(0, protocol.Factory.forProtocol(lambda: Grow(made)), interface="127.0.0.1")
address = ("127.0.0.1", port.getHost().port)
def pump(until):
    deadline = time.monotonic() + 10
    while not until() and time.monotonic() < deadline:
        reactor.iterate(0.01)
    assert until()
if sys.argv[1] == "grow":
    for request in (b"close", b"write", b"large"):
        with socket.create_connection(address) as peer:
            pump(lambda: made)
            peer.sendall(request)
            pump(lambda: type(made[-1]) is _GrownServer)
        made.clear()
tracemalloc.start()
before = tracemalloc.take_snapshot()
socks = []
for _ in range(200):
    socks.append(socket.create_connection(address))
    pump(lambda: len(made) == len(socks))
after = tracemalloc.take_snapshot()
assert all(type(transport) is _Server for transport in made)
print(sum(stat.size_diff for stat in after.compare_to(before, "filename") if "tcp.py" in str(stat.traceback)) / 200)
"""


def test_connections_that_grew_leave_later_ones_as_lean_as_the_first() -> None:
    """CPython (3.11) sizes every instance of a class for all the attribute names its instances ever set. A
    connection that closes, buffers a write or reads large packets becomes a _GrownServer before setting
    what a lean one does not keep, so connections accepted afterwards cost what they would have otherwise
    (without it, about 90 bytes more each in a server whose first connections closed)."""

    def cost(mode: str) -> float:
        run = subprocess.run(
            [sys.executable, "-c", _LATER_CONNECTIONS_COST, mode],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).parents[2],
        )
        assert run.returncode == 0, run.stderr
        return float(run.stdout)

    fresh, grown = cost("fresh"), cost("grow")
    assert grown <= fresh + 8, (fresh, grown)


class Closing(FrontendConnection):
    """A frontend's connection that replies ``bye`` and closes at once (``close_now``) when it reads ``quit``,
    and records how its transport looks when the close reaches it."""

    def __init__(self, context: Any, seen: list[dict[str, object]]) -> None:
        super().__init__(context)
        self.seen = seen

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if data == b"quit":
            self.queue(b"bye")
            self.close_now()

    def ended(self) -> None:
        transport = self.transport
        reactor = self.context.reactor
        self.seen.append(
            {
                "class": type(transport),
                "fileno": transport.fileno(),
                "watched": transport_fd_watched(reactor, self.fd),
                "kept": set(vars(transport)),
                "peer": transport.getPeer().host,
                "connected": transport.connected,
                "repr": repr(transport),
            }
        )
        transport.loseConnection()  # after the close: nothing
        transport.abortConnection()
        transport.write(b"late")
        if len(self.seen) == 2:
            reactor.stop()


def quit_and_read(address: tuple[str, int]) -> bytes:
    """What a ``Closing`` connection answers to ``quit``, up to its close."""
    with socket.create_connection(address) as sock:
        sock.sendall(b"quit")
        chunks = []
        while chunk := sock.recv(100):
            chunks.append(chunk)
        return b"".join(chunks)


def transport_fd_watched(reactor: GatewayReactor, fd: int) -> bool:
    return fd in reactor._selectables or fd in reactor._reads or fd in reactor._writes


def test_a_frontend_connection_closes_in_one_step_on_eof_and_close_now(reactor: GatewayReactor) -> None:
    """The peer's EOF and ``close_now`` close a frontend's connection at once (``close_lean``): the peer
    gets what was queued and then the EOF, the descriptor leaves the reactor, the transport lets go of its
    protocol and socket (no cycle) and becomes a ``_ClosedServer``, on which what Twisted's closed
    connection ignores is ignored."""
    seen: list[dict[str, object]] = []
    context = SimpleNamespace(reactor=reactor, connections=ConnectionRegistry(), settings=make_settings({}))
    factory = FrontendFactory(context)  # type: ignore[arg-type]
    factory.protocol = lambda factory: Closing(factory.context, seen)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    received: list[bytes] = []

    def client() -> None:
        address = ("127.0.0.1", port.getHost().port)
        with socket.create_connection(address) as sock:
            sock.sendall(b"x")  # a byte (a connection is built for it), then the EOF
            sock.shutdown(socket.SHUT_WR)
            received.append(sock.recv(100))
        received.append(quit_and_read(address))

    reading = threading.Thread(target=client)
    reactor.callWhenRunning(reading.start)
    run(reactor)
    port.stopListening()
    reading.join(10)
    assert received == [b"", b"bye"]
    assert len(context.connections) == 0
    for closed in seen:
        assert closed["class"] is _ClosedServer
        assert closed["fileno"] == -1
        assert not closed["watched"]
        assert not {"protocol", "socket", "producer"} & closed["kept"]  # type: ignore[operator]
        assert closed["peer"] == "127.0.0.1"
        assert closed["connected"] == 0
        assert "fd -1" in closed["repr"]  # type: ignore[operator]


def test_a_peer_that_closes_before_sending_a_byte_gets_no_connection(reactor: GatewayReactor) -> None:
    """A connect and close with nothing sent (a TCP health check) is read at accept and closed there: no
    connection is built, nothing is registered with the reactor, it is counted as accepted, and the peer
    sees the close; a peer that resets before it is accepted likewise. The next connection is served as
    usual. (The reactor waits until the peers have closed, so that their EOFs are there at accept.)"""
    seen: list[dict[str, object]] = []
    context = SimpleNamespace(reactor=reactor, connections=ConnectionRegistry(), settings=make_settings({}))
    factory = FrontendFactory(context)  # type: ignore[arg-type]
    built: list[Closing] = []

    def build(factory: FrontendFactory) -> Closing:
        built.append(Closing(factory.context, seen))
        return built[-1]

    factory.protocol = build
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    address = ("127.0.0.1", port.getHost().port)

    def watched() -> set[int]:
        """What the reactor watches, less an accept thread's eventfd (the burst below may start one)."""
        return {fd for fd, selectable in reactor._selectables.items() if type(selectable).__name__ != "_AcceptSignal"}

    watched_before = watched()
    closed = threading.Event()
    received: list[bytes] = []
    watched_between: list[set[int]] = []

    def client() -> None:
        peers = [socket.create_connection(address) for _ in range(20)]
        for sock in peers:
            sock.shutdown(socket.SHUT_WR)
        resetting = socket.create_connection(address)
        resetting.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        resetting.close()
        closed.set()
        for sock in peers:
            received.append(sock.recv(100))  # the server's close
            sock.close()
        reactor.callFromThread(lambda: watched_between.append(watched()))
        received.append(quit_and_read(address))
        reactor.callFromThread(reactor.stop)

    reading = threading.Thread(target=client)

    def start() -> None:
        reading.start()
        assert closed.wait(10)  # the reactor accepts nothing until every peer has closed

    reactor.callWhenRunning(start)
    run(reactor)
    port.stopListening()
    reading.join(10)
    assert received == [b""] * 20 + [b"bye"]
    assert len(built) == 1 and len(seen) == 1  # only the connection that sent something
    assert watched_between == [watched_before]
    assert context.connections.accepted_total in (21, 22)  # the reset one, if the kernel still queued it
    assert len(context.connections) == 0
