"""The frontend seam, proven from outside: tests/example_frontend (package ``lineproto``) is built and
installed as a third-party package (pip, into a directory put on PYTHONPATH) and reaches gearmand through
the ``gearman_gateway.protocols`` entry points alone. Its option is in --help, its YAML block and flag set
its port, jobs submitted through it are run by Debian's C worker, and its frontend that connects out and
needs the asyncio reactor gets that reactor from gearmand by itself."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import OUR_GEARMAND, ServerFactory, free_port, wait_listening

EXAMPLE = Path(__file__).resolve().parents[1] / "example_frontend"
GEARMAN = "/usr/bin/gearman"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package installed offline into a directory of its own (built from a copy: no build
    files land in the source tree)."""
    source = tmp_path_factory.mktemp("example-source") / "lineproto"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp_path_factory.mktemp("example-site")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--no-index"]
    result = subprocess.run(
        [*pip, "--no-build-isolation", "--target", str(site), str(source)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return site


@pytest.fixture
def installed(example_site: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """PYTHONPATH with the example package, for every gearmand this test starts; the environment itself."""
    monkeypatch.setenv("PYTHONPATH", str(example_site))
    return dict(os.environ)


@pytest.fixture
def c_worker() -> Iterator[Callable[[int], subprocess.Popen]]:
    """Debian's `gearman -w -f reverse -- rev` on a server's port, killed by its pid at the end."""
    if not os.access(GEARMAN, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{GEARMAN} is missing: scripts/setup --test installs gearman-tools")
        pytest.skip(f"{GEARMAN} is not installed")
    started: list[subprocess.Popen] = []

    def start(port: int) -> subprocess.Popen:
        argv = [GEARMAN, "-h", "127.0.0.1", "-p", str(port), "-w", "-f", "reverse", "--", "rev"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def read_line(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1000)
        if not chunk:
            break
        data += chunk
    return data


def gearmand_output(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OUR_GEARMAND, *args], capture_output=True, text=True, timeout=30, env=env)


def test_help_lists_the_example_frontends_and_their_options(installed: dict[str, str]) -> None:
    ours = gearmand_output("--help", env=installed).stdout
    assert "line protocol frontend (-r lineproto;" in ours and "--lineproto-port PORT" in ours
    assert "--linedial-connect HOST:PORT" in ours
    assert "installed: binary, http, memcached, xmpp, linedial, lineproto" in " ".join(ours.split())
    without = {name: value for name, value in installed.items() if name != "PYTHONPATH"}
    assert "--lineproto-port" not in gearmand_output("--help", env=without).stdout  # only the entry point adds it


def test_a_job_through_the_line_frontend_is_run_by_the_c_worker(
    gearmand: ServerFactory, installed: dict[str, str], c_worker: Callable[[int], subprocess.Popen]
) -> None:
    port = free_port()
    server = gearmand("-q", "memory", "-r", "lineproto", "--lineproto-port", str(port))
    c_worker(server.port)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as lines:
        lines.sendall(b"SUBMIT reverse Hello\n")
        assert read_line(lines) == b"RESULT olleH\n"
        lines.sendall(b"HELLO\n")
        assert read_line(lines) == b"ERROR expected: SUBMIT <function> <payload>\n"
    assert server.admin("show frontends") == (
        f"binary\tlistening\t127.0.0.1:{server.port}\nlineproto\tlistening\t127.0.0.1:{port}\n.\n"
    )


def test_its_yaml_block_sets_its_port_and_bad_values_name_the_key(
    gearmand: ServerFactory, installed: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "lines.yaml"
    config.write_text(f"frontends: [binary, lineproto]\nlineproto:\n  port: {port}\n")
    server = gearmand("-q", "memory", "--config", str(config))
    wait_listening(port, server.proc)
    assert f"lineproto\tlistening\t127.0.0.1:{port}\n" in server.admin("show frontends")
    config.write_text("lineproto:\n  port: 70000\n")
    result = gearmand_output("--check-args", "--config", str(config), env=installed)
    assert (result.returncode, result.stderr) == (2, "gearmand: error: lineproto.port must be 0-65535, not 70000\n")
    result = gearmand_output("--check-args", "--lineproto-port", "70000", env=installed)
    assert (result.returncode, result.stderr) == (2, "gearmand: error: --lineproto-port must be 0-65535, not 70000\n")


def test_a_frontend_that_connects_out_runs_on_the_asyncio_reactor_gearmand_chose(
    gearmand: ServerFactory, installed: dict[str, str], c_worker: Callable[[int], subprocess.Popen]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as peer:  # what the frontend connects to (its "chat server")
        peer.settimeout(15)
        address = f"127.0.0.1:{peer.getsockname()[1]}"
        server = gearmand("-q", "memory", "-r", "linedial", "--linedial-connect", address, reactor_chosen=True)
        connection, _ = peer.accept()
    with connection:
        assert "running on the asyncio reactor: the linedial frontend needs it" in server.log()
        assert server.admin("show frontends") == (
            f"binary\tlistening\t127.0.0.1:{server.port}\nlinedial\tconnected\tto {address}\n.\n"
        )
        c_worker(server.port)
        connection.sendall(b"SUBMIT reverse abc\n")
        assert read_line(connection) == b"RESULT cba\n"
    assert server.stop() == 0


def test_an_explicit_reactor_of_another_kind_is_refused_in_one_line(installed: dict[str, str]) -> None:
    result = gearmand_output("--check-args", "--reactor", "epoll", "-r", "linedial", env=installed)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "gearmand: error: --reactor epoll cannot run the linedial frontend, which needs an asyncio reactor "
        "(use asyncio or uvloop, or leave the reactor unset)\n"
    )
    assert gearmand_output("--check-args", "--reactor", "asyncio", "-r", "linedial", env=installed).returncode == 0


EMBEDDED_ON_EPOLL = """
from twisted.internet import epollreactor
epollreactor.install()
from twisted.internet import reactor
from gearman_gateway.config import make_settings
from gearman_gateway.server import Server
settings = make_settings({"frontends": ["binary", "linedial"], "port": 0, "queue_type": "memory"})
try:
    Server(settings, reactor)
except RuntimeError as error:
    print(error)
"""


def test_an_embedding_program_on_another_reactor_is_told_before_anything_starts(installed: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", EMBEDDED_ON_EPOLL], capture_output=True, text=True, timeout=30, env=installed
    )
    assert result.stdout.startswith(
        "the linedial frontend needs Twisted's asyncio reactor, not EPollReactor (install it with "
    ), result.stderr
