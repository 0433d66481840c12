"""The meta commands (``mg``, ``ms``, ``md``, ``mn``): their flags, and the lines of their replies.

A flag is one letter, maybe followed by a token (``T30``, ``Oabc``); the flags asking for something back
(``k``, ``O``, ``f``, ``t``, ``s``, ``c``, ``h``, ``l``) are answered in the order they were sent, so
events keep them in that order. Flag checks and error wordings are memcached 1.6's; it takes one set of
flags for all three commands (``mg`` ignores ``F``), and so do we, plus ``E`` and ``md``'s ``x`` that
its documentation lists. ``ma`` (meta arithmetic) and ``me`` (debug) are not served: ``ERROR``.
"""

from __future__ import annotations

from protocols.memcached.events import META_SET_MODES, Error, Event, MetaDelete, MetaGet, MetaNoop, MetaSet
from protocols.memcached.limits import MAX_DECLARED_VALUE_SIZE, MAX_KEY_LENGTH, MAX_META_TOKENS, MAX_OPAQUE_TOKEN
from protocols.memcached.reads import Block, Skip
from protocols.memcached.tokens import (
    UINT32_MAX,
    UINT64_MAX,
    decode_base64_key,
    encode_base64_key,
    has_control,
    signed,
    unsigned,
)

ERROR = b"ERROR\r\n"
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
BAD_TOKEN = b"CLIENT_ERROR bad token in command line format\r\n"
DUPLICATE_FLAG = b"CLIENT_ERROR duplicate flag\r\n"
INVALID_FLAG = b"CLIENT_ERROR invalid flag\r\n"
INVALID_OR_DUPLICATE_FLAG = b"CLIENT_ERROR invalid or duplicate flag\r\n"  # md says only this
BAD_KEY_ENCODING = b"CLIENT_ERROR error decoding key\r\n"
BAD_MODE_LENGTH = b"CLIENT_ERROR incorrect length for M token\r\n"
BAD_MODE = b"CLIENT_ERROR invalid mode for ms M token\r\n"
OPAQUE_TOO_LONG = b"CLIENT_ERROR opaque token too long\r\n"
GET_TOO_MANY_FLAGS = b"CLIENT_ERROR options flags are too long\r\n"
TOO_MANY_FLAGS = b"CLIENT_ERROR options flags too long\r\n"  # ms and md word it so
TOO_LARGE = b"SERVER_ERROR object too large for cache\r\n"

NOOP = b"MN\r\n"

# Flags taking a number, and its bounds.
_SIGNED_FLAGS = frozenset("NTR")  # TTLs
_UNSIGNED64_FLAGS = frozenset("CE")  # cas values
_PLAIN_FLAGS = frozenset("cfhklOPLqstuvI")  # no token, or one taken as is (O opaque; P, L: ignored)
_FLAGS = _SIGNED_FLAGS | _UNSIGNED64_FLAGS | _PLAIN_FLAGS | frozenset("bFM")
_DELETE_FLAGS = _FLAGS | frozenset("x")


