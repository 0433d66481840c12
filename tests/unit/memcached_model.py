"""A memcached in miniature, built on the sans-IO codec: a dict of items answering events through ``replies``.

The tests feed it the same bytes that were sent to a real memcached 1.6.18 and compare the answers byte
for byte, so the codec's parsing and the reply encoders are checked together against the real server.
It keeps no time (a negative exptime means born expired) and counts cas values the way a fresh memcached
does: one global counter, bumped by every store.
"""

from __future__ import annotations

from protocols.memcached import replies
from protocols.memcached.codec import Decoder
from protocols.memcached.events import (
    Arithmetic,
    Delete,
    Error,
    Event,
    FlushAll,
    Get,
    MetaDelete,
    MetaGet,
    MetaNoop,
    MetaSet,
    Noop,
    Quit,
    Stats,
    Store,
    Touch,
    Verbosity,
    Version,
)
from protocols.memcached.replies import DeleteOutcome, Item, StoreOutcome

VERSION = "1.6.18"


class MiniMemcached:
    def __init__(self, **decoder_options: int) -> None:
        self.decoder = Decoder(**decoder_options)
        self.items: dict[bytes, Item] = {}
        self.last_cas = 0
        self.closed = False
        self.recache_won: set[bytes] = set()  # keys whose recache token went out (meta W, then Z)

    def feed(self, data: bytes) -> bytes:
        out = [self.handle(event) for event in self.decoder.receive_data(data)]
        return b"".join(out)

    def handle(self, event: Event) -> bytes:
        if isinstance(event, Error):
            if event.close:
                self.closed = True
            return b"" if event.noreply else event.reply
        if isinstance(event, Get):
            found = [self._touch(key, event.exptime) for key in event.keys]
            reply = replies.get_reply(event, found)
            for item in found:
                if item is not None:
                    item.fetched = True
            return reply
        if isinstance(event, Store):
            outcome = self._store(event.command, event.key, event.value, event.flags, event.exptime, event.cas)
            return replies.store_reply(event, outcome, self.last_cas)
        if isinstance(event, Delete):
            item = self.items.get(event.key)
            if item is None:
                return replies.delete_reply(event, DeleteOutcome.NOT_FOUND)
            if event.cas is not None and event.cas != item.cas:
                return replies.delete_reply(event, DeleteOutcome.EXISTS)
            del self.items[event.key]
            return replies.delete_reply(event, DeleteOutcome.DELETED)
        if isinstance(event, Touch):
            return replies.touch_reply(event, self._touch(event.key, event.exptime))
        if isinstance(event, Arithmetic):
            return self._arithmetic(event)
        if isinstance(event, FlushAll):
            if event.delay <= 0:
                self.items.clear()
            return replies.flush_reply(event)
        if isinstance(event, Version):
            return replies.version_reply(event, VERSION)
        if isinstance(event, Verbosity):
            return replies.verbosity_reply(event)
        if isinstance(event, Quit):
            self.closed = True
            return replies.quit_reply(event)
        if isinstance(event, Stats):
            return replies.stats_reply(event, [("pid", 1), ("version", VERSION)] if not event.args else None)
        if isinstance(event, Noop | MetaNoop):
            return replies.noop_reply(event)
        if isinstance(event, MetaGet):
            return self._meta_get(event)
        if isinstance(event, MetaSet):
            outcome = self._store(
                event.command, event.key, event.value, event.client_flags, event.ttl, event.compare_cas
            )
            return replies.store_reply(event, outcome, self.last_cas if outcome is StoreOutcome.STORED else 0)
        if isinstance(event, MetaDelete):
            item = self.items.get(event.key)
            if item is None:
                return replies.delete_reply(event, DeleteOutcome.NOT_FOUND)
            if event.compare_cas is not None and event.compare_cas != item.cas:
                return replies.delete_reply(event, DeleteOutcome.EXISTS)
            del self.items[event.key]
            return replies.delete_reply(event, DeleteOutcome.DELETED)
        raise AssertionError(f"unexpected event {event!r}")

    def _touch(self, key: bytes, exptime: int | None) -> Item | None:
        item = self.items.get(key)
        if item is not None and exptime is not None:
            if exptime < 0:
                del self.items[key]  # answered once more, then gone
            item.ttl = exptime or -1
        return item

    def _store(self, command: str, key: bytes, value: bytes, flags: int, exptime: int, cas: int | None):
        item = self.items.get(key)
        if command == "cas" or (cas is not None and command in ("set", "replace")):
            if item is None:
                return StoreOutcome.NOT_FOUND
            if item.cas != cas:
                return StoreOutcome.EXISTS
        elif command == "add" and item is not None:
            return StoreOutcome.NOT_STORED
        elif command in ("replace", "append", "prepend") and item is None:
            return StoreOutcome.NOT_STORED
        self.last_cas += 1
        if command == "append":
            assert item is not None
            item.value += value
            item.cas = self.last_cas
        elif command == "prepend":
            assert item is not None
            item.value = value + item.value
            item.cas = self.last_cas
        elif exptime < 0:
            self.items.pop(key, None)  # stored, and expired at once
        else:
            self.items[key] = Item(value, flags, self.last_cas, exptime or -1)
        return StoreOutcome.STORED

    def _arithmetic(self, event: Arithmetic) -> bytes:
        item = self.items.get(event.key)
        if item is None:
            if event.initial is None:
                return replies.arithmetic_reply(event, None)
            self.last_cas += 1
            self.items[event.key] = Item(b"%d" % event.initial, 0, self.last_cas)
            return replies.arithmetic_reply(event, event.initial, cas=self.last_cas)
        if not item.value.isdigit():
            return replies.arithmetic_reply(event, None, non_numeric=True)
        current = int(item.value)
        current = max(current - event.delta, 0) if event.decrement else (current + event.delta) % 2**64
        self.last_cas += 1
        item.value, item.cas = b"%d" % current, self.last_cas
        return replies.arithmetic_reply(event, current, cas=item.cas)

    def _meta_get(self, event: MetaGet) -> bytes:
        item = self.items.get(event.key)
        won = False
        if item is None and event.vivify is not None:
            self.last_cas += 1
            item = self.items[event.key] = Item(b"", 0, self.last_cas, event.vivify or -1)
            won = True
        if item is None:
            return replies.meta_get_reply(event, None)
        if event.ttl is not None:
            item.ttl = event.ttl or -1
        reply = replies.meta_get_reply(event, item, won=won, win_sent=event.key in self.recache_won)
        if won:
            self.recache_won.add(event.key)
        item.fetched = True
        return reply
