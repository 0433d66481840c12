"""Transcripts checked against a real memcached 1.6.18 (Debian's /usr/bin/memcached), for the codec tests.

Each request was sent in one piece to a fresh ``memcached -l 127.0.0.1 -p PORT -U 0`` (a new server per
request, so cas values count from 1), and what came back within 0.2 s (0.6 s for the megabyte ones) was
recorded below with whether the server closed the connection: ``*_REPLIES`` hold those answers, which the
codec must reproduce byte for byte; ``DIFFERENCES`` hold the few where we answer otherwise on purpose,
with memcached's answer beside ours and the reason.
"""

from __future__ import annotations

from typing import NamedTuple

from protocols.memcached import binary as b
from protocols.memcached import opcodes as op


class Difference(NamedTuple):
    name: str
    request: bytes
    memcached: tuple[bytes, bool]  # (reply, connection closed)
    ours: tuple[bytes, bool]
    why: str


K251 = b"k" * 251
K250 = b"k" * 250


def req(opcode, key=b"", extras=b"", value=b"", opaque=0, cas=0):
    return b.request(opcode, key=key, extras=extras, value=value, opaque=opaque, cas=cas)


SE = b.store_extras
TEXT = [
    ("version", b"version\r\n"),
    ("version-args", b"version x\r\n"),
    ("set-get", b"set a 0 0 1\r\nx\r\nget a\r\n"),
    ("set-gets", b"set a 5 0 3\r\nabc\r\ngets a\r\n"),
    ("multiget-dup-miss", b"set a 1 0 1\r\nx\r\nset b 2 0 2\r\nyy\r\nget a zz b a\r\n"),
    ("get-nothing", b"get nope\r\n"),
    ("get-no-key", b"get\r\n"),
    ("gets-no-key", b"gets\r\n"),
    ("bget", b"set a 0 0 1\r\nx\r\nbget a\r\n"),
    ("unknown", b"foo\r\n"),
    ("uppercase", b"GET a\r\n"),
    ("empty-line", b"\r\n"),
    ("bare-newline", b"\n"),
    ("one-letter", b"g\r\n"),
    ("spaces-only", b"   \r\n"),
    ("lf-only-lines", b"set a 0 0 1\nx\r\nget a\n"),
    ("extra-spaces", b"set  a  0  0  1 \r\nx\r\nget  a \r\n"),
    ("get-key-250", b"get " + K250 + b"\r\n"),
    ("get-key-251", b"get " + K251 + b"\r\n"),
    ("set-key-250", b"set " + K250 + b" 0 0 1\r\nx\r\nget " + K250 + b"\r\n"),
    ("set-noreply", b"set n 0 0 1 noreply\r\nx\r\nget n\r\n"),
    ("set-other-last-word", b"set n 0 0 1 foo\r\nx\r\n"),
    ("set-noreplyx", b"set n 0 0 1 noreplyx\r\nx\r\n"),
    ("set-too-few", b"set n 0 0\r\nx\r\n"),
    ("set-too-many", b"set n 0 0 1 noreply extra\r\nx\r\n"),
    ("set-flags-max", b"set n 4294967295 0 1\r\nx\r\nget n\r\n"),
    ("set-negative-exptime", b"set n 0 -1 1\r\nx\r\nget n\r\n"),
    ("set-plus-size", b"set n 0 0 +1\r\nx\r\nget n\r\n"),
    ("set-leading-zero-size", b"set n 0 0 01\r\nx\r\nget n\r\n"),
    ("set-zero-bytes", b"set n 0 0 0\r\n\r\nget n\r\n"),
    ("set-binary-data", b"set n 0 0 6\r\na\r\n\x00b\n\r\nget n\r\n"),
    ("set-size-int-max", b"set n 0 0 2147483646\r\n"),
    ("bad-chunk-longer", b"set a 0 0 1\r\nxy\r\nget a\r\n"),
    ("bad-chunk-much-longer", b"set a 0 0 1\r\nxyz\r\n"),
    ("bad-chunk-lf", b"set a 0 0 3\nxyz\nget a\n"),
    ("bad-chunk-noreply", b"set a 0 0 1 noreply\r\nxy\r\nversion\r\n"),
    ("add-exists", b"set a 0 0 1\r\nx\r\nadd a 0 0 1\r\ny\r\nget a\r\n"),
    ("add-new", b"add a 0 0 1\r\ny\r\nget a\r\n"),
    ("replace-miss", b"replace nope 0 0 1\r\nz\r\n"),
    ("replace-hit", b"set a 0 0 1\r\nx\r\nreplace a 3 0 1\r\nz\r\nget a\r\n"),
    ("append-prepend", b"set c 0 0 1\r\n1\r\nappend c 0 0 1\r\nz\r\nprepend c 0 0 1\r\na\r\nget c\r\n"),
    ("append-miss", b"append nope 0 0 1\r\nz\r\n"),
    (
        "cas-flow",
        b"set c 0 0 1\r\n1\r\ngets c\r\ncas c 0 0 1 1\r\n2\r\ncas c 0 0 1 1\r\n3\r\ncas q 0 0 1 1\r\nx\r\ngets c\r\n",
    ),
    ("cas-noreply", b"set c 0 0 1\r\n1\r\ncas c 0 0 1 999 noreply\r\nx\r\nversion\r\n"),
    ("cas-missing-unique", b"cas c 0 0 1\r\nx\r\n"),
    ("delete", b"set a 0 0 1\r\nx\r\ndelete a\r\ndelete a\r\n"),
    ("delete-noreply", b"set a 0 0 1\r\nx\r\ndelete a noreply\r\nget a\r\n"),
    ("delete-zero", b"delete n 0\r\n"),
    ("delete-zero-noreply", b"delete n 0 noreply\r\nversion\r\n"),
    ("delete-hold", b"delete n 1\r\n"),
    ("delete-word", b"delete n foo\r\n"),
    ("delete-bare", b"delete\r\n"),
    ("delete-too-many", b"delete a b c d\r\n"),
    ("delete-key-251", b"delete " + K251 + b"\r\n"),
    ("touch", b"set a 0 0 1\r\nx\r\ntouch a 10\r\ntouch nope 10\r\n"),
    ("touch-no-exptime", b"touch n\r\n"),
    ("touch-bad-exptime", b"touch n x\r\n"),
    ("touch-noreply", b"touch n 10 noreply\r\nversion\r\n"),
    ("gat", b"set a 0 0 1\r\nx\r\ngat 10 a nope\r\ngats 10 a\r\n"),
    ("gat-no-key", b"gat 10\r\n"),
    ("gat-bad-exptime", b"gat n\r\n"),
    ("gat-negative-expires", b"set a 0 0 1\r\nx\r\ngat -1 a\r\nget a\r\n"),
    (
        "incr-decr",
        b"set c 0 0 1\r\n5\r\nincr c 2\r\ndecr c 10\r\nincr c x\r\nincr c -1\r\nincr c 1 noreply\r\nget c\r\n",
    ),
    ("incr-miss", b"incr n 1\r\n"),
    ("incr-short", b"incr c\r\n"),
    ("incr-non-numeric", b"set c 0 0 1\r\nx\r\nincr c 1\r\n"),
    ("incr-wrap", b"set c 0 0 20\r\n18446744073709551615\r\nincr c 2\r\n"),
    ("flush_all", b"set a 0 0 1\r\nx\r\nflush_all\r\nget a\r\n"),
    ("flush_all-trailing-space", b"flush_all \r\n"),
    ("flush_all-0", b"flush_all 0\r\n"),
    ("flush_all-noreply", b"flush_all noreply\r\nversion\r\n"),
    ("flush_all-0-noreply", b"flush_all 0 noreply\r\nversion\r\n"),
    ("flush_all-bad", b"flush_all x\r\n"),
    ("flush_all-negative", b"flush_all -1\r\n"),
    ("flush_all-two-args", b"flush_all 0 2\r\n"),
    ("flush_all-three-args", b"flush_all 1 2 3\r\n"),
    ("verbosity", b"verbosity 1\r\n"),
    ("verbosity-bare", b"verbosity\r\n"),
    ("verbosity-bad", b"verbosity x\r\n"),
    ("verbosity-noreply", b"verbosity 1 noreply\r\nversion\r\n"),
    ("verbosity-two", b"verbosity 1 2\r\n"),
    ("verbosity-noreply-only", b"verbosity noreply\r\nversion\r\n"),
    ("quit", b"quit\r\nversion\r\n"),
    ("quit-args", b"quit x\r\n"),
    ("too-large", b"set n 0 0 1048577\r\n" + b"z" * 1048577 + b"\r\nget n\r\n"),
    ("too-large-noreply", b"set n 0 0 2000000 noreply\r\n" + b"z" * 2000000 + b"\r\nversion\r\n"),
    ("too-large-trailer-unchecked", b"set n 0 0 2000000\r\n" + b"z" * 2000000 + b"XYversion\r\n"),
    ("pipelined", b"set a 0 0 1\r\n1\r\nset b 0 0 1\r\n2\r\nget a\r\nget b\r\ndelete a\r\nget a b\r\nversion\r\n"),
]
META = [
    ("mg-miss", b"mg nope v\r\n"),
    ("mg-hit-v", b"set m 5 0 3\r\nabc\r\nmg m v\r\n"),
    ("mg-hit-hd", b"set m 5 0 3\r\nabc\r\nmg m\r\n"),
    ("mg-meta-memcache", b"set m 5 0 3\r\nabc\r\nmg m f v t l h\r\nmg m f v t l h c\r\n"),
    ("mg-flags-order", b"set m 5 0 3\r\nabc\r\nmg m k v s O123 f t c\r\n"),
    ("mg-quiet-pipeline", b"set m 0 0 1\r\nx\r\nmg m k O1 q\r\nmg nope k O2 q\r\nmg nope k O3\r\nmn\r\n"),
    ("mg-miss-flags", b"mg nope k v O9 f\r\n"),
    ("mg-bare", b"mg\r\n"),
    ("mg-invalid-flag", b"mg m x\r\n"),
    ("mg-duplicate-flag", b"mg m v v\r\n"),
    ("mg-bad-ttl", b"mg m Tabc\r\n"),
    ("mg-ttl-no-number", b"mg m T\r\n"),
    ("mg-opaque-33", b"mg m O12345678901234567890123456789012 v\r\n"),
    ("mg-opaque-32", b"mg m O1234567890123456789012345678901 v\r\n"),
    ("mg-too-many-flags", b"mg m 1 2 3 4 5 6 7 8 9 a b c d e f g h i j\r\n"),
    ("mg-17-flags", b"mg m v k s t c f h l q u O1 P L T5 R5 N5 b\r\n"),
    ("mg-ignored-P-L", b"mg m Lfoo Pbar v\r\n"),
    ("mg-empty-opaque", b"mg m O\r\n"),
    ("mg-base64-key", b"ms c2lt 3 b k\r\nxyz\r\nmg c2lt b k v\r\nget sim\r\n"),
    ("mg-base64-miss", b"mg bm9wZQ== b k v O1\r\nmg bm9wZQ== b v O1 k\r\n"),
    ("mg-base64-bad", b"mg !!! b v\r\nmg a= b v\r\n"),
    ("mg-literal-base64-text", b"mg bQ== k v\r\n"),
    ("mg-key-251", b"mg " + K251 + b" v\r\n"),
    ("mg-vivify", b"mg nope N30 v c\r\nmg nope v\r\n"),
    ("mg-byte-127", b"mg m \x7fa\r\n"),
    ("mn", b"mn\r\nmn x\r\n"),
    ("ms-basic", b"ms s1 3\r\nabc\r\nmg s1 v f\r\n"),
    ("ms-flags", b"ms s1 3 F7 T0 c k O5\r\nxyz\r\nmg s1 v f\r\n"),
    ("ms-quiet", b"ms s1 3 q\r\nxyz\r\nmn\r\n"),
    ("ms-add-exists", b"ms s1 3\r\nxyz\r\nms s1 3 ME\r\nxyz\r\nms s1 3 ME q\r\nxyz\r\n"),
    ("ms-append", b"ms s1 3\r\nabc\r\nms s1 1 MA\r\nd\r\nms s1 1 MP\r\nz\r\nmg s1 v\r\n"),
    ("ms-replace-miss", b"ms nope 1 MR\r\nx\r\n"),
    ("ms-bad-mode", b"ms s1 3 MX\r\nxyz\r\nmn\r\n"),
    ("ms-long-mode", b"ms s1 3 MEE\r\nxyz\r\nmn\r\n"),
    ("ms-no-size", b"ms s1\r\nxyz\r\n"),
    ("ms-bad-size", b"ms s1 x\r\nxyz\r\n"),
    ("ms-negative-size", b"ms s1 -1\r\nxyz\r\n"),
    ("ms-invalid-flag", b"ms s1 3 zz\r\nxyz\r\nmn\r\n"),
    ("ms-duplicate-flag", b"ms s 1 k c k\r\nx\r\nmn\r\n"),
    ("ms-bad-chunk", b"ms s1 3\r\nxyzw\r\nmn\r\n"),
    ("ms-bad-chunk-quiet", b"ms s1 3 q\r\nxyzw\r\nmn\r\n"),
    ("ms-bad-F", b"ms s1 3 Fx\r\nxyz\r\nmn\r\n"),
    ("ms-empty-F", b"ms s 1 F\r\nx\r\nmn\r\n"),
    ("ms-negative-F", b"ms s 1 F-1\r\nx\r\nmn\r\n"),
    ("ms-empty-T", b"ms s 1 T\r\nx\r\nmn\r\n"),
    ("ms-cas-mismatch", b"ms s1 3\r\nxyz\r\nms s1 3 C999\r\nxyz\r\n"),
    ("ms-cas-flow", b"ms s1 3 c\r\nxyz\r\nms s1 3 C1 c\r\nabc\r\nmg s1 v c\r\n"),
    ("ms-invalid-S", b"ms s1 3 S100\r\nxyz\r\nmn\r\n"),
    ("ms-too-large", b"ms s1 2000000 T0\r\n" + b"z" * 2000000 + b"\r\nmn\r\n"),
    ("ms-too-large-quiet", b"ms s1 2000000 q\r\n" + b"z" * 2000000 + b"\r\nmn\r\n"),
    ("md", b"ms s 1\r\nx\r\nmd s\r\nmd s\r\n"),
    ("md-flags", b"md nope k O1\r\nmd nope q\r\nmn\r\n"),
    ("md-quiet-hit", b"ms s 1\r\nx\r\nmd s q\r\nmn\r\n"),
    ("md-bad-flag", b"md nope y\r\nmd nope v v\r\n"),
    ("md-bare", b"md\r\n"),
    ("md-base64", b"ms c2lt 3 b\r\nxyz\r\nmd c2lt b k\r\nget sim\r\n"),
    ("md-cas", b"ms s 1\r\nx\r\nmd s C5\r\nmd s C1\r\n"),
    ("ma-unsupported-me", b"mx m\r\n"),
]
GE = b.exptime_extras
BINARY = [
    ("noop", req(op.NOOP, opaque=7)),
    ("version", req(op.VERSION, opaque=1)),
    ("set-get", req(op.SET, b"bk", SE(0xDEADBEEF, 0), b"hello", opaque=2) + req(op.GET, b"bk", opaque=3)),
    ("setq-get", req(op.SETQ, b"bk", SE(5, 0), b"hi", opaque=3) + req(op.GET, b"bk", opaque=4)),
    ("getk", req(op.SET, b"bk", SE(5, 0), b"hi") + req(op.GETK, b"bk", opaque=5)),
    (
        "getkq-batch",
        req(op.SET, b"bk", SE(5, 0), b"hi")
        + req(op.GETKQ, b"bk", opaque=6)
        + req(op.GETKQ, b"zz", opaque=7)
        + req(op.NOOP, opaque=8),
    ),
    ("get-miss", req(op.GET, b"zz", opaque=9)),
    ("getk-miss", req(op.GETK, b"zz", opaque=9)),
    ("getq-miss", req(op.GETQ, b"zz", opaque=9) + req(op.NOOP)),
    ("add-exists", req(op.SET, b"bk", SE(0, 0), b"x") + req(op.ADD, b"bk", SE(0, 0), b"x", opaque=4)),
    ("addq-exists", req(op.SET, b"bk", SE(0, 0), b"x") + req(op.ADDQ, b"bk", SE(0, 0), b"x") + req(op.NOOP)),
    ("addq-new", req(op.ADDQ, b"bk", SE(0, 0), b"x") + req(op.NOOP)),
    ("replace-miss", req(op.REPLACE, b"nope", SE(0, 0), b"x")),
    ("append-miss", req(op.APPEND, b"nope", b"", b"x")),
    (
        "append",
        req(op.SET, b"bk", SE(3, 0), b"x")
        + req(op.APPEND, b"bk", b"", b"y")
        + req(op.PREPENDQ, b"bk", b"", b"w")
        + req(op.GET, b"bk"),
    ),
    ("set-cas-wrong", req(op.SET, b"bk", SE(0, 0), b"x") + req(op.SET, b"bk", SE(0, 0), b"x", cas=999)),
    (
        "set-cas-right",
        req(op.SET, b"bk", SE(0, 0), b"x") + req(op.SET, b"bk", SE(0, 0), b"y", cas=1) + req(op.GET, b"bk"),
    ),
    ("set-cas-miss", req(op.SET, b"nope", SE(0, 0), b"x", cas=999)),
    ("delete", req(op.SET, b"bk", SE(0, 0), b"x") + req(op.DELETE, b"bk") + req(op.DELETE, b"bk")),
    ("deleteq", req(op.SET, b"bk", SE(0, 0), b"x") + req(op.DELETEQ, b"bk") + req(op.DELETEQ, b"bk") + req(op.NOOP)),
    ("touch", req(op.SET, b"bk", SE(9, 0), b"x") + req(op.TOUCH, b"bk", GE(10)) + req(op.TOUCH, b"zz", GE(10))),
    (
        "gat",
        req(op.SET, b"bk", SE(9, 0), b"x")
        + req(op.GAT, b"bk", GE(10))
        + req(op.GATK, b"bk", GE(10))
        + req(op.GAT, b"zz", GE(10)),
    ),
    ("gatq-miss", req(op.GATQ, b"bk", GE(10)) + req(op.GATKQ, b"bk", GE(10)) + req(op.NOOP)),
    (
        "incr",
        req(op.INCREMENT, b"ctr", b.arithmetic_extras(5, 100, 0), opaque=8)
        + req(op.INCREMENT, b"ctr", b.arithmetic_extras(5, 100, 0), opaque=9)
        + req(op.DECREMENT, b"ctr", b.arithmetic_extras(500, 0, 0)),
    ),
    ("incr-no-create", req(op.INCREMENT, b"ctr", b.arithmetic_extras(5))),
    ("incr-non-numeric", req(op.SET, b"bk", SE(0, 0), b"x") + req(op.INCREMENT, b"bk", b.arithmetic_extras(5))),
    ("flush", req(op.SET, b"bk", SE(0, 0), b"x") + req(op.FLUSH) + req(op.GET, b"bk")),
    ("flush-delay-0", req(op.FLUSH, extras=GE(0))),
    ("flushq", req(op.FLUSHQ) + req(op.NOOP)),
    ("quit", req(op.QUIT, opaque=3) + req(op.NOOP)),
    ("quitq", req(op.QUITQ, opaque=3) + req(op.NOOP)),
    ("stat-unknown", req(op.STAT, b"foo", opaque=5)),
    ("verbosity-opcode-unknown", req(0x1B, opaque=3) + req(op.NOOP, opaque=4)),
    ("sasl-auth-unknown", req(0x21, b"PLAIN", value=b"\x00u\x00p", opaque=3) + req(op.NOOP, opaque=4)),
    ("text-after-binary", req(op.NOOP) + b"version\r\n"),
    ("key-overruns-body", b.HEADER.pack(0x80, op.GET, 3, 0, 0, 0, 2, 0, 0) + b"ab" + req(op.NOOP)),
    ("get-with-extras", req(op.GET, b"abc", b"1234") + req(op.NOOP)),
    ("get-no-key", req(op.GET) + req(op.NOOP)),
    ("set-no-extras", req(op.SET, b"k", b"", b"v") + req(op.NOOP)),
    ("set-extras-4", req(op.SET, b"k", b"1234", b"v") + req(op.NOOP)),
    ("get-key-251", req(op.GET, b"k" * 251) + req(op.NOOP)),
    ("get-key-250", req(op.GET, b"k" * 250) + req(op.NOOP)),
    ("version-with-body", req(op.VERSION, value=b"x")),
    ("flush-extras-8", req(op.FLUSH, extras=b"12345678") + req(op.NOOP)),
    ("touch-no-extras", req(op.TOUCH, b"k") + req(op.NOOP)),
    ("noop-odd-header", b.HEADER.pack(0x80, op.NOOP, 0, 0, 1, 5, 0, 77, 12)),
    ("key-any-bytes", req(op.SET, b"a\x00b \r\n", SE(1, 0), b"v") + req(op.GETK, b"a\x00b \r\n")),
    ("set-too-large", req(op.SET, b"big", SE(0, 0), b"z" * 2000000, opaque=6) + req(op.NOOP, opaque=7)),
    ("setq-too-large", req(op.SETQ, b"big", SE(0, 0), b"z" * 2000000, opaque=6) + req(op.NOOP, opaque=7)),
    ("binary-values", req(op.SET, b"bk", SE(16, 0), b"\x00\r\n\x80\xff") + req(op.GETK, b"bk")),
]


