"""The sans-IO memcached codec: text, meta and binary requests to events, replies to bytes.

No sockets and no reactor. Three kinds of checks:
- transcripts recorded from a real memcached 1.6.18 (``memcached_transcripts``): the same bytes go into
  a miniature memcached built on the codec (``memcached_model``) and must come out byte for byte, in
  one read and cut into many;
- the events of each command as clients send them (pymemcache, the libmemcached tools, meta-memcache,
  php-memcached), and the limits: over-long keys, lines and values, values skipped without being held;
- hypothesis: requests encoded as a client would decode to the same events, whatever the cuts; any bytes
  at all never raise, never loop, and give the same events in one piece as byte by byte.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.memcached import binary, meta, replies, text
from protocols.memcached import opcodes as op
from protocols.memcached.codec import Decoder, as_event
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
from protocols.memcached.limits import DEFAULT_MAX_LINE, DEFAULT_MAX_VALUE_SIZE, MAX_KEY_LENGTH
from protocols.memcached.reads import Block
from protocols.memcached.replies import DeleteOutcome, Item, StoreOutcome
from tests.unit import memcached_transcripts as transcripts
from tests.unit.memcached_model import MiniMemcached

HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def decode(data: bytes, **options: int) -> list[Event]:
    return Decoder(**options).receive_data(data)


def decode_in_pieces(data: bytes, cuts: list[int], **options: int) -> list[Event]:
    """Feed ``data`` cut at ``cuts`` (any order; duplicates give empty reads)."""
    decoder = Decoder(**options)
    events: list[Event] = []
    start = 0
    for cut in sorted(cuts) + [len(data)]:
        events.extend(decoder.receive_data(data[start:cut]))
        start = cut
    return events


def byte_by_byte(data: bytes, **options: int) -> list[Event]:
    decoder = Decoder(**options)
    events: list[Event] = []
    for i in range(len(data)):
        events.extend(decoder.receive_data(data[i : i + 1]))
    return events


def answer(data: bytes, piece: int | None = None) -> tuple[bytes, bool]:
    """What the miniature memcached answers to ``data`` (fed ``piece`` bytes at a time), and whether it
    closed the connection."""
    server = MiniMemcached()
    if piece is None:
        return server.feed(data), server.closed
    out = [server.feed(data[i : i + piece]) for i in range(0, len(data), piece)]
    return b"".join(out), server.closed


def req(opcode: int, key: bytes = b"", extras: bytes = b"", value: bytes = b"", opaque: int = 0, cas: int = 0):
    return binary.request(opcode, key=key, extras=extras, value=value, opaque=opaque, cas=cas)


# ---------------------------------------------------------------------------- transcripts of memcached 1.6.18

TRANSCRIPTS = [
    pytest.param(data, replies_[name], id=f"{group.lower()}-{name}")
    for group in ("TEXT", "META", "BINARY")
    for name, data in getattr(transcripts, group)
    for replies_ in [getattr(transcripts, group + "_REPLIES")]
]


@pytest.mark.parametrize(("request_", "expected"), TRANSCRIPTS)
def test_answers_as_memcached_does(request_: bytes, expected: tuple[bytes, bool]) -> None:
    assert answer(request_) == expected


@pytest.mark.parametrize(("request_", "expected"), TRANSCRIPTS)
def test_answers_the_same_whatever_the_reads(request_: bytes, expected: tuple[bytes, bool]) -> None:
    """Byte by byte for the short transcripts; 65,536-byte reads, then 7-byte ones, for the megabyte ones."""
    if len(request_) < 4096:
        assert answer(request_, 1) == expected
    else:
        assert answer(request_, 65536) == expected
        assert answer(request_[:100_000], 7) == answer(request_[:100_000])


def test_every_transcript_has_its_recorded_answer() -> None:
    for group in ("TEXT", "META", "BINARY"):
        names = [name for name, _ in getattr(transcripts, group)]
        assert len(names) == len(set(names))
        assert set(names) == set(getattr(transcripts, group + "_REPLIES"))


@pytest.mark.parametrize("case", transcripts.DIFFERENCES, ids=[d.name for d in transcripts.DIFFERENCES])
def test_differs_from_memcached_only_where_meant(case: transcripts.Difference) -> None:
    assert case.ours != case.memcached, "no longer a difference: move it to the transcripts"
    assert answer(case.request) == case.ours
    if len(case.request) < 4096:
        assert answer(case.request, 1) == case.ours


# ---------------------------------------------------------------------------- text commands to events


def test_storage_commands() -> None:
    assert decode(b"set k 16 0 5\r\nhello\r\n") == [Store("set", b"k", 16, 0, b"hello")]
    assert decode(b"add k 0 10 0\r\n\r\n") == [Store("add", b"k", 0, 10, b"")]
    assert decode(b"replace k 1 -1 1 noreply\r\nx\r\n") == [Store("replace", b"k", 1, -1, b"x", noreply=True)]
    assert decode(b"append k 0 0 1\r\nx\r\nprepend k 0 0 1\r\ny\r\n") == [
        Store("append", b"k", 0, 0, b"x"),
        Store("prepend", b"k", 0, 0, b"y"),
    ]
    assert decode(b"cas k 0 0 1 18446744073709551615 noreply\r\nx\r\n") == [
        Store("cas", b"k", 0, 0, b"x", noreply=True, cas=2**64 - 1)
    ]


def test_values_are_bytes_of_the_announced_length() -> None:
    data = b"\x00\r\n\xffset x 0 0 1\r\nEND\r\n"
    assert decode(b"set k 0 0 %d\r\n%b\r\nget k\r\n" % (len(data), data)) == [
        Store("set", b"k", 0, 0, data),
        Get((b"k",)),
    ]


def test_pymemcache_sends_noreply_by_default() -> None:
    """pymemcache: ``set(key, "text")`` is ``set key 16 0 4 noreply`` (16: its text flag)."""
    assert decode(b"set reverse/u1 16 0 4 noreply\r\ntext\r\n") == [
        Store("set", b"reverse/u1", 16, 0, b"text", noreply=True)
    ]


#: What pymemcache 4.0 sent for set/get/get_many/gets/cas/add/replace/append/delete/touch/incr/decr/
#: version/stats/flush_all/quit with its default noreply, captured on a loopback socket.
PYMEMCACHE_STREAM = (
    b"set reverse/u1 0 0 5 noreply\r\nhello\r\nset bin 0 0 4 noreply\r\n\x00\r\n\xff\r\nget reverse/u1\r\n"
    b"get bin\r\nget nope\r\nget reverse/u1 bin nope\r\ngets reverse/u1\r\ncas reverse/u1 0 0 1 1\r\nx\r\n"
    b"cas reverse/u1 0 0 1 1\r\ny\r\nadd reverse/u1 0 0 1\r\nz\r\nreplace nope 0 0 1\r\nz\r\n"
    b"append bin 0 0 1\r\na\r\ndelete bin\r\ndelete bin\r\ntouch reverse/u1 10\r\nincr nope 1\r\n"
    b"set n 0 0 1\r\n5\r\nincr n 3\r\ndecr n 10\r\nversion\r\nstats\r\nflush_all 0\r\nflush_all 0 noreply\r\n"
    b"quit\r\n"
)


def test_pymemcache_traffic() -> None:
    events = decode(PYMEMCACHE_STREAM)
    assert not [e for e in events if isinstance(e, Error)]
    assert [type(e).__name__ for e in events] == (
        ["Store"] * 2
        + ["Get"] * 5
        + ["Store"] * 5
        + ["Delete"] * 2
        + ["Touch", "Arithmetic", "Store"]
        + ["Arithmetic"] * 2
        + ["Version", "Stats", "FlushAll", "FlushAll", "Quit"]
    )
    assert events[1] == Store("set", b"bin", 0, 0, b"\x00\r\n\xff", noreply=True)
    assert events[6] == Get((b"reverse/u1",), with_cas=True)
    assert answer(PYMEMCACHE_STREAM) == answer(PYMEMCACHE_STREAM, 1)


def test_memcexist_adds_an_empty_item_with_an_absolute_time() -> None:
    assert decode(b"add KEY 0 2678400 0\r\n\r\n") == [Store("add", b"KEY", 0, 2678400, b"")]


def test_retrievals() -> None:
    assert decode(b"get a b a\r\n") == [Get((b"a", b"b", b"a"))]
    assert decode(b"gets a\r\n") == [Get((b"a",), with_cas=True)]
    assert decode(b"gat 10 a b\r\ngats -1 a\r\n") == [
        Get((b"a", b"b"), exptime=10),
        Get((b"a",), with_cas=True, exptime=-1),
    ]
    assert decode(b"gat 10\r\n") == [Get((), exptime=10)]  # memcached answers END
    assert decode(b"get reverse/u1/t=500\r\n") == [Get((b"reverse/u1/t=500",))]  # the key exactly as sent


def test_other_commands() -> None:
    assert decode(b"delete k\r\ndelete k noreply\r\ndelete k 0\r\ndelete k 0 noreply\r\n") == [
        Delete(b"k"),
        Delete(b"k", noreply=True),
        Delete(b"k"),
        Delete(b"k", noreply=True),
    ]
    assert decode(b"touch k 10\r\ntouch k 0 noreply\r\n") == [Touch(b"k", 10), Touch(b"k", 0, noreply=True)]
    assert decode(b"incr k 5\r\ndecr k 18446744073709551615 noreply\r\n") == [
        Arithmetic(b"k", 5, decrement=False),
        Arithmetic(b"k", 2**64 - 1, decrement=True, noreply=True),
    ]
    assert decode(b"version\r\nverbosity 1\r\nverbosity 0 noreply\r\nstats\r\nstats gearman\r\n") == [
        Version(),
        Verbosity(1),
        Verbosity(0, noreply=True),
        Stats(),
        Stats((b"gearman",)),
    ]


def test_flush_all_as_clients_send_it() -> None:
    """memcflush sends ``flush_all `` (trailing space), Cache::Memcached::Fast ``flush_all 0``."""
    assert decode(b"flush_all\r\nflush_all \r\nflush_all 0\r\nflush_all 30\r\nflush_all noreply\r\n") == [
        FlushAll(),
        FlushAll(),
        FlushAll(0),
        FlushAll(30),
        FlushAll(0, noreply=True),
    ]
    assert decode(b"flush_all 10 noreply\r\n") == [FlushAll(10, noreply=True)]


def test_quit_ends_the_stream() -> None:
    decoder = Decoder()
    assert decoder.receive_data(b"version\r\nquit\r\nversion\r\n") == [Version(), Quit()]
    assert decoder.closed
    assert decoder.receive_data(b"version\r\n") == []


def test_errors_carry_memcacheds_words() -> None:
    assert decode(b"bogus\r\n") == [Error(b"ERROR\r\n")]
    assert decode(b"get " + b"k" * 251 + b"\r\n") == [Error(b"CLIENT_ERROR bad command line format\r\n")]
    assert decode(b"set k 0 0 1\r\nxy\r\n") == [Error(b"CLIENT_ERROR bad data chunk\r\n"), Error(b"ERROR\r\n")]
    assert decode(b"touch k x noreply\r\n") == [Error(b"CLIENT_ERROR invalid exptime argument\r\n", noreply=True)]
    assert decode(b"incr k -1\r\n") == [Error(b"CLIENT_ERROR invalid numeric delta argument\r\n")]
    assert decode(b"delete k 5\r\n") == [
        Error(b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n")
    ]


def test_keys_up_to_250_bytes_without_control_characters() -> None:
    key = b"k" * MAX_KEY_LENGTH
    assert decode(b"get " + key + b"\r\n") == [Get((key,))]
    assert decode(b"get caf\xc3\xa9\r\n") == [Get((b"caf\xc3\xa9",))]  # UTF-8 is fine
    for bad in (b"a\tb", b"a\x00b", b"a\x7fb", b"a\rb", b"k" * 251):
        assert decode(b"get " + bad + b"\r\n") == [Error(text.BAD_FORMAT)], bad
        assert decode(b"set " + bad + b" 0 0 1\r\nx\r\nversion\r\n") == [Error(text.BAD_FORMAT), Version()], bad


def test_a_refused_storage_line_skips_its_data() -> None:
    """Its data is never read as commands: a payload must not run as one (memcached would run it)."""
    events = decode(b"set k 0 -x 9\r\nflush_all\r\nversion\r\n")
    assert events == [Error(text.BAD_FORMAT), Version()]
    # without a length to trust, the next line is a command again (as in memcached)
    assert decode(b"set k 0 0 x\r\nversion\r\n") == [Error(text.BAD_FORMAT), Version()]


# ---------------------------------------------------------------------------- meta commands to events


def test_meta_get_as_meta_memcache_sends_it() -> None:
    assert decode(b"mg reverse/u1 f v t l h c\r\n") == [
        MetaGet(
            b"reverse/u1",
            (("f", b""), ("v", b""), ("t", b""), ("l", b""), ("h", b""), ("c", b"")),
            return_value=True,
        )
    ]


def test_meta_get_flags() -> None:
    (event,) = decode(b"mg k v q k Oab T30 N5 R10 u s\r\n")
    assert event == MetaGet(
        b"k",
        (
            ("v", b""),
            ("q", b""),
            ("k", b""),
            ("O", b"ab"),
            ("T", b"30"),
            ("N", b"5"),
            ("R", b"10"),
            ("u", b""),
            ("s", b""),
        ),
        quiet=True,
        return_value=True,
        ttl=30,
        vivify=5,
        recache=10,
        no_bump=True,
    )


def test_base64_keys() -> None:
    """meta-memcache base64-encodes keys with spaces or non-ASCII bytes and sends ``b``."""
    key = "a key with spaces é".encode()
    encoded = base64.b64encode(key)
    (event,) = decode(b"mg %b b v\r\n" % encoded)
    assert event == MetaGet(key, (("b", b""), ("v", b"")), base64=True, return_value=True)
    assert meta.miss(MetaGet(key, (("k", b""), ("b", b"")), base64=True)) == b"EN k%b b\r\n" % encoded
    (event,) = decode(b"ms %b 2 b T0 F16\r\nhi\r\n" % encoded)
    assert event == MetaSet(key, b"hi", (("b", b""), ("T", b"0"), ("F", b"16")), base64=True, client_flags=16)
    assert decode(b"md %b b q\r\n" % encoded) == [MetaDelete(key, (("b", b""), ("q", b"")), base64=True, quiet=True)]
    # a base64 key may hold any byte; a plain one may not
    assert decode(b"mg %b b\r\n" % base64.b64encode(b"\x00\t\n")) == [MetaGet(b"\x00\t\n", (("b", b""),), base64=True)]
    assert decode(b"mg a\tb\r\n") == [Error(meta.BAD_FORMAT)]


def test_meta_set_modes_and_flags() -> None:
    (event,) = decode(b"ms k 3 MA C5 I N30 q c k O1\r\nabc\r\n")
    assert event.command == "append"
    assert (event.mode, event.compare_cas, event.invalidate, event.vivify, event.quiet) == ("A", 5, True, 30, True)
    assert [decode(b"ms k 0 M%b\r\n\r\n" % m)[0].command for m in (b"S", b"E", b"A", b"P", b"R")] == [
        "set",
        "add",
        "append",
        "prepend",
        "replace",
    ]


def test_meta_delete_and_noop() -> None:
    assert decode(b"md k q C7 I T30 x\r\nmn\r\n") == [
        MetaDelete(
            b"k",
            (("q", b""), ("C", b"7"), ("I", b""), ("T", b"30"), ("x", b"")),
            quiet=True,
            compare_cas=7,
            invalidate=True,
            ttl=30,
            remove_value=True,
        ),
        MetaNoop(),
    ]


def test_meta_errors() -> None:
    assert decode(b"mg k v v\r\n") == [Error(b"CLIENT_ERROR duplicate flag\r\n")]
    assert decode(b"mg k x\r\n") == [Error(b"CLIENT_ERROR invalid flag\r\n")]
    assert decode(b"md k x x\r\n") == [Error(b"CLIENT_ERROR invalid or duplicate flag\r\n")]
    assert decode(b"mg k Tx Mab\r\n") == [Error(b"CLIENT_ERROR incorrect length for M token\r\n")]  # the last wins
    assert decode(b"mg k O" + b"o" * 32 + b"\r\n") == [Error(b"CLIENT_ERROR opaque token too long\r\n")]
    assert decode(b"ma k\r\nme k\r\n") == [Error(b"ERROR\r\n"), Error(b"ERROR\r\n")]


# ---------------------------------------------------------------------------- binary requests to events


def test_binary_requests() -> None:
    se = binary.store_extras
    stream = b"".join(
        [
            req(op.SET, b"k", se(16, 30), b"v", opaque=1),
            req(op.ADDQ, b"k", se(0, 0), b"", opaque=2),
            req(op.REPLACE, b"k", se(1, 2), b"w", cas=9),
            req(op.APPENDQ, b"k", value=b"x"),
            req(op.GET, b"k", opaque=3),
            req(op.GETKQ, b"k", opaque=4),
            req(op.GATK, b"k", binary.exptime_extras(60)),
            req(op.TOUCH, b"k", binary.exptime_extras(5)),
            req(op.DELETEQ, b"k", cas=3),
            req(op.INCREMENT, b"c", binary.arithmetic_extras(2, 10, 0)),
            req(op.DECREMENTQ, b"c", binary.arithmetic_extras(1)),
            req(op.FLUSH, extras=binary.exptime_extras(7)),
            req(op.FLUSHQ),
            req(op.STAT, b"items"),
            req(op.STAT),
            req(op.VERSION, opaque=5),
            req(op.NOOP, opaque=6),
            req(op.QUITQ),
        ]
    )
    assert decode(stream) == [
        Store("set", b"k", 16, 30, b"v", opcode=op.SET, opaque=1),
        Store("add", b"k", 0, 0, b"", opcode=op.ADDQ, opaque=2),
        Store("replace", b"k", 1, 2, b"w", cas=9, opcode=op.REPLACE),
        Store("append", b"k", 0, 0, b"x", opcode=op.APPENDQ),
        Get((b"k",), opcode=op.GET, opaque=3),
        Get((b"k",), opcode=op.GETKQ, opaque=4),
        Get((b"k",), exptime=60, opcode=op.GATK),
        Touch(b"k", 5, opcode=op.TOUCH),
        Delete(b"k", cas=3, opcode=op.DELETEQ),
        Arithmetic(b"c", 2, decrement=False, initial=10, exptime=0, opcode=op.INCREMENT),
        Arithmetic(b"c", 1, decrement=True, initial=None, exptime=binary.NO_CREATE, opcode=op.DECREMENTQ),
        FlushAll(7, opcode=op.FLUSH),
        FlushAll(0, opcode=op.FLUSHQ),
        Stats((b"items",), op.STAT),
        Stats((), op.STAT),
        Version(op.VERSION, 5),
        Noop(opaque=6),
        Quit(op.QUITQ),
    ]


def test_php_memcached_getkq_batch_ends_with_noop() -> None:
    """php-memcached (binary) pipelines GETKQ per key and a NOOP; hits come back with their keys, misses
    not at all, then the NOOP's answer."""
    events = decode(req(op.GETKQ, b"a", opaque=1) + req(op.GETKQ, b"b", opaque=2) + req(op.NOOP, opaque=3))
    assert [type(e) for e in events] == [Get, Get, Noop]
    hit = replies.get_reply(events[0], [Item(b"A", flags=16, cas=7)])
    assert hit == binary.response(op.GETKQ, opaque=1, cas=7, extras=b"\x00\x00\x00\x10", key=b"a", value=b"A")
    assert replies.get_reply(events[1], [None]) == b""
    assert replies.noop_reply(events[2]) == binary.response(op.NOOP, opaque=3)


