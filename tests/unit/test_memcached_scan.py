"""The C reader of plain memcached get and set lines (protocols/memcached/_scan.c, ``codec.plain_scan``).

It must change nothing but the speed: ``scan`` gives what a reference written with ``text.GET_LINE`` and
``text.SET_LINE`` (the decoder's own fast path) gives, and a plain decoder gives the same requests with it
as without it, for near-plain lines at every edge, pipelines mixing them with other commands, any bytes, and
any cuts of the stream. And it keeps no references it should not (no leak per call).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.memcached import codec, text
from protocols.memcached.codec import Decoder, Request
from protocols.memcached.limits import DEFAULT_MAX_VALUE_SIZE
from tests.unit.test_memcached_codec import HYPOTHESIS, binary_garbage, garbage

#: more examples than the codec's tests: the edges are narrow (one byte of key, one digit)
MANY = settings(HYPOTHESIS, max_examples=300)

SCAN = codec.plain_scan


@pytest.fixture(autouse=True)
def _built() -> None:
    if SCAN is None:
        message = "protocols.memcached._scan is not built (pip install -e . with gcc and python3-dev)"
        if os.environ.get("CI") == "true" and not os.environ.get("GEARMAN_GATEWAY_PURE_PYTHON"):
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def scanner(scan: object) -> Iterator[None]:
    """``codec.plain_scan`` set to ``scan`` (None: the Python path) while decoding."""
    saved = codec.plain_scan
    codec.plain_scan = scan  # type: ignore[assignment]
    try:
        yield
    finally:
        codec.plain_scan = saved


def reference_scan(data: bytes, max_value_size: int) -> tuple[list[Request], int]:
    """What ``scan`` must give, written with the decoder's own patterns."""
    requests: list[Request] = []
    pos = 0
    while True:
        match = text.GET_LINE(data, pos)
        if match is not None:
            requests.append(match.group(1))
            pos = match.end()
            continue
        match = text.SET_LINE(data, pos)
        if match is None:
            return requests, pos
        key, flags, exptime, size, noreply = match.groups()
        start, length = match.end(), int(size)
        stop = start + length + 2
        if length > max_value_size or stop > len(data) or data[stop - 2 : stop] != b"\r\n":
            return requests, pos
        requests.append((key, int(flags), int(exptime), data[start : stop - 2], noreply is not None))
        pos = stop


def feed(data: bytes, cuts: list[int], **options: int) -> tuple[list[Request], int, bool]:
    """A plain decoder's requests for ``data`` cut at ``cuts``, and its state after (held, closed)."""
    decoder = Decoder(plain=True, **options)  # type: ignore[arg-type]
    requests: list[Request] = []
    start = 0
    for cut in sorted(cuts) + [len(data)]:
        requests.extend(decoder.receive_data(data[start:cut]))
        start = cut
    return requests, decoder.buffered, decoder.closed


def same_with_and_without(data: bytes, cuts: list[int], **options: int) -> None:
    cuts = [c % (len(data) + 1) for c in cuts]
    with scanner(SCAN):
        fast = feed(data, cuts, **options)
    with scanner(None):
        assert fast == feed(data, cuts, **options)


# ---------------------------------------------------------------------------- near-plain requests

_KEYS = st.one_of(
    st.sampled_from([b"k", b"bench/open/t=400", b"x" * 249, b"x" * 250, b"x" * 251, b"", b"k\x7f", b"\x00k"]),
    st.binary(min_size=0, max_size=6),
    st.text("abz/\x80\xff", min_size=1, max_size=8).map(lambda s: s.encode("latin-1")),
)
_NUMBERS = st.one_of(
    st.integers(0, 10**10).map(lambda n: b"%d" % n),
    st.sampled_from([b"0", b"000000000", b"0000000000", b"999999999", b"1000000000", b"", b"-1", b"+1", b"1a"]),
)
_ENDS = st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r", b"", b" \r\n", b"\n\r", b" noreply\r\n"])


