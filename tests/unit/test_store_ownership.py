"""One server per queue on the network stores (issue 13): a store claims its table (PostgreSQL, MySQL) or key
prefix (Redis, memcached) when it opens, a second store on it is refused with the holder named, and the claim
ends with the holder: a clean close, its process's death, or (redis, memcached, a holder elsewhere) the expiry
of its owner key. Real servers from tests/dbfixtures.py; holders in other processes are real processes.
See tests/integration/test_queue_ownership.py for the same with our gearmand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gearman_gateway.stores import QueueHeld, Store, StoredJob, create_store
from gearman_gateway.stores.ownership import HOST, process_scope
from tests.dbfixtures import DbServer

NETWORK = ["postgres", "mysql", "redis", "memcached"]
FIXTURES = {
    "postgres": "postgres_server",
    "mysql": "mariadb_server",
    "redis": "redis_server",
    "memcached": "memcached_server",
}
#: The option a message must name to give a second server a queue of its own.
REMEDY = {
    "postgres": "queue.postgres.table",
    "mysql": "queue.mysql.table",
    "redis": "queue.redis.prefix",
    "memcached": "queue.memcached.prefix",
}
WAIT = 15.0
_names = iter(range(1, 1_000_000))

#: A store in a process of its own: prints "open" once it holds its queue, then obeys stdin line by line.
HOLDER = """
import json, sys
from gearman_gateway.stores import create_store
store = create_store(sys.argv[1], **json.loads(sys.argv[2]))
store.open()
print("open", flush=True)
for line in sys.stdin:
    if line.strip() == "close":
        store.close()
        print("closed", flush=True)
        break