def test_memccat_binary_uses_getk() -> None:
    (event,) = decode(req(op.GETK, b"reverse/u1", opaque=9))
    assert event.return_key and not event.quiet
    assert replies.get_reply(event, [None]) == binary.response(op.GETK, op.KEY_ENOENT, opaque=9, key=b"reverse/u1")


def test_the_first_byte_chooses_the_protocol_for_good() -> None:
    decoder = Decoder()
    assert decoder.receive_data(req(op.NOOP)) == [Noop()]
    assert decoder.protocol == "binary"
    # on a binary connection text is a bad header: answered, then the connection is closed
    (error,) = decoder.receive_data(b"version\r\n" + b"\x00" * 15)
    assert error.close and error.reply == binary.error_response(ord("e"), op.EINVAL)
    decoder = Decoder()
    assert decoder.receive_data(b"version\r\n") == [Version()]
    assert decoder.protocol == "text"
    assert decoder.receive_data(req(op.NOOP)) == [Error(b"ERROR\r\n")]  # its 0x0a ends a "line"


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (binary.HEADER.pack(0x80, op.GET, 5, 0, 0, 0, 4, 0, 0), op.UNKNOWN_COMMAND),  # key beyond the body
        (binary.HEADER.pack(0x80, op.GET, 251, 0, 0, 0, 251, 0, 0), op.EINVAL),  # key too long
        (binary.HEADER.pack(0x80, op.SET, 1, 4, 0, 0, 6, 0, 0), op.EINVAL),  # set without its 8 bytes of extras
        (binary.HEADER.pack(0x80, op.GET, 1, 0, 0, 0, 2, 0, 0), op.EINVAL),  # get with a value
        (binary.HEADER.pack(0x80, op.NOOP, 0, 0, 0, 0, 1, 0, 0), op.EINVAL),  # noop with a body
        (binary.HEADER.pack(0x81, op.GET, 1, 0, 0, 0, 1, 0, 0), op.EINVAL),  # a response's magic
    ],
)
def test_garbage_binary_headers_close_the_connection(header: bytes, status: int) -> None:
    decoder = Decoder()
    events = decoder.receive_data(req(op.NOOP) + header + b"\x00" * 300 + req(op.NOOP))
    assert events == [Noop(), Error(binary.error_response(header[1], status), close=True)]
    assert decoder.closed and decoder.buffered == 0
    assert decoder.receive_data(req(op.NOOP)) == []


