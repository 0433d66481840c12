"""Sans-IO codec for the Gearman binary protocol and the admin text lines sharing its port.

Bytes go in through ``Decoder.receive_data`` and come out as events ``(type, args)``; packets are built
here and nowhere else: ``encode`` (any packet), ``payload_pieces`` (a packet ending in a payload, large ones
not copied), ``error_packet``. No sockets, no reactor: the server's ``BinarySession``, the Python client
library and the load generator all use it.

The first byte of every packet decides its kind, as in gearmand: ``\\x00`` starts a 12-byte binary
header, anything else starts an admin text line ending in ``\\n``. A packet's arguments are taken only
from within its declared size (gearmand's parser may read past it); missing trailing arguments are empty.
"""

from __future__ import annotations

import struct

from protocols.binary.packets import ARG_COUNT_BY_TYPE, HEADER_SIZE, MAX_TYPE, REQ, RES, Packet

#: Largest packet body accepted by default. Big enough for real payloads (gearmand has no limit; the
#: tests move 8 MiB), small enough that one connection cannot make the server allocate gigabytes.
DEFAULT_MAX_PACKET_SIZE = 64 * 1024 * 1024

#: Longest admin text line. gearmand allows 8 words of any length; names rarely exceed a few hundred bytes.
DEFAULT_MAX_LINE = 8192

#: A packet with a body at least this large is gathered as the list of reads that carry it and joined
#: once, straight into its payload, when it is whole: one copy of a large payload instead of four
#: (append to a buffer, freeze it, slice the body, split the arguments).
LARGE_BODY = 65536

#: How far into a large body its leading arguments (handle, function, unique: short) are looked for.
_LARGE_PREFIX_SCAN = 4096

#: A payload at least this large is sent as a piece of its own after its packet's header and leading
#: arguments (sendmsg gathers them), instead of being copied into one joined packet.
JOIN_LIMIT = 65536

#: Event types beyond the packet numbers.
TEXT = Packet.TEXT  # args: [line without its "\n" or "\r\n"]
WRONG_MAGIC = -1  # a well-formed packet with the other side's magic; args: [type as decimal bytes]
FATAL = -2  # the stream cannot be parsed any further; args: [error code, text]; the decoder is dead

_HEADER = struct.Struct(">4sII")
#: ``pack_header(magic, type, body size)``: the 12-byte header; the one packer of every packet built here.
pack_header = _pack_header = _HEADER.pack
_unpack_header = _HEADER.unpack_from

Event = tuple[int, list[bytes]]

#: A dead decoder's buffer: empty, so that nothing counts it as buffered bytes, and never appended to.
_DEAD = bytearray()


