"""The sans-IO binary codec: framing, argument splitting, admin lines, limits (reference §1, §3.1).

No sockets and no reactor: bytes go into ``Decoder.receive_data`` in whatever chunks hypothesis
chooses, and the events that come out must be exactly the packets and lines that went in.
"""

from __future__ import annotations

import struct
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.binary import codec
from protocols.binary.codec import (
    FATAL,
    JOIN_LIMIT,
    TEXT,
    WRONG_MAGIC,
    Decoder,
    encode,
    encode_request,
    error_packet,
    header,
    payload_pieces,
    split_admin_words,
)
from protocols.binary.packets import ARG_COUNT, HEADER_SIZE, MAX_TYPE, REQ, RES, Packet, packet_name

HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ALL_TYPES = sorted(ARG_COUNT)
MAGICS = pytest.mark.parametrize("magic", [REQ, RES], ids=["REQ", "RES"])


def other(magic: bytes) -> bytes:
    return RES if magic == REQ else REQ


def raw_header(magic: bytes, ptype: int, size: int) -> bytes:
    return magic + struct.pack(">II", ptype, size)


def feed(decoder: Decoder, stream: bytes, cuts: list[int]) -> list:
    """Feed ``stream`` split at ``cuts`` (any order, duplicates give empty chunks); collect the events. After
    each chunk, ``pending`` says whether the decoder keeps anything of the stream."""
    events = []
    start = 0
    for cut in sorted(cuts) + [len(stream)]:
        events.extend(decoder.receive_data(stream[start:cut]))
        assert decoder.pending == (decoder.buffered > 0 or decoder.dead), (start, cut)
        start = cut
    return events


# ---------------------------------------------------------------------------- strategies

# Bytes that may sit before a NUL separator: anything but NUL.
plain_arg = st.binary(max_size=24).map(lambda b: b.replace(b"\x00", b""))
# The last argument runs to the end of the body: anything, NULs included (and often).
last_arg = st.one_of(
    st.binary(max_size=48),
    st.lists(st.sampled_from([b"\x00", b"a", b"\xff", b"\n", b"\x00REQ"]), max_size=12).map(b"".join),
)


def args_for(ptype: int) -> st.SearchStrategy[list[bytes]]:
    count = ARG_COUNT[ptype]
    if count == 0:
        return st.just([])
    return st.tuples(*([plain_arg] * (count - 1) + [last_arg])).map(list)


# An admin line: does not start with NUL, holds no "\n", does not end in "\r" (one "\r" before "\n" is
# part of the terminator); it may contain NULs and TABs after its first byte.
admin_line = (
    st.tuples(
        st.binary(min_size=1, max_size=1).filter(lambda b: b not in (b"\x00", b"\n")),
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    )
    .map(lambda t: t[0] + t[1])
    .filter(lambda b: not b.endswith(b"\r"))
)
admin_line = st.one_of(st.just(b""), admin_line)


@st.composite
def packets_of_every_type(draw: st.DrawFn) -> list[tuple[int, list[bytes]]]:
    return [(ptype, draw(args_for(ptype))) for ptype in ALL_TYPES]


@st.composite
def cut_points(draw: st.DrawFn, length: int) -> list[int]:
    return draw(st.lists(st.integers(0, length), max_size=40))


# ---------------------------------------------------------------------------- the packet table


def test_arg_count_covers_every_wire_type() -> None:
    assert set(ARG_COUNT) == set(range(1, MAX_TYPE))
    assert MAX_TYPE == 43
    assert HEADER_SIZE == 12


def test_arg_counts_match_the_reference_table() -> None:
    # reference §1.3: NUL-terminated arguments plus the unterminated rest
    expected = {
        Packet.SUBMIT_JOB: 3,
        Packet.JOB_ASSIGN: 3,
        Packet.WORK_STATUS: 3,
        Packet.ERROR: 2,
        Packet.STATUS_RES: 5,
        Packet.CAN_DO_TIMEOUT: 2,
        Packet.JOB_ASSIGN_UNIQ: 4,
        Packet.SUBMIT_JOB_SCHED: 8,
        Packet.SUBMIT_JOB_EPOCH: 4,
        Packet.SUBMIT_REDUCE_JOB: 5,  # function, unique, reducer, aggregator, data
        Packet.SUBMIT_REDUCE_JOB_BACKGROUND: 5,
        Packet.JOB_ASSIGN_ALL: 5,
        Packet.STATUS_RES_UNIQUE: 6,
        Packet.CAN_DO: 1,
        Packet.WORK_FAIL: 1,
        Packet.OPTION_REQ: 1,
        Packet.SET_CLIENT_ID: 1,
        Packet.GRAB_JOB_ALL: 0,
        Packet.NOOP: 0,
    }
    for ptype, count in expected.items():
        assert ARG_COUNT[ptype] == count, packet_name(ptype)