def test_binary_keys_may_hold_any_byte() -> None:
    key = bytes(range(250))
    assert decode(req(op.GET, key)) == [Get((key,), opcode=op.GET)]


# ---------------------------------------------------------------------------- limits


def test_a_value_over_the_limit_is_skipped_as_it_arrives_never_held() -> None:
    decoder = Decoder(max_value_size=1000)
    assert decoder.receive_data(b"set k 0 0 1000\r\n" + b"x" * 1000 + b"\r\n") == [
        Store("set", b"k", 0, 0, b"x" * 1000)
    ]
    size = 50 * 1024 * 1024
    assert decoder.receive_data(b"set k 0 0 %d\r\n" % size) == []
    chunk = b"z" * 65536
    for _ in range(size // len(chunk)):
        assert decoder.receive_data(chunk) == []
        assert decoder.buffered == 0
    assert decoder.receive_data(b"\r\nversion\r\n") == [Error(text.TOO_LARGE), Version()]


def test_a_binary_value_over_the_limit_is_skipped_too() -> None:
    decoder = Decoder(max_value_size=10)
    packet = req(op.SETQ, b"k", binary.store_extras(0, 0), b"v" * 11, opaque=4)
    events = []
    for i in range(0, len(packet), 5):
        events += decoder.receive_data(packet[i : i + 5])
        assert decoder.buffered <= binary.HEADER_SIZE
    assert events == [Error(binary.error_response(op.SETQ, op.E2BIG, 4))]
    assert decoder.receive_data(req(op.NOOP)) == [Noop()]


def test_the_default_value_limit_is_memcacheds() -> None:
    assert DEFAULT_MAX_VALUE_SIZE == 1024 * 1024
    events = decode(b"set k 0 0 1048576\r\n" + b"v" * 1048576 + b"\r\n")
    assert [type(e) for e in events] == [Store]
    assert decode(b"ms k 1048577\r\n" + b"v" * 1048577 + b"\r\n") == [Error(meta.TOO_LARGE)]


def test_a_line_over_the_limit_is_refused_and_dropped() -> None:
    decoder = Decoder()
    assert decoder.receive_data(b"set " + b"x" * DEFAULT_MAX_LINE) == []
    for _ in range(1000):  # no newline for a megabyte: nothing piles up
        assert decoder.receive_data(b"y" * 1024) == []
        assert decoder.buffered == 0
    assert decoder.receive_data(b"\r\nversion\r\n") == [Error(text.LINE_TOO_LONG), Version()]
    assert not decoder.closed
    # a line that is one long word is dropped as soon as it passes the limit, too
    assert decoder.receive_data(b"x" * (DEFAULT_MAX_LINE + 2)) == []
    assert decoder.buffered == 0


def test_the_line_limit_is_exact() -> None:
    for limit in (20, 200):
        fits = b"get " + b"k" * (limit - 4)
        assert decode(fits + b"\r\n", max_line=limit, max_multiget_line=limit) == [Get((fits[4:],))]
        assert byte_by_byte(fits + b"\r\n", max_line=limit, max_multiget_line=limit) == [Get((fits[4:],))]
        over = fits + b"k"
        assert decode(over + b"\r\n", max_line=limit, max_multiget_line=limit) == [Error(text.LINE_TOO_LONG)]
        assert byte_by_byte(over + b"\r\n", max_line=limit, max_multiget_line=limit) == [Error(text.LINE_TOO_LONG)]


def test_multigets_may_be_longer() -> None:
    keys = tuple(b"key%d" % i for i in range(2000))
    line = b"get " + b" ".join(keys) + b"\r\n"
    assert len(line) > DEFAULT_MAX_LINE
    assert decode(line) == [Get(keys)]
    assert byte_by_byte(b"   gets " + b" ".join(keys) + b"\r\n") == [Get(keys, with_cas=True)]
    assert decode(line, max_multiget_line=1000) == [Error(text.LINE_TOO_LONG)]
    assert decode(b"delete " + b" ".join(keys) + b"\r\n") == [Error(text.LINE_TOO_LONG)]


def test_a_long_line_in_small_reads_is_searched_once() -> None:
    """Each read is searched for the newline, not the whole line again: a megabyte multiget arriving
    a few bytes at a time costs linear work, not quadratic (the decoder notes how much of what it holds
    was searched already: all of it)."""
    keys = tuple(b"key%07d" % i for i in range(80_000))
    line = b"get " + b" ".join(keys) + b"\r\n"
    decoder = Decoder()
    events: list[Event] = []
    for i in range(0, len(line), 8):
        events += decoder.receive_data(line[i : i + 8])
        assert decoder._seen == decoder.buffered or events
    assert events == [Get(keys)]


def test_a_retrieval_is_known_before_its_command_is_all_in() -> None:
    """Leading spaces may push a multiget's command past ``max_line``: it still gets the larger limit,
    however the line is cut."""
    line = b" " * 12 + b"get " + b"k" * 20 + b"\r\n"
    assert decode(line, max_line=10, max_multiget_line=100) == [Get((b"k" * 20,))]
    assert byte_by_byte(line, max_line=10, max_multiget_line=100) == [Get((b"k" * 20,))]
    assert byte_by_byte(b" " * 200 + b"get k\r\n", max_line=10) == [Error(text.LINE_TOO_LONG)]


def test_half_a_value_waits_and_is_counted() -> None:
    decoder = Decoder()
    assert decoder.receive_data(b"set k 0 0 10\r\nabc") == []
    assert decoder.buffered == 3
    assert decoder.receive_data(b"defghij\r\n") == [Store("set", b"k", 0, 0, b"abcdefghij")]
    assert decoder.buffered == 0


# ---------------------------------------------------------------------------- replies


def test_value_lines_repeat_the_key_as_requested() -> None:
    event = Get((b"reverse/u1/t=500", b"miss", b"reverse/u1/t=500"), with_cas=True)
    item = Item(b"olleh", flags=16, cas=42)
    assert replies.get_reply(event, [item, None, item]) == (
        b"VALUE reverse/u1/t=500 16 5 42\r\nolleh\r\nVALUE reverse/u1/t=500 16 5 42\r\nolleh\r\nEND\r\n"
    )
    assert replies.get_reply(Get((b"a",)), [item]) == b"VALUE a 16 5\r\nolleh\r\nEND\r\n"
    assert replies.get_reply(Get((b"a",)), [None]) == b"END\r\n"


def test_noreply_silences_text_replies() -> None:
    assert replies.store_reply(Store("set", b"k", 0, 0, b"", noreply=True), StoreOutcome.STORED) == b""
    assert replies.delete_reply(Delete(b"k", noreply=True), DeleteOutcome.NOT_FOUND) == b""
    assert replies.touch_reply(Touch(b"k", 1, noreply=True), None) == b""
    assert replies.flush_reply(FlushAll(noreply=True)) == b""
    assert replies.error_reply(Store("set", b"k", 0, 0, b"", noreply=True), "queue down") == b""


def test_store_outcomes() -> None:
    event = Store("set", b"k", 0, 0, b"")
    assert [replies.store_reply(event, outcome) for outcome in StoreOutcome] == [
        b"STORED\r\n",
        b"NOT_STORED\r\n",
        b"EXISTS\r\n",
        b"NOT_FOUND\r\n",
    ]
    meta_event = MetaSet(b"k", b"", (("O", b"9"), ("k", b""), ("c", b"")))
    assert [replies.store_reply(meta_event, outcome, 5) for outcome in StoreOutcome] == [
        b"HD O9 kk c5\r\n",
        b"NS O9 kk c5\r\n",
        b"EX O9 kk c5\r\n",
        b"NF O9 kk c5\r\n",
    ]
    assert replies.store_reply(MetaSet(b"k", b"", quiet=True), StoreOutcome.STORED) == b""
    assert replies.store_reply(MetaSet(b"k", b"", quiet=True), StoreOutcome.NOT_STORED) == b"NS\r\n"


@pytest.mark.parametrize(
    ("opcode", "outcome", "status"),
    [
        (op.ADD, StoreOutcome.NOT_STORED, op.KEY_EEXISTS),
        (op.REPLACE, StoreOutcome.NOT_STORED, op.KEY_ENOENT),
        (op.APPEND, StoreOutcome.NOT_STORED, op.NOT_STORED),
        (op.SET, StoreOutcome.EXISTS, op.KEY_EEXISTS),
        (op.SETQ, StoreOutcome.NOT_FOUND, op.KEY_ENOENT),
    ],
)
def test_binary_store_statuses(opcode: int, outcome: StoreOutcome, status: int) -> None:
    event = Store(op.STORE_COMMANDS[opcode], b"k", 0, 0, b"", opcode=opcode, opaque=3)
    assert replies.store_reply(event, outcome) == binary.error_response(opcode, status, 3)


def test_quiet_binary_success_sends_nothing() -> None:
    assert replies.store_reply(Store("set", b"k", 0, 0, b"", opcode=op.SETQ), StoreOutcome.STORED) == b""
    assert replies.delete_reply(Delete(b"k", opcode=op.DELETEQ), DeleteOutcome.DELETED) == b""
    assert replies.flush_reply(FlushAll(opcode=op.FLUSHQ)) == b""
    assert replies.get_reply(Get((b"k",), opcode=op.GETQ), [None]) == b""
    assert replies.store_reply(Store("set", b"k", 0, 0, b"", opcode=op.SET, opaque=2), StoreOutcome.STORED, 8) == (
        binary.response(op.SET, opaque=2, cas=8)
    )


def test_meta_get_reply_flags_in_request_order() -> None:
    (event,) = decode(b"mg k s v t c f h l Oxy k q\r\n")
    item = Item(b"data", flags=16, cas=3, ttl=60, last_access=2, fetched=True)
    assert replies.meta_get_reply(event, item, won=True) == b"VA 4 s4 t60 c3 f16 h1 l2 Oxy kk W\r\ndata\r\n"
    assert replies.meta_get_reply(event, None) == b""  # q: a miss is silent
    (event,) = decode(b"mg k k Oxy\r\n")
    assert replies.meta_get_reply(event, None) == b"EN kk Oxy\r\n"
    assert replies.meta_get_reply(event, item, stale=True, win_sent=True) == b"HD kk Oxy Z X\r\n"


def test_stats_replies() -> None:
    stats = [("pid", 12), ("version", "0.1.0"), (b"curr_items", b"3")]
    assert replies.stats_reply(Stats(), stats) == (b"STAT pid 12\r\nSTAT version 0.1.0\r\nSTAT curr_items 3\r\nEND\r\n")
    assert replies.stats_reply(Stats((b"nope",)), None) == b"ERROR\r\n"
    event = Stats((), op.STAT, 7)
    assert replies.stats_reply(event, stats[:1]) == (
        binary.response(op.STAT, opaque=7, key=b"pid", value=b"12") + binary.response(op.STAT, opaque=7)
    )
    assert replies.stats_reply(event, None) == binary.error_response(op.STAT, op.KEY_ENOENT, 7)


def test_error_replies() -> None:
    assert replies.error_reply(Store("set", b"k", 0, 0, b""), "store down\r\nERROR") == (
        b"SERVER_ERROR store down  ERROR\r\n"
    )
    assert replies.error_reply(Delete(b"q"), "queue deletion disabled", client=True) == (
        b"CLIENT_ERROR queue deletion disabled\r\n"
    )
    assert replies.error_reply(MetaSet(b"k", b"", quiet=True), "store down") == b"SERVER_ERROR store down\r\n"
    assert replies.error_reply(Store("set", b"k", 0, 0, b"", opcode=op.SETQ, opaque=4), "store down") == (
        binary.response(op.SETQ, op.ENOMEM, opaque=4, value=b"store down")
    )


def test_other_replies() -> None:
    assert replies.version_reply(Version(), "1.0") == b"VERSION 1.0\r\n"
    assert replies.version_reply(Version(op.VERSION, 2), "1.0") == binary.response(op.VERSION, opaque=2, value=b"1.0")
    assert replies.verbosity_reply(Verbosity(1)) == b"OK\r\n"
    assert replies.noop_reply(MetaNoop()) == b"MN\r\n"
    assert replies.quit_reply(Quit()) == b""
    assert replies.quit_reply(Quit(op.QUITQ)) == b""
    assert replies.quit_reply(Quit(op.QUIT, 5)) == binary.response(op.QUIT, opaque=5)
    assert replies.arithmetic_reply(Arithmetic(b"c", 1, False), 8) == b"8\r\n"
    assert replies.arithmetic_reply(Arithmetic(b"c", 1, False), None, non_numeric=True) == text.NON_NUMERIC
    assert replies.arithmetic_reply(Arithmetic(b"c", 1, False, opcode=op.INCREMENT), 8, cas=2) == binary.response(
        op.INCREMENT, cas=2, value=binary.counter(8)
    )


# ---------------------------------------------------------------------------- hypothesis: round trips

TEXT_KEY_BYTES = [b for b in range(0x21, 0x100) if b != 0x7F]
text_keys = st.binary(min_size=1, max_size=MAX_KEY_LENGTH).map(
    lambda raw: bytes(TEXT_KEY_BYTES[b % len(TEXT_KEY_BYTES)] for b in raw)
)
any_keys = st.binary(min_size=1, max_size=MAX_KEY_LENGTH)
values = st.binary(max_size=300) | st.sampled_from([b"", b"\r\n", b"END\r\n", b"get x\r\n", b"\x80" * 24])
uint32 = st.integers(0, 2**32 - 1)
exptimes = st.integers(-(2**31), 2**31 - 1)
noreply = st.booleans()


def _noreply(flag: bool) -> bytes:
    return b" noreply" if flag else b""


@st.composite
def text_requests(draw: st.DrawFn) -> tuple[bytes, Event]:
    """One text request as a client writes it, and the event it must give."""
    kind = draw(st.sampled_from(["store", "cas", "get", "gat", "delete", "touch", "arith", "flush", "verbosity"]))
    key, quiet = draw(text_keys), draw(noreply)
    if kind == "store":
        command = draw(st.sampled_from(["set", "add", "replace", "append", "prepend"]))
        flags, exptime, value = draw(uint32), draw(exptimes), draw(values)
        line = b"%s %b %d %d %d%b\r\n%b\r\n" % (
            command.encode(),
            key,
            flags,
            exptime,
            len(value),
            _noreply(quiet),
            value,
        )
        return line, Store(command, key, flags, exptime, value, quiet)
    if kind == "cas":
        flags, exptime, value, unique = draw(uint32), draw(exptimes), draw(values), draw(st.integers(0, 2**64 - 1))
        line = b"cas %b %d %d %d %d%b\r\n%b\r\n" % (key, flags, exptime, len(value), unique, _noreply(quiet), value)
        return line, Store("cas", key, flags, exptime, value, quiet, unique)
    if kind in ("get", "gat"):
        keys = tuple(draw(st.lists(text_keys, min_size=1, max_size=5)))
        with_cas = draw(st.booleans())
        command = (b"gets" if with_cas else b"get") if kind == "get" else (b"gats" if with_cas else b"gat")
        exptime = draw(exptimes) if kind == "gat" else None
        middle = b"" if exptime is None else b" %d" % exptime
        return b"%b%b %b\r\n" % (command, middle, b" ".join(keys)), Get(keys, with_cas, exptime)
    if kind == "delete":
        return b"delete %b%b\r\n" % (key, _noreply(quiet)), Delete(key, quiet)
    if kind == "touch":
        exptime = draw(exptimes)
        return b"touch %b %d%b\r\n" % (key, exptime, _noreply(quiet)), Touch(key, exptime, quiet)
    if kind == "arith":
        delta, decrement = draw(st.integers(0, 2**64 - 1)), draw(st.booleans())
        command = b"decr" if decrement else b"incr"
        return b"%b %b %d%b\r\n" % (command, key, delta, _noreply(quiet)), Arithmetic(key, delta, decrement, quiet)
    if kind == "flush":
        delay = draw(st.none() | exptimes)
        middle = b"" if delay is None else b" %d" % delay
        return b"flush_all%b%b\r\n" % (middle, _noreply(quiet)), FlushAll(delay or 0, quiet)
    level = draw(uint32)
    return b"verbosity %d%b\r\n" % (level, _noreply(quiet)), Verbosity(level, quiet)


@st.composite
def meta_requests(draw: st.DrawFn) -> tuple[bytes, Event]:
    """One meta request as a client writes it (flags in a drawn order), and the event it must give."""
    kind = draw(st.sampled_from(["mg", "ms", "md", "mn"]))
    if kind == "mn":
        return b"mn\r\n", MetaNoop()
    use_base64 = draw(st.booleans())
    key = draw(st.binary(min_size=1, max_size=186)) if use_base64 else draw(text_keys)
    wire_key = base64.b64encode(key) if use_base64 else key
    plain = {"mg": "kfvtlhcsqu", "ms": "kcqI", "md": "kqIx"}[kind]
    numbers = {"mg": "TNR", "ms": "TFCN", "md": "TC"}[kind]
    flags = [(letter, b"") for letter in draw(st.lists(st.sampled_from(plain), unique=True))]
    for letter in draw(st.lists(st.sampled_from(numbers), unique=True)):
        flags.append((letter, b"%d" % draw(st.integers(0, 2**31 - 1))))
    if draw(st.booleans()):
        flags.append(("O", draw(st.binary(max_size=31).map(lambda b: bytes(0x21 + c % 94 for c in b)))))
    mode = draw(st.sampled_from("SEAPR")) if kind == "ms" and draw(st.booleans()) else None
    if mode is not None:
        flags.append(("M", mode.encode()))
    if use_base64:
        flags.append(("b", b""))
    flags = draw(st.permutations(flags))
    words = b"".join(b" " + letter.encode() + token for letter, token in flags)
    present = dict(flags)

    def number(letter: str) -> int | None:
        return int(present[letter]) if letter in present else None

    common = {"meta_flags": tuple(flags), "base64": use_base64, "quiet": "q" in present}
    if kind == "mg":
        event: Event = MetaGet(
            key,
            return_value="v" in present,
            ttl=number("T"),
            vivify=number("N"),
            recache=number("R"),
            no_bump="u" in present,
            **common,
        )
        return b"mg %b%b\r\n" % (wire_key, words), event
    if kind == "md":
        event = MetaDelete(
            key,
            compare_cas=number("C"),
            invalidate="I" in present,
            ttl=number("T"),
            remove_value="x" in present,
            **common,
        )
        return b"md %b%b\r\n" % (wire_key, words), event
    value = draw(values)
    event = MetaSet(
        key,
        value,
        mode=mode or "S",
        client_flags=number("F") or 0,
        ttl=number("T") or 0,
        compare_cas=number("C"),
        invalidate="I" in present,
        vivify=number("N"),
        **common,
    )
    return b"ms %b %d%b\r\n%b\r\n" % (wire_key, len(value), words, value), event


@st.composite
def binary_requests(draw: st.DrawFn) -> tuple[bytes, Event]:
    """One binary request packet, and the event it must give."""
    opcode = draw(
        st.sampled_from(
            sorted(op.STORE_COMMANDS)
            + sorted(op.GETS | op.GATS)
            + [op.DELETE, op.DELETEQ, op.TOUCH, op.STAT]
            + [op.INCREMENT, op.INCREMENTQ, op.DECREMENT, op.DECREMENTQ, op.FLUSH, op.FLUSHQ, op.NOOP, op.VERSION]
        )
    )
    key, opaque, cas = draw(any_keys), draw(uint32), draw(st.integers(0, 2**64 - 1))
    if opcode in op.STORE_COMMANDS:
        value = draw(values)
        command = op.STORE_COMMANDS[opcode]
        if command in ("append", "prepend"):
            flags = exptime = 0
            extras = b""
        else:
            flags, exptime = draw(uint32), draw(uint32)
            extras = binary.store_extras(flags, exptime)
        packet = req(opcode, key, extras, value, opaque, cas)
        return packet, Store(command, key, flags, exptime, value, cas=cas or None, opcode=opcode, opaque=opaque)
    if opcode in op.GETS:
        return req(opcode, key, opaque=opaque), Get((key,), opcode=opcode, opaque=opaque)
    if opcode in op.GATS or opcode == op.TOUCH:
        exptime = draw(uint32)
        packet = req(opcode, key, binary.exptime_extras(exptime), opaque=opaque)
        if opcode == op.TOUCH:
            return packet, Touch(key, exptime, opcode=opcode, opaque=opaque)
        return packet, Get((key,), exptime=exptime, opcode=opcode, opaque=opaque)
    if opcode in (op.DELETE, op.DELETEQ):
        return req(opcode, key, opaque=opaque, cas=cas), Delete(key, cas=cas or None, opcode=opcode, opaque=opaque)
    if opcode in (op.INCREMENT, op.INCREMENTQ, op.DECREMENT, op.DECREMENTQ):
        delta, initial, exptime = draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**64 - 1)), draw(uint32)
        packet = req(opcode, key, binary.arithmetic_extras(delta, initial, exptime), opaque=opaque)
        decrement = opcode in (op.DECREMENT, op.DECREMENTQ)
        created = None if exptime == binary.NO_CREATE else initial
        return packet, Arithmetic(key, delta, decrement, False, created, exptime, opcode, opaque)
    if opcode in (op.FLUSH, op.FLUSHQ):
        delay = draw(st.none() | uint32)
        extras = b"" if delay is None else binary.exptime_extras(delay)
        return req(opcode, extras=extras, opaque=opaque), FlushAll(delay or 0, opcode=opcode, opaque=opaque)
    if opcode == op.STAT:
        group = draw(st.sampled_from([b"", b"items", b"gearman"]))
        return req(opcode, group, opaque=opaque), Stats((group,) if group else (), opcode, opaque)
    if opcode == op.NOOP:
        return req(opcode, opaque=opaque), Noop(opaque=opaque)
    return req(opcode, opaque=opaque), Version(opcode, opaque)


