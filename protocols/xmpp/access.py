"""Who may use the bot, and how often: the ``allowed`` list, per-sender rate limits, strangers refused once.

Every table here is bounded: senders are not authenticated by us (a server vouches for them), so a flood of
distinct JIDs must not grow memory without end. When a table is full the sender seen longest ago is dropped:
a stranger dropped that way gets a second refusal, a sender whose bucket is dropped starts with a full one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

from protocols.xmpp import jids

#: Senders remembered per table (rate buckets, refused strangers). Far more than an allowed list names.
MAX_REMEMBERED = 10_000


class AccessList:
    """The ``allowed`` setting: bare JIDs (``alice@example.org``, a room ``ops@conference.example.org``) and
    whole domains (``example.org``, or ``@example.org``). A domain matches that domain only, not its
    subdomains. An empty list allows nobody."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.jids: set[str] = set()
        self.domains: set[str] = set()
        for entry in entries:
            entry = entry.strip()
            if entry.startswith("@"):
                entry = entry[1:]
            parsed = jids.parse(entry)
            if not parsed.domain:
                continue
            if parsed.local:
                self.jids.add(parsed.bare)
            else:
                self.domains.add(parsed.domain)

    def __bool__(self) -> bool:
        return bool(self.jids or self.domains)

    def allows(self, jid: str) -> bool:
        parsed = jids.parse(jid)
        if not parsed.domain:
            return False
        return parsed.domain in self.domains or (bool(parsed.local) and parsed.bare in self.jids)


class RateLimiter:
    """A token bucket per sender: ``per_minute`` messages at once, refilled at ``per_minute`` a minute.
    A message over the limit takes no token, so a sender who slows down gets through again. ``per_minute``
    0 or less: no limit."""

    def __init__(self, per_minute: int, clock: Callable[[], float], capacity: int = MAX_REMEMBERED) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.capacity = capacity
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def allow(self, key: str) -> bool:
        if self.per_minute <= 0:
            return True
        now = self.clock()
        tokens, at = self._buckets.pop(key, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + max(0.0, now - at) * self.per_minute / 60.0)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.capacity:
            self._buckets.popitem(last=False)
        return allowed


class SeenOnce:
    """Keys already answered once (strangers refused): ``first(key)`` is True the first time only."""

    def __init__(self, capacity: int = MAX_REMEMBERED) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first(self, key: str) -> bool:
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True