def test_packet_names() -> None:
    assert packet_name(7) == "SUBMIT_JOB"
    assert packet_name(42) == "STATUS_RES_UNIQUE"
    assert packet_name(5) == "TYPE_5"


# ---------------------------------------------------------------------------- encoding


def test_encode_matches_the_observed_bytes() -> None:
    # reference §1.5
    assert encode_request(Packet.SUBMIT_JOB, b"reverse", b"", b"test") == (
        b"\x00REQ\x00\x00\x00\x07\x00\x00\x00\x0dreverse\x00\x00test"
    )
    assert encode_request(Packet.CAN_DO, b"rev") == b"\x00REQ\x00\x00\x00\x01\x00\x00\x00\x03rev"
    assert encode(Packet.JOB_CREATED, b"H:vm:1") == b"\x00RES\x00\x00\x00\x08\x00\x00\x00\x06H:vm:1"
    assert encode(Packet.NO_JOB) == b"\x00RES\x00\x00\x00\x0a\x00\x00\x00\x00"


def test_encode_helpers() -> None:
    assert codec.NOOP == b"\x00RES\x00\x00\x00\x06\x00\x00\x00\x00"
    assert codec.NO_JOB == encode(Packet.NO_JOB)
    assert encode(Packet.ECHO_REQ, b"x", magic=REQ) == encode_request(Packet.ECHO_REQ, b"x")
    assert header(Packet.ECHO_RES, 5) == b"\x00RES\x00\x00\x00\x11\x00\x00\x00\x05"
    assert header(Packet.ECHO_REQ, 5, magic=REQ) == b"\x00REQ\x00\x00\x00\x10\x00\x00\x00\x05"
    assert header(Packet.ECHO_RES, 5) + b"hello" == encode(Packet.ECHO_RES, b"hello")
    assert error_packet(b"QUEUE_ERROR", b"Job queue is full") == (
        raw_header(RES, 19, 29) + b"QUEUE_ERROR\x00Job queue is full"
    )
    assert error_packet("QUEUE_ERROR", "Job queue is full") == error_packet(b"QUEUE_ERROR", b"Job queue is full")


def test_payload_pieces_join_small_payloads_and_leave_large_ones_uncopied() -> None:
    small = payload_pieces(Packet.WORK_COMPLETE, (b"H:1", b"result"))
    assert small == (encode(Packet.WORK_COMPLETE, b"H:1", b"result"),)
    large = b"x" * JOIN_LIMIT
    head, payload = payload_pieces(Packet.JOB_ASSIGN_UNIQ, (b"H:1", b"f", b"u", large))
    assert payload is large  # written as it is, never copied into the packet
    assert head + payload == encode(Packet.JOB_ASSIGN_UNIQ, b"H:1", b"f", b"u", large)
    assert b"".join(payload_pieces(Packet.ECHO_REQ, (large,), magic=REQ)) == encode_request(Packet.ECHO_REQ, large)


# ---------------------------------------------------------------------------- round trips


@MAGICS
@HYPOTHESIS
@given(data=st.data())
def test_round_trip_every_packet_type_any_chunking(magic: bytes, data: st.DataObject) -> None:
    packets = data.draw(packets_of_every_type())
    stream = b"".join(encode(ptype, *args, magic=magic) for ptype, args in packets)
    cuts = data.draw(cut_points(len(stream)))
    decoder = Decoder(expect=magic)
    events = feed(decoder, stream, cuts)
    assert events == packets
    assert decoder.buffered == 0
    assert not decoder.dead and not decoder.pending


