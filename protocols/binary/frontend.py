"""Twisted adapter for the binary protocol: one ``BinaryConnection`` per socket.

The protocol itself is ``BinarySession`` (session.py, sans-IO); this class is the same object seen from
Twisted: it hands the socket's reads to the session and implements the session's hooks on the transport
(writes, pausing reads, closing, read sizes). One object per connection, as idle connections are most of
what a Gearman server holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.interfaces import IHalfCloseableProtocol
from zope.interface import implementer

from protocols.binary.codec import Decoder
from protocols.binary.packets import REQ
from protocols.binary.session import BinarySession, GuardedSession, TenantSession
from protocols.connection import FrontendConnection, FrontendFactory
from protocols.output import write_batch

if TYPE_CHECKING:
    from collections.abc import Sequence

    from protocols import FrontendContext
    from protocols.binary.options import BinaryOptions


@implementer(IHalfCloseableProtocol)
class BinaryConnection(BinarySession, FrontendConnection):
    """A ``BinarySession`` on a Twisted TCP (or TLS) connection."""

    __slots__ = FrontendConnection.SLOTS

    def __init__(self, factory: BinaryFactory) -> None:
        context = factory.context
        # its output joins the reactor's write batch (set up once, by the session)
        BinarySession.__init__(
            self, factory.batch, context.scheduler, factory.decoder, factory.exceptions, factory.grant
        )
        FrontendConnection.init_connection(self, context)

    dataReceived = BinarySession.receive_data  # noqa: N815  (Twisted's name; no call in between)
    ended = BinarySession.connection_lost
    close = FrontendConnection.close  # the session's hook

    def readConnectionLost(self) -> None:  # noqa: N802
        """The peer sent its last byte (a half-close): it can run no more jobs, and gets what is queued for
        it (an acknowledgement may be waiting for its result) before the connection closes, as gearmand
        closes it."""
        self.drop_worker()
        self.close_now()

    def writeConnectionLost(self) -> None:  # noqa: N802
        self.transport.loseConnection()

    def describe(self) -> tuple[int, str, bytes, Sequence[bytes]]:
        return self.fd, self.peer, self.client_id, self.registered_functions()

    # -- the session's hooks

    def pause_reading(self) -> None:
        self.transport.stopReading()

    def resume_reading(self) -> None:
        if self.open and not self.output_paused:
            self.transport.startReading()

    def set_read_size(self, size: int) -> None:
        self.transport.bufferSize = size


class GuardedBinaryConnection(GuardedSession, BinaryConnection):
    """A ``BinaryConnection`` whose requests are checked against its identity's grant (same slots: a
    connection becomes one when it presents a token)."""

    __slots__ = ()

    dataReceived = GuardedSession.receive_data  # noqa: N815


class TenantBinaryConnection(TenantSession, BinaryConnection):
    """A guarded ``BinaryConnection`` of a tenant's identity."""

    __slots__ = ()

    dataReceived = TenantSession.receive_data  # noqa: N815


for _host in (BinaryConnection, GuardedBinaryConnection, TenantBinaryConnection):
    _host.guarded, _host.tenanted = GuardedBinaryConnection, TenantBinaryConnection


class BinaryFactory(FrontendFactory):
    protocol = BinaryConnection

    def __init__(self, context: FrontendContext) -> None:
        super().__init__(context)
        options: BinaryOptions = context.options
        self.exceptions = context.settings.exceptions
        self.batch = write_batch(context.reactor)
        # every connection's while it sends whole packets: an idle worker's then keeps none of its own (80 B),
        # and the decoder stays one type (CPython's attribute caches in the hot path see only one)
        self.decoder = Decoder(REQ, options.max_packet_size, options.max_admin_line)
        self.decoder.shared = True
        # what a connection may do until it presents a token: None (unchecked) when anonymous may do anything
        anonymous = context.access.anonymous
        self.grant = None if anonymous.unrestricted else anonymous
        if self.grant is not None:
            self.protocol = GuardedBinaryConnection
