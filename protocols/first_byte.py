"""The first-byte timeout: a connection that has sent nothing ``first_byte_timeout`` seconds after it was
accepted is closed. Such connections cost a file descriptor each and do nothing; an attacker can open
thousands. Once a peer has spoken, this timeout no longer applies (an idle worker waiting for jobs is the
usual Gearman connection; HTTP has its own keep-alive timeout).

Nothing is added to the read path: when the timeout comes, the kernel is asked whether the peer sent
anything (``TCP_INFO``'s ``tcpi_bytes_received``, Linux 4.1+), including bytes not yet read. Where it cannot
say (not TCP), the connection is left alone. All connections share one pending reactor call
(``protocols.deadlines``).
"""

from __future__ import annotations

import _socket
import logging
import socket
import struct
from typing import Any

from gearman_gateway.ratelog import limits_log
from protocols.deadlines import deadlines

log = logging.getLogger("gearman_gateway.connection")

#: Offset of ``tcpi_bytes_received`` (a u64) in Linux's ``struct tcp_info``, and the length to ask for.
_BYTES_RECEIVED = 128
_TCP_INFO_LENGTH = _BYTES_RECEIVED + 8


def watch(connection: Any) -> None:
    """Arm the timeout for a newly admitted connection (when one is configured)."""
    timeout = connection.context.settings.first_byte_timeout
    if timeout > 0:
        deadlines(connection.context.reactor, timeout).arm(connection, lambda: _due(connection, timeout))


def unwatch(connection: Any) -> None:
    """The connection ended: forget its timeout."""
    timeout = connection.context.settings.first_byte_timeout
    if timeout > 0:
        deadlines(connection.context.reactor, timeout).cancel(connection)


def bytes_received(transport: Any) -> int | None:
    """What the peer has sent so far, by the kernel's count; None when it cannot tell."""
    while transport is not None:
        handle = transport.getHandle()
        if isinstance(handle, _socket.socket):  # our reactor's sockets are the C type itself
            try:
                info = handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LENGTH)
            except (OSError, AttributeError):
                return None
            return struct.unpack_from("=Q", info, _BYTES_RECEIVED)[0] if len(info) >= _TCP_INFO_LENGTH else None
        transport = getattr(transport, "transport", None)  # TLS: the TCP connection under it
    return None


def _due(connection: Any, timeout: float) -> None:
    if not connection.open or bytes_received(connection.transport) != 0:
        return
    connection.context.connections.closed["first_byte_timeout"] += 1
    limits_log.warning(
        "first_byte_timeout",
        "closing %s from %s: it sent nothing in %gs (--first-byte-timeout)",
        connection.label,
        connection.peer,
        timeout,
    )
    connection.transport.abortConnection()
