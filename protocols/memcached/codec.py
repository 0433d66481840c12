"""Sans-IO codec of the memcached protocols: bytes in, command events out (replies: ``replies``).

One ``Decoder`` per connection. Its first byte tells the protocol for the whole connection, as memcached
does over TCP: ``0x80`` (a binary request's magic) makes it binary, anything else text (classic and meta
commands, mixed freely). After that the two never mix: on a binary connection a header with another
magic is garbage, and on a text connection a ``0x80`` byte is just part of a line.

``receive_data`` parses every complete request in what it is given (plus what was left over) and returns
their events in order; a request split over many reads is kept until it is whole. Data blocks are held
until complete, bounded by ``max_value_size``; a larger value is counted off as it arrives, never held,
and then answered with an ``Error``; so is a line over ``max_line`` (``max_multiget_line`` for a
retrieval), dropped up to its newline. Any input gives events or waits for more: nothing raises.

With ``plain=True`` the two requests a queue lives on come as plain values instead of events (no object to
build, no type to dispatch on for the session): a plain one-key ``get <key>`` as its key (``bytes``), a
plain ``set <key> <flags> <exptime> <bytes> [noreply]`` with its data as a ``(key, flags, exptime, data,
noreply)`` tuple.
``as_event`` turns them back into the ``Get``/``Store`` the default decoder gives for the same bytes.

``plain_scan`` is the optional C reader of those two (protocols/memcached/_scan.c): a plain decoder with
nothing held reads a read's leading plain gets and sets with it in one call, and the rest as before. It is
None when not built (no gcc or Python headers at install time) or when ``GEARMAN_GATEWAY_PURE_PYTHON`` is
set; the events are the same either way. Read at each ``receive_data``, so tests can run both paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

from protocols.memcached import binary, text
from protocols.memcached.events import Error, Event, Get, Quit, Store
from protocols.memcached.limits import DEFAULT_MAX_LINE, DEFAULT_MAX_MULTIGET_LINE, DEFAULT_MAX_VALUE_SIZE
from protocols.memcached.opcodes import REQUEST_MAGIC
from protocols.memcached.reads import Block, Skip

Protocol = Literal["text", "binary"]

#: A plain ``set``'s fields and data: (key, flags, exptime, data, noreply).
PlainSet = tuple[bytes, int, int, bytes, bool]
#: What a ``plain`` decoder hands over: an event, a plain one-key get's key, or a plain set.
Request = Event | bytes | PlainSet


def as_event(request: Request) -> Event:
    """The event a ``plain`` decoder's request stands for (what the default decoder gives)."""
    if type(request) is bytes:
        return Get((request,))
    if type(request) is tuple:
        key, flags, exptime, data, noreply = request
        return Store("set", key, flags, exptime, data, noreply)
    return request  # type: ignore[return-value]


#: ``scan(data, max_value_size) -> (requests, offset)``: the complete plain gets and sets (as a ``plain``
#: decoder gives them) at the start of ``data``, and where the first other thing (or an incomplete one) begins.
plain_scan: Callable[[bytes, int], tuple[list[Request], int]] | None
try:
    from protocols.memcached._scan import scan as plain_scan
except ImportError:  # pragma: no cover - depends on the build
    plain_scan = None
if os.environ.get("GEARMAN_GATEWAY_PURE_PYTHON"):
    plain_scan = None

#: How far into a line without its newline the command is looked for, to know which length limit applies
#: (memcached looks past up to 100 leading spaces).
_COMMAND_SCAN = 128