# ---------------------------------------------------------------------------- memcached 1.6.18's answers

TEXT_REPLIES = {
    "version": (b"VERSION 1.6.18\r\n", False),
    "version-args": (b"VERSION 1.6.18\r\n", False),
    "set-get": (b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n", False),
    "set-gets": (b"STORED\r\nVALUE a 5 3 1\r\nabc\r\nEND\r\n", False),
    "multiget-dup-miss": (
        (b"STORED\r\nSTORED\r\nVALUE a 1 1\r\nx\r\nVALUE b 2 2\r\nyy\r\nVALUE a 1 1\r\nx\r\nEND\r\n"),
        False,
    ),
    "get-nothing": (b"END\r\n", False),
    "get-no-key": (b"ERROR\r\n", False),
    "gets-no-key": (b"ERROR\r\n", False),
    "bget": (b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n", False),
    "unknown": (b"ERROR\r\n", False),
    "uppercase": (b"ERROR\r\n", False),
    "empty-line": (b"ERROR\r\n", False),
    "bare-newline": (b"ERROR\r\n", False),
    "one-letter": (b"ERROR\r\n", False),
    "spaces-only": (b"ERROR\r\n", False),
    "lf-only-lines": (b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n", False),
    "extra-spaces": (b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n", False),
    "get-key-250": (b"END\r\n", False),
    "get-key-251": (b"CLIENT_ERROR bad command line format\r\n", False),
    "set-key-250": (
        (
            b"STORED\r\nVALUE kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
            b"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
            b"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
            b"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk 0 1\r\nx\r\nEND\r\n"
        ),
        False,
    ),
    "set-noreply": (b"VALUE n 0 1\r\nx\r\nEND\r\n", False),
    "set-other-last-word": (b"STORED\r\n", False),
    "set-noreplyx": (b"STORED\r\n", False),
    "set-too-few": (b"ERROR\r\nERROR\r\n", False),
    "set-too-many": (b"ERROR\r\nERROR\r\n", False),
    "set-flags-max": (b"STORED\r\nVALUE n 4294967295 1\r\nx\r\nEND\r\n", False),
    "set-negative-exptime": (b"STORED\r\nEND\r\n", False),
    "set-plus-size": (b"STORED\r\nVALUE n 0 1\r\nx\r\nEND\r\n", False),
    "set-leading-zero-size": (b"STORED\r\nVALUE n 0 1\r\nx\r\nEND\r\n", False),
    "set-zero-bytes": (b"STORED\r\nVALUE n 0 0\r\n\r\nEND\r\n", False),
    "set-binary-data": (b"STORED\r\nVALUE n 0 6\r\na\r\n\x00b\n\r\nEND\r\n", False),
    "set-size-int-max": (b"CLIENT_ERROR bad command line format\r\n", False),
    "bad-chunk-longer": (b"CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\n", False),
    "bad-chunk-much-longer": (b"CLIENT_ERROR bad data chunk\r\nERROR\r\n", False),
    "bad-chunk-lf": (b"CLIENT_ERROR bad data chunk\r\nERROR\r\n", False),
    "bad-chunk-noreply": (b"ERROR\r\nVERSION 1.6.18\r\n", False),
    "add-exists": (b"STORED\r\nNOT_STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n", False),
    "add-new": (b"STORED\r\nVALUE a 0 1\r\ny\r\nEND\r\n", False),
    "replace-miss": (b"NOT_STORED\r\n", False),
    "replace-hit": (b"STORED\r\nSTORED\r\nVALUE a 3 1\r\nz\r\nEND\r\n", False),
    "append-prepend": (b"STORED\r\nSTORED\r\nSTORED\r\nVALUE c 0 3\r\na1z\r\nEND\r\n", False),
    "append-miss": (b"NOT_STORED\r\n", False),
    "cas-flow": (
        (b"STORED\r\nVALUE c 0 1 1\r\n1\r\nEND\r\nSTORED\r\nEXISTS\r\nNOT_FOUND\r\nVALUE c 0 1 2\r\n2\r\nEND\r\n"),
        False,
    ),
    "cas-noreply": (b"STORED\r\nVERSION 1.6.18\r\n", False),
    "cas-missing-unique": (b"ERROR\r\nERROR\r\n", False),
    "delete": (b"STORED\r\nDELETED\r\nNOT_FOUND\r\n", False),
    "delete-noreply": (b"STORED\r\nEND\r\n", False),
    "delete-zero": (b"NOT_FOUND\r\n", False),
    "delete-zero-noreply": (b"VERSION 1.6.18\r\n", False),
    "delete-hold": (b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n", False),
    "delete-word": (b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n", False),
    "delete-bare": (b"ERROR\r\n", False),
    "delete-too-many": (b"ERROR\r\n", False),
    "delete-key-251": (b"CLIENT_ERROR bad command line format\r\n", False),
    "touch": (b"STORED\r\nTOUCHED\r\nNOT_FOUND\r\n", False),
    "touch-no-exptime": (b"ERROR\r\n", False),
    "touch-bad-exptime": (b"CLIENT_ERROR invalid exptime argument\r\n", False),
    "touch-noreply": (b"VERSION 1.6.18\r\n", False),
    "gat": (b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\nVALUE a 0 1 1\r\nx\r\nEND\r\n", False),
    "gat-no-key": (b"END\r\n", False),
    "gat-bad-exptime": (b"CLIENT_ERROR invalid exptime argument\r\n", False),
    "gat-negative-expires": (b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\nEND\r\n", False),
    "incr-decr": (
        (
            b"STORED\r\n7\r\n0\r\nCLIENT_ERROR invalid numeric delta argument\r\nCLIENT_ERR"
            b"OR invalid numeric delta argument\r\nVALUE c 0 1\r\n1\r\nEND\r\n"
        ),
        False,
    ),
    "incr-miss": (b"NOT_FOUND\r\n", False),
    "incr-short": (b"ERROR\r\n", False),
    "incr-non-numeric": (b"STORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n", False),
    "incr-wrap": (b"STORED\r\n1\r\n", False),
    "flush_all": (b"STORED\r\nOK\r\nEND\r\n", False),
    "flush_all-trailing-space": (b"OK\r\n", False),
    "flush_all-0": (b"OK\r\n", False),
    "flush_all-noreply": (b"VERSION 1.6.18\r\n", False),
    "flush_all-0-noreply": (b"VERSION 1.6.18\r\n", False),
    "flush_all-bad": (b"CLIENT_ERROR invalid exptime argument\r\n", False),
    "flush_all-negative": (b"OK\r\n", False),
    "flush_all-two-args": (b"OK\r\n", False),
    "flush_all-three-args": (b"ERROR\r\n", False),
    "verbosity": (b"OK\r\n", False),
    "verbosity-bare": (b"ERROR\r\n", False),
    "verbosity-bad": (b"CLIENT_ERROR bad command line format\r\n", False),
    "verbosity-noreply": (b"VERSION 1.6.18\r\n", False),
    "verbosity-two": (b"OK\r\n", False),
    "verbosity-noreply-only": (b"VERSION 1.6.18\r\n", False),
    "quit": (b"", True),
    "quit-args": (b"", True),
    "too-large": (b"SERVER_ERROR object too large for cache\r\nEND\r\n", False),
    "too-large-noreply": (b"VERSION 1.6.18\r\n", False),
    "too-large-trailer-unchecked": (b"SERVER_ERROR object too large for cache\r\nVERSION 1.6.18\r\n", False),
    "pipelined": (
        (
            b"STORED\r\nSTORED\r\nVALUE a 0 1\r\n1\r\nEND\r\nVALUE b 0 1\r\n2\r\nEND\r\nDEL"
            b"ETED\r\nVALUE b 0 1\r\n2\r\nEND\r\nVERSION 1.6.18\r\n"
        ),
        False,
    ),
}

META_REPLIES = {
    "mg-miss": (b"EN\r\n", False),
    "mg-hit-v": (b"STORED\r\nVA 3\r\nabc\r\n", False),
    "mg-hit-hd": (b"STORED\r\nHD\r\n", False),
    "mg-meta-memcache": (b"STORED\r\nVA 3 f5 t-1 l0 h0\r\nabc\r\nVA 3 f5 t-1 l0 h1 c1\r\nabc\r\n", False),
    "mg-flags-order": (b"STORED\r\nVA 3 km s3 O123 f5 t-1 c1\r\nabc\r\n", False),
    "mg-quiet-pipeline": (b"STORED\r\nHD km O1\r\nEN knope O3\r\nMN\r\n", False),
    "mg-miss-flags": (b"EN knope O9\r\n", False),
    "mg-bare": (b"ERROR\r\n", False),
    "mg-invalid-flag": (b"CLIENT_ERROR invalid flag\r\n", False),
    "mg-duplicate-flag": (b"CLIENT_ERROR duplicate flag\r\n", False),
    "mg-bad-ttl": (b"CLIENT_ERROR bad token in command line format\r\n", False),
    "mg-ttl-no-number": (b"CLIENT_ERROR bad token in command line format\r\n", False),
    "mg-opaque-33": (b"CLIENT_ERROR opaque token too long\r\n", False),
    "mg-opaque-32": (b"EN O1234567890123456789012345678901\r\n", False),
    "mg-too-many-flags": (b"CLIENT_ERROR options flags are too long\r\n", False),
    "mg-17-flags": (b"CLIENT_ERROR error decoding key\r\n", False),
    "mg-ignored-P-L": (b"EN\r\n", False),
    "mg-empty-opaque": (b"EN O\r\n", False),
    "mg-base64-key": (b"HD kc2lt b\r\nVA 3 kc2lt b\r\nxyz\r\nVALUE sim 0 3\r\nxyz\r\nEND\r\n", False),
    "mg-base64-miss": (b"EN kbm9wZQ== b O1\r\nEN O1 kbm9wZQ== b\r\n", False),
    "mg-base64-bad": (b"CLIENT_ERROR error decoding key\r\nCLIENT_ERROR error decoding key\r\n", False),
    "mg-literal-base64-text": (b"EN kbQ==\r\n", False),
    "mg-key-251": (b"CLIENT_ERROR bad command line format\r\n", False),
    "mg-vivify": (b"VA 0 c1 W\r\n\r\nVA 0 Z\r\n\r\n", False),
    "mg-byte-127": (b"CLIENT_ERROR duplicate flag\r\n", False),
    "mn": (b"MN\r\nMN\r\n", False),
    "ms-basic": (b"HD\r\nVA 3 f0\r\nabc\r\n", False),
    "ms-flags": (b"HD c1 ks1 O5\r\nVA 3 f7\r\nxyz\r\n", False),
    "ms-quiet": (b"MN\r\n", False),
    "ms-add-exists": (b"HD\r\nNS\r\nNS\r\n", False),
    "ms-append": (b"HD\r\nHD\r\nHD\r\nVA 5\r\nzabcd\r\n", False),
    "ms-replace-miss": (b"NS\r\n", False),
    "ms-bad-mode": (b"CLIENT_ERROR invalid mode for ms M token\r\nMN\r\n", False),
    "ms-long-mode": (b"CLIENT_ERROR incorrect length for M token\r\nMN\r\n", False),
    "ms-no-size": (b"CLIENT_ERROR bad command line format\r\nERROR\r\n", False),
    "ms-bad-size": (b"CLIENT_ERROR bad command line format\r\nERROR\r\n", False),
    "ms-negative-size": (b"CLIENT_ERROR bad command line format\r\nERROR\r\n", False),
    "ms-invalid-flag": (b"CLIENT_ERROR invalid flag\r\nMN\r\n", False),
    "ms-duplicate-flag": (b"CLIENT_ERROR duplicate flag\r\nMN\r\n", False),
    "ms-bad-chunk": (b"CLIENT_ERROR bad data chunk\r\nERROR\r\nMN\r\n", False),
    "ms-bad-chunk-quiet": (b"CLIENT_ERROR bad data chunk\r\nERROR\r\nMN\r\n", False),
    "ms-bad-F": (b"CLIENT_ERROR bad command line format\r\nMN\r\n", False),
    "ms-empty-F": (b"CLIENT_ERROR bad command line format\r\nMN\r\n", False),
    "ms-negative-F": (b"CLIENT_ERROR bad command line format\r\nMN\r\n", False),
    "ms-empty-T": (b"CLIENT_ERROR bad token in command line format\r\nMN\r\n", False),
    "ms-cas-mismatch": (b"HD\r\nEX\r\n", False),
    "ms-cas-flow": (b"HD c1\r\nHD c2\r\nVA 3 c2\r\nabc\r\n", False),
    "ms-invalid-S": (b"CLIENT_ERROR invalid flag\r\nMN\r\n", False),
    "ms-too-large": (b"SERVER_ERROR object too large for cache\r\nMN\r\n", False),
    "ms-too-large-quiet": (b"SERVER_ERROR object too large for cache\r\nMN\r\n", False),
    "md": (b"HD\r\nHD\r\nNF\r\n", False),
    "md-flags": (b"NF knope O1\r\nNF\r\nMN\r\n", False),
    "md-quiet-hit": (b"HD\r\nMN\r\n", False),
    "md-bad-flag": ((b"CLIENT_ERROR invalid or duplicate flag\r\nCLIENT_ERROR invalid or duplicate flag\r\n"), False),
    "md-bare": (b"ERROR\r\n", False),
    "md-base64": (b"HD\r\nHD kc2lt b\r\nEND\r\n", False),
    "md-cas": (b"HD\r\nEX\r\nHD\r\n", False),
    "ma-unsupported-me": (b"ERROR\r\n", False),
}

BINARY_REPLIES = {
    "verbosity-opcode-unknown": (
        b"\x81\x1b\x00\x00\x00\x00\x00\x81\x00\x00\x00\x0f\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00"
        b"Unknown command"
        b"\x81\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00",
        False,
    ),
    "sasl-auth-unknown": (
        b"\x81!\x00\x00\x00\x00\x00\x81\x00\x00\x00\x0f\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00"
        b"Unknown command"
        b"\x81\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00",
        False,
    ),
    "noop": (
        (b"\x81\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x00"),
        False,
    ),
    "version": (
        (b"\x81\x0b\x00\x00\x00\x00\x00\x00\x00\x00\x00\x06\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x001.6.18"),
        False,
    ),
    "set-get": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\t\x00\x00"
            b"\x00\x03\x00\x00\x00\x00\x00\x00\x00\x01\xde\xad\xbe\xefhello"
        ),
        False,
    ),
    "setq-get": (
        (
            b"\x81\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x06\x00\x00\x00\x04\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x00\x00\x00\x05hi"
        ),
        False,
    ),
    "getk": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\x0c\x00\x02\x04\x00\x00\x00\x00\x00\x00\x08\x00\x00"
            b"\x00\x05\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x05bkhi"
        ),
        False,
    ),
    "getkq-batch": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\r\x00\x02\x04\x00\x00\x00\x00\x00\x00\x08\x00\x00"
            b"\x00\x06\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x05bkhi\x81\n\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00"
            b"\x00"
        ),
        False,
    ),
    "get-miss": (
        (b"\x81\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\t\x00\x00\x00\t\x00\x00\x00\x00\x00\x00\x00\x00Not found"),
        False,
    ),
    "getk-miss": (
        (b"\x81\x0c\x00\x02\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\t\x00\x00\x00\x00\x00\x00\x00\x00zz"),
        False,
    ),
    "getq-miss": (
        (b"\x81\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
        False,
    ),
    "add-exists": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\x02\x00\x00\x00\x00\x00\x02\x00\x00\x00\x14\x00\x00"
            b"\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00Data exists for key."
        ),
        False,
    ),
    "addq-exists": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\x12\x00\x00\x00\x00\x00\x02\x00\x00\x00\x14\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00Data exists for key.\x81\n\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00"
        ),
        False,
    ),
    "addq-new": (
        (b"\x81\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
        False,
    ),
    "replace-miss": (
        (b"\x81\x03\x00\x00\x00\x00\x00\x01\x00\x00\x00\t\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00Not found"),
        False,
    ),
    "append-miss": (
        (
            b"\x81\x0e\x00\x00\x00\x00\x00\x05\x00\x00\x00\x0b\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00Not stored."
        ),
        False,
    ),
    "append": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\x0e\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x81\x00\x00\x00\x04\x00\x00\x00\x00"
            b"\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x03w"
            b"xy"
        ),
        False,
    ),
    "set-cas-wrong": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\x01\x00\x00\x00\x00\x00\x02\x00\x00\x00\x14\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00Data exists for key."
        ),
        False,
    ),
    "set-cas-right": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x81\x00\x00\x00\x04\x00\x00\x00\x00"
            b"\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00y"
        ),
        False,
    ),
    "set-cas-miss": (
        (b"\x81\x01\x00\x00\x00\x00\x00\x01\x00\x00\x00\t\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00Not found"),
        False,
    ),
    "delete": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x81\x04\x00\x00\x00\x00\x00\x01\x00"
            b"\x00\x00\t\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00Not found"
        ),
        False,
    ),
    "deleteq": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\x14\x00\x00\x00\x00\x00\x01\x00\x00\x00\t\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00Not found\x81\n\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        ),
        False,
    ),
    "touch": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\x1c\x00\x00\x04\x00\x00\x00\x00\x00\x00\x04\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\t\x81\x1c\x00\x00\x00"
            b"\x00\x00\x01\x00\x00\x00\t\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00Not"
            b" found"
        ),
        False,
    ),
    "gat": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\x1d\x00\x00\x04\x00\x00\x00\x00\x00\x00\x05\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\tx\x81#\x00\x02\x04\x00"
            b"\x00\x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00"
            b"\x00\x00\tbkx\x81\x1d\x00\x00\x00\x00\x00\x01\x00\x00\x00\t\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00Not found"
        ),
        False,
    ),
    "gatq-miss": (
        (b"\x81\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
        False,
    ),
    "incr": (
        (
            b"\x81\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x08\x00\x00\x00\x08\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00d\x81\x05\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x08\x00\x00\x00\t\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00"
            b"\x00\x00\x00\x00\x00i\x81\x06\x00\x00\x00\x00\x00\x00\x00\x00\x00\x08\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00"
        ),
        False,
    ),
    "incr-no-create": (
        (b"\x81\x05\x00\x00\x00\x00\x00\x01\x00\x00\x00\t\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00Not found"),
        False,
    ),
    "incr-non-numeric": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\x05\x00\x00\x00\x00\x00\x06\x00\x00\x00.\x00\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00Non-numeric server-side value for incr or"
            b" decr"
        ),
        False,
    ),
    "flush": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x81\x00\x00\x00\x00\x00\x00\x01\x00"
            b"\x00\x00\t\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00Not found"
        ),
        False,
    ),
    "flush-delay-0": (
        (b"\x81\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
        False,
    ),
    "flushq": (
        (b"\x81\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
        False,
    ),
    "quit": (
        (b"\x81\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00"),
        True,
    ),
    "quitq": (b"", True),
    "stat-unknown": (
        (b"\x81\x10\x00\x00\x00\x00\x00\x01\x00\x00\x00\t\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x00Not found"),
        False,
    ),
    "text-after-binary": (
        (b"\x81\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
        False,
    ),
    "key-overruns-body": (
        (
            b"\x81\x00\x00\x00\x00\x00\x00\x81\x00\x00\x00\x0f\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00"
            b"Unknown command"
        ),
        True,
    ),
    "get-with-extras": (
        (
            b"\x81\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x11\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00Invalid arguments"
        ),
        True,
    ),
    "get-no-key": (
        (
            b"\x81\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x11\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00Invalid arguments"
        ),
        True,
    ),
    "set-no-extras": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x04\x00\x00\x00\x11\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00Invalid arguments"
        ),
        True,
    ),
    "set-extras-4": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x04\x00\x00\x00\x11\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00Invalid arguments"
        ),
        True,
    ),
    "get-key-251": (
        (
            b"\x81\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x11\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00Invalid arguments"
        ),
        True,
    ),
    "get-key-250": (
        (
            b"\x81\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\t\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00Not found\x81\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        ),
        False,
    ),
    "version-with-body": (
        (
            b"\x81\x0b\x00\x00\x00\x00\x00\x04\x00\x00\x00\x11\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00Invalid arguments"
        ),
        True,
    ),
    "flush-extras-8": (
        (
            b"\x81\x08\x00\x00\x00\x00\x00\x04\x00\x00\x00\x11\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00Invalid arguments"
        ),
        True,
    ),
    "touch-no-extras": (
        (
            b"\x81\x1c\x00\x00\x00\x00\x00\x04\x00\x00\x00\x11\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x00Invalid arguments"
        ),
        True,
    ),
    "noop-odd-header": (
        (b"\x81\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00M\x00\x00\x00\x00\x00\x00\x00\x00"),
        False,
    ),
    "key-any-bytes": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\x0c\x00\x06\x04\x00\x00\x00\x00\x00\x00\x0b\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01a\x00b \r\nv"
        ),
        False,
    ),
    "set-too-large": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x03\x00\x00\x00\n\x00\x00\x00\x06\x00\x00\x00"
            b"\x00\x00\x00\x00\x00Too large.\x81\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x00"
        ),
        False,
    ),
    "setq-too-large": (
        (
            b"\x81\x11\x00\x00\x00\x00\x00\x03\x00\x00\x00\n\x00\x00\x00\x06\x00\x00\x00"
            b"\x00\x00\x00\x00\x00Too large.\x81\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x00"
        ),
        False,
    ),
    "binary-values": (
        (
            b"\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x00\x01\x81\x0c\x00\x02\x04\x00\x00\x00\x00\x00\x00\x0b\x00\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x10bk\x00\r\n\x80\xff"
        ),
        False,
    ),
}


