"""``lineproto``: the line protocol on accepted TCP connections (Twisted's LineReceiver)."""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver

from lineproto.session import LineSession


class LineProtocol(LineReceiver):
    delimiter = b"\n"

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.session: LineSession | None = None

    def connectionMade(self) -> None:  # noqa: N802
        self.session = LineSession(self.scheduler, self.transport.write)

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        if self.session is not None:
            self.session.line(line)

    def connectionLost(self, reason: object = None) -> None:  # noqa: N802
        if self.session is not None:
            self.session.closed()


class LineFactory(Factory):
    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def buildProtocol(self, addr: object) -> LineProtocol:  # noqa: N802
        return LineProtocol(self.scheduler)
