"""The binary protocol: a request header (and body) to an event, and response packets.

Every packet starts with a 24-byte header (magic, opcode, key length, extras length, data type, vbucket
or status, total body length, opaque, CAS); the body is the extras, then the key, then the value. Checks
are memcached 1.6's (proto_bin.c dispatch): a header whose lengths do not fit its opcode is answered
``Invalid arguments`` (``Unknown command`` when the key and extras overrun the body) and the connection is
closed, since nothing after it can be trusted; an unknown opcode is answered and its body skipped. Keys
are taken as any bytes, as memcached does: their length is in the header, nothing has to be escaped.
"""

from __future__ import annotations

import struct

from protocols.memcached import opcodes as op
from protocols.memcached.events import (
    Arithmetic,
    Delete,
    Error,
    Event,
    FlushAll,
    Get,
    Noop,
    Quit,
    Stats,
    Store,
    Touch,
    Version,
)
from protocols.memcached.limits import MAX_KEY_LENGTH
from protocols.memcached.reads import Block, Skip

HEADER = struct.Struct(">BBHBBHIIQ")
HEADER_SIZE = HEADER.size  # 24

_FLAGS_EXPTIME = struct.Struct(">II")  # set/add/replace extras
_EXPTIME = struct.Struct(">I")  # flush, touch, gat extras; a get hit's flags
_ARITHMETIC = struct.Struct(">QQI")  # incr/decr extras: delta, initial value, expiration
_COUNTER = struct.Struct(">Q")  # incr/decr answer

#: INCREMENT/DECREMENT with this expiration never create the counter on a miss.
NO_CREATE = 0xFFFFFFFF


def _shape_ok(opcode: int, keylen: int, extlen: int, bodylen: int) -> bool | None:
    """Whether the lengths fit the opcode (memcached's rules, plus an exact body where it would let extra
    bytes be read as the next header); None for an opcode we do not serve."""
    if opcode in (op.NOOP, op.VERSION, op.QUIT, op.QUITQ):
        return extlen == 0 and keylen == 0 and bodylen == 0
    if opcode in (op.FLUSH, op.FLUSHQ):
        return keylen == 0 and bodylen == extlen and extlen in (0, 4)
    if opcode in op.GETS:
        return extlen == 0 and keylen > 0 and bodylen == keylen
    if opcode in (op.SET, op.SETQ, op.ADD, op.ADDQ, op.REPLACE, op.REPLACEQ):
        return extlen == 8 and keylen > 0
    if opcode in (op.APPEND, op.APPENDQ, op.PREPEND, op.PREPENDQ):
        return extlen == 0 and keylen > 0
    if opcode in (op.DELETE, op.DELETEQ):
        return extlen == 0 and keylen > 0 and bodylen == keylen
    if opcode in (op.INCREMENT, op.INCREMENTQ, op.DECREMENT, op.DECREMENTQ):
        return extlen == 20 and keylen > 0 and bodylen == keylen + 20
    if opcode == op.TOUCH or opcode in op.GATS:
        return extlen == 4 and keylen > 0 and bodylen == keylen + 4
    if opcode == op.STAT:
        return extlen == 0 and bodylen == keylen
    return None


def parse_header(src: bytes | bytearray, pos: int, max_value_size: int) -> Event | Block | Skip:
    """The request whose header starts at ``src[pos]`` (24 bytes are there): its event when it has no
    body, else the body to read (or skip, then answer)."""
    magic, opcode, keylen, extlen, _datatype, _vbucket, bodylen, opaque, cas = HEADER.unpack_from(src, pos)
    if magic != op.REQUEST_MAGIC:
        # (not memcached: it closes without a word) a stream out of step: say so, then close
        return Error(error_response(opcode, op.EINVAL, opaque), close=True)
    if keylen + extlen > bodylen:
        return Error(error_response(opcode, op.UNKNOWN_COMMAND, opaque), close=True)
    if keylen > MAX_KEY_LENGTH:
        return Error(error_response(opcode, op.EINVAL, opaque), close=True)
    shape = _shape_ok(opcode, keylen, extlen, bodylen)
    if shape is None:
        return Skip(bodylen, Error(error_response(opcode, op.UNKNOWN_COMMAND, opaque)))
    if not shape:
        return Error(error_response(opcode, op.EINVAL, opaque), close=True)
    if opcode in op.STORE_COMMANDS and bodylen - keylen - extlen > max_value_size:
        return Skip(bodylen, Error(error_response(opcode, op.E2BIG, opaque)))
    if bodylen == 0:
        return _request(opcode, keylen, extlen, opaque, cas, b"")

    def complete(body: bytes) -> Event:
        return _request(opcode, keylen, extlen, opaque, cas, body)

    return Block(bodylen, complete, terminated=False)


