"""The native Gearman binary protocol and the admin text protocol, on one port (4730)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocols.listening import ListeningService, tcp_endpoints

if TYPE_CHECKING:
    from twisted.application.service import IService

    from protocols import FrontendContext


class BinaryFrontend:
    name = "binary"
    default_port = 4730

    def build(self, context: FrontendContext) -> list[IService]:
        from protocols.binary.frontend import BinaryFactory

        settings = context.settings
        factory = BinaryFactory(context)
        endpoints = settings.endpoints.get(self.name) or tcp_endpoints(settings.listen, settings.port, settings.backlog)
        return [ListeningService(context.reactor, e, factory, "gearman binary+admin") for e in endpoints]


FRONTEND = BinaryFrontend()
