"""Two frontends on one line protocol (``SUBMIT fn payload`` -> ``RESULT data``), to show the frontend seam:

- ``lineproto`` listens (Twisted), on ``--lineproto-port`` / YAML ``lineproto: {port: ...}``;
- ``linedial`` connects out with asyncio streams to ``--linedial-connect HOST:PORT`` and serves the peer it
  reaches there, as a chat frontend connects to its chat server; it needs Twisted's asyncio reactor, which
  gearmand then installs by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocols import FrontendBase, FrontendContext
from protocols.options import check, check_port, option, port_number


@dataclass
class LineOptions:
    port: int = option(
        7003, flags=("--lineproto-port",), parse=port_number, help="line protocol frontend port (default 7003)"
    )


@dataclass
class DialOptions:
    connect: str = option(
        "127.0.0.1:7004",
        flags=("--linedial-connect",),
        metavar="HOST:PORT",
        help="where the dialling line frontend connects to (default 127.0.0.1:7004)",
    )


def host_and_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port) if port.isdigit() else -1


class LineFrontend(FrontendBase):
    name = "lineproto"
    title = "line protocol frontend (-r lineproto; an example from tests/example_frontend)"
    options_type = LineOptions

    def validate(self, options: LineOptions, label: Callable[[str], str]) -> None:
        check_port(options.port, label("port"))

    def build(self, context: FrontendContext) -> list[Any]:
        from lineproto.twisted_side import LineFactory
        from protocols.listening import listening_services

        return listening_services(context, self.name, context.options.port, LineFactory(context.scheduler), "lines")


class DialFrontend(FrontendBase):
    name = "linedial"
    title = "dialling line protocol frontend (-r linedial; an example from tests/example_frontend)"
    options_type = DialOptions
    reactor = "asyncio"

    def validate(self, options: DialOptions, label: Callable[[str], str]) -> None:
        host, port = host_and_port(options.connect)
        check(bool(host) and 0 < port <= 65535, f"{label('connect')} must be HOST:PORT, not {options.connect!r}")

    def build(self, context: FrontendContext) -> list[Any]:
        from lineproto.asyncio_side import DialService

        host, port = host_and_port(context.options.connect)
        return [DialService(context.scheduler, host, port)]


FRONTEND = LineFrontend()
DIAL_FRONTEND = DialFrontend()