class _Flags:
    """One command's flags, checked in the order sent as memcached does: a duplicate or unknown flag stops
    the check, a bad token is noted (the last one's wording wins) and the check goes on."""

    __slots__ = ("order", "tokens", "numbers", "key", "error", "flag_error")

    def __init__(self, words: list[bytes], raw_key: bytes, allowed: frozenset[str]) -> None:
        self.order: list[tuple[str, bytes]] = []
        self.tokens: dict[str, bytes] = {}
        self.numbers: dict[str, int] = {}  # the numeric flags' values
        self.key = raw_key  # decoded by b
        self.error: bytes | None = None  # the reply to the command, if it is refused
        self.flag_error = False  # refused for a flag or its token (md words all of these alike)
        tokens, order, numbers = self.tokens, self.order, self.numbers
        wording: bytes = BAD_FORMAT
        for word in words:
            code = word[0]
            letter = chr(code)
            if code >= 127 or letter in tokens:
                self.error, self.flag_error = DUPLICATE_FLAG, True  # memcached's wording for a byte >= 127 too
                return
            token = word[1:]
            if letter in _PLAIN_FLAGS:  # the usual flags: nothing to check
                tokens[letter] = token
                order.append((letter, token))
                continue
            if letter not in allowed:
                self.error, self.flag_error = INVALID_FLAG, True
                return
            tokens[letter] = token
            order.append((letter, token))
            problem: bytes | None = None
            value: int | None = None
            if letter == "b":
                decoded = decode_base64_key(raw_key)
                if decoded is None:
                    problem = BAD_KEY_ENCODING
                else:
                    self.key = decoded
            elif letter in _SIGNED_FLAGS:
                value = signed(token)
                problem = BAD_TOKEN if value is None else None
            elif letter in _UNSIGNED64_FLAGS:
                value = unsigned(token, UINT64_MAX)
                problem = BAD_TOKEN if value is None else None
            elif letter == "F":
                value = unsigned(token, UINT32_MAX)
                problem = wording if value is None else None  # memcached keeps the wording it had so far
            elif letter == "M" and len(token) != 1:
                problem = BAD_MODE_LENGTH
            if problem is not None:
                wording = problem
                self.error, self.flag_error = problem, True
            elif value is not None:
                numbers[letter] = value
        if self.error is not None:
            self.error = wording
            return
        opaque = tokens.get("O")
        if opaque is not None and len(opaque) + 1 > MAX_OPAQUE_TOKEN:
            self.error = OPAQUE_TOO_LONG
        elif "b" not in tokens and has_control(raw_key):
            self.error = BAD_FORMAT  # (not memcached: it takes control characters in keys)


def parse(tokens: list[bytes], max_value_size: int) -> Event | Block | Skip:
    """A meta command line (its first token is two bytes starting with ``m``)."""
    kind = tokens[0][1:]
    if kind == b"n":
        return MetaNoop()
    if kind == b"g":
        return _get(tokens)
    if kind == b"s":
        return _set(tokens, max_value_size)
    if kind == b"d":
        return _delete(tokens)
    return Error(ERROR)


def _get(tokens: list[bytes]) -> Event:
    if len(tokens) < 2:
        return Error(ERROR)
    if len(tokens[1]) > MAX_KEY_LENGTH:
        return Error(BAD_FORMAT)
    if len(tokens) > MAX_META_TOKENS:
        return Error(GET_TOO_MANY_FLAGS)
    flags = _Flags(tokens[2:], tokens[1], _FLAGS)
    if flags.error is not None:
        return Error(flags.error)
    present, numbers = flags.tokens, flags.numbers
    return MetaGet(
        flags.key,
        tuple(flags.order),
        base64="b" in present,
        quiet="q" in present,
        return_value="v" in present,
        ttl=numbers.get("T"),
        vivify=numbers.get("N"),
        recache=numbers.get("R"),
        no_bump="u" in present,
    )


def _set(tokens: list[bytes], max_value_size: int) -> Event | Block | Skip:
    if len(tokens) < 2:
        return Error(ERROR)
    size = signed(tokens[2], 0, MAX_DECLARED_VALUE_SIZE) if len(tokens) > 2 else None

    def refuse(reply: bytes) -> Error | Skip:
        # meta errors are always sent; the data is skipped when its length is known (memcached does so
        # for bad flags, and reads it as commands after a bad key: not memcached, there)
        return Error(reply) if size is None else Skip(size + 2, Error(reply))

    if len(tokens[1]) > MAX_KEY_LENGTH:
        return refuse(BAD_FORMAT)
    if size is None:
        return Error(BAD_FORMAT)
    if len(tokens) > MAX_META_TOKENS:
        return refuse(TOO_MANY_FLAGS)
    flags = _Flags(tokens[3:], tokens[1], _FLAGS)
    if flags.error is not None:
        return refuse(flags.error)
    present = flags.tokens
    mode = present.get("M", b"S").decode("latin-1")
    if mode not in META_SET_MODES:
        return refuse(BAD_MODE)
    if size > max_value_size:
        return refuse(TOO_LARGE)
    key = flags.key
    order = tuple(flags.order)
    numbers = flags.numbers
    client_flags = numbers.get("F", 0)
    ttl = numbers.get("T", 0)
    compare_cas = numbers.get("C")
    vivify = numbers.get("N")

    def complete(value: bytes) -> Event:
        return MetaSet(
            key,
            value,
            order,
            base64="b" in present,
            quiet="q" in present,
            mode=mode,
            client_flags=client_flags,
            ttl=ttl,
            compare_cas=compare_cas,
            invalidate="I" in present,
            vivify=vivify,
        )

    return Block(size, complete)  # a bad data chunk is reported even with q


