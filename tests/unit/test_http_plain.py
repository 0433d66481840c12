"""The HTTP fast path (protocols/http/plain.py) against h11, the reference: for any bytes, the fast parser
either steps aside (None) or gives exactly h11's events; its responses are h11's bytes; and a session on
the fast path writes what a session on h11 alone writes."""

from __future__ import annotations

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.http import mapping, plain
from protocols.http.session import HttpSession
from tests.unit.test_http_session import Harness

# -- plain bytes


def test_a_post_with_a_body() -> None:
    data = b"POST /reverse HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Gearman-Unique: u\r\n\r\nhello"
    request = plain.parse(data)
    assert request == plain.PlainRequest(
        b"POST",
        b"/reverse",
        b"1.1",
        [(b"host", b"x"), (b"content-length", b"5"), (b"x-gearman-unique", b"u")],
        b"hello",
        True,
    )


def test_http_1_0_and_connection_close_do_not_keep_the_connection() -> None:
    assert plain.parse(b"GET /f HTTP/1.0\r\n\r\n").keep_alive is False  # type: ignore[union-attr]
    assert plain.parse(b"GET /f HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive is False  # type: ignore[union-attr]
    assert plain.parse(b"GET /f HTTP/1.1\r\nHost: h\r\nConnection: Upkeep, CLOSE\r\n\r\n").keep_alive is False  # type: ignore[union-attr]
    assert plain.parse(b"GET /f HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n").keep_alive is True  # type: ignore[union-attr]


def test_header_values_lose_surrounding_whitespace_only() -> None:
    request = plain.parse(b"GET /f HTTP/1.1\r\nHost:\t h \r\nX-A:  a  b\t\r\nX-Empty:\r\n\r\n")
    assert request is not None
    assert request.headers == [(b"host", b"h"), (b"x-a", b"a  b"), (b"x-empty", b"")]


@pytest.mark.parametrize(
    "data",
    [
        b"POST /f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
        b"GET /f HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"CONNECT h:80 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\nx",
        b"GET /f HTTP/1.1\r\n\r\n",  # no Host
        b"GET /f HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /f HTTP/1.1\nHost: h\n\n",  # bare LF: h11's
        b"GET /f HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n",  # obsolete line folding: h11's
        b"GET /f HTTP/2.0\r\n\r\n",  # h11 parses it, the mapping answers 505
        b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhel",  # the body is still coming
        b"GET /f HTTP/1.1\r\nHost: h\r\n\r\nGET /g HTTP/1.1\r\nHost: h\r\n\r\n",  # pipelined: h11's
        b"GET /f HTTP/1.1\r\nHost: h\r\n",  # the head is still coming
        b"GET /f HTTP/1.1\r\nHost: h\r\nX-Big: " + b"x" * plain.MAX_HEAD_SIZE + b"\r\n\r\n",
        b"\r\nGET /f HTTP/1.0\r\n\r\n",
        b"GET  /f HTTP/1.0\r\n\r\n",
        b"GET /f HTTP/1.0\r\nBad Name: x\r\n\r\n",
        b"GET /f HTTP/1.0\r\nX: a\x00b\r\n\r\n",
    ],
)
def test_anything_else_is_left_to_h11(data: bytes) -> None:
    assert plain.parse(data) is None


# -- against h11: parsing


def h11_events(data: bytes) -> list[object] | str:
    """h11's events for ``data`` as a server sees it, or its error's class name."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=plain.MAX_HEAD_SIZE)
    conn.receive_data(data)
    events: list[object] = []
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            events.append(event)
            if type(event) is h11.EndOfMessage:
                break
    except h11.RemoteProtocolError as problem:
        return type(problem).__name__
    if events and type(events[-1]) is h11.EndOfMessage:
        # whether h11 keeps the connection after a response: our flag must agree
        conn.send(h11.Response(status_code=200, headers=[(b"Content-Length", b"0")]))
        conn.send(h11.EndOfMessage())
        events.append(("keep_alive", conn.our_state is h11.DONE, conn.trailing_data[0]))
    return events


def plain_events(request: plain.PlainRequest) -> list[object]:
    events: list[object] = [
        h11.Request(
            method=request.method, target=request.target, headers=request.headers, http_version=request.http_version
        )
    ]
    if request.body:
        events.append(h11.Data(data=request.body))
    events.append(h11.EndOfMessage())
    events.append(("keep_alive", request.keep_alive, b""))
    return events


def _normalized(events: list[object] | str) -> object:
    if isinstance(events, str):
        return events
    out = []
    for event in events:
        if type(event) is h11.Request:
            out.append(("request", event.method, event.target, list(event.headers), event.http_version))
        elif type(event) is h11.Data:
            out.append(("data", bytes(event.data)))
        else:
            out.append(event)
    return out


_GOOD_METHODS = [b"GET", b"POST", b"PUT", b"HEAD", b"DELETE"]
_TOKENS = st.sampled_from(_GOOD_METHODS * 4 + [b"CONNECT", b"get", b"X-M", b"G T", b""])
_TARGETS = st.sampled_from([b"/f", b"/reverse?x=1", b"/_gearman/status", b"/"] * 3 + [b"*", b"/a b", b"/\x80", b""])
_VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"] * 4 + [b"HTTP/1.2", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 "])
_GOOD_NAMES = [b"Content-Length", b"Connection", b"X-Gearman-Unique", b"X-Gearman-Background", b"Accept", b"X-A"]
_NAMES = st.sampled_from(
    _GOOD_NAMES * 3
    + [b"Host", b"host", b"content-length", b"Transfer-Encoding", b"Expect", b"Upgrade", b"Bad Name", b" X", b""]
)
_VALUES = st.one_of(
    st.sampled_from([b"x", b"5", b"0", b"close", b"keep-alive", b"Close, TE", b"a b", b"text/event-stream", b""]),
    st.sampled_from([b"chunked", b"100-continue", b"1, 1", b" 3 ", b"x\ty", b"x  ", b"\x80\xff"]),
    st.binary(max_size=12),
    st.text(alphabet=" \t,abcCLOSE0123456789\x80\x7f", max_size=12).map(lambda t: t.encode("latin-1")),
)
_SEPARATORS = st.sampled_from([b": ", b": ", b": ", b":", b":\t", b" : ", b"::"])


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Request-like bytes: mostly well-formed, with every kind of small damage."""
    line = draw(_TOKENS) + b" " + draw(_TARGETS) + b" " + draw(_VERSIONS)
    headers = draw(st.lists(st.tuples(_NAMES, _SEPARATORS, _VALUES), max_size=5))
    hosts = draw(st.sampled_from([1, 1, 1, 0, 2]))
    for _ in range(hosts):
        headers.insert(
            draw(st.integers(0, len(headers))), (b"Host", b": ", draw(st.sampled_from([b"h", b"h:80", b""])))
        )
    body = draw(st.binary(max_size=16))
    if draw(st.booleans()):
        headers.append((b"Content-Length", b": ", str(len(body) + draw(st.sampled_from([0, 0, 0, 1, -1]))).encode()))
    elif draw(st.booleans()):
        body = b""
    eol = draw(st.sampled_from([b"\r\n"] * 5 + [b"\n"]))
    data = line + eol + b"".join(name + colon + value + eol for name, colon, value in headers) + eol + body
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=3)) + data[at + draw(st.integers(0, 2)) :]
    return data


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_the_fast_parser_gives_h11s_events_or_steps_aside(data: bytes) -> None:
    request = plain.parse(data)
    if request is None:
        return  # h11 handles these bytes, whatever they are: the same events and the same errors by definition
    assert _normalized(h11_events(data)) == _normalized(plain_events(request))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_are_never_taken_for_something_h11_reads_otherwise(data: bytes) -> None:
    request = plain.parse(data)
    if request is not None:
        assert _normalized(h11_events(data)) == _normalized(plain_events(request))


