"""The durable job history (``monitoring.history.durable``, docs/monitoring.md): real jobs from Debian's C
tools, written to the sqlite file or a private PostgreSQL or MariaDB, still listed by `show history` after a restart,
pruned after the retention; stores that cannot hold it are refused at start-up."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from tests.integration import test_http_frontend as frontend
from tests.integration.conftest import ServerFactory
from tests.integration.test_http_frontend import GEARMAN, needs_c_tools, start_http, wait_for

c_worker = frontend.c_worker
TIMEOUT = 10.0
TABLE = "gearman_gateway_queue_history"


def config(tmp_path: Path, retention: str = "1h", size: int = 3, queue: dict | None = None) -> str:
    """History on, durable, a ring smaller than the jobs run so the older ones must come from the store."""
    path = tmp_path / "durable.yaml"
    block = {"enabled": True, "size": size, "durable": True, "retention": retention}
    path.write_text(yaml.safe_dump({"monitoring": {"history": block}, **({"queue": queue} if queue else {})}))
    return str(path)


def run_jobs(server, function: str, count: int) -> None:
    for n in range(count):
        argv = [GEARMAN, "-h", "127.0.0.1", "-p", str(server.port), "-f", function, f"job{n}"]
        assert (
            subprocess.run(argv, capture_output=True, timeout=TIMEOUT, check=True, text=True).stdout == f"job{n}"[::-1]
        )


def history(server, *args: str) -> list[list[str]]:
    lines = server.admin(" ".join(("show", "history", *args))).splitlines()
    assert lines[-1] == "."
    return [line.split("\t") for line in lines[:-1]]


def store(server) -> dict[str, str]:
    """Admin `show store`: the durable history's counters are there."""
    return dict(line.split("\t", 1) for line in server.admin("show store").splitlines()[:-1])


def sqlite_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])


@needs_c_tools
def test_sqlite_history_survives_a_restart(gearmand: ServerFactory, tmp_path: Path, c_worker) -> None:
    db = tmp_path / "queue.sqlite3"
    args = ("--config", config(tmp_path), "--libsqlite3-db", str(db))
    web = start_http(gearmand, *args)
    c_worker(web.server, "rev", "rev")
    run_jobs(web.server, "rev", 5)
    handles = [row[0] for row in history(web.server, "10")]
    assert len(handles) == 5  # 3 from the ring, the older ones unwritten yet or from the table
    wait_for(lambda: sqlite_rows(db) == 5, what="5 rows in the history table")
    answer = json.loads(web.request("GET", "/_gearman/history?limit=10")[2])
    assert answer["source"] == "memory+store"
    assert [j["handle"] for j in answer["jobs"]] == handles
    answer = json.loads(web.request("GET", "/_gearman/history?limit=2")[2])
    assert answer["source"] == "memory" and [j["handle"] for j in answer["jobs"]] == handles[:2]
    every = handles
    metrics = web.request("GET", "/_gearman/metrics")[2].decode().splitlines()
    assert "gearman_history_records_written_total 5" in metrics
    assert "gearman_history_records_dropped_total 0" in metrics
    assert web.server.stop() == 0

    again = gearmand(*args)
    rows = history(again, "rev", "10")
    assert [row[0] for row in rows] == every  # newest first, from the store
    assert {row[1] for row in rows} == {"rev"} and {row[2] for row in rows} == {"complete"}
    assert history(again, "other", "10") == []


@needs_c_tools
def test_rows_older_than_the_retention_are_pruned(gearmand: ServerFactory, tmp_path: Path, c_worker) -> None:
    db = tmp_path / "queue.sqlite3"
    server = gearmand("--config", config(tmp_path, retention="1s"), "--libsqlite3-db", str(db))
    c_worker(server, "rev", "rev")
    run_jobs(server, "rev", 2)
    wait_for(lambda: store(server)["history_pruned"] == "2", what="2 rows pruned")
    assert sqlite_rows(db) == 0
    status = store(server)
    assert status["history_written"] == "2" and status["history_dropped"] == "0"
    assert status["history_retention_seconds"] == "1.0"


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_database_history_survives_a_restart(gearmand: ServerFactory, tmp_path: Path, request, kind: str) -> None:
    """A private PostgreSQL or MariaDB (tests/dbfixtures.py), a table of this test's own."""
    if not Path(GEARMAN).exists():
        pytest.skip("Debian's gearman-tools are not installed")
    database = request.getfixturevalue("postgres_server" if kind == "postgres" else "mariadb_server")
    table = f"h{uuid.uuid4().hex[:12]}"
    queue = {"type": kind, kind: {**database.store_options(), "table": table}}
    args = ("--config", config(tmp_path, queue=queue))
    server = gearmand(*args)
    worker = subprocess.Popen(
        [GEARMAN, "-h", "127.0.0.1", "-p", str(server.port), "-w", "-f", "rev", "--", "rev"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: "rev\t" in server.admin("status"), what="the worker")
        run_jobs(server, "rev", 4)
        before = [row[0] for row in history(server, "10")]
        assert len(before) == 4  # 3 from the ring, 1 unwritten yet or from the table
    finally:
        worker.kill()
        worker.wait()
    assert server.stop() == 0
    with database.connect() as db:
        cur = db.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {table}_history")
        assert cur.fetchone()[0] == 4
    again = gearmand(*args)
    assert [row[0] for row in history(again, "rev", "10")] == before
    assert store(again)["history_table"] == f"{table}_history"


@pytest.mark.parametrize("queue", ["builtin", "redis"])
def test_a_store_without_history_is_refused(gearmand: ServerFactory, tmp_path: Path, queue: str) -> None:
    server = gearmand("--config", config(tmp_path), "-q", queue, wait=False)
    assert server.proc.wait(TIMEOUT) != 0
    assert "monitoring.history.durable needs the sqlite, postgres or mysql queue, not" in server.log()