@MAGICS
@HYPOTHESIS
@given(data=st.data())
def test_two_streams_through_one_shared_decoder_detaching_what_each_leaves(magic: bytes, data: st.DataObject) -> None:
    """As the binary frontend uses it: one decoder serves every stream whose last chunk ended on a packet
    boundary; a stream that left part of a packet (or its death) behind takes it along with ``detach`` and
    goes on with its own decoder, and the shared one is as new for the next stream."""
    streams, cuts, expected = [], [], []
    for _ in range(2):
        packets = data.draw(packets_of_every_type())
        stream = b"".join(encode(ptype, *args, magic=magic) for ptype, args in packets)
        if data.draw(st.booleans()):  # this one dies half-way: garbage where a header should be
            stream += b"\x00XXX" + bytes(8) + b"then whatever"
            packets = [*packets, (FATAL, [b"INVALID_MAGIC", b"Invalid magic in packet header"])]
        streams.append(stream)
        cuts.append(sorted(data.draw(cut_points(len(stream)))) + [len(stream)])
        expected.append(packets)
    shared = Decoder(expect=magic)
    shared.shared = True
    own: list[Decoder | None] = [None, None]
    got: list[list] = [[], []]
    starts = [0, 0]
    while any(cuts):
        which = data.draw(st.sampled_from([i for i in (0, 1) if cuts[i]]))
        cut = cuts[which].pop(0)
        decoder = own[which] or shared
        got[which].extend(decoder.receive_data(streams[which][starts[which] : cut]))
        starts[which] = cut
        if decoder.shared and decoder.pending:
            own[which] = shared.detach()
            assert not shared.pending and not shared.dead and shared.buffered == 0
            assert not own[which].shared  # type: ignore[union-attr]
    assert got == expected
    assert not shared.dead


@MAGICS
@HYPOTHESIS
@given(ptype=st.sampled_from(ALL_TYPES), data=st.data())
def test_round_trip_single_packet(magic: bytes, ptype: int, data: st.DataObject) -> None:
    args = data.draw(args_for(ptype))
    stream = encode(ptype, *args, magic=magic)
    cuts = data.draw(cut_points(len(stream)))
    assert feed(Decoder(expect=magic), stream, cuts) == [(ptype, args)]


@MAGICS
def test_every_type_fed_one_byte_at_a_time(magic: bytes) -> None:
    packets = []
    for ptype in ALL_TYPES:
        count = ARG_COUNT[ptype]
        args = [b"arg%d" % i for i in range(count - 1)] + ([b"last\x00with\x00nuls"] if count else [])
        packets.append((ptype, args))
    stream = b"".join(encode(ptype, *args, magic=magic) for ptype, args in packets)
    decoder = Decoder(expect=magic)
    events = []
    for i in range(len(stream)):
        events.extend(decoder.receive_data(stream[i : i + 1]))
    assert events == packets
    assert decoder.buffered == 0


@st.composite
def mixed_items(draw: st.DrawFn, magic: bytes) -> list[tuple[bytes, tuple[int, list[bytes]]]]:
    """(wire bytes, expected event) pairs: admin lines, own-magic packets, other-magic packets."""
    line_item = st.tuples(admin_line, st.sampled_from([b"\n", b"\r\n"])).map(lambda t: (t[0] + t[1], (TEXT, [t[0]])))
    packet_item = st.sampled_from(ALL_TYPES).flatmap(
        lambda ptype: args_for(ptype).map(lambda args: (encode(ptype, *args, magic=magic), (ptype, args)))
    )
    foreign_item = st.sampled_from(ALL_TYPES).flatmap(
        lambda ptype: args_for(ptype).map(
            lambda args: (encode(ptype, *args, magic=other(magic)), (WRONG_MAGIC, [b"%d" % ptype]))
        )
    )
    return draw(
        st.lists(
            st.one_of(line_item, packet_item, packet_item, foreign_item),
            min_size=1,
            max_size=25,
        )
    )


@MAGICS
@HYPOTHESIS
@given(data=st.data())
def test_mixed_admin_lines_and_packets(magic: bytes, data: st.DataObject) -> None:
    items = data.draw(mixed_items(magic))
    stream = b"".join(wire for wire, _ in items)
    cuts = data.draw(cut_points(len(stream)))
    decoder = Decoder(expect=magic)
    assert feed(decoder, stream, cuts) == [event for _, event in items]
    assert decoder.buffered == 0
    assert not decoder.dead


