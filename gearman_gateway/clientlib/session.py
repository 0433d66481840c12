"""The sans-IO core shared by clients and workers: a set of server links and what happens to them.

A transport reports four things (a link connected, failed to connect, received bytes, was lost) and asks
two (which links to connect now, when to look again). Everything else, which packets to send and what
the replies mean, is the subclass's business. Tests drive sessions with plain bytes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from gearman_gateway.clientlib.links import Address, Backoff, Link, LinkState
from protocols.binary.codec import FATAL
from protocols.binary.packets import Packet

log = logging.getLogger("gearman_gateway.client")


class Session:
    """Links to every configured server and the transport-facing half of their life cycle."""

    link_class: type[Link] = Link

    def __init__(self, backoff: Backoff | None = None) -> None:
        self.links: list[Link] = []
        self.backoff = backoff or Backoff()
        #: Set by the transport: write out every link's pending bytes now. Called when bytes are queued
        #: outside the transport's own loop (a worker callback reporting status while it runs).
        self.flush_hook: Callable[[], None] = lambda: None
        #: Monotonic seconds; tests replace it to drive back-off without waiting.
        self.clock: Callable[[], float] = time.monotonic
        #: A gearman-gateway identity's token, presented on every connection first (docs/security.md).
        self.token: bytes | None = None

    def add_server(self, address: Address) -> Link:
        for link in self.links:
            if link.address == address:
                return link
        link = self.link_class(address, len(self.links))
        self.links.append(link)
        return link

    # -- what the transport asks

    def wants(self, link: Link) -> bool:
        """Whether this link should be connected (a client only connects where it has work)."""
        return True

    def links_to_connect(self) -> list[Link]:
        """Down links that are wanted and due; they are marked as connecting."""
        now = self.clock()
        due = [
            link for link in self.links if link.state is LinkState.DOWN and link.retry_at <= now and self.wants(link)
        ]
        for link in due:
            link.connecting()
        return due

    def next_wakeup(self) -> float | None:
        """The earliest time a wanted down link may be retried (None: nothing is waiting on time)."""
        times = [link.retry_at for link in self.links if link.state is LinkState.DOWN and self.wants(link)]
        return min(times) if times else None

    def outputs(self) -> Iterator[tuple[Link, bytes]]:
        """Bytes to write, per connected link."""
        for link in self.links:
            if link.up:
                data = link.take_output()
                if data:
                    yield link, data

    def present_token(self, link: Link) -> bool:
        """Send ``OPTION_REQ auth=<token>`` first on a new connection, if there is a token; True if sent
        (its OPTION_RES, or an ERROR for an unknown token, will come)."""
        if not self.token:
            return False
        link.send(Packet.OPTION_REQ, b"auth=" + self.token)
        return True

    # -- what the transport reports

    def connection_made(self, link: Link) -> None:
        link.connected()
        log.debug("connected to %s", link.address)
        self.on_up(link)

    def connect_failed(self, link: Link, error: BaseException | None) -> None:
        log.debug("cannot connect to %s: %s", link.address, error)
        link.failed(self.clock(), self.backoff, error)
        self.on_down(link)

    def connection_lost(self, link: Link, error: BaseException | None) -> None:
        if link.state is LinkState.DOWN:
            return
        log.info("lost connection to %s: %s", link.address, error or "closed by the server")
        link.failed(self.clock(), self.backoff, error)
        self.on_down(link)

    def data_received(self, link: Link, data: bytes) -> bool:
        """Handle every complete packet in ``data``; False means the stream is corrupt: close the link."""
        for ptype, args in link.feed(data):
            if ptype == FATAL:
                log.warning("closing %s: %s", link.address, b": ".join(args).decode("ascii", "replace"))
                return False
            if ptype > 0:
                self.handle(link, ptype, args)
        return True

    def closed(self) -> None:
        """The transport closed every connection on purpose: forget what was under way."""
        for link in self.links:
            link.reset()
        self.on_close()

    # -- what subclasses implement

    def on_close(self) -> None:
        raise NotImplementedError

    def on_up(self, link: Link) -> None:
        raise NotImplementedError

    def on_down(self, link: Link) -> None:
        raise NotImplementedError

    def handle(self, link: Link, ptype: int, args: list[bytes]) -> None:
        raise NotImplementedError
