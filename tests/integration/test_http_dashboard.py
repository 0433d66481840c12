"""The live dashboard rendered by headless Chromium (Debian's `chromium`): it must show the functions
and connections of a running server, fetched by its own script. The screenshot stays in a temp dir.

Skipped when Chromium is missing, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.integration import test_http_frontend as frontend
from tests.integration.test_hooks import start_with
from tests.integration.test_http_frontend import HttpServer
from tests.integration.test_monitoring import MONITORING_ON

web = frontend.web  # fixtures
c_worker = frontend.c_worker

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def chromium(tmp_path: Path):
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: scripts/setup --test installs the chromium package")
        pytest.skip(f"{CHROMIUM} is not installed")

    def run(url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        argv = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=4000",  # let the page's script fetch and render
            *args,
            url,
        ]
        return subprocess.run(argv, capture_output=True, timeout=90, check=False)

    return run


@pytest.fixture
def monitored_web(gearmand, tmp_path: Path) -> HttpServer:
    """The http frontend with latency histograms and job history on (they are opt-in)."""
    return start_with(gearmand, tmp_path, MONITORING_ON)


def cells(row: str) -> list[str]:
    return re.findall(r"<td[^>]*>(.*?)</td>", row)


@frontend.needs_c_tools
def test_dashboard_shows_the_functions_of_a_running_server(web: HttpServer, c_worker, chromium, tmp_path) -> None:
    c_worker(web.server, "reverse", "rev")
    assert web.request("POST", "/reverse", b"abc")[2] == b"cba"
    assert web.request("POST", "/waiting_fn", b"x", {"X-Gearman-Background": "true"})[0] == 200

    dom = chromium(web.url("/"), "--dump-dom")  # GET / redirects to the dashboard
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout.decode()
    rows = dict(re.findall(r'<tr data-key="([^"]+)">(.*?)</tr>', html))
    assert "reverse" in rows and "waiting_fn" in rows, html[-3000:]
    # function, queued high/normal/low, running, workers, submitted, completed, failed
    assert cells(rows["reverse"]) == ["reverse", "0", "0", "0", "0", "1", "1", "1", "0"]
    assert cells(rows["waiting_fn"]) == ["waiting_fn", "0", "1", "0", "0", "0", "1", "0", "0"]
    assert re.search(r"2 functions, \d+ connections; updated", html)
    assert "favicon.ico" not in web.request("GET", "/_gearman/status")[2].decode()  # no stray function

    shot = tmp_path / "dashboard.png"
    result = chromium(web.url("/_gearman/"), f"--screenshot={shot}", "--window-size=1000,700")
    assert result.returncode == 0, result.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1000, 700)
        colours = image.convert("L").getcolors(maxcolors=1 << 16)
        assert colours is not None and len(colours) > 10  # text and tables, not a blank page


@frontend.needs_c_tools
def test_dashboard_shows_latency_and_history(monitored_web: HttpServer, c_worker, chromium, tmp_path) -> None:
    web = monitored_web
    c_worker(web.server, "reverse", "rev")
    for data in (b"abc", b"de"):
        assert web.request("POST", "/reverse", data)[2] == data[::-1]
    dom = chromium(web.url("/_gearman/"), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout.decode()
    (latency,) = re.findall(r'<tr data-key="latency:reverse">(.*?)</tr>', html)
    assert cells(latency)[:2] == ["reverse", "2"] and "<svg" in latency and "polyline" in latency
    jobs = re.findall(r'<tr data-key="job:([^"]+)" class="([a-z_]+)">(.*?)</tr>', html)
    assert [(outcome, cells(row)[2]) for _, outcome, row in jobs] == [("complete", "reverse")] * 2