# ---------------------------------------------------------------------------- targeted cases


def test_missing_arguments_are_empty_and_parsing_stays_inside_the_packet() -> None:
    # SUBMIT_JOB needs two NULs; this body has none. gearmand would search into the next packet.
    short = raw_header(REQ, Packet.SUBMIT_JOB, 2) + b"fn"
    nxt = encode_request(Packet.SUBMIT_JOB, b"f2", b"u2", b"data\x00more")
    events = Decoder().receive_data(short + nxt)
    assert events == [
        (Packet.SUBMIT_JOB, [b"fn", b"", b""]),
        (Packet.SUBMIT_JOB, [b"f2", b"u2", b"data\x00more"]),
    ]


def test_missing_arguments_with_a_partial_body() -> None:
    short = raw_header(REQ, Packet.SUBMIT_JOB_EPOCH, 7) + b"fn\x00uniq"
    nxt = encode_request(Packet.ECHO_REQ, b"\x00\x00")
    decoder = Decoder()
    events = decoder.receive_data(short[:5]) + decoder.receive_data(short[5:] + nxt[:3])
    events += decoder.receive_data(nxt[3:])
    assert events == [(Packet.SUBMIT_JOB_EPOCH, [b"fn", b"uniq", b"", b""]), (Packet.ECHO_REQ, [b"\x00\x00"])]


def test_empty_body_for_a_packet_with_arguments() -> None:
    stream = raw_header(REQ, Packet.STATUS_RES_UNIQUE, 0) + encode_request(Packet.NOOP)
    events = Decoder().receive_data(stream)
    assert events == [(Packet.STATUS_RES_UNIQUE, [b""] * 6), (Packet.NOOP, [])]


def test_body_of_an_argumentless_packet_is_skipped() -> None:
    stream = raw_header(REQ, Packet.GRAB_JOB, 4) + b"\x00REQ" + encode_request(Packet.CAN_DO, b"x")
    assert Decoder().receive_data(stream) == [(Packet.GRAB_JOB, []), (Packet.CAN_DO, [b"x"])]


def test_header_alone_waits_for_its_body() -> None:
    decoder = Decoder()
    packet = encode_request(Packet.ECHO_REQ, b"abc")
    assert decoder.receive_data(packet[:11]) == []
    assert decoder.buffered == 11
    assert decoder.receive_data(packet[11:14]) == []
    assert decoder.receive_data(packet[14:]) == [(Packet.ECHO_REQ, [b"abc"])]
    assert decoder.buffered == 0


@pytest.mark.parametrize("bad", [b"\x00XYZ", b"\x00req", b"\x00RE\x00", b"\x00\x00\x00\x00"])
def test_bad_magic_is_fatal_and_the_decoder_stays_dead(bad: bytes) -> None:
    decoder = Decoder()
    good = encode_request(Packet.ECHO_REQ, b"ok")
    events = decoder.receive_data(good + bad + struct.pack(">II", 16, 0) + good)
    assert events[0] == (Packet.ECHO_REQ, [b"ok"])
    assert len(events) == 2
    kind, (code, text) = events[1]
    assert kind == FATAL and code == b"INVALID_MAGIC" and text
    assert decoder.dead
    assert decoder.receive_data(good) == []
    assert decoder.receive_data(b"status\n") == []
    assert decoder.buffered == 0


@pytest.mark.parametrize("ptype", [0, 43, 44, 255, 0xFFFFFFFF])
@MAGICS
def test_invalid_type_is_fatal(magic: bytes, ptype: int) -> None:
    decoder = Decoder(expect=magic)
    events = decoder.receive_data(raw_header(magic, ptype, 0) + encode(Packet.ECHO_REQ, b"x", magic=magic))
    assert [(kind, args[0]) for kind, args in events] == [(FATAL, b"INVALID_COMMAND")]
    assert decoder.dead
    assert decoder.receive_data(encode(Packet.ECHO_REQ, b"x", magic=magic)) == []


def test_invalid_type_with_the_other_magic_is_fatal_too() -> None:
    events = Decoder(expect=REQ).receive_data(raw_header(RES, 0, 0))
    assert [(kind, args[0]) for kind, args in events] == [(FATAL, b"INVALID_COMMAND")]