def _request(opcode: int, keylen: int, extlen: int, opaque: int, cas: int, body: bytes) -> Event:
    """The event of a whole request whose lengths were checked against its opcode."""
    key = body[extlen : extlen + keylen]
    if opcode in op.GETS:
        return Get((key,), opcode=opcode, opaque=opaque)
    command = op.STORE_COMMANDS.get(opcode)
    if command is not None:
        flags, exptime = _FLAGS_EXPTIME.unpack_from(body) if extlen else (0, 0)
        value = body[extlen + keylen :]
        return Store(command, key, flags, exptime, value, cas=cas or None, opcode=opcode, opaque=opaque)
    if opcode in op.GATS:
        return Get((key,), exptime=_EXPTIME.unpack_from(body)[0], opcode=opcode, opaque=opaque)
    if opcode in (op.DELETE, op.DELETEQ):
        return Delete(key, cas=cas or None, opcode=opcode, opaque=opaque)
    if opcode == op.NOOP:
        return Noop(opaque=opaque)
    if opcode == op.VERSION:
        return Version(opcode, opaque)
    if opcode in (op.QUIT, op.QUITQ):
        return Quit(opcode, opaque)
    if opcode in (op.FLUSH, op.FLUSHQ):
        delay = _EXPTIME.unpack_from(body)[0] if extlen else 0
        return FlushAll(delay, opcode=opcode, opaque=opaque)
    if opcode == op.TOUCH:
        return Touch(key, _EXPTIME.unpack_from(body)[0], opcode=opcode, opaque=opaque)
    if opcode == op.STAT:
        return Stats((key,) if key else (), opcode, opaque)
    delta, initial, exptime = _ARITHMETIC.unpack_from(body)  # INCREMENT/DECREMENT and quiet kin
    return Arithmetic(
        key,
        delta,
        decrement=opcode in (op.DECREMENT, op.DECREMENTQ),
        initial=None if exptime == NO_CREATE else initial,
        exptime=exptime,
        opcode=opcode,
        opaque=opaque,
    )


# ---------------------------------------------------------------------------- packets


def response(
    opcode: int,
    status: int = op.SUCCESS,
    *,
    opaque: int = 0,
    cas: int = 0,
    extras: bytes = b"",
    key: bytes = b"",
    value: bytes = b"",
) -> bytes:
    """One response packet."""
    body = len(extras) + len(key) + len(value)
    return (
        HEADER.pack(op.RESPONSE_MAGIC, opcode, len(key), len(extras), 0, status, body, opaque, cas)
        + extras
        + key
        + value
    )


def error_response(opcode: int, status: int, opaque: int = 0, message: bytes | None = None) -> bytes:
    """An error status with memcached's text for it as the body (or ``message``)."""
    return response(opcode, status, opaque=opaque, value=op.STATUS_TEXT[status] if message is None else message)


def flags_extras(flags: int) -> bytes:
    """A retrieval hit's extras: the item's client flags."""
    return _EXPTIME.pack(flags & 0xFFFFFFFF)


def counter(value: int) -> bytes:
    """An incr/decr answer's body: the new value."""
    return _COUNTER.pack(value)


def request(
    opcode: int,
    *,
    key: bytes = b"",
    extras: bytes = b"",
    value: bytes = b"",
    opaque: int = 0,
    cas: int = 0,
) -> bytes:
    """One request packet, as a client sends it (for tests and tools)."""
    body = len(extras) + len(key) + len(value)
    return HEADER.pack(op.REQUEST_MAGIC, opcode, len(key), len(extras), 0, 0, body, opaque, cas) + extras + key + value


def store_extras(flags: int, exptime: int) -> bytes:
    """set/add/replace request extras (for tests and tools)."""
    return _FLAGS_EXPTIME.pack(flags, exptime)


def exptime_extras(exptime: int) -> bytes:
    """flush/touch/gat request extras (for tests and tools)."""
    return _EXPTIME.pack(exptime)


def arithmetic_extras(delta: int, initial: int = 0, exptime: int = NO_CREATE) -> bytes:
    """incr/decr request extras (for tests and tools)."""
    return _ARITHMETIC.pack(delta, initial, exptime)
