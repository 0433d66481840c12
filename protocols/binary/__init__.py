"""The native Gearman binary protocol and the admin text protocol, on one port (4730)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twisted.application.service import IService

    from protocols import FrontendContext


class BinaryFrontend:
    name = "binary"
    default_port = 4730

    def build(self, context: FrontendContext) -> list[IService]:
        from protocols.binary.frontend import BinaryFactory
        from protocols.listening import listening_services

        return listening_services(
            context, self.name, context.settings.port, BinaryFactory(context), "gearman binary+admin"
        )


FRONTEND = BinaryFrontend()