# -- against h11: responses

_STATUSES = st.sampled_from([200, 302, 400, 404, 405, 413, 502, 503, 504, 505])
_RESPONSE_HEADERS = st.lists(
    st.sampled_from(
        [
            (b"X-Gearman-Job-Handle", b"H:t:1"),
            (b"X-Gearman-Command", b"WORK_COMPLETE"),
            (b"Connection", b"close"),
            (b"Connection", b"keep-alive"),
            (b"connection", b"Keep-Alive, Close"),
            (b"Allow", b"GET, HEAD"),
            (b"Content-Type", b"text/plain; charset=utf-8"),
            (b"Location", b"/_gearman/"),
        ]
    ),
    max_size=4,
)


@settings(max_examples=1000, deadline=None)
@given(
    _STATUSES,
    _RESPONSE_HEADERS,
    st.binary(max_size=20),
    st.sampled_from([b"GET", b"HEAD", b"POST"]),
    st.sampled_from([b"1.0", b"1.1"]),
    st.sampled_from([b"", b"Connection: close\r\n", b"Connection: keep-alive\r\n"]),
)
def test_responses_are_h11s_bytes(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, method: bytes, version: bytes, connection: bytes
) -> None:
    headers = [*headers, (b"Content-Length", b"%d" % len(body)), (b"Server", b"Gearman/1.1.20")]
    request = method + b" /f HTTP/" + version + b"\r\nHost: h\r\n" + connection + b"\r\n"
    parsed = plain.parse(request)
    assert parsed is not None
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(request)
    while type(conn.next_event()) is not h11.EndOfMessage:
        pass
    sent = [conn.send(h11.Response(status_code=status, headers=headers, reason=b"REASON"))]
    if body and method != b"HEAD":
        sent.append(conn.send(h11.Data(data=body)))
    sent.append(conn.send(h11.EndOfMessage()))
    expected = b"".join(data for data in sent if data)
    data, close = plain.response(status, b"REASON", headers, body if method != b"HEAD" else b"", parsed.keep_alive)
    assert data == expected
    assert close == (conn.our_state is h11.MUST_CLOSE)