class Decoder:
    """Turns a byte stream into events. One per connection; ``expect`` is the magic this side receives."""

    __slots__ = (
        "_buf",
        "_expect",
        "max_packet_size",
        "max_line",
        "_large",
        "wanted",
        "shared",
        "pending",
    )

    def __init__(
        self,
        expect: bytes = REQ,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        max_line: int = DEFAULT_MAX_LINE,
    ) -> None:
        self._buf: bytearray | None = None  # an incomplete packet or line (made when there is one)
        self._expect = expect
        self.max_packet_size = max_packet_size
        self.max_line = max_line
        self._large: list[bytes | memoryview] | None = None  # the reads of an incomplete large packet
        #: Bytes still missing from the large packet being received (0: none is): a reader may ask for
        #: that much in one read.
        self.wanted = 0
        #: Set by a reader that feeds many streams to this decoder while they send whole packets, and moves
        #: a stream's leftover (``pending``) to a decoder of its own (``detach``) after each ``receive_data``.
        self.shared = False
        #: Whether this decoder holds state of its stream: part of a packet or line, or its death. One that
        #: does not can serve any stream next (``detach``). Kept, not worked out: it is read after every read.
        self.pending = False

    @property
    def dead(self) -> bool:
        """After a fatal error: the stream cannot be parsed any further."""
        return self._buf is _DEAD

    def detach(self) -> Decoder:
        """A new decoder that carries on this one's stream (its partial packet or line, or its death); this
        one is left as new. Many streams can share one decoder while they send whole packets, and only a
        stream that left part of one behind takes a decoder of its own (thousands of idle workers)."""
        other = Decoder(self._expect, self.max_packet_size, self.max_line)
        other._buf, other._large, other.wanted, other.pending = self._buf, self._large, self.wanted, self.pending
        self._buf = self._large = None
        self.wanted = 0
        self.pending = False
        return other

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete packet or line."""
        return (len(self._buf) if self._buf else 0) + (sum(map(len, self._large)) if self._large else 0)

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse every complete packet and line in ``data`` (plus what was left over) in one pass."""
        if self._buf is _DEAD:
            return []
        if type(data) is not bytes:
            data = bytes(data)  # kept beyond this call: must not change under us (a reused read buffer)
        events: list[Event] = []
        if self._large is not None:
            need = self.wanted
            if len(data) < need:
                self._large.append(data)
                self.wanted = need - len(data)
                return events
            self._large.append(data if len(data) == need else memoryview(data)[:need])
            events.append(self._large_packet())
            if len(data) == need:
                return events
            data = data[need:]
        buf = self._buf
        if not buf and not events and len(data) >= HEADER_SIZE and not data[0]:
            # the common case, one whole request per read: no loop, no slicing bookkeeping
            magic, ptype, size = _unpack_header(data, 0)
            if size + HEADER_SIZE == len(data) and magic == self._expect and 0 < ptype < MAX_TYPE:
                if size <= self.max_packet_size:
                    argc = ARG_COUNT_BY_TYPE[ptype]
                    if argc == 0:
                        return [(ptype, [])]
                    if argc == 1:
                        return [(ptype, [data[HEADER_SIZE:]])]
                    args = data[HEADER_SIZE:].split(b"\x00", argc - 1)
                    if len(args) < argc:
                        args.extend([b""] * (argc - len(args)))
                    return [(ptype, args)]
        if buf:
            buf += data
            if not self._first_complete(buf):
                if self._is_large(buf, 0):  # a large packet whose header came in pieces
                    self._start_large(bytes(buf), 0)
                    self._buf = None
                return events
            src = bytes(buf)
            self._buf = None
            self.pending = False  # until what is left over is kept
        else:
            src = data
        append = events.append
        pos = 0
        end_of_data = len(src)
        argc_by_type = ARG_COUNT_BY_TYPE
        expect = self._expect
        max_line = self.max_line
        max_size = self.max_packet_size
        max_type = MAX_TYPE
        while pos < end_of_data:
            if not src[pos] and end_of_data - pos >= HEADER_SIZE:
                # a binary packet: the usual one first (right magic, known type, size in bounds)
                magic, ptype, size = _unpack_header(src, pos)
                if magic == expect and 0 < ptype < max_type and size <= max_size:
                    start = pos + HEADER_SIZE
                    end = start + size
                    if end > end_of_data:
                        break
                    pos = end
                    argc = argc_by_type[ptype]
                    if argc == 0:
                        append((ptype, []))
                    elif argc == 1:
                        append((ptype, [src[start:end]]))
                    else:
                        args = src[start:end].split(b"\x00", argc - 1)
                        if len(args) < argc:
                            args.extend([b""] * (argc - len(args)))
                        append((ptype, args))
                    continue
            if src[pos]:
                newline = src.find(b"\n", pos, pos + max_line + 2)
                if newline < 0:
                    if end_of_data - pos > max_line + 1:
                        append(self._fatal(b"LINE_TOO_LONG", b"Admin command line too long"))
                    break
                line_end = newline - 1 if newline > pos and src[newline - 1] == 13 else newline
                if line_end - pos > max_line:
                    append(self._fatal(b"LINE_TOO_LONG", b"Admin command line too long"))
                    break
                append((TEXT, [src[pos:line_end]]))
                pos = newline + 1
                continue
            if end_of_data - pos < HEADER_SIZE:
                break
            magic, ptype, size = _unpack_header(src, pos)
            if magic != REQ and magic != RES:
                append(self._fatal(b"INVALID_MAGIC", b"Invalid magic in packet header"))
                break
            if ptype == 0 or ptype >= MAX_TYPE:
                append(self._fatal(b"INVALID_COMMAND", b"Invalid command expected"))
                break
            if size > max_size:
                append(
                    self._fatal(
                        b"ARGUMENT_TOO_LARGE",
                        b"Packet of %d bytes exceeds the limit of %d bytes" % (size, max_size),
                    )
                )
                break
            end = pos + HEADER_SIZE + size
            if end > end_of_data:
                break
            pos = end  # well formed, with the other side's magic (the usual packet was taken above)
            append((WRONG_MAGIC, [b"%d" % ptype]))
        if self._buf is not _DEAD and pos < end_of_data:
            self._keep(src, pos)
        return events

    def _keep(self, src: bytes, pos: int) -> None:
        """Keep the incomplete tail of ``src`` from ``pos``: a large packet as its reads, the rest copied."""
        self.pending = True
        if self._is_large(src, pos):
            self._start_large(src, pos)
        else:  # the buffer was consumed into ``src``: this is all that is left over
            self._buf = bytearray(memoryview(src)[pos:])

    def _is_large(self, src: bytes | bytearray, pos: int) -> bool:
        """Whether a well-formed header at ``pos`` announces a large body."""
        if len(src) - pos < HEADER_SIZE or src[pos]:
            return False
        magic, ptype, size = _unpack_header(src, pos)
        return (magic == REQ or magic == RES) and 0 < ptype < MAX_TYPE and LARGE_BODY <= size <= self.max_packet_size

    def _start_large(self, src: bytes, pos: int) -> None:
        self.pending = True
        self._large = [memoryview(src)[pos:] if pos else src]
        self.wanted = HEADER_SIZE + _unpack_header(src, pos)[2] - (len(src) - pos)

    def _large_packet(self) -> Event:
        """The large packet whose reads are all in: its leading arguments from the first read, the payload
        joined from all of them in one copy."""
        chunks = self._large
        assert chunks is not None
        self._large = None
        self.pending = False  # until what follows it in the last read is kept
        self.wanted = 0
        first = chunks[0]
        magic, ptype, size = _unpack_header(first, 0)
        if magic != self._expect:
            return (WRONG_MAGIC, [b"%d" % ptype])
        argc = ARG_COUNT_BY_TYPE[ptype]
        if argc == 0:
            return (ptype, [])
        head = bytes(memoryview(first)[HEADER_SIZE : HEADER_SIZE + _LARGE_PREFIX_SCAN])
        fields = head.split(b"\x00", argc - 1)
        if len(fields) == argc:  # every separator lies within the scanned head: the usual case
            args = fields[:-1]
            start = HEADER_SIZE + len(head) - len(fields[-1])
            args.append(b"".join([memoryview(first)[start:], *chunks[1:]]))
            return (ptype, args)
        whole = b"".join(chunks)[HEADER_SIZE:]  # separators far into the body: rare, so the simple way
        args = whole.split(b"\x00", argc - 1)
        if len(args) < argc:
            args.extend([b""] * (argc - len(args)))
        return (ptype, args)

    def _first_complete(self, buf: bytearray) -> bool:
        """Whether the buffer holds at least one whole packet or line (or an error to report)."""
        if buf[0]:
            return buf.find(b"\n") >= 0 or len(buf) > self.max_line + 1
        if len(buf) < HEADER_SIZE:
            return False
        magic, ptype, size = _unpack_header(buf, 0)
        if size > self.max_packet_size or (magic != REQ and magic != RES) or not 0 < ptype < MAX_TYPE:
            return True  # an error to report now, not after a body that will never be read
        return len(buf) >= HEADER_SIZE + size

    def _fatal(self, code: bytes, text: bytes) -> Event:
        self._buf = _DEAD
        self.pending = True
        return (FATAL, [code, text])


