"""Every open client connection, whatever its protocol: for admin `workers` and the connection limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from gearman_gateway.admission import PeerLimits
from gearman_gateway.ratelog import limits_log

_ABSENT = object()


class ConnectionInfo(Protocol):
    peer: str  # the peer's address
    label: str  # what kind of connection, for log lines ("binary connection")

    def describe(self) -> tuple[int, str, bytes, list[bytes]]:
        """(file descriptor, peer IP, client id, registered function names newest first)."""
        ...

    def close(self) -> None:
        """Write out what is queued, then close."""
        ...


class ConnectionRegistry:
    """Counts connections against ``limit`` (0: unlimited) and the per-address limits of ``peers`` (None:
    none set), and lists them in accept order."""

    def __init__(self, limit: int = 0, peers: PeerLimits | None = None) -> None:
        self.limit = limit
        self.peers = peers
        self._connections: dict[ConnectionInfo, None] = {}
        self.accepted_total = 0
        self.refused_total = 0  # refused by ``limit``
        self.closed = {"first_byte_timeout": 0, "max_output_buffer": 0}  # admitted connections a limit closed

    def admit(self, connection: ConnectionInfo) -> bool:
        """Whether the connection may stay; a refusal is counted and logged (at most once per interval)."""
        if self.limit and len(self._connections) >= self.limit:
            self.refused_total += 1
            self._refused(connection, "max_connections", f"{len(self._connections)} connections open (limit)")
            return False
        if self.peers is not None:
            refusal = self.peers.admit(connection.peer)
            if refusal is not None:
                self._refused(connection, refusal, _REASONS[refusal])
                return False
        self._connections[connection] = None
        self.accepted_total += 1
        return True

    def _refused(self, connection: ConnectionInfo, limit: str, reason: str) -> None:
        limits_log.warning(limit, "refusing %s from %s: %s", connection.label, connection.peer, reason)

    def remove(self, connection: ConnectionInfo) -> None:
        if self._connections.pop(connection, _ABSENT) is not _ABSENT and self.peers is not None:
            self.peers.release(connection.peer)

    def refusals(self) -> dict[str, int]:
        """Connections refused or closed, per limit (the Prometheus counter's labels)."""
        counts = {"max_connections": self.refused_total, "max_connections_per_ip": 0, "accept_rate_per_ip": 0}
        if self.peers is not None:
            counts.update(self.peers.refused)
        counts.update(self.closed)
        return counts

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self) -> Iterator[ConnectionInfo]:
        return iter(list(self._connections))


_REASONS = {
    "max_connections_per_ip": "too many connections open from that address (--max-connections-per-ip)",
    "accept_rate_per_ip": "that address opens connections too fast (--accept-rate-per-ip)",
}
