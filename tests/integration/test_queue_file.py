"""The default sqlite queue file (issue 13, item 1): one per port, one server per file, no empty file left,
and a failed batch that never deletes a row it did not write. Our real `gearmand`, real sockets."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from protocols.binary.packets import Packet
from tests.integration.conftest import OUR_GEARMAND, free_port
from tests.integration.rawclient import Raw, submit, worker

pytestmark = pytest.mark.skipif("GG_TEST_SERVER" in os.environ, reason="our sqlite queue file")

README = Path(__file__).resolve().parents[2] / "README.md"
TABLE = "gearman_gateway_queue"
WAIT = 10.0


def queue_file(data: Path, port: int) -> Path:
    return data / f"queue-{port}.sqlite3"


def status(server) -> dict[str, tuple[int, int, int]]:
    """Admin `status`: function -> (queued, running, workers)."""
    lines = server.admin("status").splitlines()
    return {f: (int(q), int(r), int(w)) for f, q, r, w in (line.split("\t") for line in lines if "\t" in line)}


def submit_bg(port: int, function: bytes, data: bytes) -> bytes:
    with Raw(port) as client:
        return submit(client, function, data, ptype=Packet.SUBMIT_JOB_BG)


def rows(path: Path) -> list[tuple[int, bytes, bytes]]:
    with closing(sqlite3.connect(path)) as conn:
        return [
            (job_id, bytes(function), bytes(data))
            for job_id, function, data in conn.execute(
                f"SELECT job_id, function_name, data FROM {TABLE} ORDER BY job_id"
            )
        ]


def start_refused(*args: str) -> subprocess.CompletedProcess[str]:
    """Run our gearmand that must not start; a server that does start is killed by the timeout."""
    command = [OUR_GEARMAND, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=WAIT, stdin=subprocess.DEVNULL)


def test_servers_on_two_ports_with_one_data_dir_keep_their_own_jobs(gearmand, tmp_path: Path) -> None:
    data = tmp_path / "shared"
    first = gearmand("--data-dir", str(data))
    second = gearmand("--data-dir", str(data))
    assert submit_bg(first.port, b"first_fn", b"1")
    assert submit_bg(second.port, b"second_fn", b"2")  # was QUEUE_ERROR: UNIQUE constraint failed
    assert set(status(first)) == {"first_fn"} and set(status(second)) == {"second_fn"}
    for server in (first, second):
        assert server.stop() == 0
    # a restart of each replays its own job only (the shared file replayed both into both)
    again = [gearmand("--data-dir", str(data), port=server.port) for server in (first, second)]
    assert status(again[0]) == {"first_fn": (1, 0, 0)}
    assert status(again[1]) == {"second_fn": (1, 0, 0)}
    assert sorted(p.name for p in data.glob("*.sqlite3")) == sorted(
        queue_file(data, s.port).name for s in (first, second)
    )


@pytest.mark.parametrize("how", ["same file by name", "same port on another address"])
def test_a_second_server_on_a_held_queue_file_refuses_to_start_naming_the_holder(
    gearmand, tmp_path: Path, how: str
) -> None:
    data = tmp_path / "data"
    holder = gearmand("--data-dir", str(data))
    if how == "same file by name":
        args = ["-L", "127.0.0.1", "-p", str(free_port()), "--libsqlite3-db", str(queue_file(data, holder.port))]
    else:  # -L 127.0.0.2 binds the same port number: the same default file name
        args = ["-L", "127.0.0.2", "-p", str(holder.port), "--data-dir", str(data)]
    refused = start_refused(*args, "-l", "none")
    assert refused.returncode == 1
    lines = refused.stderr.splitlines()
    assert len(lines) == 1, refused.stderr
    assert f"pid {holder.pid}" in lines[0] and "--data-dir" in lines[0] and "--libsqlite3-db" in lines[0], lines
    assert lines[0].startswith("gearmand: cannot start: ") and str(queue_file(data, holder.port)) in lines[0]
    assert holder.admin("version").startswith("OK ")  # the holder goes on, its queue untouched
    assert submit_bg(holder.port, b"still", b"x")


def test_a_clean_stop_removes_an_empty_queue_file_and_keeps_one_with_jobs(gearmand, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = gearmand("--data-dir", str(data))
    with Raw(server.port) as client, worker(server.port, b"done") as w:
        handle = submit(client, b"done", b"x", ptype=Packet.SUBMIT_JOB_BG)
        w.send(Packet.GRAB_JOB)
        assert w.expect(Packet.JOB_ASSIGN)[0] == handle
        w.send(Packet.WORK_COMPLETE, handle, b"")
        assert w.call(Packet.ECHO_REQ, b"sync")[0] == Packet.ECHO_RES  # the completion was handled
    assert queue_file(data, server.port).exists()
    assert server.stop() == 0
    assert sorted(os.listdir(data)) == []  # no db, -wal, -shm or lock file

    kept = gearmand("--data-dir", str(data), port=server.port)
    assert submit_bg(kept.port, b"waiting", b"y")
    assert kept.stop() == 0
    assert sorted(os.listdir(data)) == [queue_file(data, kept.port).name]  # the job stays; the lock goes
    assert [r[1] for r in rows(queue_file(data, kept.port))] == [b"waiting"]


def test_a_dead_letter_keeps_the_queue_file(gearmand, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = gearmand("--data-dir", str(data), "--dead-letter")
    with Raw(server.port) as client, worker(server.port, b"fails") as w:
        handle = submit(client, b"fails", b"x", ptype=Packet.SUBMIT_JOB_BG)
        w.send(Packet.GRAB_JOB)
        assert w.expect(Packet.JOB_ASSIGN)[0] == handle
        w.send(Packet.WORK_FAIL, handle)
        assert w.call(Packet.ECHO_REQ, b"sync")[0] == Packet.ECHO_RES
    deadline = time.monotonic() + WAIT
    while handle.decode() not in server.admin("show dead jobs") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.stop() == 0
    assert [r[1] for r in rows(queue_file(data, server.port))] == [b"fails"]


def test_a_named_queue_file_is_kept_empty_and_only_its_lock_goes(gearmand, tmp_path: Path) -> None:
    path = tmp_path / "mine.db"
    server = gearmand("--libsqlite3-db", str(path))
    assert Path(f"{path}.lock").read_text() == f"{server.pid}\n"
    assert server.stop() == 0
    assert path.exists() and not Path(f"{path}.lock").exists() and rows(path) == []


def test_a_failed_batch_keeps_the_row_it_did_not_write(gearmand, tmp_path: Path) -> None:
    """A row with the id the server hands out next, written by someone else (here: by hand, beside the
    lock): the server's insert fails, and neither that failure nor the reconnect deletes that row."""
    data = tmp_path / "data"
    server = gearmand("--data-dir", str(data))
    path = queue_file(data, server.port)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            f"INSERT INTO {TABLE} VALUES (1, ?, ?, ?, 1, ?, 0, 0, '')", (b"H:other:1", b"", b"theirs", b"acknowledged")
        )
    with Raw(server.port) as client:
        client.send(Packet.SUBMIT_JOB_BG, b"ours", b"", b"refused")  # our job id 1 collides
        ptype, args = client.recv()
        assert ptype == Packet.ERROR and args[0] == b"QUEUE_ERROR" and b"UNIQUE" in args[1], (ptype, args)
    deadline = time.monotonic() + WAIT
    while "state\tup" not in server.admin("show store") and time.monotonic() < deadline:
        time.sleep(0.01)  # the reconnect: when the old runner wrote its deletes
    assert submit_bg(server.port, b"ours", b"stored")  # a commit after the reconnect
    assert rows(path) == [(1, b"theirs", b"acknowledged"), (2, b"ours", b"stored")]
    assert server.stop() == 0
    again = gearmand("--data-dir", str(data), port=server.port)
    assert status(again) == {"theirs": (1, 0, 0), "ours": (1, 0, 0)}