def encode(ptype: int, *args: bytes, magic: bytes = RES) -> bytes:
    """One packet: header plus arguments joined by NULs (the last one unterminated)."""
    body = b"\x00".join(args)
    return _pack_header(magic, ptype, len(body)) + body


def encode_request(ptype: int, *args: bytes) -> bytes:
    return encode(ptype, *args, magic=REQ)


def header(ptype: int, size: int, magic: bytes = RES) -> bytes:
    """A bare header, for a body written in pieces."""
    return _pack_header(magic, ptype, size)


def payload_pieces(ptype: int, args: tuple[bytes, ...], magic: bytes = RES) -> tuple[bytes, ...]:
    """A packet whose last argument is a payload (WORK_COMPLETE, JOB_ASSIGN, ...), as the pieces to write:
    one joined packet, or for a payload of ``JOIN_LIMIT`` bytes or more the header with the leading
    arguments, then the payload itself, never copied."""
    data = args[-1]
    if len(data) < JOIN_LIMIT:
        body = b"\x00".join(args)
        return (_pack_header(magic, ptype, len(body)) + body,)
    head = b"\x00".join(args[:-1]) + b"\x00" if len(args) > 1 else b""
    return (_pack_header(magic, ptype, len(head) + len(data)) + head, data)


def error_packet(code: bytes | str, text: bytes | str) -> bytes:
    """ERROR with gearmand's code (``QUEUE_ERROR``) and text; ``str`` as the scheduler's errors carry them."""
    if type(code) is str:
        code = code.encode()
    if type(text) is str:
        text = text.encode()
    return encode(Packet.ERROR, code, text)  # type: ignore[arg-type]


NOOP = encode(Packet.NOOP)
NO_JOB = encode(Packet.NO_JOB)


def split_admin_words(line: bytes, max_words: int = 8) -> list[bytes]:
    """Admin words as gearmand splits them: on spaces only, runs collapsed, at most ``max_words``."""
    return [w for w in line.split(b" ") if w][:max_words]
