"""Fuzz targets: one function per codec (and per session that drives a codec), ``target(data: bytes)``,
that feeds any bytes to it the way a connection would and raises only on a bug: an exception, a write
after close, a reply that is not whole. The hypothesis tests (tests/unit/test_fuzz_codecs.py) and the
coverage-guided fuzzer (bench/fuzz.py) run the same targets. ``SEEDS`` are valid inputs to start from.

The first byte of an input says how it is cut into reads (``reads``): a codec must give the same answer
however its bytes arrive, and the cuts are where its buffering bugs hide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from protocols.binary.codec import Decoder as BinaryDecoder
from protocols.binary.codec import encode_request, split_admin_words
from protocols.binary.packets import REQ, Packet
from protocols.http import plain
from protocols.memcached.codec import Decoder as MemcachedDecoder
from protocols.xmpp import grammar
from tests.unit.test_binary_session import Server
from tests.unit.test_http_session import Harness
from tests.unit.test_xmpp_commands import make, msg, settle

#: Inputs a harness serves before it is made again: sessions leave jobs in their scheduler.
HARNESS_USES = 500


def reads(data: bytes) -> Iterator[bytes]:
    """``data[1:]`` in reads of ``data[0] % 32 + 1`` bytes, or whole when the first byte is 224 or more."""
    if not data:
        return
    body = data[1:]
    step = data[0] % 32 + 1 if data[0] < 224 else max(1, len(body))
    for start in range(0, len(body), step):
        yield body[start : start + step]


# -- codecs


def binary(data: bytes) -> None:
    """The binary protocol's decoder (packets and admin lines), until it gives up on the stream."""
    decoder = BinaryDecoder(REQ, max_packet_size=4096, max_line=256)
    for chunk in reads(data):
        for event in decoder.receive_data(chunk):
            assert isinstance(event, tuple), event
        if decoder.dead:
            return


def admin(data: bytes) -> None:
    """An admin line's words and the admin commands' answers (a scheduler with a job and a worker)."""
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    words = split_admin_words(line)
    reply = _harness("binary").context.admin.execute(words, peer_is_local=bool(data[:1] and data[0] & 1))
    assert isinstance(reply, bytes) and reply.endswith(b"\n"), reply


def http_plain(data: bytes) -> None:
    """The fast HTTP request parser: a request, or None (h11 then reads it)."""
    request = plain.parse(data)
    assert request is None or isinstance(request, plain.PlainRequest)


def memcached(data: bytes) -> None:
    """The memcached text and binary protocol decoder, with small limits so that every limit is hit."""
    decoder = MemcachedDecoder(max_value_size=64, max_line=128, max_multiget_line=256)
    for chunk in reads(data):
        decoder.receive_data(chunk)
        assert decoder.buffered <= 4096


def xmpp(data: bytes) -> None:
    """The chat command grammar and the chat commands' answers to a message from an allowed sender."""
    text = data.decode("utf-8", "replace")
    command = grammar.parse(text)
    assert command is not None
    commands = _harness("xmpp")
    settle(commands, commands.handle_message(msg(text)))


# -- sessions: the codec with the frontend logic behind it, on a real scheduler without sockets


def binary_session(data: bytes) -> None:
    """A binary protocol connection (client, worker and admin lines mixed) that ends when the input does."""
    server = _harness("binary")
    session = server.session()
    for chunk in reads(data):
        if session.closed:
            break
        session.receive_data(chunk)
        server.turns.end()
    session.connection_lost()
    server.turns.end(2)


def http(data: bytes) -> None:
    """An HTTP connection (the fast parser, else h11) until the input ends or the session closes."""
    harness = _harness("http")
    session, transport, _ = harness.session()
    for chunk in reads(data):
        if transport.closed or transport.aborted:
            break
        session.receive_data(chunk)
    harness.clock.advance(120)  # every request and idle timer fires
    session.connection_lost()


TARGETS: dict[str, Callable[[bytes], None]] = {
    "binary": binary,
    "binary-session": binary_session,
    "admin": admin,
    "http-plain": http_plain,
    "http": http,
    "memcached": memcached,
    "xmpp": xmpp,
}

# -- harnesses, made again every HARNESS_USES inputs

_harnesses: dict[str, list[Any]] = {}


def _harness(kind: str) -> Any:
    entry = _harnesses.get(kind)
    if entry is None or entry[1] >= HARNESS_USES:
        entry = _harnesses[kind] = [_MAKERS[kind](), 0]
    entry[1] += 1
    return entry[0]


def _binary_server() -> Any:
    server = Server()
    server.worker(b"f")  # a worker, so that submits are handed out and admin lists have lines
    client = server.session()
    client.receive_data(encode_request(Packet.SUBMIT_JOB_BG, b"f", b"u", b"x"))
    server.turns.end()
    return server


def _http_harness() -> Any:
    harness = Harness()
    harness.worker(b"f")
    return harness


def _chat() -> Any:
    return make()


_MAKERS: dict[str, Callable[[], Any]] = {"binary": _binary_server, "http": _http_harness, "xmpp": _chat}


# -- seeds: valid inputs of each, the first byte choosing how they are cut

_CUT_WHOLE = b"\xff"
_PACKETS = [
    encode_request(Packet.CAN_DO, b"f"),
    encode_request(Packet.SUBMIT_JOB, b"f", b"", b"data"),
    encode_request(Packet.SUBMIT_JOB_BG, b"f", b"u1", b"data"),
    encode_request(Packet.GRAB_JOB_UNIQ),
    encode_request(Packet.PRE_SLEEP),
    encode_request(Packet.GET_STATUS, b"H:t:1"),
    encode_request(Packet.OPTION_REQ, b"exceptions"),
    encode_request(Packet.ECHO_REQ, b"hello"),
    encode_request(Packet.SUBMIT_JOB_EPOCH, b"f", b"", b"99", b"x"),
]
_ADMIN = [b"status\n", b"workers\n", b"show jobs\n", b"version\n", b"maxqueue f 10\n", b"cancel job H:t:1\n"]
SEEDS: dict[str, list[bytes]] = {
    "binary": [_CUT_WHOLE + b"".join(_PACKETS), b"\x03" + b"".join(_PACKETS[:4]), _CUT_WHOLE + b"".join(_ADMIN)],
    "binary-session": [_CUT_WHOLE + p for p in _PACKETS] + [b"\x05" + b"".join(_PACKETS + _ADMIN)],
    "admin": _ADMIN + [b"drop function f\n", b"getpid\n", b"show unique jobs\n", b"prioritystatus\n"],
    "http-plain": [
        b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /_gearman/status HTTP/1.0\r\n\r\n",
    ],
    "http": [
        _CUT_WHOLE + b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
        b"\x07POST /f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX-Gearman-Background: true\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        _CUT_WHOLE + b"GET /_gearman/status HTTP/1.1\r\nHost: h\r\n\r\nGET /_gearman/jobs/H:t:1 HTTP/1.1\r\n\r\n",
    ],
    "memcached": [
        _CUT_WHOLE + b"set f/u 0 0 3\r\nabc\r\nget f/u/t=10\r\nmg f/u v\r\n",
        b"\x02get a b c\r\ndelete f\r\nstats\r\n",
        _CUT_WHOLE
        + b"\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00f",
    ],
    "xmpp": [b"help", b"reverse hello", b"status reverse", b"job H:gw:1", b"list"],
}