@HYPOTHESIS
@given(
    requests=st.lists(text_requests() | meta_requests(), min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 4000), max_size=12),
)
def test_text_and_meta_round_trip(requests: list[tuple[bytes, Event]], cuts: list[int]) -> None:
    data = b"".join(wire for wire, _ in requests)
    expected = [event for _, event in requests]
    assert decode(data) == expected
    assert decode_in_pieces(data, [c % (len(data) + 1) for c in cuts]) == expected
    data += b"quit\r\nversion\r\n"
    assert decode_in_pieces(data, [c % (len(data) + 1) for c in cuts]) == [*expected, Quit()]


@HYPOTHESIS
@given(requests=st.lists(binary_requests(), min_size=1, max_size=8), cuts=st.lists(st.integers(0, 4000), max_size=12))
def test_binary_round_trip(requests: list[tuple[bytes, Event]], cuts: list[int]) -> None:
    data = b"".join(wire for wire, _ in requests)
    expected = [event for _, event in requests]
    assert decode(data) == expected
    assert decode_in_pieces(data, [c % (len(data) + 1) for c in cuts]) == expected


# ---------------------------------------------------------------------------- hypothesis: any bytes at all

FRAGMENTS = [
    b"\r\n",
    b"\n",
    b" ",
    b"get k",
    b"gets a b",
    b"gat 5 k",
    b"set k 0 0 5",
    b"set k 0 0 5 noreply",
    b"ms k 3 T5 q",
    b"mg k v k O1 b",
    b"md k q",
    b"mn",
    b"delete k 0",
    b"flush_all ",
    b"hello",
    b"\r\n\r\n",
    b"x" * 300,
    b"cas k 0 0 1 1",
    b"incr k 1",
    b"quit",
    b"HTTP/1.0",
    b"\x80",
    b"\x00",
    b"abc=",
]


