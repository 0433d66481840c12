"""Fixtures that run the real `gearmand` entry point as a subprocess, as a user would.

Set GG_TEST_SERVER=/usr/sbin/gearmand to run the same tests against another server
(Debian's gearmand): useful to check that a test encodes gearmand's behaviour.
Set GG_TEST_REACTOR=NAME to run our gearmand on that reactor (``--reactor NAME``) unless a test chooses
one: test_stock_reactor.py runs tests on Twisted's own epoll reactor this way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

BIN_DIR = Path(sys.executable).parent
OUR_GEARMAND = str(BIN_DIR / "gearmand")
START_TIMEOUT = 15.0


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = START_TIMEOUT, probe: bytes = b"") -> None:
    """Block until something accepts on 127.0.0.1:port (and, given a ``probe``, answers it with "OK"),
    or fail if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
                if not probe:
                    return
                conn.sendall(probe)
                if conn.recv(100).startswith(b"OK"):
                    return
        except OSError:
            pass
        time.sleep(0.005)  # a server starts in ~0.3 s and the suite starts hundreds: poll often
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def wait_serving(port: int, proc: subprocess.Popen, timeout: float = START_TIMEOUT) -> None:
    """Until the Gearman port answers `version`: it binds before the server serves (our replay of the
    durable queue runs in between)."""
    wait_listening(port, proc, timeout, probe=b"version\n")


def admin_command(port: int, command: str, timeout: float = 5.0) -> str:
    """Send one admin text command and read its whole reply (up to '.' for lists)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(command.encode() + b"\r\n")
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if buf.startswith((b"OK", b"ERR")) and buf.endswith(b"\n"):
                break
            if buf == b".\n" or buf.endswith(b"\n.\n"):
                break
    return buf.decode("utf-8", "replace")


class RunningServer:
    def __init__(self, proc: subprocess.Popen, port: int, args: list[str], log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.host = "127.0.0.1"
        self.args = args
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def admin(self, command: str) -> str:
        return admin_command(self.port, command)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


ServerFactory = Callable[..., RunningServer]


REAL_GEARMAND = "/usr/sbin/gearmand"  # Debian's gearman-job-server, the reference implementation


def _factory(tmp_path: Path, binary: str) -> tuple[ServerFactory, list[RunningServer]]:
    started: list[RunningServer] = []

    def start(*extra: str, port: int | None = None, wait: bool = True, reactor_chosen: bool = False) -> RunningServer:
        """``reactor_chosen``: the test chooses the reactor (or lets gearmand choose): GG_TEST_REACTOR is not added."""
        port = port or free_port()
        log_path = tmp_path / f"gearmand-{port}-{len(started)}.log"
        own = (
            []
            if binary == REAL_GEARMAND or "GG_TEST_SERVER" in os.environ
            else [
                "--data-dir",
                str(tmp_path / f"data-{port}"),  # a private queue file; a test may pass its own
                *(
                    ["--reactor", os.environ["GG_TEST_REACTOR"]]
                    if "GG_TEST_REACTOR" in os.environ and not reactor_chosen and "--reactor" not in extra
                    else []
                ),
            ]
        )
        args = [binary, "-L", "127.0.0.1", "-p", str(port), "-l", "stderr", *own, *extra]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        server = RunningServer(proc, port, args, log_path)
        started.append(server)
        if wait:
            try:
                wait_serving(port, proc)
            except Exception:
                server.stop(signal.SIGKILL)
                raise RuntimeError(f"{args} did not start:\n{server.log()}") from None
        return server

    return start, started


@pytest.fixture
def gearmand(tmp_path: Path) -> Iterator[ServerFactory]:
    """Factory: gearmand(*extra_args, port=None) starts our server on a free loopback port."""
    start, started = _factory(tmp_path, os.environ.get("GG_TEST_SERVER", OUR_GEARMAND))
    yield start
    for server in started:
        server.stop()


@pytest.fixture
def real_gearmand(tmp_path: Path) -> Iterator[ServerFactory]:
    """Factory for Debian's C gearmand, for tests that compare or mix the two. Missing under CI=true
    is a failure, never a skip."""
    if not os.access(REAL_GEARMAND, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{REAL_GEARMAND} is missing: scripts/setup --test installs gearman-job-server")
        pytest.skip(f"{REAL_GEARMAND} is not installed")
    start, started = _factory(tmp_path, REAL_GEARMAND)
    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(gearmand: ServerFactory) -> RunningServer:
    """One server with default options."""
    return gearmand()
