"""The native Gearman binary protocol and the admin text protocol, on one port (4730)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from protocols import FrontendBase
from protocols.binary.options import BinaryOptions, check_options

if TYPE_CHECKING:
    from twisted.application.service import IService

    from protocols import FrontendContext


class BinaryFrontend(FrontendBase):
    name = "binary"
    title = "binary protocol and admin commands (on unless the YAML frontends: list leaves it out)"
    options_type = BinaryOptions

    def validate(self, options: BinaryOptions, label: Callable[[str], str]) -> None:
        check_options(options, label)

    def build(self, context: FrontendContext) -> list[IService]:
        from protocols.binary.frontend import BinaryFactory
        from protocols.listening import listening_services

        factory = BinaryFactory(context)
        return listening_services(context, self.name, context.options.port, factory, "gearman binary+admin")


FRONTEND = BinaryFrontend()
