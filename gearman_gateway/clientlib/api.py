"""What the four API classes share: servers, a session, and a transport that runs their steps.

``Client``/``Worker`` are ``BlockingEndpoint``s and ``AsyncClient``/``AsyncWorker`` are ``AsyncEndpoint``s;
the protocol logic lives in the session, and the waiting methods are steps (see ``transport``).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from gearman_gateway.clientlib.blocking import BlockingTransport
from gearman_gateway.clientlib.links import DEFAULT_HOST, DEFAULT_PORT, Address, parse_servers
from gearman_gateway.clientlib.session import Session
from gearman_gateway.clientlib.transport import Steps

if TYPE_CHECKING:
    from gearman_gateway.clientlib.aio import AsyncTransport


class Endpoint:
    def __init__(
        self,
        session: Session,
        servers: str | Iterable[str] | None,
        connect_timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._session = session
        self.connect_timeout = connect_timeout
        self.tls = tls  # every server is reached over TLS with this context (clientlib.tls); None: plaintext
        self._transport = self._new_transport()
        if servers:
            self.add_servers(servers)

    def add_server(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self._session.add_server(Address(host or DEFAULT_HOST, int(port or DEFAULT_PORT)))

    def add_servers(self, servers: str | Iterable[str]) -> None:
        """``"h1,h2:4731"`` (or a list of such): each server with an optional port, 4730 when left out."""
        for address in parse_servers(servers):
            self._session.add_server(address)

    @property
    def servers(self) -> list[Address]:
        return [link.address for link in self._session.links]

    def _new_transport(self) -> BlockingTransport | AsyncTransport:
        raise NotImplementedError

    def _drive(self, steps: Steps[Any]) -> Any:
        """Run a waiting method's steps: returns its value, or (asyncio) a coroutine of it."""
        return self._transport.drive(steps)


class BlockingEndpoint(Endpoint):
    _transport: BlockingTransport

    def _new_transport(self) -> BlockingTransport:
        return BlockingTransport(self._session, self.connect_timeout, self.tls)

    def close(self) -> None:
        """Close the connections; what was under way is abandoned. The object can be used again."""
        self._transport.close()
        self._transport = self._new_transport()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncEndpoint(Endpoint):
    _transport: AsyncTransport

    def _new_transport(self) -> AsyncTransport:
        from gearman_gateway.clientlib.aio import AsyncTransport  # asyncio only for those who use it

        return AsyncTransport(self._session, self.connect_timeout, self.tls)

    async def close(self) -> None:
        """Close the connections; what was under way is abandoned. The object can be used again."""
        await self._transport.close()
        self._transport = self._new_transport()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