class Decoder:
    """Turns one connection's bytes into events."""

    __slots__ = (
        "max_value_size",
        "max_line",
        "max_multiget_line",
        "protocol",
        "closed",
        "_buf",
        "_block",
        "_skip",
        "_long_line",
        "_seen",
        "_plain",
        "_fast",
        "_scan_lines",
        "whole_scan",
    )

    def __init__(
        self,
        *,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        max_line: int = DEFAULT_MAX_LINE,
        max_multiget_line: int = DEFAULT_MAX_MULTIGET_LINE,
        plain: bool = False,
        fast_path: bool = True,
    ) -> None:
        """``plain``: plain gets and sets as plain values (see the module). ``fast_path=False``: every line
        by the full rules (``text.parse_line``), for tests to compare the fast path against."""
        self.max_value_size = max_value_size
        self.max_line = max_line
        self.max_multiget_line = max(max_line, max_multiget_line)
        #: "text" or "binary" once the first byte is in.
        self.protocol: Protocol | None = None
        #: After ``Quit`` or an ``Error`` with ``close``: input is ignored from then on.
        self.closed = False
        self._buf = bytearray()  # received bytes not yet part of an event
        self._block: Block | None = None  # the data block the last line or header announced
        self._skip: Skip | None = None  # bytes being discarded, then its error
        self._long_line = False  # discarding a line over the limit, up to its newline
        self._seen = 0  # bytes at the start of ``_buf`` known to hold no newline: never searched twice
        self._plain = plain
        self._fast = fast_path
        # plain_scan may read lines (no plain line can be over max_line, as for ``match_lines`` below)
        self._scan_lines = plain and fast_path and max_line >= text.PLAIN_LINE_MAX
        #: ``plain_scan`` while a read may be given to it alone (a plain text decoder holding nothing), else
        #: None: a read it takes whole (its offset at the end) is all plain requests, and nothing is held
        #: after it, so the caller need not call ``receive_data`` (the memcached session's usual read)
        self.whole_scan: Callable[[bytes, int], tuple[list[Request], int]] | None = None

    @property
    def holding(self) -> bool:
        """Part of a request is held (or being skipped): its rest must come."""
        return bool(self._buf or self._skip is not None or self._long_line)

    @property
    def buffered(self) -> int:
        """Bytes held: part of a line, header or data block still incomplete."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> list[Request]:
        """The events of every request completed by ``data``, in order (``plain``: see the module)."""
        events = self._receive(data)
        scan = plain_scan
        self.whole_scan = (
            scan
            if scan is not None
            and self._scan_lines
            and self.protocol == "text"
            and not self._buf
            and self._block is None
            and self._skip is None
            and not self._long_line
            and not self.closed
            else None
        )
        return events

    def _receive(self, data: bytes) -> list[Request]:
        events: list[Request] = []
        if self.closed or not data:
            return events
        if type(data) is not bytes:
            data = bytes(data)  # a caller's reused buffer must not change under us
        pos = 0  # how far ``src`` (below) was consumed
        scan = plain_scan
        if (
            scan is not None
            and self._scan_lines
            and not self._buf
            and self._block is None
            and self._skip is None
            and not self._long_line
            and self.protocol != "binary"
        ):
            # the leading plain gets and sets in C; a 0x80 first byte is neither, so it still chooses binary
            events, pos = scan(data, self.max_value_size)
            if pos:
                self.protocol = "text"
                if pos == len(data):
                    return events
        if self._skip is not None or self._long_line:  # discard without buffering
            pos = self._discard(data, 0, len(data), events)
            if pos == len(data):
                return events
            data = data[pos:]
            pos = 0
        if self.protocol is None:
            self.protocol = "binary" if data[0] == REQUEST_MAGIC else "text"
        buf = self._buf
        if buf:
            buf += data
            src: bytes | bytearray = buf
        else:
            src = data  # the usual case, whole requests in one read: parse them where they lie
        # the parse, here (one call less per read): every complete request from ``src`` into ``events``; each
        # turn of the loop consumes bytes or leaves it
        end = len(src)
        is_text = self.protocol == "text"
        max_line = self.max_line
        max_value_size = self.max_value_size
        seen, self._seen = self._seen, 0
        plain = self._plain
        parse_plain = text.parse_plain if self._fast else None
        # a plain set or get line matched where it lies (no search for its end, no copy of it); only when no
        # such line can be over ``max_line`` (a small limit: every line the ordinary way)
        match_lines = parse_plain is not None and max_line >= text.PLAIN_LINE_MAX
        while pos < end:
            block = self._block
            if block is not None:
                stop = pos + block.length + (2 if block.terminated else 0)
                if stop > end:
                    break
                self._block = None
                events.append(self._complete(block, src, pos, stop))
                pos = stop
                continue
            if self._skip is not None or self._long_line:
                pos = self._discard(src, pos, end, events)
                continue
            if is_text:
                if match_lines and not seen:
                    first = src[pos]
                    if first == 0x73:  # "s"
                        match = text.SET_LINE(src, pos)
                        if match is not None:
                            key, flags, exptime, size, noreply = match.groups()
                            length = int(size)
                            if length <= max_value_size:
                                start = match.end()
                                stop = start + length + 2
                                flag_value = 0 if flags == b"0" else int(flags)
                                expiry = 0 if exptime == b"0" else int(exptime)
                                if stop <= end and src[stop - 2] == 13 and src[stop - 1] == 10:
                                    if type(src) is bytes:
                                        data = src[start : stop - 2]
                                    else:
                                        data = bytes(memoryview(src)[start : stop - 2])
                                    quiet = noreply is not None
                                    if plain:
                                        events.append((key, flag_value, expiry, data, quiet))
                                    else:
                                        events.append(Store("set", key, flag_value, expiry, data, quiet))
                                    pos = stop
                                    continue
                                self._block = text.set_block(key, flag_value, expiry, length, noreply is not None)
                                pos = start
                                continue
                    elif first == 0x67:  # "g"
                        match = text.GET_LINE(src, pos)
                        if match is not None:
                            key = match.group(1)
                            events.append(key if plain else Get((key,)))
                            pos = match.end()
                            continue
                newline = src.find(b"\n", pos + seen)
                seen = 0
                if newline < 0:
                    # at least end - pos - 1 bytes before the newline (the last one may be its \r)
                    if end - pos > max_line + 1 and self._line_too_long(src, pos, end, end - pos - 1, False):
                        self._long_line = True
                        pos = end
                        break
                    self._seen = end - pos  # a long multiget arriving in small reads costs linear time
                    break
                line_end = newline - 1 if newline > pos and src[newline - 1] == 13 else newline
                if line_end - pos > max_line and self._line_too_long(src, pos, line_end, line_end - pos, True):
                    events.append(Error(text.LINE_TOO_LONG))
                    pos = newline + 1
                    continue
                line = src[pos:line_end] if type(src) is bytes else bytes(src[pos:line_end])
                pos = newline + 1
                fast = None if parse_plain is None else parse_plain(line, max_value_size)
                if fast is None:
                    parsed = text.parse_line(line, max_value_size)
                elif type(fast) is bytes:  # a plain one-key get: nothing more to look at
                    events.append(fast if plain else Get((fast,)))
                    continue
                elif type(fast) is tuple:  # a plain set: its data block, when all in, without a Block
                    key, flags, exptime, size, noreply = fast
                    stop = pos + size + 2
                    if stop <= end and src[stop - 2] == 13 and src[stop - 1] == 10:
                        data = src[pos : stop - 2] if type(src) is bytes else bytes(memoryview(src)[pos : stop - 2])
                        events.append(
                            (key, flags, exptime, data, noreply)
                            if plain
                            else Store("set", key, flags, exptime, data, noreply)
                        )
                        pos = stop
                        continue
                    parsed = text.set_block(key, flags, exptime, size, noreply)
                else:  # a plain get of several keys
                    events.append(fast)
                    continue
            else:
                if end - pos < binary.HEADER_SIZE:
                    break
                parsed = binary.parse_header(src, pos, max_value_size)
                pos += binary.HEADER_SIZE
            if isinstance(parsed, Block):
                self._block = parsed
            elif isinstance(parsed, Skip):
                self._skip = parsed
            else:
                events.append(parsed)
                if isinstance(parsed, Quit) or (isinstance(parsed, Error) and parsed.close):
                    self.closed = True
                    pos = end
                    break
        if self.closed:
            self._buf = bytearray()
        elif src is buf:
            del buf[:pos]
        elif pos < len(src):
            self._buf = bytearray(memoryview(src)[pos:])
        return events

    def _discard(self, src: bytes | bytearray, pos: int, end: int, events: list[Event]) -> int:
        """Drop the bytes being skipped from ``src[pos:end]``, with the error once they are all gone;
        return where reading goes on (``end`` while still discarding)."""
        skip = self._skip
        if skip is not None:
            if end - pos < skip.length:
                skip.length -= end - pos
                return end
            self._skip = None
            events.append(skip.error)
            return pos + skip.length
        newline = src.find(b"\n", pos, end)
        if newline < 0:
            return end
        self._long_line = False
        events.append(Error(text.LINE_TOO_LONG))
        return newline + 1

    def _complete(self, block: Block, src: bytes | bytearray, start: int, stop: int) -> Event:
        if block.terminated:
            if src[stop - 2] != 13 or src[stop - 1] != 10:
                # memcached reads exactly the announced length plus two, and goes on after them
                return Error(text.BAD_DATA_CHUNK, noreply=block.noreply)
            stop -= 2
        # one copy either way: a bytes slice, or a buffer's bytes through a view
        return block.complete(src[start:stop] if type(src) is bytes else bytes(memoryview(src)[start:stop]))

    def _line_too_long(self, src: bytes | bytearray, start: int, stop: int, length: int, whole: bool) -> bool:
        """Whether a line of (at least) ``length`` bytes is over its limit: a retrieval's is larger. The
        answer is the same whether the line is ``whole`` or still coming, so that how the stream was cut
        into reads never changes the events."""
        if length > self.max_multiget_line:
            return True
        head = bytes(src[start : min(stop, start + _COMMAND_SCAN)])
        command, space, _ = head.lstrip(b" ").partition(b" ")
        if space:
            return command not in text.RETRIEVALS
        return whole or len(head) >= _COMMAND_SCAN  # else the command is not all in yet