@st.composite
def garbage(draw: st.DrawFn) -> bytes:
    """Bytes from nowhere, or protocol words thrown together: both reach the decoder's odd corners."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=600))
    parts = draw(st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=12), max_size=40))
    return b"".join(parts)


@st.composite
def binary_garbage(draw: st.DrawFn) -> bytes:
    """Binary headers with arbitrary fields (a few kept plausible) and arbitrary bodies."""
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        opcode = draw(st.integers(0, 0x30) | st.integers(0, 255))
        keylen, extlen = draw(st.integers(0, 260)), draw(st.integers(0, 24))
        body = draw(st.integers(0, 400))
        magic = draw(st.sampled_from([0x80, 0x80, 0x80, 0x81, 0x00]))
        parts.append(binary.HEADER.pack(magic, opcode, keylen, extlen, 0, 0, body, 0, 0))
        parts.append(draw(st.binary(max_size=420)))
    return b"".join(parts)


def _limits(draw_limits: bool) -> dict[str, int]:
    return {"max_value_size": 40, "max_line": 64, "max_multiget_line": 150} if draw_limits else {}


@HYPOTHESIS
@given(data=garbage() | binary_garbage(), small=st.booleans(), cuts=st.lists(st.integers(0, 4000), max_size=16))
def test_any_bytes_never_raise_and_cuts_never_matter(data: bytes, small: bool, cuts: list[int]) -> None:
    options = _limits(small)
    whole = decode(data, **options)
    assert all(isinstance(event, Event) for event in whole)
    assert decode_in_pieces(data, [c % (len(data) + 1) for c in cuts], **options) == whole
    assert byte_by_byte(data, **options) == whole


@HYPOTHESIS
@given(data=garbage() | binary_garbage(), cuts=st.lists(st.integers(0, 4000), max_size=16))
def test_what_is_held_stays_within_the_limits(data: bytes, cuts: list[int]) -> None:
    """At most one incomplete line, header or data block is held, whatever comes in."""
    decoder = Decoder(max_value_size=40, max_line=64, max_multiget_line=150)
    bound = max(150 + 2, binary.HEADER_SIZE + 24 + MAX_KEY_LENGTH + 40)
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        decoder.receive_data(data[start:cut])
        assert decoder.buffered <= bound + 1
        start = cut


@HYPOTHESIS
@given(data=garbage() | binary_garbage())
def test_the_model_answers_any_bytes(data: bytes) -> None:
    """Events of any input feed the reply encoders without trouble (through the miniature memcached)."""
    assert answer(data) == answer(data, 1)


# ---------------------------------------------------------------------------- the fast path of get and set

#: Tokens near the edges of what the fast path takes: numbers of every length and sign, keys with
#: control characters, spaces, over-long keys, noreply, other commands.
_NEAR_TOKENS = st.one_of(
    st.integers(0, 2**65).map(lambda n: b"%d" % n),
    st.sampled_from([b"", b"-1", b"+5", b"0", b"007", b"4294967296", b"2147483645", b"noreply", b"\t1", b"1 "]),
    st.binary(min_size=0, max_size=6),
    st.sampled_from([b"k", b"fn/u", b"a\x7fb", b"k\x00", b"x" * 250, b"x" * 251, b"bench/t=400"]),
)
_NEAR_LINES = st.builds(
    lambda command, tokens: b" ".join([command, *tokens]),
    st.sampled_from([b"set", b"get", b"gets", b"SET", b"sett", b"ge"]),
    st.lists(_NEAR_TOKENS, max_size=6),
)


def _full_decode(data: bytes, cuts: list[int], max_value_size: int) -> list[Event]:
    """The events the full decoder alone gives (the fast path turned off)."""
    return decode_in_pieces(data, cuts, max_value_size=max_value_size, fast_path=False)


def _plain_decode(data: bytes, cuts: list[int], **options: int) -> list[Event]:
    """A ``plain`` decoder's requests, each turned into its event."""
    return [as_event(request) for request in decode_in_pieces(data, cuts, plain=True, **options)]


