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
    """A frontend's listeners: its endpoint strings from the config, else TCP on each listen address, and
    TLS ones where its options say (``ssl``: the port itself is TLS; ``ssl_port``: a TLS port beside it)."""
    settings = context.settings
    configured = settings.endpoints.get(name)
    if configured:
        return [ListeningService(context.reactor, endpoint, factory, label) for endpoint in configured]
    tls_first = bool(getattr(context.options, "ssl", False))
    plain = [] if tls_first else tcp_endpoints(settings.listen, port, settings.backlog)
    services = [ListeningService(context.reactor, endpoint, factory, label) for endpoint in plain]
    tls_ports = [port] if tls_first else []
    if getattr(context.options, "ssl_port", None) is not None:
        tls_ports.append(context.options.ssl_port)
    if tls_ports:
        services += tls_services(context, tls_ports, factory, label)
    return services


def tls_services(context: FrontendContext, ports: list[int], factory: Factory, label: str) -> list[ListeningService]:
    """TLS listeners on each listen address and port, with the server's certificate options."""
    from protocols.tls import TlsFiles, server_options, tls_listener

    settings = context.settings
    creator = server_options(TlsFiles.from_settings(settings))
    services = []
    for port in ports:
        for address in settings.listen or ["0.0.0.0"]:
            description, endpoint, wrapped = tls_listener(
                context.reactor, address, port, settings.backlog, creator, factory
            )
            services.append(ListeningService(context.reactor, description, wrapped, f"{label} (TLS)", endpoint))
    return services


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

    def __init__(self, reactor: Any, description: str, factory: Factory, label: str, endpoint: Any = None) -> None:
        super().__init__(endpoint or serverFromString(reactor, description), factory)
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
