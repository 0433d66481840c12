"""``linedial``: the line protocol over a connection it makes itself, with asyncio streams on the loop
under Twisted's asyncio reactor (the way a frontend built on an asyncio library runs). It reconnects
until it is stopped and says what it is doing in `show frontends`."""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.application.service import Service

from lineproto.session import LineSession
from protocols import ServiceState

#: Seconds between attempts to reach the peer.
RETRY = 0.1


class DialService(Service):
    def __init__(self, scheduler: Any, host: str, port: int) -> None:
        self.scheduler = scheduler
        self.host = host
        self.port = port
        self.state = "stopped"
        self.task: asyncio.Task | None = None

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self.state = "connecting"
        self.task = asyncio.get_event_loop().create_task(self.run())  # runs once the reactor runs

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        self.state = "stopped"
        if self.task is not None:
            self.task.cancel()

    def frontend_state(self) -> ServiceState:
        return ServiceState(self.state, detail=f"to {self.host}:{self.port}")

    async def run(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(RETRY)
                continue
            self.state = "connected"
            session = LineSession(self.scheduler, writer.write)
            try:
                while line := await reader.readline():
                    session.line(line)
            finally:
                session.closed()
                writer.close()
                self.state = "connecting"
