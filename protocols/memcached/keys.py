"""What a memcached key means here: ``<function>[/<unique>][/<option>]*``.

The queue servers that spoke memcached (Kestrel, Darner, MemcacheQ) put a queue's name in the key and
options after it (``get q/t=500/open``); we keep that, and add the unique of a job, whose result a ``get``
reads. The function is the first segment (a function name cannot hold ``/`` here); the options are the
trailing segments that are option words; everything between is the unique, slashes included. So the only
uniques a memcached client cannot name are those whose last segment is an option word.

Options: ``t=<ms>`` wait up to that long; ``open`` a reliable read (the job stays this connection's);
``close`` complete the open job (a ``set`` to it carries the result); ``abort`` give the open job back;
``peek`` look without taking; ``error`` read a failed job's exception text; ``fail`` (a ``set``) fail the
open job.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

#: Option words that take no value.
FLAGS = frozenset({b"open", b"close", b"abort", b"peek", b"error", b"fail"})
#: Longest wait a key can ask for before the server's own cap applies (digits beyond this are refused).
MAX_WAIT_DIGITS = 9


@dataclass(slots=True)
class Key:
    """A parsed key. Shared through ``parse``'s cache: never changed once made."""

    function: bytes
    unique: bytes = b""
    wait_ms: int | None = None  # t=<ms>
    open: bool = False
    close: bool = False
    abort: bool = False
    peek: bool = False
    error: bool = False
    fail: bool = False
    #: any option given (computed once: every request asks)
    has_options: bool = field(init=False, compare=False, repr=False)
    #: the result cache's key
    result_key: tuple[bytes, bytes] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.has_options = (
            self.wait_ms is not None or self.open or self.close or self.abort or self.peek or self.error or self.fail
        )
        self.result_key = (self.function, self.unique)


def _wait(segment: bytes) -> int | None:
    if segment[:2] != b"t=":
        return None
    digits = segment[2:]
    if not digits.isdigit() or len(digits) > MAX_WAIT_DIGITS:
        return None
    return int(digits)


#: Keys parsed lately, by their bytes: workers repeat ``<function>/open/t=<ms>``, clients their functions.
PARSED_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=PARSED_CACHE_SIZE)
def parse(raw: bytes) -> Key | None:
    """The key's parts; None when it names no function (empty, or starting with ``/``) or repeats an
    option."""
    segments = raw.split(b"/")
    function = segments[0]
    if not function:
        return None
    count = len(segments)
    if count == 2:  # the usual new key: <function>/<unique>
        last = segments[1]
        if last not in FLAGS and last[:2] != b"t=":
            return Key(function, last)
    elif count == 3:  # a client's wait for its result: <function>/<unique>/t=<ms>
        unique, last = segments[1], segments[2]
        if last[:2] == b"t=" and unique not in FLAGS and unique[:2] != b"t=" and (wait := _wait(last)) is not None:
            return Key(function, unique, wait)
    options: dict[str, bool | int] = {}
    end = len(segments)
    while end > 1:
        segment = segments[end - 1]
        wait = _wait(segment)
        if wait is not None:
            name = "wait_ms"
        elif segment in FLAGS:
            name = segment.decode()
        else:
            break
        if name in options:
            return None
        options[name] = wait if wait is not None else True
        end -= 1
    unique = b"/".join(segments[1:end])
    return Key(function, unique, **options)  # type: ignore[arg-type]