def test_oversized_packet_is_fatal_before_its_body_arrives() -> None:
    decoder = Decoder(max_packet_size=1024)
    events = decoder.receive_data(raw_header(REQ, Packet.SUBMIT_JOB, 1025))
    assert [(kind, args[0]) for kind, args in events] == [(FATAL, b"ARGUMENT_TOO_LARGE")]
    assert decoder.dead
    assert decoder.receive_data(b"x" * 1025) == []


def test_huge_declared_size_is_fatal_with_default_limit() -> None:
    decoder = Decoder()
    events = decoder.receive_data(raw_header(REQ, Packet.ECHO_REQ, 0xFFFFFFFF) + b"abc")
    assert [(kind, args[0]) for kind, args in events] == [(FATAL, b"ARGUMENT_TOO_LARGE")]
    assert decoder.buffered == 0


def test_packet_at_the_size_limit_is_accepted() -> None:
    payload = b"\x00" * 1024
    events = Decoder(max_packet_size=1024).receive_data(encode_request(Packet.ECHO_REQ, payload))
    assert events == [(Packet.ECHO_REQ, [payload])]


@MAGICS
def test_other_sides_magic_is_reported_and_the_stream_continues(magic: bytes) -> None:
    decoder = Decoder(expect=magic)
    stream = (
        encode(Packet.JOB_CREATED, b"H:x:1", magic=other(magic))
        + encode(Packet.SUBMIT_JOB, b"f", b"u", b"d", magic=other(magic))
        + encode(Packet.ECHO_REQ, b"after", magic=magic)
        + b"status\n"
    )
    assert feed(decoder, stream, [3, 20, 30]) == [
        (WRONG_MAGIC, [b"8"]),
        (WRONG_MAGIC, [b"7"]),
        (Packet.ECHO_REQ, [b"after"]),
        (TEXT, [b"status"]),
    ]
    assert not decoder.dead


def test_admin_lines_and_their_terminators() -> None:
    decoder = Decoder()
    events = decoder.receive_data(b"status\nversion\r\n\n\r\nshow\tjobs \r\r\nx\x00y\n")
    assert events == [
        (TEXT, [b"status"]),
        (TEXT, [b"version"]),
        (TEXT, [b""]),
        (TEXT, [b""]),
        (TEXT, [b"show\tjobs \r"]),  # only one "\r" before the "\n" is removed
        (TEXT, [b"x\x00y"]),
    ]


def test_admin_line_waits_for_its_newline() -> None:
    decoder = Decoder()
    assert decoder.receive_data(b"stat") == []
    assert decoder.receive_data(b"us\r") == []
    assert decoder.receive_data(b"\nwork") == [(TEXT, [b"status"])]
    assert decoder.buffered == 4
    assert decoder.receive_data(b"ers\n" + encode_request(Packet.NOOP)) == [(TEXT, [b"workers"]), (6, [])]


def test_admin_line_at_max_line_is_accepted() -> None:
    line = b"a" * 64
    assert Decoder(max_line=64).receive_data(line + b"\n") == [(TEXT, [line])]
    assert Decoder(max_line=64).receive_data(line + b"\r\n") == [(TEXT, [line])]
    decoder = Decoder(max_line=64)
    events = feed(decoder, line + b"\r\n", [10, 64, 65])
    assert events == [(TEXT, [line])]


def test_admin_line_too_long_with_newline_is_fatal() -> None:
    decoder = Decoder(max_line=64)
    events = decoder.receive_data(b"a" * 65 + b"\nstatus\n")
    assert [(kind, args[0]) for kind, args in events] == [(FATAL, b"LINE_TOO_LONG")]
    assert decoder.dead
    assert decoder.receive_data(b"status\n") == []


def test_admin_line_too_long_without_newline_is_fatal() -> None:
    decoder = Decoder(max_line=64)
    assert decoder.receive_data(b"a" * 60) == []
    events = []
    for _ in range(10):
        events += decoder.receive_data(b"b" * 5)
    assert [(kind, args[0]) for kind, args in events] == [(FATAL, b"LINE_TOO_LONG")]
    assert decoder.dead
    assert decoder.buffered == 0