@pytest.mark.parametrize("under", ["a file", "a file, one level down"])
def test_a_data_directory_that_cannot_be_made_names_it_and_the_option(tmp_path: Path, under: str) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    data = blocker if under == "a file" else blocker / "queue"
    refused = start_refused("-L", "127.0.0.1", "-p", str(free_port()), "-l", "none", "--data-dir", str(data))
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"gearmand: cannot start: cannot make the data directory {data} "
        f"({'a file is in the way' if under == 'a file' else 'Not a directory'}): choose another with --data-dir DIR"
    ]


def _readme_embedding_example() -> str:
    text = README.read_text()
    section = text[text.index("### Embedding") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's Embedding section has a python example"
    return match.group(1)


def test_the_readme_embedding_example_runs_and_opens_no_queue_file(tmp_path: Path) -> None:
    """Run as written (its reactor runs until stopped); while it serves, it holds no file of a queue."""
    script = tmp_path / "embed.py"
    script.write_text(_readme_embedding_example())
    proc = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        printed = proc.stdout.readline()
        found = re.match(r"\{'binary': \[\('127\.0\.0\.1', (\d+)\)\]\}$", printed.strip())
        assert found, (printed, proc.stderr.read() if proc.poll() is not None else "")
        with Raw(int(found.group(1))) as client:
            assert client.call(Packet.ECHO_REQ, b"hi") == (Packet.ECHO_RES, [b"hi"])
        opened = []
        for fd in os.listdir(f"/proc/{proc.pid}/fd"):
            try:
                opened.append(os.readlink(f"/proc/{proc.pid}/fd/{fd}"))
            except FileNotFoundError:  # closed between the listing and the look: not open, then
                pass
        assert not [name for name in opened if "sqlite" in name or name.endswith(".lock")], opened
    finally:
        proc.terminate()
        proc.wait(WAIT)


EMBEDDED_TWICE = """
import sys
from twisted.internet import reactor
from gearman_gateway.config import make_settings
from gearman_gateway.server import Server
from gearman_gateway.stores import StoreError

def server():
    return Server(make_settings({"listen": ["127.0.0.1"], "port": 0, "data_dir": sys.argv[1]}), reactor)

first = server()
first.start()
second = server()
try:
    second.start()
except StoreError as error:
    print("refused:", error, "listening:", second.addresses())

def after_stop(_):
    third = server()
    third.start()  # the first one gave the file up
    print("third started on", third.addresses()["binary"][0][1])
    third.stop().addBoth(lambda _: reactor.stop())

reactor.callWhenRunning(lambda: first.stop().addCallback(after_stop))
reactor.run()
"""


def test_two_embedded_servers_on_port_0_cannot_share_a_data_dir(tmp_path: Path) -> None:
    script = tmp_path / "twice.py"
    script.write_text(EMBEDDED_TWICE)
    data = tmp_path / "data"
    result = subprocess.run([sys.executable, str(script), str(data)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    refused, started = result.stdout.splitlines()
    assert str(data / "queue-0.sqlite3") in refused and "in use by this process" in refused, refused
    assert refused.endswith("listening: {'binary': []}")  # never half-started
    assert started.startswith("third started on ")
    assert os.listdir(data) == []  # every stop was clean and the queue empty
