"""How an HTTP request becomes a Gearman job, and how a job's outcome becomes an HTTP response.

gearmand -r http's rules (gearman-reference.md §4), with the fixes §4.3 recommends. Pure functions and
small value objects: no sockets, no h11 state, no scheduler. ``session.py`` drives them.

- The function name is the request path with every leading ``/`` removed, verbatim: no percent-decoding,
  as gearmand does. Unlike gearmand, the query string is cut off first and never part of the name
  (gearmand submits ``GET /hrev?x=1`` to ``hrev?x=1``): a dashboard link with ``?access_token=`` must not
  become a job whose function name, shown by ``status`` and the metrics, holds the secret.
- ``POST`` and ``PUT`` submit their body as the workload; ``GET`` and ``HEAD`` submit an empty workload.
- ``X-Gearman-Unique`` (default ``-``: coalesce identical bodies), ``X-Gearman-Background: true`` and
  ``X-Gearman-Priority: high|low`` choose how; values are matched case-insensitively and, unlike gearmand,
  whatever the spacing around the colon.
- Paths under the reserved prefix (default ``/_gearman/``) are our API, never function names.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from http import HTTPStatus

from gearman_gateway.scheduler import Priority
from gearman_gateway.version import SERVER_VERSION

#: gearmand sends ``Server: Gearman/<version>``; ours starts with the gearmand release we match.
SERVER = b"Gearman/" + SERVER_VERSION.encode()
#: Methods gearmand turns into jobs. It also parses TRACE, then hangs waiting for a body: we answer 405.
JOB_METHODS = frozenset((b"GET", b"HEAD", b"POST", b"PUT"))
#: Methods whose body is the workload (gearmand reads Content-Length only for these).
BODY_METHODS = frozenset((b"POST", b"PUT"))
API_METHODS = frozenset((b"GET", b"HEAD"))
HTTP_VERSIONS = frozenset((b"1.0", b"1.1"))
ALLOW_JOB = b"GET, HEAD, POST, PUT"
ALLOW_API = b"GET, HEAD"

Headers = list[tuple[bytes, bytes]]


class Stream(IntEnum):
    """What the client asked for: one response at the end, or the job's events as they happen."""

    NONE = 0
    RAW = 1  # X-Gearman-Stream: true -> the result bytes, chunk by chunk
    EVENTS = 2  # Accept: text/event-stream -> server-sent events for data, warning, status and the outcome


@dataclass(slots=True)
class JobRequest:
    function: bytes
    unique: bytes
    priority: int
    background: bool
    stream: Stream
    with_body: bool  # False: GET/HEAD, whose body (if any) is read and ignored, as gearmand ignores it


@dataclass(slots=True)
class ApiRequest:
    path: bytes  # after the prefix, without the query: b"", b"status", b"jobs/H:host:1", ...
    query: bytes


@dataclass(slots=True)
class Answer:
    """A complete response known without running a job."""

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""


class Later:
    """A response that comes later (a job another gateway holds: its state is read from the shared table): the
    session hands ``then`` its ``respond``, which is called once with the Answer."""

    __slots__ = ("answer", "respond")

    def __init__(self) -> None:
        self.answer: Answer | None = None
        self.respond: Callable[[Answer], None] | None = None

    def resolve(self, answer: Answer) -> None:
        if self.respond is not None:
            self.respond(answer)
        else:
            self.answer = answer

    def then(self, respond: Callable[[Answer], None]) -> None:
        if self.answer is not None:
            respond(self.answer)
        else:
            self.respond = respond


def _gearmand_phrase(status: HTTPStatus) -> bytes:
    return status.phrase.upper().replace(" ", "_").replace("-", "_").encode()


#: Made once: every response asks.
_REASONS = {int(status): _gearmand_phrase(status) for status in HTTPStatus}


def reason(status: int) -> bytes:
    """gearmand's reason phrases: upper case with underscores (``404 NOT_FOUND``)."""
    return _REASONS.get(status, b"UNKNOWN")


def error(status: int, text: str = "", headers: Headers | None = None) -> Answer:
    """An error answer; plain text saying why (gearmand's own 404 has an empty body, and so has ours)."""
    body = (text + "\n").encode() if text else b""
    extra = list(headers or [])
    if body:
        extra.append((b"Content-Type", b"text/plain; charset=utf-8"))
    return Answer(status, extra, body)


#: h11 quotes the offending bytes in its messages (``illegal request line: bytearray(b'GET /?access_token=...')``).
_QUOTED_BYTES = re.compile(r"[\s:]*(?:bytearray\(|(?<!\w)b['\"]).*", re.DOTALL)


