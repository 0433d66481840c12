"""Limits per peer address on new connections: how many one address may hold open, and how fast it may open
them (a token bucket: ``rate`` a second, ``burst`` at once). One address cannot take every file descriptor
or keep the reactor busy accepting, while other addresses still get in.

Sans-IO: the clock is handed in. Kept apart from the accept path: ``ConnectionRegistry.admit`` asks
``admit(peer)`` only when one of these limits is set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gearman_gateway.config import Settings

#: Above this many addresses with a bucket, buckets that have filled up again (the same as no bucket) are
#: dropped: connections from many addresses (IPv6 gives an attacker plenty) cannot grow the table for good.
PRUNE_AT = 4096


class PeerLimits:
    """``admit(peer)`` -> None, or the name of the limit that refuses it; ``release(peer)`` when an admitted
    connection ends."""

    def __init__(
        self,
        max_per_peer: int = 0,
        rate: float = 0.0,
        burst: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_per_peer = max_per_peer
        self.rate = rate
        self.burst = float(burst or max(1, round(rate)))
        self.clock = clock
        self.open: dict[str, int] = {}  # peer -> its open connections (only while max_per_peer is set)
        self._buckets: dict[str, tuple[float, float]] = {}  # peer -> (tokens, when last counted)
        self._prune_at = PRUNE_AT
        self.refused = {"max_connections_per_ip": 0, "accept_rate_per_ip": 0}

    def admit(self, peer: str) -> str | None:
        if self.rate and not self._take_token(peer):
            self.refused["accept_rate_per_ip"] += 1
            return "accept_rate_per_ip"
        if self.max_per_peer:
            count = self.open.get(peer, 0)
            if count >= self.max_per_peer:
                self.refused["max_connections_per_ip"] += 1
                return "max_connections_per_ip"
            self.open[peer] = count + 1
        return None

    def release(self, peer: str) -> None:
        if self.max_per_peer:
            count = self.open.get(peer, 0) - 1
            if count > 0:
                self.open[peer] = count
            else:
                self.open.pop(peer, None)

    def _take_token(self, peer: str) -> bool:
        now = self.clock()
        buckets = self._buckets
        tokens, then = buckets.get(peer, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1.0:
            buckets[peer] = (tokens, now)
            return False
        buckets[peer] = (tokens - 1.0, now)
        if len(buckets) > self._prune_at:
            self._prune(now)
        return True

    def _prune(self, now: float) -> None:
        """Drop the buckets that are full again; look again when the table has doubled."""
        burst, rate = self.burst, self.rate
        self._buckets = {
            peer: (tokens, then)
            for peer, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * rate < burst
        }
        self._prune_at = max(PRUNE_AT, 2 * len(self._buckets))


def peer_limits(settings: Settings, reactor: Any) -> PeerLimits | None:
    """The per-address limits the settings ask for, on the reactor's clock; None when none is set."""
    if not settings.max_connections_per_ip and not settings.accept_rate_per_ip:
        return None
    return PeerLimits(
        settings.max_connections_per_ip, settings.accept_rate_per_ip, settings.accept_burst_per_ip, reactor.seconds
    )
