"""The lexical rules shared by the text and meta commands: splitting a line, numbers, keys, base64 keys."""

from __future__ import annotations

import binascii
import re

from protocols.memcached.limits import MAX_KEY_LENGTH, MAX_NUMBER_TOKEN

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# Control characters: protocol.txt says a key "must not include control characters or whitespace" (memcached
# 1.6 itself stores such keys; we refuse them, so no tab or NUL reaches a function name or a unique).
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def split(line: bytes) -> list[bytes]:
    """A command line's tokens as memcached splits them: on spaces only (a tab belongs to its token)."""
    tokens = line.split(b" ")
    if b"" in tokens:  # runs of spaces, or spaces at either end
        return [token for token in tokens if token]
    return tokens


def unsigned(token: bytes, maximum: int) -> int | None:
    """A decimal number 0..maximum (an optional ``+``, as strtoul takes), or None."""
    # bytes.isdigit: ASCII digits only, and False for b""
    digits = token if token.isdigit() else token[1:] if token[:1] == b"+" and token[1:].isdigit() else None
    if digits is None or len(digits) > MAX_NUMBER_TOKEN:
        return None
    value = int(digits)
    return value if value <= maximum else None


def signed(token: bytes, minimum: int = INT64_MIN, maximum: int = INT64_MAX) -> int | None:
    """A decimal number with an optional sign within the bounds, or None."""
    if token.isdigit() and len(token) <= MAX_NUMBER_TOKEN:
        value = int(token)
    elif token[:1] in (b"-", b"+") and token[1:].isdigit() and len(token) <= MAX_NUMBER_TOKEN:
        value = -int(token[1:]) if token[:1] == b"-" else int(token[1:])
    else:
        return None
    return value if minimum <= value <= maximum else None


def valid_key(key: bytes) -> bool:
    """A key as the text protocol takes it: 1..250 bytes, no control characters (spaces cannot occur)."""
    return 0 < len(key) <= MAX_KEY_LENGTH and _CONTROL.search(key) is None


def has_control(key: bytes) -> bool:
    return _CONTROL.search(key) is not None


def decode_base64_key(token: bytes) -> bytes | None:
    """A meta ``b`` key: the binary key its base64 text stands for, or None if that is not valid base64."""
    try:
        key = binascii.a2b_base64(token, strict_mode=True)
    except binascii.Error:
        return None
    return key or None


def encode_base64_key(key: bytes) -> bytes:
    return binascii.b2a_base64(key, newline=False)
