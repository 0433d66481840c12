"""The blocking transport: plain sockets and a selector, for ``Client`` and ``Worker``.

It never polls: between events it sleeps in ``select`` until a socket is readable, a reconnect is due,
the caller's deadline passes, or another thread calls ``interrupt()``.
"""

from __future__ import annotations

import selectors
import socket
import ssl
from collections.abc import Callable
from typing import Any

from gearman_gateway.clientlib.links import BadHostName, Link
from gearman_gateway.clientlib.transport import READ_SIZE, Steps, T, TransportBase, Wait


class BlockingTransport(TransportBase):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._selector = selectors.DefaultSelector()
        self._sockets: dict[Link, socket.socket] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)

    def run(self, until: Callable[[], bool], deadline: float | None = None) -> bool:
        """Serve the session until ``until()`` holds (True) or ``deadline`` passes or interrupt() (False)."""
        while True:
            wait = self.step(until, deadline)
            if isinstance(wait, bool):
                return wait
            for key, _ in self._selector.select(wait):
                if key.data is None:
                    self._drain_wakeups()
                else:
                    self._read(key.data, key.fileobj)  # type: ignore[arg-type]

    def drive(self, steps: Steps[T]) -> T:
        """Run an API method's steps to their end, blocking in run() for each Wait."""
        reply: object = None
        while True:
            try:
                request = steps.send(reply)
            except StopIteration as stop:
                return stop.value
            if not isinstance(request, Wait):
                steps.close()
                raise TypeError(f"{request!r} needs an event loop: use the Async* classes for coroutines")
            reply = self.run(request.until, request.deadline)

    def interrupt(self) -> None:
        """Make the current (or next) run() return False; safe from another thread or a signal handler."""
        self.interrupted = True
        try:
            self._wake_w.send(b"\x00")
        except OSError:
            pass

    def flush(self) -> None:
        for link, data in list(self.session.outputs()):
            sock = self._sockets.get(link)
            if sock is None:
                continue
            try:
                sock.sendall(data)
            except OSError as error:
                self._drop(link, error)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        self.session.closed()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def begin_connect(self, link: Link) -> None:
        """Connect now (the only blocking wait besides select, bounded by connect_timeout)."""
        try:
            sock = socket.create_connection((link.address.host, link.address.port), timeout=self.connect_timeout)
        except OSError as error:
            self.session.connect_failed(link, error)
            return
        except UnicodeError:  # refused by the IDNA codec before any lookup (an empty or too long label)
            self.session.connect_failed(link, BadHostName(link.address.host))
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:  # the handshake too is bounded by connect_timeout
            try:
                sock = self.tls.wrap_socket(sock, server_hostname=link.address.host)
            except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
                sock.close()
                self.session.connect_failed(link, error)
                return
        sock.settimeout(None)  # reads happen only when select says so; writes may block on a full buffer
        self._sockets[link] = sock
        self._selector.register(sock, selectors.EVENT_READ, link)
        self.session.connection_made(link)

    def _read(self, link: Link, sock: socket.socket) -> None:
        try:
            data = _read_tls(sock) if isinstance(sock, ssl.SSLSocket) else sock.recv(READ_SIZE)
        except OSError as error:
            self._drop(link, error)
            return
        if data is None:  # TLS records without application data (a TLS 1.3 session ticket), or part of one
            return
        if not data:
            self._drop(link, None)
        elif not self.session.data_received(link, data):
            self._drop(link, ConnectionError("corrupt packet stream"))

    def _drop(self, link: Link, error: BaseException | None) -> None:
        sock = self._sockets.pop(link, None)
        if sock is not None:
            self._selector.unregister(sock)
            sock.close()
        self.session.connection_lost(link, error)

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass


def _read_tls(sock: ssl.SSLSocket) -> bytes | None:
    """Everything readable now, without blocking: OpenSSL may already hold records that select() cannot
    see, and a readable socket may carry no application data. b"": the server closed; None: nothing yet."""
    chunks = []
    sock.setblocking(False)
    try:
        while True:
            chunk = sock.recv(READ_SIZE)
            if not chunk:
                return b"".join(chunks) if chunks else b""
            chunks.append(chunk)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return b"".join(chunks) if chunks else None
    finally:
        sock.setblocking(True)
