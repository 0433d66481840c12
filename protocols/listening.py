"""Listening on Twisted endpoint strings, as a Service whose bind errors surface at start-up."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory

if TYPE_CHECKING:
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


class ListeningService(Service):
    """Listens on one endpoint string. ``startService`` raises if the port cannot be bound, so a server
    that cannot listen fails at once with the reason instead of running deaf."""

    def __init__(self, reactor: Any, description: str, factory: Factory, label: str) -> None:
        self.reactor = reactor
        self.description = description
        self.factory = factory
        self.label = label
        self.port: IListeningPort | None = None

    def startService(self) -> None:  # noqa: N802
        super().startService()
        result: list[Any] = []
        serverFromString(self.reactor, self.description).listen(self.factory).addBoth(result.append)
        outcome = result[0]
        if not IListeningPort.providedBy(outcome):
            self.running = False
            outcome.raiseException()
        self.port = outcome
        address = outcome.getHost()
        log.log(25, "listening for %s on %s:%d", self.label, address.host, address.port)

    def stopService(self) -> Any:  # noqa: N802
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None

    def address(self) -> tuple[str, int] | None:
        if self.port is None:
            return None
        host = self.port.getHost()
        return host.host, host.port