@HYPOTHESIS
@given(
    lines=st.lists(_NEAR_LINES, min_size=1, max_size=5),
    values=st.lists(st.binary(max_size=12), min_size=5, max_size=5),
    small=st.booleans(),
    cuts=st.lists(st.integers(0, 4000), max_size=8),
)
def test_the_fast_path_gives_what_the_full_decoder_gives(
    lines: list[bytes], values: list[bytes], small: bool, cuts: list[int]
) -> None:
    """``text.parse_plain`` (plain ``get``/``set`` lines, their data read where it lies) changes no event:
    near-plain lines, each followed by a data block of the length it announces, or of another."""
    max_value_size = 8 if small else DEFAULT_MAX_VALUE_SIZE
    stream = b""
    for line, value in zip(lines, values, strict=False):
        stream += line + b"\r\n"
        if line.startswith(b"set "):
            stream += value + b"\r\n"
    cuts = [c % (len(stream) + 1) for c in cuts]
    fast = decode_in_pieces(stream, cuts, max_value_size=max_value_size)
    assert fast == _full_decode(stream, cuts, max_value_size)
    assert fast == decode(stream, max_value_size=max_value_size)
    assert _plain_decode(stream, cuts, max_value_size=max_value_size) == fast


@HYPOTHESIS
@given(data=garbage() | binary_garbage(), small=st.booleans(), cuts=st.lists(st.integers(0, 4000), max_size=16))
def test_a_plain_decoder_gives_the_same_requests_for_any_bytes(data: bytes, small: bool, cuts: list[int]) -> None:
    """``plain=True`` only changes the form of plain gets and sets: as events, any bytes give what the
    default decoder gives, and what the full rules alone give, however cut."""
    options = _limits(small)
    cuts = [c % (len(data) + 1) for c in cuts]
    expected = decode(data, **options)
    assert _plain_decode(data, cuts, **options) == expected
    assert decode_in_pieces(data, cuts, fast_path=False, **options) == expected