def problem_text(message: str) -> str:
    """What a 400 body and the log say about a malformed request: h11's text up to the bytes it quotes.
    Those are the client's own request (it may hold a token or a password), and a Python repr."""
    return _QUOTED_BYTES.sub("", message) or "malformed request"


def route(
    method: bytes, target: bytes, http_version: bytes, headers: Iterable[tuple[bytes, bytes]], prefix: bytes
) -> Routed:
    """What to do with a request, from its head alone. ``headers`` as h11 gives them (names lower-case)."""
    if http_version not in HTTP_VERSIONS:
        return error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and HTTP/1.1 are supported")
    target, _, query = target.partition(b"?")
    name = target.lstrip(b"/")
    path = b"/" + name
    if path.startswith(prefix):
        return ApiRequest(path[len(prefix) :], query)
    if path == prefix[:-1] or (not name and method in API_METHODS):
        # the query goes along: it may carry the dashboard's ?access_token=
        return Answer(HTTPStatus.FOUND, [(b"Location", prefix + b"?" + query if query else prefix)])
    if method not in JOB_METHODS:
        return error(HTTPStatus.METHOD_NOT_ALLOWED, "", [(b"Allow", ALLOW_JOB)])
    if not name:
        return error(HTTPStatus.NOT_FOUND)
    unique = b"-"
    background = False
    priority = Priority.NORMAL
    stream = Stream.NONE
    for key, value in headers:
        if not key.startswith(b"x-gearman-"):
            if key == b"accept" and b"text/event-stream" in value.lower():
                stream = Stream.EVENTS
            continue
        if key == b"x-gearman-unique":
            unique = value
        elif key == b"x-gearman-background":
            background = value.lower() == b"true"
        elif key == b"x-gearman-priority":
            priority = _PRIORITIES.get(value.lower(), Priority.NORMAL)
        elif key == b"x-gearman-stream" and stream == Stream.NONE:
            stream = Stream.RAW if value.lower() in (b"true", b"raw") else Stream.NONE
    if method == b"HEAD":  # a HEAD response has no body to stream
        stream = Stream.NONE
    return JobRequest(name, unique, priority, background, stream, method in BODY_METHODS)


Routed = JobRequest | ApiRequest | Answer

_PRIORITIES = {b"high": Priority.HIGH, b"low": Priority.LOW}


def job_headers(handle: bytes, command: bytes | None, length: int | None) -> Headers:
    """gearmand's header order: handle, command, length, server."""
    headers = [(b"X-Gearman-Job-Handle", handle)]
    if command is not None:
        headers.append((b"X-Gearman-Command", command))
    if length is not None:
        headers.append((b"Content-Length", b"%d" % length))
    headers.append((b"Server", SERVER))
    return headers


# -- streamed results


class RawStream:
    """``X-Gearman-Stream: true``: the body is exactly the non-streamed body (every WORK_DATA chunk, then
    the WORK_COMPLETE data), sent as it arrives. Warnings and status are not part of it; the packet that
    ended the job comes as the trailer ``X-Gearman-Command``."""

    content_type: bytes | None = None
    trailers = True

    def data(self, data: bytes) -> bytes:
        return data

    def warning(self, data: bytes) -> bytes:
        return b""

    def status(self, numerator: int, denominator: int) -> bytes:
        return b""

    def end(self, command: bytes, data: bytes) -> bytes:
        return data if command != b"WORK_EXCEPTION" else b""


class EventStream:
    """``Accept: text/event-stream``: one server-sent event per job event; each ``data:`` line is JSON
    (``{"text": ...}`` for UTF-8 payloads, ``{"base64": ...}`` otherwise), so any bytes survive."""

    content_type: bytes | None = b"text/event-stream"
    trailers = False

    def data(self, data: bytes) -> bytes:
        return event(b"data", payload(data))

    def warning(self, data: bytes) -> bytes:
        return event(b"warning", payload(data))

    def status(self, numerator: int, denominator: int) -> bytes:
        return event(b"status", {"numerator": numerator, "denominator": denominator})

    def end(self, command: bytes, data: bytes) -> bytes:
        name = _END_EVENTS[command]
        return event(name, payload(data) if command != b"WORK_FAIL" else {})


_END_EVENTS = {b"WORK_COMPLETE": b"complete", b"WORK_FAIL": b"fail", b"WORK_EXCEPTION": b"exception"}

Formatter = RawStream | EventStream
FORMATTERS: dict[Stream, Formatter] = {Stream.RAW: RawStream(), Stream.EVENTS: EventStream()}


def payload(data: bytes) -> dict[str, str]:
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def event(name: bytes, data: dict[str, object]) -> bytes:
    """One server-sent event. JSON never contains a raw newline, so ``data:`` is one line."""
    return b"event: " + name + b"\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"
