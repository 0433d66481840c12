"""What a parsed request line or header still needs from the stream before it becomes an event.

The dialect parsers (``text``, ``meta``, ``binary``) return one of these instead of an event when data
follows the line or header; the ``codec`` then reads it as it arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from protocols.memcached.events import Error, Event


@dataclass(slots=True)
class Block:
    """``length`` bytes of data to hand to ``complete``; ``terminated``: a text data block, followed by a
    ``\\r\\n`` that must be there (else memcached answers ``CLIENT_ERROR bad data chunk``, which ``noreply``
    silences for the classic commands but not for ``ms``)."""

    length: int
    complete: Callable[[bytes], Event]
    terminated: bool = True
    noreply: bool = False


@dataclass(slots=True)
class Skip:
    """``length`` bytes to discard unread (a value over the limit, the data of a refused command), then
    ``error``: the data is never held, and the client's next command is read where it starts."""

    length: int
    error: Error
