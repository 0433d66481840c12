"""gearmand's reactor (gearman_gateway/reactor.py) is Twisted's epoll reactor with parts replaced, reaching
into Twisted's internals; pyproject.toml pins Twisted to the versions it was tested on. So that an upgrade
that breaks our reactor is told apart from one that breaks the server, integration tests run once more on
Twisted's own epoll reactor (``--reactor twisted-epoll``, which the conftest adds to every gearmand it
starts when GG_TEST_REACTOR is set), in a subprocess: every test file that drives the server's sockets
through a frontend (binary, HTTP, memcached), its connection set-up and close, floods and bad input. Files
whose subject is a database, a chat server, a store or an example (they reach the reactor only through those
same paths) run once, on our reactor: running the whole suite twice took longer than the suite's budget. So
do the tests of the rerun files that a reactor cannot change (``SAME_ON_EVERY_REACTOR``)."""

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

#: Tests of those files that run the same on every reactor, left out of the second run: they start Debian's
#: gearmand, or ours with a reactor of their own choosing (``--reactor``, or by hand: no GG_TEST_REACTOR), or
#: no server at all. The second run checks that each of these names still exists.
SAME_ON_EVERY_REACTOR = (
    "test_accept_flood.py::test_gearmand_has_the_same_default_backlog",
    *(
        f"test_client_library.py::{name}[gearmand]"
        for name in (
            "test_do_variants_and_payloads",
            "test_background_priorities_and_job_status",
            "test_tasks_and_every_callback",
            "test_failures_and_exceptions",
            "test_job_fields_unique_keys_and_coalescing",
            "test_timeout_then_client_still_usable",
            "test_client_id_and_worker_registration_seen_by_admin",
            "test_asyncio_client_and_worker",
            "test_async_client_with_blocking_worker_and_coroutines_in_a_blocking_worker",
        )
    ),
    "test_memcached_frontend.py::test_tools_are_where_setup_puts_them",
    "test_memcached_frontend.py::test_the_benchmark_runs",
    "test_priority_order.py::test_one_write_pipeline_reaches_a_waiting_c_worker_in_order[gearmand]",
    "test_priority_order.py::test_php_client_tasks_reach_a_waiting_php_worker_in_order[gearmand]",
    "test_priority_order.py::test_our_client_tasks_reach_our_waiting_worker_in_order[gearmand]",
    "test_server_process.py::test_daemon_mode_pid_file_and_log_file",
    "test_server_process.py::test_daemon_reports_a_taken_port_to_the_shell",
    "test_server_process.py::test_foreground_start_failure_is_one_clear_line",
    "test_server_process.py::test_an_unwritable_pid_file_is_one_plain_sentence",
    "test_server_process.py::test_embedded_server_object_on_a_private_reactor",
    "test_server_process.py::test_every_reactor_serves_jobs_in_order[asyncio]",
    "test_server_process.py::test_every_reactor_serves_jobs_in_order[epoll]",
    "test_server_process.py::test_uvloop_reactor_serves_or_says_it_is_missing",
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
    argv += [f"--deselect={here.parent.relative_to(REPO) / name}" for name in SAME_ON_EVERY_REACTOR]
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=880)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    # pytest ignores a --deselect that names no test: a renamed one would run twice again, unnoticed
    assert f" {len(SAME_ON_EVERY_REACTOR)} deselected" in result.stdout, result.stdout[-2000:]
