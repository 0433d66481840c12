"""Fixtures for every test: private database servers (see tests/dbfixtures.py).

``postgres_server``, ``mariadb_server``, ``redis_server`` and ``memcached_server`` are shared by the whole
session: use them when the test leaves its server running (give your tables, databases or key prefixes unique
names). ``*_server_fn`` are a fresh server for one test, which it may stop, kill, pause or lock as it likes. A
server that cannot start skips the test, or fails it under CI=true.
"""

from __future__ import annotations

import compileall
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import dbfixtures
from tests.dbfixtures import DbServer

REPO = Path(__file__).resolve().parents[1]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Byte-compile our code once. With PYTHONDONTWRITEBYTECODE set (CI's machines set it) every `gearmand`
    and helper the tests start would compile it all again, about a fifth of a server's start-up; Python reads
    these .pyc files whatever that variable says, and passes over any whose source changed since."""
    for name in ("gearman_gateway", "protocols", "tests", "bench"):  # not examples/: its folders are the examples
        compileall.compile_dir(REPO / name, quiet=1)


@pytest.fixture(scope="session")
def db_root() -> Iterator[Path]:
    """The session's temp dir for database servers and their data templates."""
    root = dbfixtures.make_root()
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _serve(start: Callable[[Path], DbServer], root: Path) -> Iterator[DbServer]:
    try:
        server = start(root)
    except dbfixtures.DbUnavailable as exc:
        dbfixtures.unavailable(str(exc))
    try:
        yield server
    finally:
        server.cleanup()


def _server_fixtures(kind: str, start: Callable[[Path], DbServer], about: str) -> tuple[Any, Any]:
    """The two fixtures of one kind of server: ``<kind>_server`` (the session's) and ``<kind>_server_fn``."""

    def shared(db_root: Path) -> Iterator[DbServer]:
        yield from _serve(start, db_root)

    def own(db_root: Path) -> Iterator[DbServer]:
        yield from _serve(start, db_root)

    shared.__doc__ = f"{about}, shared by the session: leave it running."
    own.__doc__ = f"{about}, this test's own: stop, kill, pause or restart it."
    return (
        pytest.fixture(scope="session", name=f"{kind}_server")(shared),
        pytest.fixture(name=f"{kind}_server_fn")(own),
    )


postgres_server, postgres_server_fn = _server_fixtures(
    "postgres", dbfixtures.start_postgres, "A PostgreSQL server (user postgres, database postgres): PostgresServer"
)
mariadb_server, mariadb_server_fn = _server_fixtures(
    "mariadb", dbfixtures.start_mariadb, "A MariaDB server (root, empty password, database test): MariaDbServer"
)
redis_server, redis_server_fn = _server_fixtures(
    "redis", dbfixtures.start_redis, "A Redis server (append-only file, fsync per write): RedisServer"
)
memcached_server, memcached_server_fn = _server_fixtures(
    "memcached", dbfixtures.start_memcached, "A memcached server (64 MB, nothing kept across restarts): MemcachedServer"
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Under CI=true a test skipped because a tool or service is missing fails instead: CI's machine is
    set up by scripts/setup --test, so a missing piece is a broken set-up, not a reason to pass."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") != "true" or not report.skipped:
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if "not installed" in reason or "cannot start" in reason or "not found" in reason:
        report.outcome = "failed"
        report.longrepr = f"CI=true: {reason}"
