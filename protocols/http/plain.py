"""The fast path for plain HTTP requests, sans-IO: what ``gearmand -r http``'s users send (curl, wrk, ab, PHP),
parsed in a few regular-expression matches instead of h11's state machine, and the whole response written
as h11 would write it.

A request is *plain* when one read holds exactly one whole request: a request line for HTTP/1.0 or 1.1,
header lines ending in CRLF within ``MAX_HEAD_SIZE``, at most one ``Content-Length`` (digits only) and its
whole body, one ``Host`` (required by HTTP/1.1), and nothing that needs h11's state machine:
no ``Transfer-Encoding``, ``Expect``, ``Upgrade`` or ``CONNECT``. For such bytes h11 gives exactly the
events this module gives (``Request``, the body as one ``Data``, ``EndOfMessage``), which
tests/unit/test_http_plain.py checks with hypothesis; anything else (``parse`` returns None) goes to h11,
which stays the reference for correctness and for every error.

A client sends the same head again and again (wrk, ab, a PHP page's curl posting same-sized bodies), and
the head's parse is most of a plain request's cost (regular-expression matches are some 4,000 instructions
per header line): the heads seen lately and what they parse to are kept (``_heads``, bounded), so a head
seen before costs one dict lookup. Heads carrying credentials (``Authorization``) are never kept.
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: The largest request head (request line plus headers) taken here; h11's limit is the same.
MAX_HEAD_SIZE = 16 * 1024

# RFC 9110/9112 as h11 writes them (h11/_abnf.py): a token, a visible-character target, a field value of
# non-whitespace bytes (obs-text included) with single spaces or tabs inside, optional whitespace around it
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/(1\.[01])")
_HEADER = re.compile(rb"(" + _TOKEN + rb"):[ \t]*((?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?)[ \t]*")
_DIGITS = re.compile(rb"[0-9]{1,18}")

#: Headers that need h11's state machine (or, for these, its answer): chunked bodies, 100-continue,
#: protocol switches.
_TO_H11 = frozenset((b"transfer-encoding", b"expect", b"upgrade"))

#: Heads kept at most (then all are forgotten at once: a cache, not a record), and the longest kept.
HEAD_CACHE_SIZE = 256
MAX_CACHED_HEAD = 1024

#: A head's parse: method, target, version, headers (shared by every request with this head: read-only),
#: the body's length and h11's keep-alive decision.
_Head = tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]], int, bool]
_heads: dict[bytes, _Head] = {}


class PlainRequest(NamedTuple):
    method: bytes
    target: bytes
    http_version: bytes  # b"1.0" or b"1.1"
    headers: list[tuple[bytes, bytes]]  # names in lower case, as h11 gives them
    body: bytes
    keep_alive: bool  # h11's: HTTP/1.1 without "close" among the Connection header's tokens


def parse(data: bytes) -> PlainRequest | None:
    """``data`` as one plain request, or None: not plain, or not exactly one whole request (h11's job)."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or end > MAX_HEAD_SIZE:
        return None
    head = data[:end]
    known = _heads.get(head)
    if known is None:
        known = _parse_head(head)
        if known is None:
            return None
        if end <= MAX_CACHED_HEAD and not _has_credentials(known[3]):
            if len(_heads) >= HEAD_CACHE_SIZE:
                _heads.clear()
            _heads[head] = known
    method, target, version, headers, length, keep_alive = known
    start = end + 4
    if len(data) - start != length:
        return None
    return PlainRequest(method, target, version, headers, data[start:], keep_alive)


def _has_credentials(headers: list[tuple[bytes, bytes]]) -> bool:
    """A head with a bearer token (or any credentials) is not kept: a token stays in memory no longer than its
    request."""
    return any(name == b"authorization" or name == b"proxy-authorization" for name, _ in headers)


def _parse_head(head: bytes) -> _Head | None:
    """A head (up to its blank line) as ``parse`` takes it, or None."""
    lines = head.split(b"\r\n")
    line = _REQUEST_LINE.fullmatch(lines[0])
    if line is None:
        return None
    method, target, version = line.groups()
    if method == b"CONNECT":
        return None
    headers = []
    length = 0
    lengths = hosts = 0
    keep_alive = version == b"1.1"
    match_header = _HEADER.fullmatch
    for raw in lines[1:]:
        header = match_header(raw)
        if header is None:
            return None
        name, value = header.groups()
        name = name.lower()
        if name == b"content-length":
            if lengths or _DIGITS.fullmatch(value) is None:
                return None
            lengths = 1
            length = int(value)
        elif name == b"host":
            hosts += 1
        elif name == b"connection":
            if keep_alive and b"close" in [token.strip().lower() for token in value.split(b",")]:
                keep_alive = False
        elif name in _TO_H11:
            return None
        headers.append((name, value))
    if hosts > 1 or (hosts == 0 and version == b"1.1"):
        return None
    return method, target, version, headers, length, keep_alive


def response(
    status: int, reason: bytes, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool
) -> tuple[bytes, bool]:
    """A whole response with a ``Content-Length`` in ``headers``, as h11 writes it for a request with that
    ``keep_alive``, and whether the connection closes after it. ``body`` is b"" for HEAD (its
    ``Content-Length`` is the GET's). One pass over the headers: ``Connection`` headers (rare in ours)
    are the only ones h11 changes."""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    tokens: set[bytes] | None = None
    for header in headers:
        name = header[0]
        if len(name) == 10 and name.lower() == b"connection":
            tokens = tokens or set()
            tokens.update(token.strip().lower() for token in header[1].split(b",") if token.strip())
            if not keep_alive:  # h11 rewrites it at the end (below)
                continue
        lines.append(b"%s: %s\r\n" % header)
    close = not keep_alive or (tokens is not None and b"close" in tokens)
    if not keep_alive:  # h11: "close" joins the Connection header's tokens, "keep-alive" leaves
        if tokens is None:
            lines.append(b"Connection: close\r\n")
        else:
            lines += [b"Connection: %s\r\n" % token for token in sorted(tokens - {b"keep-alive"} | {b"close"})]
    lines.append(b"\r\n")
    if body and status >= 200 and status != 204 and status != 304:
        lines.append(body)
    return b"".join(lines), close


_JOB_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nX-Gearman-Job-Handle: %s\r\nX-Gearman-Command: %s\r\nContent-Length: %d\r\n"
    b"Server: %s\r\n%s\r\n%s"
)


def job_response(handle: bytes, command: bytes, body: bytes, length: int, keep_alive: bool, server: bytes) -> bytes:
    """``response`` for a job's answer (gearmand's headers: handle, command, length, server; no
    ``Connection`` header of its own), in one formatting: ``length`` is the data's, ``body`` b"" for HEAD."""
    close = b"" if keep_alive else b"Connection: close\r\n"
    return _JOB_RESPONSE % (handle, command, length, server, close, body)
