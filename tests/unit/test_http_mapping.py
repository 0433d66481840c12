"""The HTTP -> job rules of protocols/http/mapping.py (gearmand -r http, reference §4), without sockets."""

from __future__ import annotations

import base64
import json

import pytest

from gearman_gateway.scheduler import Priority
from protocols.http import mapping
from protocols.http.mapping import Answer, ApiRequest, JobRequest, Stream

PREFIX = b"/_gearman/"


def route(method: bytes = b"POST", target: bytes = b"/reverse", headers=(), version: bytes = b"1.1"):
    return mapping.route(method, target, version, list(headers), PREFIX)


def test_post_submits_to_the_path_with_gearmand_defaults() -> None:
    routed = route()
    assert routed == JobRequest(b"reverse", b"-", Priority.NORMAL, False, Stream.NONE, True)


@pytest.mark.parametrize(
    ("target", "function"),
    [
        (b"//a/b", b"a/b"),  # every leading slash stripped, the rest verbatim
        (b"/a%20b", b"a%20b"),  # no percent-decoding
        (b"/a%3Fb", b"a%3Fb"),  # not even of an encoded "?"
        # the query string is never part of the name (gearmand: "hrev?x=1")
        (b"/hrev?x=1", b"hrev"),
        (b"/hrev?", b"hrev"),
        (b"//a/b?access_token=SECRET&y=?", b"a/b"),
    ],
)
def test_function_name_is_the_path_verbatim(target: bytes, function: bytes) -> None:
    routed = route(target=target)
    assert isinstance(routed, JobRequest)
    assert routed.function == function


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_get_and_head_submit_an_empty_workload(method: bytes) -> None:
    routed = route(method=method)
    assert isinstance(routed, JobRequest)
    assert not routed.with_body


def test_put_submits_its_body() -> None:
    routed = route(method=b"PUT")
    assert isinstance(routed, JobRequest) and routed.with_body


@pytest.mark.parametrize(
    ("headers", "field", "value"),
    [
        ([(b"x-gearman-unique", b"u1")], "unique", b"u1"),
        ([(b"x-gearman-unique", b"")], "unique", b""),
        ([(b"x-gearman-background", b"true")], "background", True),
        ([(b"x-gearman-background", b"TRUE")], "background", True),
        ([(b"x-gearman-background", b"yes")], "background", False),
        ([(b"x-gearman-priority", b"high")], "priority", Priority.HIGH),
        ([(b"x-gearman-priority", b"LOW")], "priority", Priority.LOW),
        ([(b"x-gearman-priority", b"urgent")], "priority", Priority.NORMAL),
        ([(b"x-gearman-stream", b"true")], "stream", Stream.RAW),
        ([(b"accept", b"text/event-stream")], "stream", Stream.EVENTS),
        ([(b"accept", b"text/event-stream"), (b"x-gearman-stream", b"true")], "stream", Stream.EVENTS),
        ([(b"x-other", b"x")], "unique", b"-"),
    ],
)
def test_gearman_headers(headers, field: str, value) -> None:
    routed = route(headers=headers)
    assert isinstance(routed, JobRequest)
    assert getattr(routed, field) == value


def test_head_never_streams() -> None:
    routed = route(method=b"HEAD", headers=[(b"x-gearman-stream", b"true")])
    assert isinstance(routed, JobRequest) and routed.stream == Stream.NONE


def test_reserved_prefix_is_the_api_with_its_query() -> None:
    assert route(b"GET", b"/_gearman/jobs/H:x:1?access_token=t") == ApiRequest(b"jobs/H:x:1", b"access_token=t")
    assert route(b"GET", b"//_gearman/status") == ApiRequest(b"status", b"")
    assert route(b"POST", b"/_gearman/") == ApiRequest(b"", b"")  # the API answers 405 itself


@pytest.mark.parametrize(
    ("method", "target"), [(b"GET", b"/"), (b"HEAD", b"/"), (b"GET", b"/_gearman"), (b"GET", b"/?"), (b"GET", b"//")]
)
def test_root_and_bare_prefix_lead_to_the_dashboard(method: bytes, target: bytes) -> None:
    routed = route(method, target)
    assert routed == Answer(302, [(b"Location", PREFIX)])


@pytest.mark.parametrize(
    ("method", "target"),
    [
        (b"GET", b"/?access_token=SECRET"),
        (b"HEAD", b"/?access_token=SECRET"),
        (b"GET", b"/_gearman?access_token=SECRET"),
    ],
)
def test_the_dashboard_redirects_keep_the_token(method: bytes, target: bytes) -> None:
    """The dashboard's token link, with or without the prefix's slash: never a job named after the query."""
    routed = route(method, target)
    assert routed == Answer(302, [(b"Location", b"/_gearman/?access_token=SECRET")])


