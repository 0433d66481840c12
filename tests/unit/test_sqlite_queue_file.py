"""The sqlite queue file's life (stores/sqlite_file.py): one server per file, the earlier versions' file taken
over, an empty file removed. Real files, real sqlite, real processes."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from gearman_gateway.config import make_settings
from gearman_gateway.durability import sqlite_queue_file
from gearman_gateway.stores import StoredJob, StoreError, create_store
from gearman_gateway.stores.sqlite import SqliteStore
from gearman_gateway.stores.sqlite_file import QueueFile

TABLE = "gearman_gateway_queue"


def job(job_id: int, **fields) -> StoredJob:
    return StoredJob(job_id, b"H:t:%d" % job_id, b"fn", b"", 1, b"data %d" % job_id, **fields)


def store(path: Path, queue_file: QueueFile | None = None) -> SqliteStore:
    made = create_store("sqlite", path=str(path))
    assert isinstance(made, SqliteStore)
    if queue_file is not None:
        made.file = queue_file
    return made


def names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


HOLDER = """
import sys
from gearman_gateway.stores import StoredJob, create_store
store = create_store("sqlite", path=sys.argv[1])
store.open()
if sys.argv[2] == "write":  # commit a job, then die without closing: it stays in the WAL
    store._conn.execute("PRAGMA wal_autocheckpoint=0")
    store.add([StoredJob(7, b"H:old:7", b"old_fn", b"", 1, b"kept in the WAL")])
print("ready", flush=True)
sys.stdin.read()
"""


def hold(path: Path, what: str = "hold") -> subprocess.Popen:
    """Another process with the file open (and locked) until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), what], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


# -- one server per file


def test_a_second_store_on_a_held_file_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    first = store(path)
    first.open()
    assert Path(f"{path}.lock").read_text() == f"{os.getpid()}\n"
    first.open()  # a reconnect keeps the lock
    second = store(path)
    with pytest.raises(StoreError, match=rf"^sqlite store {path} table {TABLE}: in use by this process .*--data-dir"):
        second.open()
    first.close()
    assert not Path(f"{path}.lock").exists()
    second.open()
    second.close()