def _delete(tokens: list[bytes]) -> Event:
    if len(tokens) < 2:
        return Error(ERROR)
    if len(tokens[1]) > MAX_KEY_LENGTH:
        return Error(BAD_FORMAT)
    if len(tokens) > MAX_META_TOKENS:
        return Error(TOO_MANY_FLAGS)
    flags = _Flags(tokens[2:], tokens[1], _DELETE_FLAGS)
    if flags.error is not None:  # md has one wording for every flag problem
        return Error(INVALID_OR_DUPLICATE_FLAG if flags.flag_error else flags.error)
    present, numbers = flags.tokens, flags.numbers
    return MetaDelete(
        flags.key,
        tuple(flags.order),
        base64="b" in present,
        quiet="q" in present,
        compare_cas=numbers.get("C"),
        invalidate="I" in present,
        ttl=numbers.get("T"),
        remove_value="x" in present,
    )


# ---------------------------------------------------------------------------- replies


def _returned_key(key: bytes, base64: bool) -> bytes:
    return b" k" + encode_base64_key(key) + b" b" if base64 else b" k" + key


def hit(
    event: MetaGet,
    data: bytes,
    *,
    client_flags: int = 0,
    ttl: int = -1,
    cas: int = 0,
    last_access: int = 0,
    fetched: bool = False,
    won: bool = False,
    stale: bool = False,
    win_sent: bool = False,
) -> bytes:
    """An ``mg`` hit: ``VA <size>`` and the data when ``v`` was sent, else ``HD``, with the asked-for flags
    in request order; then ``Z`` (another client won the recache), ``X`` (stale), ``W`` (this one won)."""
    parts = [b"VA %d" % len(data) if event.return_value else b"HD"]
    for letter, token in event.meta_flags:
        if letter == "s":
            parts.append(b" s%d" % len(data))
        elif letter == "t":
            parts.append(b" t%d" % ttl)
        elif letter == "c":
            parts.append(b" c%d" % cas)
        elif letter == "f":
            parts.append(b" f%d" % client_flags)
        elif letter == "l":
            parts.append(b" l%d" % last_access)
        elif letter == "h":
            parts.append(b" h1" if fetched else b" h0")
        elif letter == "O":
            parts.append(b" O" + token)
        elif letter == "k":
            parts.append(_returned_key(event.key, event.base64))
    if win_sent:
        parts.append(b" Z")
    if stale:
        parts.append(b" X")
    if won:
        parts.append(b" W")
    parts.append(b"\r\n")
    if event.return_value:
        parts.append(data)
        parts.append(b"\r\n")
    return b"".join(parts)


def miss(event: MetaGet) -> bytes:
    """An ``mg`` miss: ``EN`` with the opaque and key asked for, or nothing under ``q``."""
    if event.quiet:
        return b""
    return _status(b"EN", event.key, event.base64, event.meta_flags)


def status(code: bytes, event: MetaSet | MetaDelete, cas: int = 0) -> bytes:
    """An ``ms``/``md`` answer: ``HD`` (nothing under ``q``), ``NS``, ``EX`` or ``NF``, with the opaque,
    key and (``ms``) cas asked for."""
    if code == b"HD" and event.quiet:
        return b""
    return _status(code, event.key, event.base64, event.meta_flags, cas if isinstance(event, MetaSet) else None)


def _status(code: bytes, key: bytes, base64: bool, meta_flags: tuple[tuple[str, bytes], ...], cas=None) -> bytes:
    parts = [code]
    for letter, token in meta_flags:
        if letter == "O":
            parts.append(b" O" + token)
        elif letter == "k":
            parts.append(_returned_key(key, base64))
        elif letter == "c" and cas is not None:
            parts.append(b" c%d" % cas)
    parts.append(b"\r\n")
    return b"".join(parts)
