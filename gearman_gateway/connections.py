"""Every open client connection, whatever its protocol: for admin `workers` and the connection limit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class ConnectionInfo(Protocol):
    def describe(self) -> tuple[int, str, bytes, list[bytes]]:
        """(file descriptor, peer IP, client id, registered function names newest first)."""
        ...

    def close(self) -> None:
        """Write out what is queued, then close."""
        ...


class ConnectionRegistry:
    """Counts connections against ``limit`` (0: unlimited) and lists them in accept order."""

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self._connections: dict[ConnectionInfo, None] = {}
        self.accepted_total = 0
        self.refused_total = 0

    def admit(self, connection: ConnectionInfo) -> bool:
        if self.limit and len(self._connections) >= self.limit:
            self.refused_total += 1
            return False
        self._connections[connection] = None
        self.accepted_total += 1
        return True

    def remove(self, connection: ConnectionInfo) -> None:
        self._connections.pop(connection, None)

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self) -> Iterator[ConnectionInfo]:
        return iter(list(self._connections))
