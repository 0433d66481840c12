"""gearmand's reactor (gearman_gateway/reactor.py) is Twisted's epoll reactor with parts replaced, reaching
into Twisted's internals; pyproject.toml pins Twisted to the versions it was tested on. So that an upgrade
that breaks our reactor is told apart from one that breaks the server, integration tests run once more on
Twisted's own epoll reactor (``--reactor twisted-epoll``, which the conftest adds to every gearmand it
starts when GG_TEST_REACTOR is set), in a subprocess: every test file that drives the server's sockets
through a frontend (binary, HTTP, memcached), its connection set-up and close, floods and bad input. Files
whose subject is a database, a chat server, a store or an example (they reach the reactor only through those
same paths) run once, on our reactor: running the whole suite twice took longer than the suite's budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: The integration test files run again on Twisted's own reactor.
ON_STOCK_REACTOR = (
    "test_accept_flood.py",
    "test_batching.py",
    "test_c_tools.py",
    "test_client_library.py",
    "test_gear_clients.py",
    "test_http_api.py",
    "test_http_frontend.py",
    "test_http_short_connections.py",
    "test_malformed_input.py",
    "test_memcached_frontend.py",
    "test_priority_order.py",
    "test_protocol.py",
    "test_server_process.py",
)


def test_twisted_epoll_is_twisteds_reactor_unchanged() -> None:
    probe = (
        "from gearman_gateway.reactor import install\n"
        "kind = type(install('twisted-epoll'))\n"
        "print(kind.__module__, kind.__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert result.stdout == "twisted.internet.epollreactor EPollReactor\n", result.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_frontend_tests_pass_on_twisteds_own_epoll_reactor(tmp_path: Path) -> None:
    env = {**os.environ, "GG_TEST_REACTOR": "twisted-epoll"}
    here = Path(__file__)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t")]
    argv += [str(here.parent / name) for name in ON_STOCK_REACTOR]
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=880)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