def test_a_plain_decoder_hands_plain_gets_and_sets_as_plain_values() -> None:
    stream = b"set f/u 16 0 2\r\nab\r\nget f/u/t=400\r\nget a b\r\ngets k\r\nset k 0 0 1 noreply\r\nx\r\n"
    assert Decoder(plain=True).receive_data(stream) == [
        (b"f/u", 16, 0, b"ab", False),
        b"f/u/t=400",
        Get((b"a", b"b")),
        Get((b"k",), with_cas=True),
        (b"k", 0, 0, b"x", True),  # pymemcache's default noreply
    ]


@HYPOTHESIS
@given(line=_NEAR_LINES, small=st.booleans())
def test_the_fast_path_reads_a_line_as_parse_line_does(line: bytes, small: bool) -> None:
    max_value_size = 8 if small else DEFAULT_MAX_VALUE_SIZE
    fast = text.parse_plain(line, max_value_size)
    if fast is None:
        return
    full = text.parse_line(line, max_value_size)
    if isinstance(fast, tuple):
        key, flags, exptime, size, noreply = fast
        assert isinstance(full, Block) and (full.length, full.terminated, full.noreply) == (size, True, noreply)
        assert full.complete(b"v") == Store("set", key, flags, exptime, b"v", noreply)
    elif isinstance(fast, bytes):  # a one-key get's key
        assert Get((fast,)) == full
    else:
        assert fast == full