# -- a whole session: the fast path writes what h11 alone writes


def session_output(data: bytes, fast: bool) -> tuple[bytes, bool]:
    harness = Harness()
    session, transport, _ = harness.session()
    session.fast_path = fast
    session.receive_data(data)
    harness.clock.advance(0)
    return transport.take(), transport.closed


_SESSION_REQUESTS = st.builds(
    lambda method, path, version, extra, body: (
        method
        + b" "
        + path
        + b" HTTP/"
        + version
        + b"\r\nHost: h\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    ),
    st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS"]),
    st.sampled_from([b"/f", b"/", b"/_gearman", b"/_gearman/status", b"/_gearman/nothing", b"/_gearman/jobs/H:t:1"]),
    st.sampled_from([b"1.0", b"1.1"]),
    st.sampled_from(
        [b"", b"Connection: close\r\n", b"X-Gearman-Background: true\r\n", b"X-Gearman-Priority: high\r\n"]
    ),
    st.binary(max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(_SESSION_REQUESTS)
def test_a_session_on_the_fast_path_writes_what_h11_writes(data: bytes) -> None:
    assert session_output(data, fast=True) == session_output(data, fast=False)


def test_the_fast_path_is_on_by_default() -> None:
    assert HttpSession.fast_path is True


# -- the job's answer and the cache of heads


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=12),
    st.sampled_from([b"WORK_COMPLETE", b"WORK_FAIL", b"WORK_EXCEPTION", b"JOB_CREATED"]),
    st.binary(max_size=20),
    st.booleans(),
    st.booleans(),
)
def test_a_jobs_answer_is_the_general_responses_bytes(
    handle: bytes, command: bytes, data: bytes, keep_alive: bool, head: bool
) -> None:
    body = b"" if head else data
    expected = plain.response(200, b"OK", mapping.job_headers(handle, command, len(data)), body, keep_alive)
    assert plain.job_response(handle, command, body, len(data), keep_alive, mapping.SERVER) == expected[0]
    assert expected[1] is not keep_alive


def test_a_head_seen_before_parses_as_it_did_the_first_time() -> None:
    plain._heads.clear()
    head = b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"
    first = plain.parse(head + b"hello")
    assert head[:-4] in plain._heads
    again = plain.parse(head + b"olleh")
    assert again == first._replace(body=b"olleh")  # type: ignore[union-attr]
    assert plain.parse(head + b"hell") is None  # the body must still be exactly Content-Length
    assert plain.parse(b"GET /f HTTP/1.1\r\n\r\n") is None
    assert b"GET /f HTTP/1.1" not in plain._heads  # what is not plain is not kept


def test_the_cache_of_heads_is_bounded() -> None:
    plain._heads.clear()
    for n in range(plain.HEAD_CACHE_SIZE * 2 + 1):
        assert plain.parse(b"GET /f%d HTTP/1.0\r\n\r\n" % n) is not None
        assert len(plain._heads) <= plain.HEAD_CACHE_SIZE
    long_head = b"GET /f HTTP/1.0\r\nX-A: " + b"a" * plain.MAX_CACHED_HEAD + b"\r\n\r\n"
    assert plain.parse(long_head) is not None
    assert long_head[:-4] not in plain._heads


def test_heads_with_credentials_are_not_kept() -> None:
    """A bearer token stays in memory no longer than its request; the request parses the same."""
    plain._heads.clear()
    data = b"POST /f HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: 2\r\n\r\nab"
    first = plain.parse(data)
    assert first is not None and first.body == b"ab"
    assert (b"authorization", b"Bearer s3cret") in first.headers
    assert not plain._heads
    assert plain.parse(data) == first
