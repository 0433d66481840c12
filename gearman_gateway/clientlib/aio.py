"""The asyncio transport, for ``AsyncClient`` and ``AsyncWorker``: the same session, asyncio sockets.

Each connected link is an ``asyncio.Protocol`` that hands its bytes to the session; ``run`` waits on an
event that every arrival, loss or connect sets, so the session is consulted exactly when something
happened (or a reconnect is due), never on a timer.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from gearman_gateway.clientlib.links import BadHostName, Link
from gearman_gateway.clientlib.transport import Steps, T, TransportBase, Wait


class _LinkProtocol(asyncio.Protocol):
    def __init__(self, owner: AsyncTransport, link: Link) -> None:
        self.owner = owner
        self.link = link
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if not self.owner.session.data_received(self.link, data):
            self.owner.drop(self.link, ConnectionError("corrupt packet stream"))
        self.owner.changed()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.drop(self.link, exc)


class AsyncTransport(TransportBase):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._protocols: dict[Link, _LinkProtocol] = {}
        self._connecting: set[asyncio.Task[None]] = set()
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def changed(self) -> None:
        if self._event is not None:
            self._event.set()

    async def run(self, until: Callable[[], bool], deadline: float | None = None) -> bool:
        """Serve the session until ``until()`` holds (True) or ``deadline`` passes or interrupt() (False)."""
        loop = asyncio.get_running_loop()
        if self._event is None or self._loop is not loop:
            self._event = asyncio.Event()  # bound to the loop it is first awaited in
            self._loop = loop
        event = self._event
        while True:
            wait = self.step(until, deadline)
            if isinstance(wait, bool):
                return wait
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), wait)
            except TimeoutError:
                pass

    async def drive(self, steps: Steps[T]) -> T:
        """Run an API method's steps to their end: run() for each Wait, await anything else."""
        reply: object = None
        error: Exception | None = None
        while True:
            try:
                request = steps.throw(error) if error is not None else steps.send(reply)
            except StopIteration as stop:
                return stop.value
            error = None
            try:
                if isinstance(request, Wait):
                    reply = await self.run(request.until, request.deadline)
                else:
                    reply = await request
            except Exception as caught:  # handed to the steps, as a synchronous call would raise there
                error = caught
            except BaseException:  # cancelled: let the steps clean up (a worker fails its job) first
                steps.close()
                raise

    def interrupt(self) -> None:
        """Make the current (or next) run() return False; safe from another thread too."""
        self.interrupted = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.changed()
        else:
            loop.call_soon_threadsafe(self.changed)

    def flush(self) -> None:
        for link, data in list(self.session.outputs()):
            protocol = self._protocols.get(link)
            if protocol is not None and protocol.transport is not None:
                protocol.transport.write(data)

    def drop(self, link: Link, error: BaseException | None) -> None:
        protocol = self._protocols.pop(link, None)
        if protocol is None:
            return
        if protocol.transport is not None:
            protocol.transport.abort()
        self.session.connection_lost(link, error)
        self.changed()

    async def close(self) -> None:
        for task in list(self._connecting):
            task.cancel()
        protocols, self._protocols = self._protocols, {}
        for protocol in protocols.values():
            if protocol.transport is not None:
                protocol.transport.close()
        self.session.closed()

    def begin_connect(self, link: Link) -> None:
        task = asyncio.ensure_future(self._connect(link))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, link: Link) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _LinkProtocol(self, link),
                    link.address.host,
                    link.address.port,
                    ssl=self.tls,
                    server_hostname=link.address.host if self.tls is not None else None,
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError) as error:
            self.session.connect_failed(link, error)
        except UnicodeError:  # refused by the IDNA codec before any lookup (an empty or too long label)
            self.session.connect_failed(link, BadHostName(link.address.host))
        else:
            self._protocols[link] = protocol
            self.session.connection_made(link)
        self.changed()
