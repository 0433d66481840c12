"""Running something once at the end of the current reactor turn (after this poll's events).

Both the write batching of the binary frontend and the store's group commit use it: many events in one
turn become one send per connection, and one transaction per store.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


def end_of_turn(reactor: Any, first: bool = False) -> Callable[[Callable[[], None]], None]:
    """A function that schedules a callback for the end of the turn. With our ``GatewayReactor`` that
    is right after the poll's events (``first``: before the others); on any other reactor,
    ``callLater(0)`` (the start of the next, in the order they were scheduled)."""
    after_poll = getattr(reactor, "call_after_poll", None)
    if after_poll is not None:
        if first:
            return functools.partial(after_poll, first=True)  # no Python frame per call
        return after_poll
    return lambda callback: reactor.callLater(0, callback)


def end_of_next_turn(reactor: Any) -> Callable[[Callable[[], None]], None]:
    """Like ``end_of_turn``, one turn later (the poll in between does not block). On another reactor,
    ``callLater(0)``."""
    after_next_poll = getattr(reactor, "call_after_next_poll", None)
    if after_next_poll is not None:
        return after_next_poll
    return lambda callback: reactor.callLater(0, callback)
