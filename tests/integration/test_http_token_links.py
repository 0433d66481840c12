"""The dashboard's token links (``?access_token=``), query strings on job paths and the answers to malformed
requests, against our ``gearmand -r http`` with curl and raw sockets (issue 13, items 3 and 6).

A token link must reach the dashboard or the JSON, never make a job: the secret must not reach a function
name (admin ``status``, the metrics, the dashboard) nor the server's log, even at ``--verbose DEBUG``; a 400
body shows no Python repr. The function names a query string gives are compared with Debian's gearmand.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from tests.integration import test_http_dashboard as dashboard
from tests.integration import test_http_frontend as frontend
from tests.integration.conftest import ServerFactory
from tests.integration.test_http_frontend import CURL, HttpServer, needs_c_tools, start_http

c_worker = frontend.c_worker  # fixtures
chromium = dashboard.chromium

SECRET = "tok-5f1c2e90-secret"

needs_curl = pytest.mark.skipif(
    not os.access(CURL, os.X_OK) and os.environ.get("CI") != "true", reason="curl is not installed"
)


@pytest.fixture
def guarded(gearmand: ServerFactory) -> HttpServer:
    """Our server with a bearer token, logging everything. A short request timeout makes a token link
    that wrongly became a job fail in 2 s rather than 30."""
    return start_http(gearmand, "--http-token", SECRET, "--verbose", "DEBUG", "--http-request-timeout", "2")


def curl_follow(*args: str) -> tuple[int, str, bytes]:
    """curl following redirects: (final status, final Content-Type, body)."""
    result = subprocess.run(
        [CURL, "-sS", "-L", "-w", "\n%{http_code} %{content_type}", *args], capture_output=True, timeout=20, check=False
    )
    assert result.returncode == 0, result.stderr
    body, _, summary = result.stdout.rpartition(b"\n")
    code, _, content_type = summary.decode().partition(" ")
    return int(code), content_type, body


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send one request on a raw socket and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def assert_secret_nowhere(web: HttpServer) -> None:
    """No function was made: admin ``status`` is empty, and neither the JSON, the metrics nor the log
    holds the secret."""
    assert web.server.admin("status") == ".\n"
    status, body = web.json(f"/_gearman/status?access_token={SECRET}")
    assert (status, body["functions"]) == (200, [])
    metrics = web.request("GET", "/_gearman/metrics", headers={"Authorization": f"Bearer {SECRET}"})[2].decode()
    assert SECRET not in metrics and "access_token" not in metrics
    log = web.server.log()
    assert "started, pid" in log, log  # the server's own log file
    assert SECRET not in log, log


@needs_curl
@pytest.mark.parametrize("head", [False, True], ids=["GET", "HEAD"])
def test_token_links_get_the_dashboard_or_json_never_a_job(guarded: HttpServer, head: bool) -> None:
    method = ["-I"] if head else []
    for path, content_type in [
        ("/", "text/html"),
        ("/_gearman", "text/html"),
        ("/_gearman/", "text/html"),
        ("/_gearman/status", "application/json"),
        ("/_gearman/workers", "application/json"),
        ("/_gearman/metrics", "text/plain"),
    ]:
        code, kind, body = curl_follow(*method, guarded.url(f"{path}?access_token={SECRET}"))
        assert (code, kind.partition(";")[0]) == (200, content_type), path
        if not head and content_type == "text/html":
            assert b'<table id="functions">' in body
        if not head and content_type == "application/json":
            json.loads(body)
        # the wrong token, or none: 401, and still no job
        assert curl_follow(*method, guarded.url(f"{path}?access_token=wrong"))[0] == 401, path
        assert curl_follow(*method, guarded.url(path))[0] == 401, path
    assert_secret_nowhere(guarded)


def test_token_links_over_raw_sockets(guarded: HttpServer) -> None:
    location = f"Location: /_gearman/?access_token={SECRET}\r\n".encode()
    for request in [
        b"GET /?access_token=%s HTTP/1.0\r\n\r\n",
        b"HEAD /?access_token=%s HTTP/1.0\r\n\r\n",
        b"GET /_gearman?access_token=%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET //_gearman?access_token=%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ]:
        answer = raw_exchange(guarded.http_port, request % SECRET.encode())
        assert answer.startswith(b"HTTP/1.1 302 FOUND\r\n") and location in answer, answer
    answer = raw_exchange(guarded.http_port, b"GET /_gearman/?access_token=%s HTTP/1.0\r\n\r\n" % SECRET.encode())
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Type: text/html" in answer, answer[:300]
    assert_secret_nowhere(guarded)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /?access_token=%s HTTP/1.1 junk\r\nHost: t\r\n\r\n",
        b"GET /_gearman/?access_token=%s\x7f HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /_gearman/ HTTP/1.1\r\nHost: t\r\nAuthorization : Bearer %s\r\n\r\n",
        b"POST /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n%s\r\n",
        b"POST /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na%s\r\n",
    ],
)
def test_a_400_shows_no_repr_and_no_secret(guarded: HttpServer, request_bytes: bytes) -> None:
    answer = raw_exchange(guarded.http_port, request_bytes % SECRET.encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 BAD_REQUEST\r\n"), answer
    assert body.startswith((b"illegal ", b"malformed ")) and body.endswith(b"\n"), body
    assert b"b'" not in body and b"bytearray(" not in body and SECRET.encode() not in body, body
    assert_secret_nowhere(guarded)
    http_lines = [line for line in guarded.server.log().splitlines() if "gearman_gateway.http" in line]
    assert any("bad HTTP request: " in line for line in http_lines), http_lines
    assert not [line for line in http_lines if "b'" in line or "bytearray(" in line], http_lines


@needs_curl
@needs_c_tools
def test_a_query_string_is_not_part_of_the_function(guarded: HttpServer, c_worker) -> None:
    c_worker(guarded.server, "reverse", "rev")
    code, _, body = curl_follow("--data-binary", "abc", guarded.url(f"/reverse?access_token={SECRET}&x=1"))
    assert (code, body) == (200, b"cba")
    code, _, body = curl_follow("--data-binary", "xyz", guarded.url("/reverse?"))
    assert (code, body) == (200, b"zyx")
    assert [line.split("\t")[0] for line in guarded.server.admin("status").splitlines()] == ["reverse", "."]
    assert SECRET not in guarded.server.log()


def _function_names(web: HttpServer, paths: list[str]) -> set[str]:
    for path in paths:
        assert web.request("POST", path, b"x", {"X-Gearman-Background": "true"})[0] == 200, path
    return {line.split("\t")[0] for line in web.server.admin("status").splitlines() if "\t" in line}


def test_function_names_compared_with_real_gearmand(gearmand: ServerFactory, real_gearmand: ServerFactory) -> None:
    """gearmand keeps the query in the name; we cut it off (docs/http.md). Everything else is the same:
    leading slashes stripped, no percent-decoding (an encoded ``?`` stays ``%3F``)."""
    paths = ["/plain", "//a/b", "/a%3Fb", "/q?x=1", f"/?access_token={SECRET}", f"/_gearman?access_token={SECRET}"]
    theirs = _function_names(start_http(real_gearmand), paths)
    assert theirs == {"plain", "a/b", "a%3Fb", "q?x=1", f"?access_token={SECRET}", f"_gearman?access_token={SECRET}"}
    ours = _function_names(start_http(gearmand), paths[:4])  # the last two are the dashboard's here
    assert ours == {"plain", "a/b", "a%3Fb", "q"}


def test_the_token_link_opens_the_dashboard_in_a_browser(guarded: HttpServer, chromium) -> None:
    """The link a user is given, ``http://HOST:PORT/?access_token=...``, rendered by headless Chromium: the
    page follows the redirect, fetches the JSON with the token and shows the server's functions."""
    headers = {"X-Gearman-Background": "true"}
    assert guarded.request("POST", "/queued_fn", b"x", headers)[0] == 200
    dom = chromium(guarded.url(f"/?access_token={SECRET}"), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout.decode()
    assert '<tr data-key="queued_fn">' in html, html[-3000:]
    assert "1 functions, " in html
    assert [line.split("\t")[0] for line in guarded.server.admin("status").splitlines()] == ["queued_fn", "."]
    assert SECRET not in guarded.server.log()
