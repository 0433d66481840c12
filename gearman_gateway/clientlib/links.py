"""Server addresses and one server connection's protocol state, without a socket.

A ``Link`` is what a client or worker knows about one job server: whether it is up, the bytes waiting to
be written, the decoder for what comes back, and when to try again after a failure. Sessions change it;
transports (blocking or asyncio) only move its bytes.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from dataclasses import dataclass

from protocols.binary.codec import Decoder, Event, encode_request
from protocols.binary.packets import RES

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 4730

#: Largest packet accepted from a server. The server is trusted (results are whatever workers send, e.g.
#: images), but a corrupt stream must not make us allocate without bound.
MAX_PACKET_SIZE = 1 << 30

#: First wait after a server failed, and the ceiling the doubling stops at. Short enough that a restarted
#: server gets its workers back within seconds; long enough that a dead one is not hammered.
RECONNECT_MIN = 0.1
RECONNECT_MAX = 5.0
#: Each wait is spread by up to this fraction so that many workers do not reconnect in lockstep.
RECONNECT_JITTER = 0.1


class BadHostName(OSError):
    """A host name no lookup can take (``socket`` refuses an empty or too long label outright)."""

    def __init__(self, host: str) -> None:
        super().__init__(f"bad host name: {host}")


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_server(spec: str, default_port: int = DEFAULT_PORT) -> Address:
    """``host``, ``host:port``, ``[v6]:port`` or ``:port`` (localhost) as an Address."""
    spec = spec.strip()
    if not spec:
        return Address(DEFAULT_HOST, default_port)
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif spec.count(":") == 1:
        host, port = spec.split(":")
    else:
        host, port = spec, ""  # a bare name, or an IPv6 literal without brackets
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise ValueError(f"bad port in server {spec!r}") from None
    if not 0 < number < 65536:
        raise ValueError(f"port out of range in server {spec!r}")
    return Address(host or DEFAULT_HOST, number)


def parse_servers(spec: str | Iterable[str]) -> list[Address]:
    """A list like the C library's ``add_servers``: ``"h1, h2:4731"`` (commas, spaces allowed)."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    return [parse_server(part) for part in parts if part.strip()]


@dataclass
class Backoff:
    """Waits between attempts at a failed server: doubling from ``initial`` up to ``maximum``."""

    initial: float = RECONNECT_MIN
    maximum: float = RECONNECT_MAX
    jitter: float = RECONNECT_JITTER

    def delay(self, failures: int) -> float:
        base = min(self.maximum, self.initial * 2 ** max(0, failures - 1))
        return base * (1 + self.jitter * (2 * random.random() - 1)) if self.jitter else base


class LinkState(enum.Enum):
    DOWN = "down"  # not connected; may be retried at retry_at
    CONNECTING = "connecting"  # a transport is connecting it
    UP = "up"


class Link:
    """One server: its state, its outgoing bytes, its decoder, its failure count."""

    def __init__(self, address: Address, index: int) -> None:
        self.address = address
        self.index = index
        self.state = LinkState.DOWN
        self.retry_at = 0.0
        self.failures = 0
        #: Goes up each time the link goes down: anything tied to an older connection (a worker's job) is stale.
        self.generation = 0
        self.last_error: BaseException | None = None
        #: The last failure was the loss of an open connection (not a failed connect).
        self.lost = False
        self._out = bytearray()
        self._decoder = Decoder(expect=RES, max_packet_size=MAX_PACKET_SIZE)

    def __repr__(self) -> str:
        return f"<Link {self.address} {self.state.value}>"

    @property
    def up(self) -> bool:
        return self.state is LinkState.UP

    def usable(self, now: float) -> bool:
        """Worth sending to: up, being connected, or down but due for another try."""
        return self.state is not LinkState.DOWN or self.retry_at <= now

    def send(self, ptype: int, *args: bytes) -> None:
        self._out += encode_request(ptype, *args)

    def take_output(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def feed(self, data: bytes) -> list[Event]:
        return self._decoder.receive_data(data)

    def connecting(self) -> None:
        self.state = LinkState.CONNECTING

    def connected(self) -> None:
        self.state = LinkState.UP
        self.failures = 0
        self.last_error = None
        self._decoder = Decoder(expect=RES, max_packet_size=MAX_PACKET_SIZE)
        self._out.clear()

    def reset(self) -> None:
        """Closed on purpose: down, but free to connect again at once."""
        self.state = LinkState.DOWN
        self.generation += 1
        self.failures = 0
        self.retry_at = 0.0
        self._out.clear()

    def failed(self, now: float, backoff: Backoff, error: BaseException | None) -> None:
        """Connection refused or lost: forget its bytes and wait before the next attempt."""
        self.lost = self.state is LinkState.UP
        self.state = LinkState.DOWN
        self.generation += 1
        self.failures += 1
        self.last_error = error
        self.retry_at = now + backoff.delay(self.failures)
        self._out.clear()
