"""The classic text protocol: a command line to an event, and the lines of its replies.

The rules and the error wordings are memcached 1.6's (proto_text.c), checked against the real server; the
deliberate differences are marked "(not memcached)". A line is split on spaces only; ``noreply`` is read
before the rest of the line is checked, and silences the errors found after it, as memcached does.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from protocols.memcached import meta
from protocols.memcached.events import (
    Arithmetic,
    Delete,
    Error,
    Event,
    FlushAll,
    Get,
    Quit,
    Stats,
    Store,
    Touch,
    Verbosity,
    Version,
)
from protocols.memcached.limits import MAX_DECLARED_VALUE_SIZE
from protocols.memcached.reads import Block, Skip
from protocols.memcached.tokens import UINT32_MAX, UINT64_MAX, signed, split, unsigned, valid_key

# Replies, exactly as memcached words them.
ERROR = b"ERROR\r\n"
STORED = b"STORED\r\n"
NOT_STORED = b"NOT_STORED\r\n"
EXISTS = b"EXISTS\r\n"
NOT_FOUND = b"NOT_FOUND\r\n"
DELETED = b"DELETED\r\n"
TOUCHED = b"TOUCHED\r\n"
OK = b"OK\r\n"
END = b"END\r\n"
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
BAD_DATA_CHUNK = b"CLIENT_ERROR bad data chunk\r\n"
TOO_LARGE = b"SERVER_ERROR object too large for cache\r\n"
BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument\r\n"
BAD_DELTA = b"CLIENT_ERROR invalid numeric delta argument\r\n"
NON_NUMERIC = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
DELETE_USAGE = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
LINE_TOO_LONG = b"CLIENT_ERROR line too long\r\n"  # (not memcached: it closes without a word, see codec)

NOREPLY = b"noreply"

#: Commands whose line may hold many keys, and so may be longer (``DEFAULT_MAX_MULTIGET_LINE``).
RETRIEVALS = frozenset({b"get", b"gets", b"gat", b"gats", b"bget"})

Parsed = Event | Block | Skip


def parse_line(line: bytes, max_value_size: int) -> Parsed:
    """The event a command line stands for, or what it still needs from the stream."""
    tokens = split(line)
    if not tokens or len(tokens[0]) < 2:  # memcached: no command is shorter than two bytes
        return Error(ERROR)
    command = tokens[0]
    if len(command) == 2 and command[0] == 0x6D:  # "m?": a meta command
        return meta.parse(tokens, max_value_size)
    handler = _COMMANDS.get(command)
    if handler is not None:
        return handler(tokens, max_value_size)
    if tokens[-1].startswith(b"HTTP/"):
        # a web browser or an HTTP client: memcached hangs up on it (silently; we say ERROR first)
        return Error(ERROR, close=True)
    return Error(ERROR)


def parse_plain(line: bytes, max_value_size: int) -> bytes | Get | tuple[bytes, int, int, int, bool] | None:
    """The fast path of the two commands a queue lives on: a plain ``get <key>`` line's key, a plain
    ``get <key> <key>...`` line's event, or a plain ``set <key> <flags> <exptime> <bytes> [noreply]`` line's fields
    (the codec reads its data block where it lies); None for anything else, or anything unusual, which
    ``parse_line`` reads by the full rules. It must give what ``parse_line`` gives (``Get((key,))`` for a
    key; tests/unit/test_memcached_codec.py checks it with hypothesis)."""
    if line[:1] == b"s":
        match = _PLAIN_SET(line)
        if match is None:
            return None
        key, flags, exptime, size, noreply = match.groups()
        length = int(size)
        if length > max_value_size:
            return None
        return key, 0 if flags == b"0" else int(flags), 0 if exptime == b"0" else int(exptime), length, bool(noreply)
    match = _PLAIN_GET(line)
    if match is not None:
        return match.group(1)
    if line[:4] == b"get ":
        keys = tuple(line[4:].split(b" "))
        for key in keys:
            if not valid_key(key):  # b"" too: runs of spaces are the full parser's
                return None
        return Get(keys)
    return None


#: ``set <key> <flags> <exptime> <bytes> [noreply]``: a key of 1..250 bytes with no control character or space,
#: and short digit runs only (no sign, no bounds to check: 9 digits < 2**31 - 3). One match, not six tests.
_PLAIN_SET = re.compile(rb"set ([^\x00-\x20\x7f]{1,250}) ([0-9]{1,9}) ([0-9]{1,9}) ([0-9]{1,9})( noreply)?").fullmatch
#: ``get <key>``: one key, what queue clients and workers send
_PLAIN_GET = re.compile(rb"get ([^\x00-\x20\x7f]{1,250})").fullmatch

#: The same two lines with their end, matched where they lie in the received bytes (``codec``)
SET_LINE = re.compile(rb"set ([^\x00-\x20\x7f]{1,250}) ([0-9]{1,9}) ([0-9]{1,9}) ([0-9]{1,9})( noreply)?\r?\n").match
GET_LINE = re.compile(rb"get ([^\x00-\x20\x7f]{1,250})\r?\n").match
#: The longest line these match (without its end): any ``max_line`` from this up lets them all through
PLAIN_LINE_MAX = len(b"set ") + 250 + 3 * (1 + 9) + len(b" noreply")


def set_block(key: bytes, flags: int, exptime: int, size: int, noreply: bool = False) -> Block:
    """A plain ``set`` whose data block is still coming."""

    def complete(value: bytes) -> Event:
        return Store("set", key, flags, exptime, value, noreply)

    return Block(size, complete, noreply=noreply)


def _get(tokens: list[bytes], max_value_size: int) -> Parsed:
    if len(tokens) < 2:
        return Error(ERROR)
    keys = tuple(tokens[1:])
    for key in keys:
        if not valid_key(key):  # memcached drops the whole answer, hits before the bad key included
            return Error(BAD_FORMAT)
    return Get(keys, with_cas=tokens[0] == b"gets")


def _gat(tokens: list[bytes], max_value_size: int) -> Parsed:
    if len(tokens) < 2:
        return Error(ERROR)
    exptime = signed(tokens[1])
    if exptime is None:
        return Error(BAD_EXPTIME)
    keys = tuple(tokens[2:])  # none at all is allowed: memcached answers END
    for key in keys:
        if not valid_key(key):
            return Error(BAD_FORMAT)
    return Get(keys, with_cas=tokens[0] == b"gats", exptime=exptime)


def _store(tokens: list[bytes], max_value_size: int) -> Parsed:
    command = tokens[0]
    is_cas = command == b"cas"
    count = 6 if is_cas else 5
    if len(tokens) != count and len(tokens) != count + 1:
        return Error(ERROR)
    noreply = len(tokens) == count + 1 and tokens[-1] == NOREPLY  # any other last word is ignored
    key = tokens[1]
    flags = unsigned(tokens[2], UINT32_MAX)  # (not memcached: it keeps the low 32 bits of a larger number)
    exptime = signed(tokens[3])
    size = signed(tokens[4], 0, MAX_DECLARED_VALUE_SIZE)
    cas = unsigned(tokens[5], UINT64_MAX) if is_cas else None
    if flags is None or exptime is None or size is None or (is_cas and cas is None) or not valid_key(key):
        error = Error(BAD_FORMAT, noreply=noreply)
        # (not memcached: it reads the data block as commands; a payload must never run as one)
        return error if size is None else Skip(size + 2, error)
    if size > max_value_size:
        return Skip(size + 2, Error(TOO_LARGE, noreply=noreply))
    name = _STORE_NAMES[command]

    def complete(value: bytes) -> Event:
        return Store(name, key, flags, exptime, value, noreply, cas)

    return Block(size, complete, noreply=noreply)


def _delete(tokens: list[bytes], max_value_size: int) -> Parsed:
    if not 2 <= len(tokens) <= 4:
        return Error(ERROR)
    noreply = False
    if len(tokens) > 2:  # "delete <key> 0" is an old form memcached still takes
        hold_is_zero = tokens[2] == b"0"
        noreply = tokens[-1] == NOREPLY
        if len(tokens) == 3:
            valid = hold_is_zero or noreply
        else:
            valid = hold_is_zero and noreply
        if not valid:
            return Error(DELETE_USAGE, noreply=noreply)
    if not valid_key(tokens[1]):
        return Error(BAD_FORMAT, noreply=noreply)
    return Delete(tokens[1], noreply)


def _touch(tokens: list[bytes], max_value_size: int) -> Parsed:
    if len(tokens) not in (3, 4):
        return Error(ERROR)
    noreply = len(tokens) == 4 and tokens[3] == NOREPLY
    if not valid_key(tokens[1]):
        return Error(BAD_FORMAT, noreply=noreply)
    exptime = signed(tokens[2])
    if exptime is None:
        return Error(BAD_EXPTIME, noreply=noreply)
    return Touch(tokens[1], exptime, noreply)


def _arithmetic(tokens: list[bytes], max_value_size: int) -> Parsed:
    if len(tokens) not in (3, 4):
        return Error(ERROR)
    noreply = len(tokens) == 4 and tokens[3] == NOREPLY
    if not valid_key(tokens[1]):
        return Error(BAD_FORMAT, noreply=noreply)
    delta = unsigned(tokens[2], UINT64_MAX)
    if delta is None:
        return Error(BAD_DELTA, noreply=noreply)
    return Arithmetic(tokens[1], delta, decrement=tokens[0] == b"decr", noreply=noreply)


def _flush_all(tokens: list[bytes], max_value_size: int) -> Parsed:
    if len(tokens) > 3:
        return Error(ERROR)
    noreply = tokens[-1] == NOREPLY
    delay = 0
    if len(tokens) != (2 if noreply else 1):  # "flush_all 1 2" reads the 1, as memcached does
        parsed = signed(tokens[1])
        if parsed is None:
            return Error(BAD_EXPTIME, noreply=noreply)
        delay = parsed
    return FlushAll(delay, noreply)


def _verbosity(tokens: list[bytes], max_value_size: int) -> Parsed:
    if len(tokens) not in (2, 3):
        return Error(ERROR)
    noreply = tokens[-1] == NOREPLY
    level = unsigned(tokens[1], UINT32_MAX)
    if level is None:
        return Error(BAD_FORMAT, noreply=noreply)
    return Verbosity(level, noreply)


_STORE_NAMES = {name.encode(): name for name in ("set", "add", "replace", "append", "prepend", "cas")}

_COMMANDS: dict[bytes, Callable[[list[bytes], int], Parsed]] = {
    b"get": _get,
    b"gets": _get,
    b"bget": _get,  # an ancient alias memcached still answers
    b"gat": _gat,
    b"gats": _gat,
    b"set": _store,
    b"add": _store,
    b"replace": _store,
    b"append": _store,
    b"prepend": _store,
    b"cas": _store,
    b"delete": _delete,
    b"touch": _touch,
    b"incr": _arithmetic,
    b"decr": _arithmetic,
    b"flush_all": _flush_all,
    b"verbosity": _verbosity,
    b"version": lambda tokens, max_value_size: Version(),
    b"quit": lambda tokens, max_value_size: Quit(),
    b"stats": lambda tokens, max_value_size: Stats(tuple(tokens[1:])),
}


# ---------------------------------------------------------------------------- replies


def value(key: bytes, flags: int, data: bytes, cas: int | None = None) -> bytes:
    """One item of a retrieval answer: its VALUE line (the key exactly as requested) and its data."""
    if cas is None:
        return b"VALUE %b %d %d\r\n%b\r\n" % (key, flags, len(data), data)
    return b"VALUE %b %d %d %d\r\n%b\r\n" % (key, flags, len(data), cas, data)


def version(text: str | bytes) -> bytes:
    return b"VERSION %b\r\n" % (text.encode() if isinstance(text, str) else text)


def stat(name: str | bytes, val: object) -> bytes:
    name_bytes = name.encode() if isinstance(name, str) else name
    val_bytes = val if isinstance(val, bytes) else str(val).encode()
    return b"STAT %b %b\r\n" % (name_bytes, val_bytes)


def number(val: int) -> bytes:
    """The answer to a successful incr/decr: the new value alone on its line."""
    return b"%d\r\n" % val


def client_error(message: str | bytes) -> bytes:
    return b"CLIENT_ERROR %b\r\n" % _line_text(message)


def server_error(message: str | bytes) -> bytes:
    return b"SERVER_ERROR %b\r\n" % _line_text(message)


def _line_text(message: str | bytes) -> bytes:
    """A message made safe for one reply line: a newline in it would end the line early."""
    text = message.encode(errors="replace") if isinstance(message, str) else message
    return text.replace(b"\r", b" ").replace(b"\n", b" ")