# ---------------------------------------------------------------------------- where we differ, on purpose

DIFFERENCES = [
    Difference(
        "set-key-251",
        b"set " + K251 + b" 0 0 1\r\nx\r\nversion\r\n",
        memcached=(b"CLIENT_ERROR bad command line format\r\nERROR\r\nVERSION 1.6.18\r\n", False),
        ours=(b"CLIENT_ERROR bad command line format\r\nVERSION 1.6.18\r\n", False),
        why="the data of a refused set is skipped, never read as commands",
    ),
    Difference(
        "set-key-251-noreply",
        b"set " + K251 + b" 0 0 1 noreply\r\nx\r\nversion\r\n",
        memcached=(b"ERROR\r\nVERSION 1.6.18\r\n", False),
        ours=(b"VERSION 1.6.18\r\n", False),
        why="the same, silently under noreply",
    ),
    Difference(
        "set-bad-flags",
        b"set n abc 0 1\r\nx\r\nversion\r\n",
        memcached=(b"CLIENT_ERROR bad command line format\r\nERROR\r\nVERSION 1.6.18\r\n", False),
        ours=(b"CLIENT_ERROR bad command line format\r\nVERSION 1.6.18\r\n", False),
        why="the data of a refused set is skipped",
    ),
    Difference(
        "set-negative-flags",
        b"set n -1 0 1\r\nx\r\nversion\r\n",
        memcached=(b"CLIENT_ERROR bad command line format\r\nERROR\r\nVERSION 1.6.18\r\n", False),
        ours=(b"CLIENT_ERROR bad command line format\r\nVERSION 1.6.18\r\n", False),
        why="the data of a refused set is skipped",
    ),
    Difference(
        "set-bad-exptime",
        b"set n 0 x1 1\r\nx\r\nversion\r\n",
        memcached=(b"CLIENT_ERROR bad command line format\r\nERROR\r\nVERSION 1.6.18\r\n", False),
        ours=(b"CLIENT_ERROR bad command line format\r\nVERSION 1.6.18\r\n", False),
        why="the data of a refused set is skipped",
    ),
    Difference(
        "cas-bad-unique",
        b"cas c 0 0 1 x\r\nx\r\nversion\r\n",
        memcached=(b"CLIENT_ERROR bad command line format\r\nERROR\r\nVERSION 1.6.18\r\n", False),
        ours=(b"CLIENT_ERROR bad command line format\r\nVERSION 1.6.18\r\n", False),
        why="the data of a refused cas is skipped",
    ),
    Difference(
        "set-payload-is-command",
        b"set " + K251 + b" 0 0 9\r\nflush_all\r\nversion\r\n",
        memcached=(b"CLIENT_ERROR bad command line format\r\nOK\r\nVERSION 1.6.18\r\n", False),
        ours=(b"CLIENT_ERROR bad command line format\r\nVERSION 1.6.18\r\n", False),
        why="memcached runs a refused set's payload as a command (here flush_all): we skip it",
    ),
    Difference(
        "set-flags-2^32",
        b"set n 4294967296 0 1\r\nx\r\nget n\r\n",
        memcached=(b"STORED\r\nVALUE n 0 1\r\nx\r\nEND\r\n", False),
        ours=(b"CLIENT_ERROR bad command line format\r\nEND\r\n", False),
        why="memcached keeps the low 32 bits of larger flags; we refuse them",
    ),
    Difference(
        "ms-F-2^32",
        b"ms s 1 F4294967296\r\nx\r\nmn\r\n",
        memcached=(b"HD\r\nMN\r\n", False),
        ours=(b"CLIENT_ERROR bad command line format\r\nMN\r\n", False),
        why="the same for ms F",
    ),
    Difference(
        "set-tab-key",
        b"set a\tb 0 0 1\r\nx\r\nget a\tb\r\n",
        memcached=(b"STORED\r\nVALUE a\tb 0 1\r\nx\r\nEND\r\n", False),
        ours=((b"CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\n"), False),
        why="memcached takes control characters in keys, protocol.txt forbids them: we refuse",
    ),
    Difference(
        "set-ctrl-key",
        b"set a\x01b 0 0 1\r\nx\r\nget a\x01b\r\n",
        memcached=(b"STORED\r\nVALUE a\x01b 0 1\r\nx\r\nEND\r\n", False),
        ours=((b"CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\n"), False),
        why="the same",
    ),
    Difference(
        "get-ctrl-key",
        b"get a\x01b\r\n",
        memcached=(b"END\r\n", False),
        ours=(b"CLIENT_ERROR bad command line format\r\n", False),
        why="the same",
    ),
    Difference(
        "mg-ctrl-key",
        b"mg m\x01 v\r\n",
        memcached=(b"EN\r\n", False),
        ours=(b"CLIENT_ERROR bad command line format\r\n", False),
        why="the same (a base64 key, flag b, may hold any byte)",
    ),
    Difference(
        "ms-key-251",
        b"ms " + K251 + b" 1\r\nx\r\nmn\r\n",
        memcached=(b"CLIENT_ERROR bad command line format\r\nERROR\r\nMN\r\n", False),
        ours=(b"CLIENT_ERROR bad command line format\r\nMN\r\n", False),
        why="the data of a refused ms is skipped when its length is known",
    ),
    Difference(
        "ms-too-many-flags",
        b"ms s 1 a b c d e f g h i j k l m n o p q\r\nx\r\nmn\r\n",
        memcached=(b"CLIENT_ERROR options flags too long\r\nERROR\r\nMN\r\n", False),
        ours=(b"CLIENT_ERROR options flags too long\r\nMN\r\n", False),
        why="the same",
    ),
    Difference(
        "line-too-long",
        b"x" * 3000,
        memcached=(b"", True),
        ours=(b"", False),
        why="memcached closes silently after 2048 bytes without a newline; we answer once the line ends",
    ),
    Difference(
        "line-too-long-then-more",
        b"x" * 3000 + b"\r\nversion\r\n",
        memcached=(b"ERROR\r\nVERSION 1.6.18\r\n", False),
        ours=(b"CLIENT_ERROR line too long\r\nVERSION 1.6.18\r\n", False),
        why="memcached takes a long line that arrives whole; we refuse it whatever the reads, then go on",
    ),
    Difference(
        "http",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        memcached=(b"", True),
        ours=(b"ERROR\r\n", True),
        why="memcached hangs up silently on HTTP; we say ERROR first",
    ),
    Difference(
        "multiget-one-bad",
        b"set a 0 0 1\r\nx\r\nget a " + K251 + b"\r\n",
        memcached=(b"CLIENT_ERROR bad command line format\r\n", False),
        ours=(b"STORED\r\nCLIENT_ERROR bad command line format\r\n", False),
        why="memcached's error also wipes the earlier STORED still unsent",
    ),
    Difference(
        "unknown-opcode",
        req(0x50, b"k", opaque=3) + req(op.NOOP, opaque=4),
        memcached=(
            (
                b"\x81P\x00\x00\x00\x00\x00\x81\x00\x00\x00\x0f\x00\x00\x00\x03\x00\x00\x00\x00"
                b"\x00\x00\x00\x00"
                b"Unknown command"
            ),
            False,
        ),
        ours=(
            (
                b"\x81P\x00\x00\x00\x00\x00\x81\x00\x00\x00\x0f\x00\x00\x00\x03\x00\x00\x00\x00"
                b"\x00\x00\x00\x00Unknown command\x81\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                b"\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00"
            ),
            False,
        ),
        why="memcached skips an unknown opcode's key twice, eating the next header: we skip its body once",
    ),
    Difference(
        "bad-magic",
        req(op.NOOP) + b"\x81" + b"\x00" * 23,
        memcached=(
            (b"\x81\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
            True,
        ),
        ours=(
            (
                b"\x81\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                b"\x00\x00\x00\x00\x00\x81\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x11\x00\x00"
                b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00Invalid arguments"
            ),
            True,
        ),
        why="memcached closes silently on a bad magic; we answer Invalid arguments first",
    ),
    Difference(
        "stat-with-value",
        b.HEADER.pack(0x80, op.STAT, 0, 0, 0, 0, 3, 0, 0) + b"abc" + req(op.NOOP),
        memcached=(b"", True),
        ours=(
            (
                b"\x81\x10\x00\x00\x00\x00\x00\x04\x00\x00\x00\x11\x00\x00\x00\x00\x00\x00\x00"
                b"\x00\x00\x00\x00\x00Invalid arguments"
            ),
            True,
        ),
        why="memcached reads a STAT body past its key as the next header; we refuse the header",
    ),
    Difference(
        "touch-long-body",
        b.HEADER.pack(0x80, op.TOUCH, 1, 4, 0, 0, 7, 0, 0) + b"\0\0\0\x05kzz" + req(op.NOOP),
        memcached=(
            (
                b"\x81\x1c\x00\x00\x00\x00\x00\x01\x00\x00\x00\t\x00\x00\x00\x00\x00\x00\x00"
                b"\x00\x00\x00\x00\x00Not found"
            ),
            True,
        ),
        ours=(
            (
                b"\x81\x1c\x00\x00\x00\x00\x00\x04\x00\x00\x00\x11\x00\x00\x00\x00\x00\x00\x00"
                b"\x00\x00\x00\x00\x00Invalid arguments"
            ),
            True,
        ),
        why="the same for TOUCH",
    ),
]