def test_the_fast_path_takes_plain_get_and_set() -> None:
    assert text.parse_plain(b"set bench 0 0 64", DEFAULT_MAX_VALUE_SIZE) == (b"bench", 0, 0, 64, False)
    assert text.parse_plain(b"get bench/open/t=400", DEFAULT_MAX_VALUE_SIZE) == b"bench/open/t=400"
    assert text.parse_plain(b"set bench 0 0 64 noreply", DEFAULT_MAX_VALUE_SIZE) == (b"bench", 0, 0, 64, True)
    assert text.parse_plain(b"set bench 0 0 64 noreplyx", DEFAULT_MAX_VALUE_SIZE) is None
    assert text.parse_plain(b"set bench 0 0 64 foo", DEFAULT_MAX_VALUE_SIZE) is None  # (the full rules ignore it)
    assert text.parse_plain(b"get  a", DEFAULT_MAX_VALUE_SIZE) is None
    assert decode(b"set k 5 0 2\r\nab\r\nget k\r\n") == [Store("set", b"k", 5, 0, b"ab"), Get((b"k",))]


@HYPOTHESIS
@given(key=st.binary(min_size=1, max_size=20), flags=st.integers(0, 2**32 - 1), value=st.binary(max_size=30))
def test_the_one_key_text_answers_are_get_replys(key: bytes, flags: int, value: bytes) -> None:
    """The session's shortcut for a one-key text ``get`` answers what ``get_reply`` answers."""
    item = Item(value, flags)
    assert replies.text_hit(key, item) == replies.get_reply(Get((key,)), [item])
    assert replies.TEXT_MISS == replies.get_reply(Get((key,)), [None])