@st.composite
def near_plain(draw: st.DrawFn) -> bytes:
    """A plain get or set, or one a byte away from it: edges of key and number lengths, line ends, data
    blocks of the announced length or another, good or bad terminators, cut short."""
    kind = draw(st.sampled_from([b"get ", b"set ", b"gets ", b"get  ", b"Set ", b"gat ", b"sex ", b"ge"]))
    key = draw(_KEYS)
    if not kind.startswith(b"se"):
        return kind + key + draw(_ENDS)
    flags, exptime, size = draw(_NUMBERS), draw(_NUMBERS), draw(_NUMBERS | st.integers(0, 12).map(b"%d".__mod__))
    last = draw(st.sampled_from([b"", b"", b" noreply", b" noreplyx", b" norepl", b"  noreply", b" NOREPLY"]))
    line = b"%b%b %b %b %b%b%b" % (kind, key, flags, exptime, size, last, draw(_ENDS))
    announced = int(size) if size.isdigit() and len(size) < 4 else draw(st.integers(0, 12))
    length = max(0, announced + draw(st.sampled_from([0, 0, 0, -1, 1])))
    block = draw(st.binary(min_size=length, max_size=length))
    return line + block + draw(st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r", b"", b"xx", b"\r\r"]))


_OTHERS = st.sampled_from(
    [b"get a b\r\n", b"gets k\r\n", b"set k 0 0 1 noreply\r\nx\r\n", b"mn\r\n", b"delete k\r\n", b"\r\n", b"\x80"]
)
_STREAMS = st.lists(near_plain() | _OTHERS, min_size=1, max_size=8).map(b"".join)
_OPTIONS = st.sampled_from(
    [
        {},
        {"max_value_size": 8},
        {"max_value_size": 0},
        {"max_line": text.PLAIN_LINE_MAX},
        {"max_line": text.PLAIN_LINE_MAX - 1},
        {"max_value_size": 40, "max_line": 64, "max_multiget_line": 150},
    ]
)


@MANY
@given(data=_STREAMS | garbage(), limit=st.sampled_from([0, 1, 8, DEFAULT_MAX_VALUE_SIZE, 999999999]))
def test_scan_reads_what_the_patterns_read(data: bytes, limit: int) -> None:
    assert SCAN is not None
    assert SCAN(data, limit) == reference_scan(data, limit)


@MANY
@given(data=_STREAMS, options=_OPTIONS, cuts=st.lists(st.integers(0, 4000), max_size=8))
def test_plain_requests_decode_the_same_with_and_without_it(
    data: bytes, options: dict[str, int], cuts: list[int]
) -> None:
    same_with_and_without(data, cuts, **options)


@HYPOTHESIS
@given(data=_STREAMS, options=_OPTIONS)
def test_a_cut_anywhere_changes_nothing(data: bytes, options: dict[str, int]) -> None:
    """Two reads, cut at every offset: the scan stops inside the first, the Python parse holds the rest."""
    for cut in range(len(data) + 1):
        same_with_and_without(data, [cut], **options)


@HYPOTHESIS
@given(data=garbage() | binary_garbage(), options=_OPTIONS, cuts=st.lists(st.integers(0, 4000), max_size=16))
def test_any_bytes_decode_the_same_with_and_without_it(data: bytes, options: dict[str, int], cuts: list[int]) -> None:
    same_with_and_without(data, cuts, **options)


@MANY
@given(data=st.binary(max_size=400), limit=st.integers(-(2**70), 2**70))
def test_scan_never_raises_on_any_bytes(data: bytes, limit: int) -> None:
    assert SCAN is not None
    requests, offset = SCAN(data, limit)
    assert 0 <= offset <= len(data) and (offset > 0) == bool(requests)


def _edges() -> list[bytes]:
    """Every edge once: each key, number, line end, size against the limit (8) and block ending, the others
    kept plain."""
    keys = [b"k", b"x" * 250, b"x" * 251, b"", b"k\x7f", b"\x00k", b"k\x20", b"\x80\xff", b"k\r"]
    numbers = [b"0", b"9" * 9, b"9" * 10, b"0" * 9, b"0" * 10, b"", b"-1", b"+1", b"1a", b"1 "]
    ends = [
        b"\r\n",
        b"\n",
        b"\r",
        b"",
        b" \r\n",
        b"\n\r",
        b"\r\r\n",
        b" noreply\r\n",
        b" noreply\n",
        b" noreply",
        b" noreplyx\r\n",
    ]
    blocks = [b"1234567\r\n", b"123456\r\n", b"12345678\r\n", b"1234567\n", b"1234567\r", b"1234567", b"1234567xx"]
    edges = [b"get " + key + end for key in keys for end in ends]
    edges += [b"set " + key + b" 1 2 7" + end + blocks[0] for key in keys for end in ends]
    for field in range(3):
        for number in numbers:
            fields = [b"1", b"2", b"7"]
            fields[field] = number
            edges.append(b"set k " + b" ".join(fields) + b"\r\n" + blocks[0])
    edges += [b"set k 0 0 %d\r\n%b\r\n" % (size, b"v" * size) for size in (0, 7, 8, 9)]
    edges += [b"set k 0 0 7\r\n" + block for block in blocks]
    edges += [b"gets k\r\n", b"get  k\r\n", b"get a b\r\n", b"Get k\r\n", b"gat k\r\n", b"gxt k\r\n", b"gex k\r\n"]
    edges += [b"ge", b"sett k 0 0 1\r\nx\r\n", b"sxt k 0 0 1\r\nx\r\n", b"sex k 0 0 1\r\nx\r\n"]
    return edges


@pytest.mark.parametrize("edge", _edges())
def test_every_edge_at_every_cut(edge: bytes) -> None:
    """Alone, after a plain get and before one; in two reads cut anywhere; with the limit at 8 and without."""
    assert SCAN is not None
    for data in (edge, b"get a\r\n" + edge, edge + b"get a\r\n"):
        for limit in (8, DEFAULT_MAX_VALUE_SIZE):
            assert SCAN(data, limit) == reference_scan(data, limit)
            for cut in range(len(data) + 1):
                same_with_and_without(data, [cut], max_value_size=limit)


def test_scan_of_a_pipeline() -> None:
    assert SCAN is not None
    data = b"set f/u 16 0 2\r\nab\r\nget f/u/t=400\nset k 007 5 0 noreply\r\n\r\nget a b\r\nget k\r\n"
    expected = [(b"f/u", 16, 0, b"ab", False), b"f/u/t=400", (b"k", 7, 5, b"", True)]
    assert SCAN(data, 2) == (expected, data.index(b"get a"))
    assert SCAN(data, 1) == ([], 0)  # over the limit: the full rules' (a Skip)
    assert SCAN(b"set k 0 0 2\r\nab\r", 9) == ([], 0)  # not all in
    assert SCAN(b"set k 0 0 2\r\nabc\r\n", 9) == ([], 0)  # a bad terminator: the full rules' error
    assert SCAN(b"\x80get k\r\n", 9) == ([], 0)


def test_scan_wants_bytes_and_an_int() -> None:
    assert SCAN is not None
    for args in [(bytearray(b"get k\n"), 5), (b"get k\n", 5.0), (b"get k\n",), ()]:
        with pytest.raises(TypeError):
            SCAN(*args)  # type: ignore[arg-type]


def test_the_decoder_takes_a_whole_read_from_it() -> None:
    """A read of plain requests alone is the scan's list itself; a binary connection never scans."""
    data = b"get k\r\nset k 1 2 3\r\nabc\r\n"
    calls: list[bytes] = []

    def spy(data: bytes, max_value_size: int) -> tuple[list[Request], int]:
        calls.append(data)
        assert SCAN is not None
        return SCAN(data, max_value_size)

    with scanner(spy):
        decoder = Decoder(plain=True)
        assert decoder.receive_data(data) == [b"k", (b"k", 1, 2, b"abc", False)]
        assert decoder.protocol == "text" and decoder.buffered == 0
        binary = Decoder(plain=True)
        binary.receive_data(b"\x80")
        binary.receive_data(data)
        Decoder(plain=False).receive_data(data)
        Decoder(plain=True, fast_path=False).receive_data(data)
        assert calls == [data, b"\x80"]  # the binary decoder's first read only
        assert binary.protocol == "binary"


def test_pure_python_turns_it_off() -> None:
    probe = "from protocols.memcached import codec; print(codec.plain_scan)"
    env = {**os.environ, "GEARMAN_GATEWAY_PURE_PYTHON": "1"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.strip() == "None", result.stderr


# ---------------------------------------------------------------------------- references


def test_no_references_kept() -> None:
    """Each object handed back is held once (by its container), and nothing is held after. (Counts taken
    before the asserts: pytest's rewritten asserts hold their operands.)"""
    assert SCAN is not None
    data = b"set key 5 6 10\r\n0123456789\r\nget other\r\nget"
    before = sys.getrefcount(data)
    result = SCAN(data, 100)
    counts = [sys.getrefcount(result)]  # the local and the argument
    requests, offset = result
    del result
    counts.append(sys.getrefcount(requests))
    stored, key = requests
    counts += [sys.getrefcount(stored), sys.getrefcount(key)]  # the list's too
    stored_key, stored_value = stored[0], stored[3]
    counts += [sys.getrefcount(stored_key), sys.getrefcount(stored_value)]  # the tuple's too
    assert counts == [2, 2, 3, 3, 3, 3]
    assert sys.getrefcount(data) == before


def _rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def test_a_million_scans_do_not_grow() -> None:
    assert SCAN is not None
    data = b"set bench/u 0 0 64\r\n" + b"v" * 64 + b"\r\nget bench/u/t=400\r\nget a b\r\n"
    for _ in range(10_000):
        SCAN(data, 100)
    before = _rss_kib()
    for _ in range(1_000_000):
        SCAN(data, 100)
    assert _rss_kib() - before < 1024  # a leaked request per call would be ~200 MB
