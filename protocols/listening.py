"""Listening on Twisted endpoint strings: Twisted's ``StreamServerEndpointService``, binding in
``privilegedStartService`` (before gearmand drops root) and raising there when it cannot, so a server that
cannot listen fails at start-up with the reason instead of running deaf."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory

from protocols import ServiceState

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from protocols import FrontendContext

log = logging.getLogger("gearman_gateway.server")


def listening_services(
    context: FrontendContext, name: str, port: int, factory: Factory, label: str
) -> list[ListeningService]:
    """A frontend's listeners: its endpoint strings from the config, else TCP on each listen address."""
    settings = context.settings
    endpoints = settings.endpoints.get(name) or tcp_endpoints(settings.listen, port, settings.backlog)
    return [ListeningService(context.reactor, endpoint, factory, label) for endpoint in endpoints]


def tcp_endpoints(addresses: list[str], port: int, backlog: int) -> list[str]:
    """Endpoint strings for each listen address (all IPv4 interfaces when none is given)."""
    result = []
    for address in addresses or ["0.0.0.0"]:
        kind = "tcp6" if ":" in address else "tcp"
        interface = address.replace(":", "\\:")
        result.append(f"{kind}:port={port}:interface={interface}:backlog={backlog}")
    return result


class ListeningService(StreamServerEndpointService):
    """Listens on one endpoint string; says where in ``frontend_state``."""

    _raiseSynchronously = True  # Twisted's switch: a failed listen raises out of privilegedStartService

    def __init__(self, reactor: Any, description: str, factory: Factory, label: str) -> None:
        super().__init__(serverFromString(reactor, description), factory)
        self.description = description
        self.label = label
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:  # noqa: N802
        super().privilegedStartService()
        self._waitingForPort.addCallback(self._listening)

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        address = port.getHost()
        log.log(25, "listening for %s on %s:%d", self.label, address.host, address.port)  # type: ignore[attr-defined]
        return port

    def stopService(self) -> Deferred | None:  # noqa: N802
        """Stop listening (once: a graceful shutdown stops the listeners before the rest of the server)."""
        self.port = None
        if self._waitingForPort is None:  # never started (another service failed first)
            self.running = False
            return None
        return super().stopService()

    def address(self) -> tuple[str, int] | None:
        if self.port is None:
            return None
        host = self.port.getHost()
        return host.host, host.port  # type: ignore[attr-defined]

    def frontend_state(self) -> ServiceState:
        address = self.address()
        if address is None:
            return ServiceState("stopped", detail=self.description)
        return ServiceState("listening", address)
