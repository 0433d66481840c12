"""Log lines for limits being hit, at most one per ``interval`` per kind: an attacker who makes a limit refuse
a million connections or jobs must not also write a million lines. The first hit logs at once; later hits
within the interval are counted, and the next line that goes out says how many were left out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: Seconds between two lines of one kind.
DEFAULT_INTERVAL = 10.0


class RateLimitedLog:
    """``warning(kind, message, *args)``: logged unless a line of that kind went out less than ``interval``
    seconds ago. Kinds are few and fixed (a limit's name), never a peer's address: the table stays small."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> bool:
        """Log (True) or count as left out (False)."""
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return False
        self._last[kind] = now
        left_out = self._left_out.pop(kind, 0)
        if left_out:
            message += f" ({left_out} more like it in the last %.0fs not logged)"
            args = (*args, now - last if last is not None else self.interval)
        self.logger.warning(message, *args)
        return True


#: Limits' log lines, shared by the scheduler and the connections (one table for the process).
limits_log = RateLimitedLog(logging.getLogger("gearman_gateway.limits"))
