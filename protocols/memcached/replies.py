"""Replies to events, in the dialect each request came in: the frontend says what happened, not how.

Each function takes the event being answered and its outcome and returns the bytes to send, which are
empty when the request asked for silence: a text ``noreply``, a quiet binary opcode on success (or on a
retrieval miss), a meta ``q`` on the nominal answer. Binary statuses follow memcached's mapping (a text
``NOT_STORED`` is ``Data exists`` for add, ``Not found`` for replace, ``Not stored`` otherwise).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from protocols.memcached import binary, meta, text
from protocols.memcached import opcodes as op
from protocols.memcached.events import (
    Arithmetic,
    Delete,
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


@dataclass(slots=True)
class Item:
    """What a retrieval found. The fields after ``cas`` only feed meta flags (``t``, ``l``, ``h``)."""

    value: bytes
    flags: int = 0
    cas: int = 0
    ttl: int = -1  # seconds left; -1: never expires
    last_access: int = 0  # seconds since it was last read
    fetched: bool = False  # read before


class StoreOutcome(enum.Enum):
    STORED = "STORED"
    NOT_STORED = "NOT_STORED"  # add of a present key, replace/append/prepend of a missing one
    EXISTS = "EXISTS"  # cas mismatch
    NOT_FOUND = "NOT_FOUND"  # cas of a missing key


class DeleteOutcome(enum.Enum):
    DELETED = "DELETED"
    NOT_FOUND = "NOT_FOUND"
    EXISTS = "EXISTS"  # binary or meta delete with a cas that does not match


_TEXT_STORE = {
    StoreOutcome.STORED: text.STORED,
    StoreOutcome.NOT_STORED: text.NOT_STORED,
    StoreOutcome.EXISTS: text.EXISTS,
    StoreOutcome.NOT_FOUND: text.NOT_FOUND,
}
_META_STORE = {
    StoreOutcome.STORED: b"HD",
    StoreOutcome.NOT_STORED: b"NS",
    StoreOutcome.EXISTS: b"EX",
    StoreOutcome.NOT_FOUND: b"NF",
}
_BINARY_NOT_STORED = {"add": op.KEY_EEXISTS, "replace": op.KEY_ENOENT}
_TEXT_DELETE = {
    DeleteOutcome.DELETED: text.DELETED,
    DeleteOutcome.NOT_FOUND: text.NOT_FOUND,
    DeleteOutcome.EXISTS: text.EXISTS,
}
_META_DELETE = {DeleteOutcome.DELETED: b"HD", DeleteOutcome.NOT_FOUND: b"NF", DeleteOutcome.EXISTS: b"EX"}
_BINARY_DELETE = {DeleteOutcome.NOT_FOUND: op.KEY_ENOENT, DeleteOutcome.EXISTS: op.KEY_EEXISTS}


#: A text ``get`` that found nothing.
TEXT_MISS = text.END


#: A text ``get`` of one key that found something: ``% (key, flags, len(data), data)`` (the session formats
#: its hottest answers with it in place, without a call)
TEXT_RESULT = b"VALUE %b %d %d\r\n%b\r\nEND\r\n"


def text_hit(key: bytes, item: Item) -> bytes:
    """A text ``get`` of one key that found ``item``: its VALUE line, data and END in one format."""
    return TEXT_RESULT % (key, item.flags, len(item.value), item.value)


def text_result(key: bytes, flags: int, data: bytes) -> bytes:
    """``text_hit`` straight from a result's flags and data (no ``Item`` to make)."""
    return TEXT_RESULT % (key, flags, len(data), data)


def get_reply(event: Get, items: Sequence[Item | None]) -> bytes:
    """The answer to a retrieval: ``items`` has one entry per key of ``event.keys`` (None: a miss)."""
    if event.opcode is None:
        parts = [
            text.value(key, item.flags, item.value, item.cas if event.with_cas else None)
            for key, item in zip(event.keys, items, strict=True)
            if item is not None
        ]
        parts.append(text.END)
        return b"".join(parts)
    (key,) = event.keys
    (item,) = items
    if item is None:
        if event.quiet:
            return b""
        if event.return_key:  # memcached echoes the key, with no message
            return binary.response(event.opcode, op.KEY_ENOENT, opaque=event.opaque, key=key)
        return binary.error_response(event.opcode, op.KEY_ENOENT, event.opaque)
    return binary.response(
        event.opcode,
        opaque=event.opaque,
        cas=item.cas,
        extras=binary.flags_extras(item.flags),
        key=key if event.return_key else b"",
        value=item.value,
    )


def meta_get_reply(
    event: MetaGet, item: Item | None, *, won: bool = False, stale: bool = False, win_sent: bool = False
) -> bytes:
    """The answer to ``mg``: ``won``/``stale``/``win_sent`` add the W/X/Z recache flags to a hit."""
    if item is None:
        return meta.miss(event)
    return meta.hit(
        event,
        item.value,
        client_flags=item.flags,
        ttl=item.ttl,
        cas=item.cas,
        last_access=item.last_access,
        fetched=item.fetched,
        won=won,
        stale=stale,
        win_sent=win_sent,
    )