def test_the_prefix_root_with_a_token_is_the_dashboard() -> None:
    assert route(b"GET", b"/_gearman/?access_token=SECRET") == ApiRequest(b"", b"access_token=SECRET")
    assert route(b"GET", b"/_gearman/status?access_token=SECRET") == ApiRequest(b"status", b"access_token=SECRET")


@pytest.mark.parametrize("method", [b"POST", b"PUT"])
@pytest.mark.parametrize("target", [b"/", b"/?access_token=SECRET"])
def test_no_function_name_is_404_as_gearmand(method: bytes, target: bytes) -> None:
    routed = route(method, target)
    assert isinstance(routed, Answer)
    assert routed.status == 404
    assert routed.body == b""


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ("illegal request line: bytearray(b'GET /?access_token=SECRET HTTP/1.1 x')", "illegal request line"),
        ("illegal header line: bytearray(b'Authorization : Bearer SECRET')", "illegal header line"),
        ("malformed chunk footer: bytearray(b'XY') (expected b'\\r\\n')", "malformed chunk footer"),
        ("Illegal header value b'SECRET\\x00'", "Illegal header value"),
        ('Illegal header name b"SECRET"', "Illegal header name"),
        ("b'SECRET'", "malformed request"),
        ("Missing mandatory Host: header", "Missing mandatory Host: header"),
        ("bad Content-Length", "bad Content-Length"),
    ],
)
def test_problem_text_drops_the_quoted_request(message: str, text: str) -> None:
    """h11 quotes the client's bytes as Python reprs; a 400 body and the log show neither."""
    assert mapping.problem_text(message) == text


@pytest.mark.parametrize("method", [b"DELETE", b"TRACE", b"OPTIONS", b"PATCH", b"post"])
def test_other_methods_are_405(method: bytes) -> None:
    routed = route(method)
    assert isinstance(routed, Answer)
    assert routed.status == 405
    assert (b"Allow", b"GET, HEAD, POST, PUT") in routed.headers


def test_other_http_versions_are_505() -> None:
    routed = route(version=b"2.0")
    assert isinstance(routed, Answer) and routed.status == 505


def test_reason_phrases_are_gearmands() -> None:
    assert mapping.reason(200) == b"OK"
    assert mapping.reason(404) == b"NOT_FOUND"
    assert mapping.reason(405) == b"METHOD_NOT_ALLOWED"
    assert mapping.reason(504) == b"GATEWAY_TIMEOUT"
    assert mapping.reason(299) == b"UNKNOWN"


def test_job_headers_in_gearmands_order() -> None:
    names = [name for name, _ in mapping.job_headers(b"H:x:1", b"WORK_COMPLETE", 5)]
    assert names == [b"X-Gearman-Job-Handle", b"X-Gearman-Command", b"Content-Length", b"Server"]
    assert mapping.SERVER.startswith(b"Gearman/1.1.20")


def test_raw_stream_is_the_plain_result() -> None:
    raw = mapping.RawStream()
    assert raw.data(b"ab") == b"ab"
    assert raw.status(1, 2) == b"" and raw.warning(b"w") == b""
    assert raw.end(b"WORK_COMPLETE", b"end") == b"end"
    assert raw.end(b"WORK_EXCEPTION", b"boom") == b""


def _event(data: bytes) -> tuple[str, dict]:
    assert data.endswith(b"\n\n")
    name_line, data_line = data[:-2].split(b"\n")
    assert name_line.startswith(b"event: ") and data_line.startswith(b"data: ")
    return name_line[7:].decode(), json.loads(data_line[6:])


def test_event_stream_carries_every_event_as_json() -> None:
    events = mapping.EventStream()
    assert _event(events.data(b"h\xc3\xa9\r\nllo")) == ("data", {"text": "hé\r\nllo"})
    assert _event(events.data(b"\xff\x00")) == ("data", {"base64": base64.b64encode(b"\xff\x00").decode()})
    assert _event(events.status(3, 10)) == ("status", {"numerator": 3, "denominator": 10})
    assert _event(events.warning(b"careful")) == ("warning", {"text": "careful"})
    assert _event(events.end(b"WORK_COMPLETE", b"done")) == ("complete", {"text": "done"})
    assert _event(events.end(b"WORK_FAIL", b"")) == ("fail", {})
    assert _event(events.end(b"WORK_EXCEPTION", b"boom")) == ("exception", {"text": "boom"})