"""


def options_for(kind: str, request: pytest.FixtureRequest, **extra: Any) -> dict[str, Any]:
    """Store options on the session's server, with a table (prefix) of this test's own."""
    server: DbServer = request.getfixturevalue(FIXTURES[kind])
    name = f"own{os.getpid()}_{next(_names)}"
    naming = {"prefix": f"{name}:"} if kind in ("redis", "memcached") else {"table": name}
    return server.store_options(**naming, **extra)  # type: ignore[attr-defined]


class Holder:
    """A store holding the queue from another process."""

    def __init__(self, kind: str, options: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, kind, json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "open"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("close\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "closed"
        assert self.proc.wait(WAIT) == 0

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(WAIT)


@pytest.fixture
def stores() -> Iterator[list[Store]]:
    """Stores a test made: closed at its end."""
    made: list[Store] = []
    yield made
    for store in made:
        store.close()


def new_store(stores: list[Store], kind: str, options: dict[str, Any]) -> Store:
    store = create_store(kind, **options)
    stores.append(store)
    return store


def open_when_free(store: Store) -> None:
    """Open, retrying while the queue is still held (the database has yet to see its holder's end)."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            store.open()
            return
        except QueueHeld:
            assert time.monotonic() < deadline, "the queue stayed held"
            time.sleep(0.02)


def job(job_id: int) -> StoredJob:
    return StoredJob(job_id, b"H:own:%d" % job_id, b"fn", b"", 1, b"data %d" % job_id)


@pytest.mark.parametrize("kind", NETWORK)
def test_a_store_in_another_process_is_refused_naming_it_until_it_closes(
    kind: str, request: pytest.FixtureRequest, stores: list[Store]
) -> None:
    options = options_for(kind, request)
    holder = Holder(kind, options)
    try:
        second = new_store(stores, kind, options)
        with pytest.raises(QueueHeld) as refused:
            second.open()
        message = str(refused.value)
        print(message)
        assert "\n" not in message
        assert message.startswith(f"{kind} store ") and ": in use by another server (" in message
        assert "every server needs a queue of its own: give this one its own" in message and REMEDY[kind] in message
        if kind == "mysql":  # MySQL tells the holder's connection, not its process
            assert "mysql connection " in message and " from 127.0.0.1:" in message
        else:
            assert f"{holder.pid}@{HOST}" in message
        with pytest.raises(QueueHeld):
            second.open()  # still held: trying again changes nothing
        holder.close()
    finally:
        holder.kill()
    second.open()  # the holder's clean close gave the queue up
    second.add([job(1)])
    assert [row.job_id for row in second.load()] == [1]


@pytest.mark.parametrize("kind", NETWORK)
def test_a_killed_holder_leaves_the_queue_to_the_next_store(
    kind: str, request: pytest.FixtureRequest, stores: list[Store]
) -> None:
    """SQL: the database ends the dead process's session, and its lock. Redis, memcached: the owner key is
    still there, but it names a process of this machine that is gone, so it is taken over at once."""
    options = options_for(kind, request)
    holder = Holder(kind, options)
    holder.kill()
    store = new_store(stores, kind, options)
    started = time.monotonic()
    open_when_free(store)
    assert time.monotonic() - started < 2.0  # not the owner key's 15 s


@pytest.mark.parametrize("kind", NETWORK)
def test_a_second_store_of_the_same_process_is_refused_too(
    kind: str, request: pytest.FixtureRequest, stores: list[Store]
) -> None:
    options = options_for(kind, request)
    first = new_store(stores, kind, options)
    first.open()
    first.open()  # a reconnect of the holder keeps its claim
    second = new_store(stores, kind, options)
    with pytest.raises(QueueHeld, match="in use by another server") as refused:
        second.open()
    if kind != "mysql":
        assert "this process: another store object" in str(refused.value)
    first.close()
    second.open()


def raw_client(kind: str, request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(FIXTURES[kind]).connect()


@pytest.mark.parametrize("kind", ["redis", "memcached"])
def test_a_holder_on_another_machine_is_waited_for_until_its_owner_key_expires(
    kind: str, request: pytest.FixtureRequest, stores: list[Store]
) -> None:
    """Its pid means nothing here: only the key's expiry frees the queue (a live holder would renew it)."""
    options = options_for(kind, request)
    key = (options["prefix"] + "owner").encode()
    theirs = f"4242@elsewhere.example token1 {process_scope()}".encode()
    raw = raw_client(kind, request)
    if kind == "redis":
        raw.set(key, theirs, px=1000)
    else:
        raw.set(key, theirs, expire=2)  # memcached's clock ticks in seconds: 1-2 s
    store = new_store(stores, kind, options)
    with pytest.raises(QueueHeld, match="4242@elsewhere.example; if that server is gone, its owner"):
        store.open()
    started = time.monotonic()
    open_when_free(store)
    assert time.monotonic() - started < 3.0
    raw.close()


@pytest.mark.parametrize("kind", ["redis", "memcached"])
def test_a_renewal_that_finds_another_owner_reports_the_queue_taken_over(
    kind: str, request: pytest.FixtureRequest, stores: list[Store]
) -> None:
    """As when this server was cut off (or frozen) longer than its owner key lives and another one started."""
    options = options_for(kind, request)
    store = new_store(stores, kind, options)
    store.open()
    store.add([job(1)])
    store.keep_alive()  # type: ignore[attr-defined]
    raw = raw_client(kind, request)
    key = (options["prefix"] + "owner").encode()
    theirs = f"4242@elsewhere.example token1 {process_scope()}".encode()
    raw.set(key, theirs)
    with pytest.raises(QueueHeld, match=r"another server \(4242@elsewhere.example\) took this queue over"):
        store.keep_alive()  # type: ignore[attr-defined]
    if kind == "redis":  # every write checks the key too, in its transaction: nothing is written
        with pytest.raises(QueueHeld, match="took this queue over"):
            store.add([job(2)])
        with pytest.raises(QueueHeld, match="took this queue over"):
            store.remove([1])
    store.close()
    assert raw.get(key) == theirs  # a clean close deletes only its own key
    raw.delete(key)
    raw.close()


def test_the_owner_key_is_renewed_while_the_store_lives(request: pytest.FixtureRequest, stores: list[Store]) -> None:
    options = options_for("redis", request, owner_ttl=0.3)
    store = new_store(stores, "redis", options)
    store.open()
    raw = raw_client("redis", request)
    key = (options["prefix"] + "owner").encode()
    assert 0 < raw.pttl(key) <= 300
    for _ in range(5):  # five times its time to live
        time.sleep(0.1)
        store.keep_alive()  # type: ignore[attr-defined]
    assert raw.exists(key)
    assert str(os.getpid()).encode() in raw.get(key)
    store.close()
    assert not raw.exists(key)
    raw.close()


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_reconnect_ends_its_own_earlier_session_that_still_holds_the_table(
    kind: str, request: pytest.FixtureRequest, stores: list[Store]
) -> None:
    """A network cut that only our side saw: the database still has the old session, and its lock. The
    store's reconnect must not take that for another server (it would stay down for good): it ends it."""
    options = options_for(kind, request)
    store = new_store(stores, kind, options)
    store.open()
    lost = store._conn  # noqa: SLF001 - the connection our side gave up on, still open on the database's side
    store._conn = None  # noqa: SLF001
    try:
        store.open()
        store.add([job(1)])
        with pytest.raises(Exception):  # noqa: B017, PT011 - ended by the server: whatever the driver raises
            lost.cursor().execute("SELECT 1")
    finally:
        try:
            lost.close()
        except Exception:  # noqa: BLE001
            pass
    other = new_store(stores, kind, options)
    with pytest.raises(QueueHeld):
        other.open()