def store_reply(event: Store | MetaSet, outcome: StoreOutcome, cas: int = 0) -> bytes:
    """The answer to a storage command; ``cas`` is the stored item's (binary and meta ``c`` send it)."""
    if isinstance(event, MetaSet):
        return meta.status(_META_STORE[outcome], event, cas)
    if event.opcode is None:
        return b"" if event.noreply else _TEXT_STORE[outcome]
    if outcome is StoreOutcome.STORED:
        return b"" if event.quiet else binary.response(event.opcode, opaque=event.opaque, cas=cas)
    if outcome is StoreOutcome.EXISTS:
        status = op.KEY_EEXISTS
    elif outcome is StoreOutcome.NOT_FOUND:
        status = op.KEY_ENOENT
    else:
        status = _BINARY_NOT_STORED.get(event.command, op.NOT_STORED)
    return binary.error_response(event.opcode, status, event.opaque)


def delete_reply(event: Delete | MetaDelete, outcome: DeleteOutcome) -> bytes:
    if isinstance(event, MetaDelete):
        return meta.status(_META_DELETE[outcome], event)
    if event.opcode is None:
        return b"" if event.noreply else _TEXT_DELETE[outcome]
    if outcome is DeleteOutcome.DELETED:
        return b"" if event.quiet else binary.response(event.opcode, opaque=event.opaque)
    return binary.error_response(event.opcode, _BINARY_DELETE[outcome], event.opaque)


def touch_reply(event: Touch, item: Item | None) -> bytes:
    """``TOUCHED``/``NOT_FOUND``; over binary a hit answers with the item's flags and cas."""
    if event.opcode is None:
        return b"" if event.noreply else text.TOUCHED if item is not None else text.NOT_FOUND
    if item is None:
        return binary.error_response(event.opcode, op.KEY_ENOENT, event.opaque)
    return binary.response(event.opcode, opaque=event.opaque, cas=item.cas, extras=binary.flags_extras(item.flags))


def arithmetic_reply(event: Arithmetic, value: int | None, *, non_numeric: bool = False, cas: int = 0) -> bytes:
    """The new counter value, or a miss (``value`` None), or an item that is not a number."""
    if event.opcode is None:
        if event.noreply:
            return b""
        if non_numeric:
            return text.NON_NUMERIC
        return text.NOT_FOUND if value is None else text.number(value)
    if non_numeric:
        return binary.error_response(event.opcode, op.DELTA_BADVAL, event.opaque)
    if value is None:
        return binary.error_response(event.opcode, op.KEY_ENOENT, event.opaque)
    if event.quiet:
        return b""
    return binary.response(event.opcode, opaque=event.opaque, cas=cas, value=binary.counter(value))


def flush_reply(event: FlushAll) -> bytes:
    if event.opcode is None:
        return b"" if event.noreply else text.OK
    return b"" if event.quiet else binary.response(event.opcode, opaque=event.opaque)


def verbosity_reply(event: Verbosity) -> bytes:
    return b"" if event.noreply else text.OK


def version_reply(event: Version, version: str | bytes) -> bytes:
    if event.opcode is None:
        return text.version(version)
    raw = version.encode() if isinstance(version, str) else version
    return binary.response(event.opcode, opaque=event.opaque, value=raw)


def stats_reply(event: Stats, stats: Iterable[tuple[str | bytes, object]] | None) -> bytes:
    """``STAT name value`` lines and ``END`` (binary: a packet per stat, then an empty one); None: the
    group asked for does not exist (``ERROR``, or ``Not found`` over binary, as memcached answers)."""
    if event.opcode is None:
        if stats is None:
            return text.ERROR
        return b"".join([*(text.stat(name, val) for name, val in stats), text.END])
    if stats is None:
        return binary.error_response(event.opcode, op.KEY_ENOENT, event.opaque)
    parts = []
    for name, val in stats:
        key = name.encode() if isinstance(name, str) else name
        raw = val if isinstance(val, bytes) else str(val).encode()
        parts.append(binary.response(event.opcode, opaque=event.opaque, key=key, value=raw))
    parts.append(binary.response(event.opcode, opaque=event.opaque))
    return b"".join(parts)


def noop_reply(event: Noop | MetaNoop) -> bytes:
    if isinstance(event, MetaNoop):
        return meta.NOOP
    return binary.response(event.opcode, opaque=event.opaque)


def quit_reply(event: Quit) -> bytes:
    """A binary QUIT is acknowledged before the connection closes; QUITQ and text ``quit`` are not."""
    if event.opcode == op.QUIT:
        return binary.response(op.QUIT, opaque=event.opaque)
    return b""


def error_reply(event: Event, message: str | bytes, *, client: bool = False) -> bytes:
    """A request refused by the server: ``SERVER_ERROR <message>`` (``CLIENT_ERROR`` when ``client``).

    Over binary, memcached sends its server errors as status ``0x82`` with the message as body; a client
    error is ``Invalid arguments``. A text ``noreply`` silences it (meta errors are always sent)."""
    opcode = getattr(event, "opcode", None)
    if opcode is not None:
        raw = message.encode(errors="replace") if isinstance(message, str) else message
        return binary.error_response(opcode, op.EINVAL if client else op.ENOMEM, getattr(event, "opaque", 0), raw)
    if getattr(event, "noreply", False):
        return b""
    return text.client_error(message) if client else text.server_error(message)