def test_admin_line_too_long_in_one_chunk_without_newline() -> None:
    decoder = Decoder(max_line=64)
    events = decoder.receive_data(b"x" * 1000)
    assert [(kind, args[0]) for kind, args in events] == [(FATAL, b"LINE_TOO_LONG")]


def test_long_line_after_good_events_keeps_them() -> None:
    decoder = Decoder(max_line=64)
    events = decoder.receive_data(b"status\n" + encode_request(Packet.NOOP) + b"z" * 100)
    assert events[:2] == [(TEXT, [b"status"]), (Packet.NOOP, [])]
    assert [(kind, args[0]) for kind, args in events[2:]] == [(FATAL, b"LINE_TOO_LONG")]


def test_eight_mib_payload_in_a_thousand_chunks() -> None:
    payload = bytes(range(256)) * (8 * 1024 * 1024 // 256)
    stream = encode_request(Packet.SUBMIT_JOB, b"big", b"u-1", payload)
    stream += encode_request(Packet.ECHO_REQ, b"next")
    decoder = Decoder()
    step = len(stream) // 1000 + 1
    events = []
    calls_with_events = 0
    for start in range(0, len(stream), step):
        got = decoder.receive_data(stream[start : start + step])
        calls_with_events += bool(got)
        events.extend(got)
        if not events:  # the large packet's reads so far, all kept
            assert decoder.buffered == min(start + step, len(stream))
            assert decoder.wanted == len(stream) - len(encode_request(Packet.ECHO_REQ, b"next")) - decoder.buffered
    assert len(range(0, len(stream), step)) == 1000
    assert len(events) == 2
    ptype, (fn, unique, data) = events[0]
    assert (ptype, fn, unique) == (Packet.SUBMIT_JOB, b"big", b"u-1")
    assert len(data) == len(payload) and data == payload
    assert events[1] == (Packet.ECHO_REQ, [b"next"])
    assert calls_with_events == 1
    assert decoder.buffered == 0


def test_empty_input_is_harmless() -> None:
    decoder = Decoder()
    assert decoder.receive_data(b"") == []
    assert decoder.receive_data(b"\x00RE") == []
    assert decoder.receive_data(b"") == []
    assert decoder.buffered == 3


# ---------------------------------------------------------------------------- large packets
# A body of LARGE_BODY bytes or more is gathered as the reads that carry it and joined once. The same
# properties are checked with the threshold (and the scan for leading arguments) lowered, so that the
# hypothesis streams above take that path for most of their packets.


@pytest.mark.parametrize(("threshold", "scan"), [(1, 1), (4, 2), (8, 4096), (16, 3)])
@MAGICS
@HYPOTHESIS
@given(data=st.data())
def test_large_path_mixed_streams_any_chunking(threshold: int, scan: int, magic: bytes, data: st.DataObject) -> None:
    items = data.draw(mixed_items(magic))
    stream = b"".join(wire for wire, _ in items)
    cuts = data.draw(cut_points(len(stream)))
    with patch.object(codec, "LARGE_BODY", threshold), patch.object(codec, "_LARGE_PREFIX_SCAN", scan):
        decoder = Decoder(expect=magic)
        assert feed(decoder, stream, cuts) == [event for _, event in items]
        assert decoder.buffered == 0 and decoder.wanted == 0
        assert not decoder.dead


@pytest.mark.parametrize(("threshold", "scan"), [(1, 1), (8, 4096)])
@MAGICS
@HYPOTHESIS
@given(data=st.data())
def test_large_path_every_packet_type(threshold: int, scan: int, magic: bytes, data: st.DataObject) -> None:
    packets = data.draw(packets_of_every_type())
    stream = b"".join(encode(ptype, *args, magic=magic) for ptype, args in packets)
    cuts = data.draw(cut_points(len(stream)))
    with patch.object(codec, "LARGE_BODY", threshold), patch.object(codec, "_LARGE_PREFIX_SCAN", scan):
        assert feed(Decoder(expect=magic), stream, cuts) == packets


def test_a_megabyte_payload_in_64k_reads_with_packets_around_it() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, NULs included
    stream = (
        encode_request(Packet.ECHO_REQ, b"before")
        + encode_request(Packet.SUBMIT_JOB, b"resize", b"u-1", payload)
        + encode_request(Packet.WORK_COMPLETE, b"H:x:1", payload[:70000])
        + b"status\n"
    )
    decoder = Decoder()
    events = []
    wanted = []
    for start in range(0, len(stream), 65536):
        events += decoder.receive_data(stream[start : start + 65536])
        wanted.append(decoder.wanted)
    assert events == [
        (Packet.ECHO_REQ, [b"before"]),
        (Packet.SUBMIT_JOB, [b"resize", b"u-1", payload]),
        (Packet.WORK_COMPLETE, [b"H:x:1", payload[:70000]]),
        (TEXT, [b"status"]),
    ]
    assert wanted[0] == len(payload) + 12 + len(b"resize\x00u-1\x00") - (65536 - 18)
    assert all(type(arg) is bytes for _, args in events for arg in args)
    assert decoder.buffered == 0 and decoder.wanted == 0


def test_large_payload_from_a_reused_read_buffer_is_copied_once_read() -> None:
    payload = b"p" * 200_000
    stream = encode_request(Packet.SUBMIT_JOB, b"f", b"", payload)
    reused = bytearray(100_000)
    decoder = Decoder()
    events = []
    for start in range(0, len(stream), 100_000):
        piece = stream[start : start + 100_000]
        reused[: len(piece)] = piece
        events += decoder.receive_data(memoryview(reused)[: len(piece)])
        reused[:] = b"\xff" * len(reused)  # the reader reuses its buffer for the next read
    assert events == [(Packet.SUBMIT_JOB, [b"f", b"", payload])]


def test_large_packet_errors_are_found_before_its_body_arrives() -> None:
    bad_type = raw_header(REQ, 99, 1 << 20) + b"x" * 100
    assert Decoder().receive_data(bad_type) == [(FATAL, [b"INVALID_COMMAND", b"Invalid command expected"])]
    split = Decoder()  # the same header in two reads
    assert split.receive_data(bad_type[:5]) == []
    assert split.receive_data(bad_type[5:20]) == [(FATAL, [b"INVALID_COMMAND", b"Invalid command expected"])]
    zero = Decoder()
    assert zero.receive_data(raw_header(REQ, 0, 500)[:9]) == []
    assert zero.receive_data(raw_header(REQ, 0, 500)[9:]) == [
        (FATAL, [b"INVALID_COMMAND", b"Invalid command expected"])
    ]
    decoder = Decoder(max_packet_size=1 << 20)
    assert decoder.receive_data(raw_header(REQ, Packet.SUBMIT_JOB, (1 << 20) + 1)[:7]) == []
    events = decoder.receive_data(raw_header(REQ, Packet.SUBMIT_JOB, (1 << 20) + 1)[7:] + b"x")
    assert events[0][0] == FATAL and events[0][1][0] == b"ARGUMENT_TOO_LARGE"


def test_large_packet_of_the_other_magic_is_skipped_whole() -> None:
    decoder = Decoder(expect=REQ)
    body = b"\x00" * 100_000
    stream = encode(Packet.WORK_DATA, b"H:x:1", body, magic=RES) + encode_request(Packet.ECHO_REQ, b"next")
    events = feed(decoder, stream, [5, 12, 13, 70_000])
    assert events == [(WRONG_MAGIC, [b"28"]), (Packet.ECHO_REQ, [b"next"])]


# ---------------------------------------------------------------------------- admin words


def test_split_admin_words_collapses_spaces() -> None:
    assert split_admin_words(b"cancel   job  H:x:1") == [b"cancel", b"job", b"H:x:1"]
    assert split_admin_words(b"  status  ") == [b"status"]
    assert split_admin_words(b"") == []
    assert split_admin_words(b"     ") == []


def test_split_admin_words_keeps_tabs_inside_words() -> None:
    assert split_admin_words(b"show\tjobs") == [b"show\tjobs"]
    assert split_admin_words(b"create function a\tb") == [b"create", b"function", b"a\tb"]


def test_split_admin_words_caps_at_eight() -> None:
    words = [b"w%d" % i for i in range(12)]
    assert split_admin_words(b" ".join(words)) == words[:8]
    assert split_admin_words(b"a b c", max_words=2) == [b"a", b"b"]