def test_the_lock_names_another_processs_pid_and_dies_with_it(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    holder = hold(path)
    try:
        with pytest.raises(StoreError, match=rf"in use by another server \(pid {holder.pid}\)"):
            store(path).open()
    finally:
        kill(holder)
    assert Path(f"{path}.lock").exists()  # left behind by the kill, but nobody holds it
    mine = store(path)
    mine.open()
    assert Path(f"{path}.lock").read_text() == f"{os.getpid()}\n"
    mine.close()


def test_an_unwritable_directory_is_named_with_the_option(tmp_path: Path) -> None:
    gone = tmp_path / "gone" / "q.db"
    with pytest.raises(StoreError, match=rf"connect failed: cannot create the lock file .*{tmp_path / 'gone'}.*"):
        store(gone, QueueFile(str(gone), option="--data-dir DIR")).open()
    with pytest.raises(StoreError, match="choose another with --data-dir DIR"):
        store(gone, QueueFile(str(gone), option="--data-dir DIR")).open()


# -- an empty file does not linger


def test_an_empty_default_file_is_removed_with_its_companions(tmp_path: Path) -> None:
    path = tmp_path / "queue-4730.sqlite3"
    mine = store(path, QueueFile(str(path), ours=True))
    mine.open()
    mine.add([job(1)])
    mine.remove([1])
    assert names(tmp_path) == [path.name, f"{path.name}-shm", f"{path.name}-wal", f"{path.name}.lock"]
    mine.close()
    assert names(tmp_path) == []


@pytest.mark.parametrize("keeps", ["a live job", "a dead letter", "another table", "another connection"])
def test_a_file_that_is_not_empty_or_not_ours_alone_is_kept(tmp_path: Path, keeps: str) -> None:
    path = tmp_path / "queue-4730.sqlite3"
    mine = store(path, QueueFile(str(path), ours=True))
    mine.open()
    if keeps == "a live job":
        mine.add([job(1)])
    elif keeps == "a dead letter":
        mine.add([job(1)])
        mine.bury([1], "failed for good")
    elif keeps == "another table":
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE gearman_queue (unique_key TEXT, function_name TEXT, data BLOB)")
    other = sqlite3.connect(path) if keeps == "another connection" else None
    if other is not None:
        other.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchall()
    try:
        mine.close()
    finally:
        if other is not None:
            other.close()
    assert path.exists() and not Path(f"{path}.lock").exists()
    reopened = store(path)
    reopened.open()
    assert [(r.job_id, r.dead) for r in reopened.load()] == {
        "a live job": [(1, False)],
        "a dead letter": [(1, True)],
    }.get(keeps, [])
    reopened.close()


def test_a_file_named_by_the_user_is_kept_empty(tmp_path: Path) -> None:
    path = tmp_path / "mine.db"
    mine = store(path)  # as --libsqlite3-db makes it
    mine.open()
    mine.close()
    assert names(tmp_path) == ["mine.db"]


# -- the earlier versions' queue.sqlite3


def legacy_file(data: Path, path: Path, take_over: bool = True) -> QueueFile:
    return QueueFile(str(path), ours=True, legacy=str(data / "queue.sqlite3"), take_over_legacy=take_over)


def test_the_earlier_versions_file_is_taken_over_with_what_its_wal_holds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = tmp_path / "queue.sqlite3"
    kill(hold(legacy, "write"))  # a crashed server of an earlier version: its job is only in the -wal
    assert Path(f"{legacy}-wal").stat().st_size > 0
    path = tmp_path / "queue-4730.sqlite3"
    mine = store(path, legacy_file(tmp_path, path))
    with caplog.at_level(logging.WARNING, "gearman_gateway.store"):
        mine.open()
    assert f"took over {legacy}, the queue file of an earlier version, as {path} (jobs to replay: 1)" in caplog.text
    assert [(r.job_id, r.function, r.data) for r in mine.load()] == [(7, b"old_fn", b"kept in the WAL")]
    assert not [n for n in names(tmp_path) if n.startswith("queue.sqlite3")]
    mine.close()
    assert path.exists()  # it holds the job


def test_the_earlier_versions_file_in_use_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    legacy = tmp_path / "queue.sqlite3"
    with closing(sqlite3.connect(legacy)) as old:  # an earlier version's server: no lock file, just the file open
        old.execute("PRAGMA journal_mode=WAL")
        old.execute(f"CREATE TABLE {TABLE} (job_id INTEGER PRIMARY KEY)")
        old.execute(f"INSERT INTO {TABLE} VALUES (3)")
        old.commit()
        path = tmp_path / "queue-4730.sqlite3"
        mine = store(path, legacy_file(tmp_path, path))
        with caplog.at_level(logging.WARNING, "gearman_gateway.store"):
            mine.open()
        assert "still in use by another process: not taken over" in caplog.text
        assert mine.load() == []
        mine.close()
        assert old.execute(f"SELECT job_id FROM {TABLE}").fetchall() == [(3,)]


@pytest.mark.parametrize("why", ["another port", "the new file exists"])
def test_the_earlier_versions_file_is_only_reported_otherwise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, why: str
) -> None:
    legacy = tmp_path / "queue.sqlite3"
    with closing(sqlite3.connect(legacy)) as old:
        old.execute(f"CREATE TABLE {TABLE} (job_id INTEGER PRIMARY KEY)")
    path = tmp_path / ("queue-4731.sqlite3" if why == "another port" else "queue-4730.sqlite3")
    if why == "the new file exists":
        first = store(path)
        first.open()
        first.add([job(1)])
        first.close()
    mine = store(path, legacy_file(tmp_path, path, take_over=why != "another port"))
    with caplog.at_level(logging.WARNING, "gearman_gateway.store"):
        mine.open()
    assert f"{legacy} is the queue file of an earlier version and is not read by this server" in caplog.text
    assert f"--libsqlite3-db {legacy}" in caplog.text
    mine.close()
    assert legacy.exists()


# -- which file a server uses


@pytest.mark.parametrize("port", [4730, 4731, 0])
def test_the_default_file_is_named_after_the_port(tmp_path: Path, port: int) -> None:
    chosen = sqlite_queue_file(make_settings({"port": port, "data_dir": str(tmp_path)}))
    assert chosen.path == str(tmp_path / f"queue-{port}.sqlite3")
    assert chosen.ours and chosen.legacy == str(tmp_path / "queue.sqlite3")
    assert chosen.take_over_legacy == (port == 4730)
    assert chosen.files() == [
        chosen.path,
        *(chosen.path + s for s in ("-wal", "-shm", "-journal")),
        chosen.path + ".lock",
        *((chosen.legacy + s for s in ("", "-wal", "-shm", "-journal", ".lock")) if port == 4730 else ()),
    ]


def test_a_file_named_by_the_user_is_used_as_named(tmp_path: Path) -> None:
    named = str(tmp_path / "elsewhere.db")
    chosen = sqlite_queue_file(make_settings({"queue_options": {"sqlite": {"path": named}}, "port": 4730}))
    assert (chosen.path, chosen.ours, chosen.legacy, chosen.take_over_legacy) == (named, False, "", False)
