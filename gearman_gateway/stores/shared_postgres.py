"""Shared mode (issue 21): several gateways on one set of PostgreSQL tables, row by row instead of table by table.

Two tables (``TABLE`` and ``TABLE_servers``) and one notification channel (``TABLE``):

* ``TABLE`` holds every background job of the cluster. ``job_id`` is cluster-unique (the submitting server's
  number in the high bits, its own sequence in the low ones: ``cluster_id``); ``fifo`` is a database sequence
  taken at insert, so the order of claims is submission order across servers; ``owner`` is the number of the
  server that holds the job (NULL: any server may claim it) and ``lease_until`` when that hold lapses unless
  renewed. A partial unique index on (function, unique) of live rows makes coalescing cluster-wide: the insert
  of a second job with a held unique does nothing and the submitter is told the first one's handle.
* ``TABLE_servers`` has one row per running gateway: its number, name, start and last heartbeat, and a small JSON
  summary of its queues for admin ``status cluster`` and ``peers``.

A job submitted where a worker for its function is connected is inserted already owned (it runs there with no
further round trip); any other is inserted unowned and announced with ``pg_notify(channel, hex(function))``, a
payload of at most 200 characters (PostgreSQL caps payloads at 8000 bytes, and every NOTIFY takes a lock at
commit: a few per batch, never one per job). Servers claim unowned jobs of the functions their workers can do
with ``UPDATE ... WHERE job_id IN (SELECT ... FOR UPDATE SKIP LOCKED)``, so concurrent claims never wait on each
other nor take one row twice.

Everything here is blocking psycopg code; ``SharedPostgresStore`` runs on the store runner's thread (the
group-committed writes), ``ClusterLink`` on the cluster coordinator's thread (claims, heartbeats, leases,
takeover), ``Notifications`` on a thread of its own (LISTEN). Each has its own connection.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from gearman_gateway.stores.base import HandedOff, StoredJob, StoreError
from gearman_gateway.stores.ownership import HOST, this_process
from gearman_gateway.stores.postgres import PostgresStore
from gearman_gateway.stores.sql import as_bytes, close_quietly, one_line

log = logging.getLogger("gearman_gateway.cluster")

DEFAULT_SHARED_TABLE = "gearman_gateway_shared"
#: Bits of a job id that hold the submitting server's own sequence (the rest hold its number): 2^40 jobs per
#: server start, 2^23 server starts per database.
LOCAL_BITS = 40
#: Longest notification payload we send (hex of the function name); a longer name sends "" (= "look at all").
MAX_PAYLOAD = 200
#: A client of another server watching a job this server holds: (server, handle there, function, unique, data,
#: priority).
Watcher = tuple[int, bytes, bytes, bytes, bytes, int]
#: Kinds of a relayed job's final events (cluster/relay.py: COMPLETE, FAIL, EXCEPTION).
FINAL = (4, 5, 6)
#: Row columns of a claim's answer, in order.
_CLAIMED = "job_id, handle, unique_key, function_name, priority, data, when_to_run, reply_to"


@dataclass(slots=True)
class SharedRow(StoredJob):
    """A row as the coordinator hands it to the store: with whether this server keeps it (``local``), and whether
    it only registers the unique of a foreground job that runs here (``registers``: a relay row for this server,
    already its own; see docs/scale.md, unique coalescing)."""

    local: bool = False
    registers: bool = False
    #: A foreground job whose unique is registered became background: its registration row (``job_id``) becomes
    #: its background row (inserted as one if the registration is gone).
    promotes: bool = False


class Ahead(Exception):
    """The answer to the first of a batch's adds that stay this server's: the older unowned jobs of their
    functions that the batch's transaction claimed (``rows``), to be queued ahead of the batch's new jobs."""

    def __init__(self, rows: list[StoredJob]) -> None:
        super().__init__("claimed ahead")
        self.rows = rows


def cluster_id(server: int, seq: int) -> int:
    return (server << LOCAL_BITS) | seq


def payload_for(function: bytes) -> str:
    text = function.hex()
    return text if len(text) <= MAX_PAYLOAD else ""


def claim_rows(
    cur: Any, table: str, server: int, lease: float, functions: list[bytes], limit: int, now: int, relayed: bool = True
) -> list[tuple[StoredJob, int]]:
    """Take up to ``limit`` unowned due jobs of these functions, best priority and oldest (``fifo``) first, in
    that order: each with the number of the server it is relayed for (0: a background job). ``relayed`` False:
    background jobs only."""
    cur.execute(
        f"UPDATE {table} SET owner = %s, lease_until = now() + %s * interval '1 second' WHERE job_id IN "
        f"(SELECT job_id FROM {table} WHERE owner IS NULL AND NOT dead AND function_name = ANY(%s) "
        f"AND when_to_run <= %s{'' if relayed else ' AND reply_to IS NULL'} ORDER BY priority, fifo LIMIT %s "
        f"FOR UPDATE SKIP LOCKED) RETURNING {_CLAIMED}, fifo",
        (server, lease, functions, now, limit),
    )
    rows = sorted(cur.fetchall(), key=lambda r: (r[4], r[8]))
    return [
        (
            StoredJob(int(r[0]), as_bytes(r[1]), as_bytes(r[3]), as_bytes(r[2]), int(r[4]), as_bytes(r[5]), int(r[6])),
            int(r[7] or 0),
        )
        for r in rows
    ]


class _Tables:
    """The statements of one pair of tables."""

    def __init__(self, table: str) -> None:
        self.jobs = table
        self.servers = f"{table}_servers"
        self.channel = table
        self.events = f"{table}_events"
        self.watchers = f"{table}_watchers"

    def server_channel(self, server: int) -> str:
        """Where a server hears of events of the jobs it relayed."""
        return f"{self.channel}_{server}"

    def create(self) -> list[str]:
        t, s = self.jobs, self.servers
        return [
            f"CREATE TABLE IF NOT EXISTS {s} (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, "
            "started TIMESTAMPTZ NOT NULL DEFAULT now(), heartbeat TIMESTAMPTZ NOT NULL DEFAULT now(), "
            "info TEXT NOT NULL DEFAULT '{}')",
            f"CREATE TABLE IF NOT EXISTS {t} (job_id BIGINT PRIMARY KEY, fifo BIGSERIAL NOT NULL, "
            "handle BYTEA NOT NULL, unique_key BYTEA NOT NULL, function_name BYTEA NOT NULL, "
            "priority INTEGER NOT NULL, data BYTEA NOT NULL, when_to_run BIGINT NOT NULL, "
            "dead BOOLEAN NOT NULL DEFAULT false, reason TEXT NOT NULL DEFAULT '', owner BIGINT, "
            "lease_until TIMESTAMPTZ, reply_to BIGINT)",
            # a relayed job's events for the server of its client (cluster/relay.py), in id order
            f"CREATE TABLE IF NOT EXISTS {t}_events (id BIGSERIAL PRIMARY KEY, server BIGINT NOT NULL, "
            "handle BYTEA NOT NULL, kind SMALLINT NOT NULL, data BYTEA NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {t}_events_server ON {t}_events (server, id)",
            # foreground clients of other servers waiting for a job (coalesced by unique): its events go to
            # each (server, handle) as to a relayed job's client, until its final one
            f"CREATE TABLE IF NOT EXISTS {t}_watchers (server BIGINT NOT NULL, handle BYTEA NOT NULL, "
            "job_id BIGINT NOT NULL, PRIMARY KEY (server, handle))",
            f"CREATE INDEX IF NOT EXISTS {t}_watchers_job ON {t}_watchers (job_id)",
            # what claims read: unowned live rows of some functions, best priority and oldest first
            f"CREATE INDEX IF NOT EXISTS {t}_claimable ON {t} (function_name, priority, fifo) "
            "WHERE owner IS NULL AND NOT dead",
            f"CREATE INDEX IF NOT EXISTS {t}_owner ON {t} (owner) WHERE owner IS NOT NULL",
            f"CREATE UNIQUE INDEX IF NOT EXISTS {t}_unique ON {t} (function_name, unique_key) "
            "WHERE unique_key <> '' AND unique_key <> '-' AND NOT dead",
        ]


class SharedPostgresStore(PostgresStore):
    """The Store protocol for shared mode: group-committed inserts (owned or unowned), deletes, buries and
    revives of this server's rows. ``open`` creates the tables and registers this server (once: a reconnect
    keeps its number); ``close`` gives back this server's live rows and removes its servers row, so the others
    take its queued jobs over at once after a clean stop."""

    name = "postgres"
    exclusive = False

    def __init__(
        self,
        conninfo: str = "",
        table: str = DEFAULT_SHARED_TABLE,
        lease: float = 10.0,
        listen: bool = True,
        **options: Any,
    ):
        super().__init__(conninfo, table, **options)
        self.where = self.where.replace("postgres store", "shared postgres store")
        self.tables = _Tables(self.table)
        self.lease = lease
        #: False (``--shared-listen off``): no LISTEN, and nothing kept in a session from one transaction to the
        #: next (a transaction-mode pooler hands each transaction another server session): the timeouts and
        #: synchronous_commit are set in every transaction, and psycopg prepares no statements.
        self.listen = listen
        #: This server's number in the cluster (``TABLE_servers.id``), 0 until the first open.
        self.server = 0
        #: How many more claimed jobs this server may hold (read on the store's thread; set by the coordinator).
        self.claim_room: Callable[[], int] = lambda: 256
        t = self.table
        self._insert_head = (
            f"INSERT INTO {t} (job_id, handle, unique_key, function_name, priority, data, when_to_run, owner, "
            "reply_to, lease_until) VALUES "
        )
        self._row_marks = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, now() + %s * interval '1 second')"

    def _connect(self) -> Any:
        conn = super()._connect()
        if not self.listen:
            conn.prepare_threshold = None  # a prepared statement lives in one server session
        return conn

    def _session_settings(self) -> tuple[str, tuple[str, str]]:
        """The timeouts and synchronous_commit = on, for this transaction only (``set_config(..., true)``)."""
        return (
            "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true), "
            "set_config('synchronous_commit', 'on', true)",
            (f"{int(self.lock_timeout * 1000)}ms", f"{int(self.statement_timeout * 1000)}ms"),
        )

    def _prepare_session(self, cursor: Any) -> None:
        if self.listen:
            super()._prepare_session(cursor)
            return
        cursor.execute("SELECT current_setting('fsync')")
        if cursor.fetchone()[0] == "off":
            log.warning("%s: the server runs with fsync=off; a crash of its machine can lose jobs", self.where)

    @contextmanager
    def _transaction(self, what: str) -> Iterator[Any]:
        with super()._transaction(what) as cur:
            if not self.listen:
                cur.execute(*self._session_settings())
            yield cur

    def _set_up(self, cur: Any) -> None:
        """In ``open``'s transaction: the tables (two servers starting at once never race to create them), and
        this server's number (once: a reconnect keeps it)."""
        cur.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_lock_class(),))
        for statement in self.tables.create():
            cur.execute(statement)
        missing = {"owner", "lease_until", "fifo", "reply_to"} - self._columns(cur, self.table)
        if missing:
            raise StoreError(
                f"{self.where}: the table exists without the shared layout (no {', '.join(sorted(missing))}): "
                f"a one-server queue table cannot be shared; name another (default {DEFAULT_SHARED_TABLE})"
            )
        if not self.server:
            cur.execute(f"INSERT INTO {self.tables.servers} (name) VALUES (%s) RETURNING id", (this_process(),))
            self.server = int(cur.fetchone()[0])

    def close(self) -> None:
        """Leave the cluster cleanly: this server's live rows become claimable, its servers row goes."""
        if self._conn is not None and self.server:
            try:
                with self._transaction("leave") as cur:
                    # registered uniques of its foreground jobs go with their clients; its other rows go back
                    cur.execute(f"DELETE FROM {self.table} WHERE owner = %s AND reply_to = %s", (self.server,) * 2)
                    cur.execute(
                        f"UPDATE {self.table} SET owner = NULL, lease_until = NULL WHERE owner = %s AND NOT dead "
                        "RETURNING function_name",
                        (self.server,),
                    )
                    self._notify(cur, {row[0] for row in cur.fetchall()})
                    cur.execute(f"DELETE FROM {self.tables.servers} WHERE id = %s", (self.server,))
            except StoreError as error:
                log.warning(
                    "%s: leaving the cluster: %s (the others take its jobs over when it looks dead)", self.where, error
                )
        self._disconnect()

    def load(self) -> list[StoredJob]:
        """Nothing to replay: the cluster's jobs are claimed as workers ask for them."""
        return []

    def write(
        self, adds: list[StoredJob], removes: list[int], buries: list[tuple[int, str]], revives: list[int]
    ) -> dict[int, Exception]:
        """One transaction: inserts (each owned by this server or not; a held unique inserts nothing), the claim
        of the older unowned jobs of the functions of the owned ones (``_claim_ahead``), deletes, buries,
        revives, and one NOTIFY per function of the unowned new rows. Returns the adds that are not this
        server's (job id -> HandedOff) and, for the first owned one, the jobs claimed ahead of it (Ahead)."""
        outcomes: dict[int, Exception] = {}
        with self._transaction(f"batch of {len(adds)} adds and {len(removes)} removes") as cur:
            if adds:
                promoted = self._promote(cur, [row for row in adds if getattr(row, "promotes", False)])
                inserted = self._insert_shared(cur, [row for row in adds if row.job_id not in promoted]) | promoted
                owned = [
                    row
                    for row in adds
                    if row.job_id in inserted
                    and getattr(row, "local", False)
                    and not getattr(row, "registers", False)
                    and row.job_id not in promoted
                ]
                ahead, given_back = self._claim_ahead(cur, owned) if owned else ([], set())
                announce = set()
                for row in adds:
                    if row.job_id not in inserted:
                        outcomes[row.job_id] = HandedOff(self._holder_handle(cur, row))
                    elif row.job_id in given_back or not getattr(row, "local", False):
                        outcomes[row.job_id] = HandedOff()
                        announce.add(row.function)
                    elif ahead and not getattr(row, "registers", False):
                        outcomes[row.job_id], ahead = Ahead(ahead), []
                self._notify(cur, announce)
            self._each_chunk(cur, f"DELETE FROM {self.table}", (), removes)
            for job_id, reason in buries:
                self._each_chunk(cur, self._set_dead(), (True, reason), [job_id])
            self._each_chunk(cur, self._set_dead(), (False, ""), revives)
        return outcomes

    def _promote(self, cur: Any, rows: list[StoredJob]) -> set[int]:
        """Registration rows of this server's that become background rows (``SharedRow.promotes``): the ids of
        those still there (the others are inserted)."""
        done: set[int] = set()
        for row in rows:
            cur.execute(
                f"UPDATE {self.table} SET reply_to = NULL, data = %s, priority = %s, when_to_run = %s "
                "WHERE job_id = %s AND owner = %s AND NOT dead RETURNING job_id",
                (row.data, row.priority, row.when, row.job_id, self.server),
            )
            if cur.fetchone() is not None:
                done.add(row.job_id)
        return done

    def _claim_ahead(self, cur: Any, owned: list[StoredJob]) -> tuple[list[StoredJob], set[int]]:
        """FIFO across servers: before this server runs its new jobs, it claims the older unowned background jobs
        of their functions (best priority, oldest first), which it queues ahead of them. When more wait than it
        may hold (``claim_room``), none is claimed and its new jobs go to the table behind them (given back).
        Relay rows are left to the coordinator's claims. Returns (claimed rows, ids given back)."""
        functions = sorted({row.function for row in owned})
        room = max(self.claim_room(), 0)
        now = int(time.time())
        claimed = claim_rows(cur, self.table, self.server, self.lease, functions, room, now, relayed=False)
        if len(claimed) >= room:
            cur.execute(
                f"SELECT 1 FROM {self.table} WHERE owner IS NULL AND NOT dead AND function_name = ANY(%s) "
                "AND when_to_run <= %s AND reply_to IS NULL AND priority <= %s LIMIT 1",
                (functions, now, max(row.priority for row in owned)),
            )
            if cur.fetchone() is not None:  # claimed rows and new ones all go back, for claims in order
                ids = [row.job_id for row in owned]
                cur.execute(
                    f"UPDATE {self.table} SET owner = NULL, lease_until = NULL WHERE job_id = ANY(%s)",
                    (ids + [row.job_id for row, _ in claimed],),
                )
                return [], set(ids)
        return [row for row, _ in claimed], set()

    def add(self, jobs: list[StoredJob]) -> None:
        self.write(jobs, [], [], [])

    def _insert_shared(self, cur: Any, jobs: list[StoredJob]) -> set[int]:
        """Multi-row inserts that skip rows whose unique is held; the ids that went in."""
        inserted: set[int] = set()
        for start in range(0, len(jobs), 200):
            chunk = jobs[start : start + 200]
            statement = self._insert_head + ", ".join([self._row_marks] * len(chunk))
            params: list[Any] = []
            for j in chunk:
                owner = self.server if getattr(j, "local", False) else None
                reply_to = self.server if getattr(j, "registers", False) else None
                params += (j.job_id, j.handle, j.unique, j.function, j.priority, j.data, j.when, owner, reply_to)
                params.append(self.lease)
            cur.execute(statement + " ON CONFLICT DO NOTHING RETURNING job_id", params)
            inserted.update(row[0] for row in cur.fetchall())
        return inserted

    def _holder_handle(self, cur: Any, row: StoredJob) -> bytes:
        cur.execute(
            f"SELECT handle FROM {self.table} WHERE function_name = %s AND unique_key = %s AND NOT dead",
            (row.function, row.unique),
        )
        found = cur.fetchone()
        return as_bytes(found[0]) if found else b""

    def _notify(self, cur: Any, functions: set[bytes]) -> None:
        payloads = sorted({payload_for(as_bytes(f)) for f in functions})
        for payload in payloads:
            cur.execute("SELECT pg_notify(%s, %s)", (self.tables.channel, payload))

    def _set_dead(self) -> str:
        return f"UPDATE {self.table} SET dead = %s, reason = %s"


def _lock_class() -> int:
    return int.from_bytes(b"ggws", "big")


@dataclass(slots=True)
class Peer:
    """One server of the cluster as ``TABLE_servers`` shows it."""

    server: int
    name: str
    started: float
    heartbeat_age: float  # seconds since its last heartbeat
    alive: bool
    info: dict[str, Any]


class ClusterLink:
    """The coordinator's connection: claims, heartbeats, lease renewal, takeover of dead servers' jobs."""

    def __init__(self, store: SharedPostgresStore, dead_after: float, grace: float = 0.0) -> None:
        self.store = store
        self.tables = store.tables
        self.dead_after = dead_after
        #: No takeover until the database has run this long since its (re)start, nor until this link has been
        #: back this long after a lost connection (a failover to a standby that has run for long): every
        #: gateway lost its session with the database and needs a moment to heartbeat and renew again.
        self.grace = grace
        self._conn: Any = None
        self._failed = False  # the last call failed: the next connection is a return after an outage
        self.back_at = 0.0  # time.monotonic() of that return

    def _cursor_work(self, what: str, work: Callable[[Any], Any]) -> Any:
        """``work(cursor)`` in one transaction, connecting first if needed; StoreError on any failure (the
        connection is then dropped: the next call reconnects).

        These commits do not wait for the WAL flush (``synchronous_commit = off`` for the transaction): nothing
        here is an acknowledged job. A claim, renewal or takeover lost in a database crash leaves a row as it
        was (it lapses or is claimed again); relay rows and events serve a client that is waiting, whose
        job fails over like any foreground job when its server goes away."""
        try:
            if self._conn is None:
                self._conn = self.store._connect()
                if self._failed:
                    self._failed, self.back_at = False, time.monotonic()
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute("SET LOCAL synchronous_commit = off")
                return work(cur)
        except psycopg.Error as exc:
            self._failed = True
            self.close()
            raise StoreError(f"{self.store.where}: {what} failed: {one_line(exc)}") from exc

    def close(self) -> None:
        conn, self._conn = self._conn, None
        close_quietly(conn)

    def claim(self, functions: list[bytes], limit: int, now: int) -> tuple[list[tuple[StoredJob, int]], list[Watcher]]:
        """Take up to ``limit`` unowned due jobs of these functions (``claim_rows``), and read their watchers in the
        same transaction (no round trip more for a relayed job)."""
        store = self.store

        def work(cur: Any) -> tuple[list[tuple[StoredJob, int]], list[Watcher]]:
            rows = claim_rows(cur, self.tables.jobs, store.server, store.lease, functions, limit, now)
            return rows, (self._read_watchers(cur, [row.job_id for row, _ in rows]) if rows else [])

        return self._cursor_work("claim", work)

    def relay_out(self, rows: list[StoredJob]) -> list[bytes]:
        """Relay rows for jobs of this server's clients: claimable by any server whose workers can do them. A job
        whose unique a live row of the cluster holds (a background job, a relayed or a registered foreground
        one) gets no row: its client watches that job instead (``_watch``). Returns the handles of those."""
        t = self.tables.jobs

        def work(cur: Any) -> list[bytes]:
            announce: set[bytes] = set()
            owners: set[int] = set()
            watched: list[bytes] = []
            for row in rows:
                for _ in range(3):  # the holder may finish meanwhile: then the insert goes in
                    cur.execute(
                        f"INSERT INTO {t} (job_id, handle, unique_key, function_name, priority, data, when_to_run, "
                        "reply_to) VALUES (%s, %s, %s, %s, %s, %s, 0, %s) ON CONFLICT DO NOTHING RETURNING job_id",
                        (row.job_id, row.handle, row.unique, row.function, row.priority, row.data, self.store.server),
                    )
                    if cur.fetchone() is not None:
                        announce.add(row.function)
                        break
                    owner = self._watch(cur, row)
                    if owner is not None:
                        watched.append(row.handle)
                        if owner:
                            owners.add(owner)
                        break
            self.store._notify(cur, announce)
            for owner in sorted(owners):
                cur.execute("SELECT pg_notify(%s, 'w')", (self.tables.server_channel(owner),))
            return watched

        return self._cursor_work("relay", work)

    def _watch(self, cur: Any, row: StoredJob) -> int | None:
        """This server's client of ``row`` waits for the live job with its function and unique: the holder's
        number (0: nobody holds it yet, the server that claims it reads its watchers), None: there is none (it
        finished meanwhile). FOR SHARE: a claim under way ends first, so its claimer is the holder we tell, or
        our watcher is committed before it claims."""
        cur.execute(
            f"SELECT job_id, owner FROM {self.tables.jobs} WHERE function_name = %s AND unique_key = %s AND NOT dead "
            "FOR SHARE",
            (row.function, row.unique),
        )
        found = cur.fetchone()
        if found is None:
            return None
        cur.execute(
            f"INSERT INTO {self.tables.watchers} (server, handle, job_id) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (self.store.server, row.handle, found[0]),
        )
        return int(found[1] or 0)

    def register(self, rows: list[StoredJob]) -> list[int | None]:
        """The uniques of foreground jobs that this server's workers are to run: each row is inserted as this
        server's (a relay row for itself; it replaces a registration of its own left by an ended job), or, when a
        live row of the cluster holds the unique, the job watches that row (``_watch``) and its holder is told.
        Per row: None (registered) or the holder's number (0: nobody holds it yet)."""
        t, me = self.tables.jobs, self.store.server

        def work(cur: Any) -> list[int | None]:
            outcomes: list[int | None] = []
            owners: set[int] = set()
            for row in rows:
                outcome: int | None = None
                for _ in range(3):  # the holder may finish meanwhile: then the insert goes in
                    cur.execute(
                        f"INSERT INTO {t} (job_id, handle, unique_key, function_name, priority, data, when_to_run, "
                        "owner, reply_to, lease_until) VALUES (%s, %s, %s, %s, %s, %s, 0, %s, %s, "
                        "now() + %s * interval '1 second') ON CONFLICT (function_name, unique_key) "
                        "WHERE unique_key <> '' AND unique_key <> '-' AND NOT dead DO UPDATE SET job_id = "
                        "EXCLUDED.job_id, handle = EXCLUDED.handle, data = EXCLUDED.data, priority = "
                        f"EXCLUDED.priority, lease_until = EXCLUDED.lease_until WHERE {t}.owner = %s AND "
                        f"{t}.reply_to = %s RETURNING job_id",
                        (row.job_id, row.handle, row.unique, row.function, row.priority, row.data, me, me)
                        + (self.store.lease, me, me),
                    )
                    if cur.fetchone() is not None:
                        break
                    outcome = self._watch(cur, row)
                    if outcome is not None:
                        if outcome:  # this server itself when its claim of the row is under way
                            owners.add(outcome)
                        break
                outcomes.append(outcome)
            for owner in sorted(owners):
                cur.execute("SELECT pg_notify(%s, 'w')", (self.tables.server_channel(owner),))
            return outcomes

        return self._cursor_work("registration", work)

    def job_state(self, job_id: int, function: bytes, unique: bytes) -> bool | None:
        """A live row's state, by its id (or, ``job_id`` 0, by its function and unique): None when there is none,
        else whether a server holds it."""
        t = self.tables.jobs

        def work(cur: Any) -> bool | None:
            if job_id:
                cur.execute(f"SELECT owner IS NOT NULL FROM {t} WHERE job_id = %s AND NOT dead", (job_id,))
            else:
                cur.execute(
                    f"SELECT owner IS NOT NULL FROM {t} WHERE function_name = %s AND unique_key = %s AND "
                    "unique_key <> '' AND unique_key <> '-' AND NOT dead",
                    (function, unique),
                )
            found = cur.fetchone()
            return None if found is None else bool(found[0])

        return self._cursor_work("job status", work)

    def watchers(self) -> list[Watcher]:
        """Clients of other servers watching jobs this server holds. They stay in the table until their job's final
        event (``emit``)."""
        return self._cursor_work("watchers", self._read_watchers)

    def _read_watchers(self, cur: Any, job_ids: list[int] | None = None) -> list[Watcher]:
        t, w = self.tables.jobs, self.tables.watchers
        only = "" if job_ids is None else " AND w.job_id = ANY(%s)"
        cur.execute(
            f"SELECT w.server, w.handle, t.function_name, t.unique_key, t.data, t.priority FROM {w} w "
            f"JOIN {t} t ON t.job_id = w.job_id WHERE t.owner = %s AND NOT t.dead{only}",
            (self.store.server,) if job_ids is None else (self.store.server, job_ids),
        )
        return [(int(s), as_bytes(h), as_bytes(f), as_bytes(u), as_bytes(d), int(p)) for s, h, f, u, d, p in cur]

    def orphans(self) -> list[bytes]:
        """This server's watchers whose job's row is gone (it finished before its holder read them): deleted;
        their handles (here), whose jobs are relayed again."""
        t, w = self.tables.jobs, self.tables.watchers

        def work(cur: Any) -> list[bytes]:
            cur.execute(
                f"DELETE FROM {w} w WHERE w.server = %s AND NOT EXISTS (SELECT 1 FROM {t} t WHERE t.job_id = w.job_id "
                "AND NOT t.dead) RETURNING w.handle",
                (self.store.server,),
            )
            return [as_bytes(h) for (h,) in cur.fetchall()]

        return self._cursor_work("watchers", work)

    def emit(self, events: list[tuple[int, bytes, int, bytes, int]]) -> None:
        """Events of relayed jobs for the servers of their clients, in order, in one transaction; the relay rows of
        finished ones are deleted with them; one NOTIFY per server."""

        def work(cur: Any) -> None:
            cur.executemany(
                f"INSERT INTO {self.tables.events} (server, handle, kind, data) VALUES (%s, %s, %s, %s)",
                [(server, handle, kind, data) for server, handle, kind, data, _ in events],
            )
            done = [row for *_, row in events if row]
            if done:
                cur.execute(f"DELETE FROM {self.tables.jobs} WHERE job_id = ANY(%s)", (done,))
            ended = [(server, handle) for server, handle, kind, _, row in events if kind in FINAL and not row]
            if ended:
                cur.execute(
                    f"DELETE FROM {self.tables.watchers} WHERE (server, handle) IN "
                    "(SELECT * FROM unnest(%s::bigint[], %s::bytea[]))",
                    ([e[0] for e in ended], [e[1] for e in ended]),
                )
            for server in sorted({event[0] for event in events}):
                cur.execute("SELECT pg_notify(%s, '')", (self.tables.server_channel(server),))

        self._cursor_work("relay events", work)

    def take_events(self) -> list[tuple[bytes, int, bytes]]:
        """The events waiting for this server, oldest first (deleted as they are read)."""

        def work(cur: Any) -> list[tuple[bytes, int, bytes]]:
            cur.execute(
                f"DELETE FROM {self.tables.events} WHERE server = %s RETURNING id, handle, kind, data",
                (self.store.server,),
            )
            return [(as_bytes(h), int(k), as_bytes(d)) for _, h, k, d in sorted(cur.fetchall())]

        return self._cursor_work("relay events", work)

    def heartbeat(self, info: dict[str, Any]) -> None:
        """This server is alive (its row is written again if another server cleaned it away)."""
        s = self.tables.servers

        def work(cur: Any) -> None:
            text = json.dumps(info)
            cur.execute(f"UPDATE {s} SET heartbeat = now(), info = %s WHERE id = %s", (text, self.store.server))
            if cur.rowcount == 0:
                log.warning(
                    "this server (number %d) was taken for dead by the cluster; it joins again", self.store.server
                )
                cur.execute(
                    f"INSERT INTO {s} (id, name, info) VALUES (%s, %s, %s)", (self.store.server, this_process(), text)
                )

        self._cursor_work("heartbeat", work)

    def renew(self, held: list[int]) -> int:
        """Push the lease of the live rows this server holds (``held``: their ids) once a third of it is spent (a
        short job's row is never touched); how many were renewed. A row it owns but no longer holds (a claim whose
        answer was lost with its connection) is left to lapse."""

        def work(cur: Any) -> int:
            cur.execute(
                f"UPDATE {self.tables.jobs} SET lease_until = now() + %s * interval '1 second' "
                "WHERE owner = %s AND NOT dead AND job_id = ANY(%s) AND lease_until < now() + %s * interval '1 second'",
                (self.store.lease, self.store.server, held, self.store.lease * 2 / 3),
            )
            return int(cur.rowcount)

        return self._cursor_work("lease renewal", work)

    def take_over(self) -> set[bytes]:
        """Make claimable the live rows of other servers that missed their heartbeats for ``dead_after`` seconds, and
        any row whose lease lapsed; the functions of those rows, for a NOTIFY."""
        t, s = self.tables.jobs, self.tables.servers

        def work(cur: Any) -> set[bytes]:
            if time.monotonic() - self.back_at < self.grace:
                return set()  # checked once connected, on the link's thread: the reactor's view comes too late
            cur.execute(
                f"WITH gone AS (SELECT job_id, owner FROM {t} WHERE owner IS NOT NULL AND NOT dead AND "
                "now() - pg_postmaster_start_time() > %s * interval '1 second' AND "
                f"(lease_until < now() OR (owner <> %s AND owner NOT IN (SELECT id FROM {s} WHERE heartbeat >= "
                "now() - %s * interval '1 second'))) FOR UPDATE SKIP LOCKED) "
                f"UPDATE {t} SET owner = NULL, lease_until = NULL FROM gone WHERE {t}.job_id = gone.job_id "
                f"RETURNING {t}.function_name, gone.owner",
                (self.grace, self.store.server, self.dead_after),
            )
            rows = cur.fetchall()
            if rows:
                owners = sorted({int(r[1]) for r in rows})
                log.warning(
                    "took over %d jobs of server(s) %s: dead (no heartbeat for %.1fs) or lease lapsed",
                    len(rows),
                    ", ".join(map(str, owners)),
                    self.dead_after,
                )
            functions = {as_bytes(r[0]) for r in rows}
            self.store._notify(cur, functions)
            return functions

        return self._cursor_work("takeover", work)

    def peers(self) -> list[Peer]:
        s = self.tables.servers

        def work(cur: Any) -> list[Peer]:
            cur.execute(
                f"SELECT id, name, extract(epoch FROM started), extract(epoch FROM now() - heartbeat), info "
                f"FROM {s} ORDER BY id"
            )
            return [
                Peer(int(i), n, float(st), float(age), float(age) < self.dead_after, _json(info))
                for i, n, st, age, info in cur.fetchall()
            ]

        return self._cursor_work("peers", work)

    def queued(self) -> dict[bytes, tuple[int, int]]:
        """The cluster's live jobs per function: (unowned, owned by some server)."""

        def work(cur: Any) -> dict[bytes, tuple[int, int]]:
            cur.execute(
                f"SELECT function_name, count(*) FILTER (WHERE owner IS NULL), count(*) FILTER (WHERE owner IS NOT "
                f"NULL) FROM {self.tables.jobs} WHERE NOT dead GROUP BY function_name ORDER BY function_name"
            )
            return {as_bytes(f): (int(a), int(b)) for f, a, b in cur.fetchall()}

        return self._cursor_work("cluster status", work)


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Notifications:
    """LISTEN on the cluster's channel and this server's own, on a daemon thread with its own connection;
    ``heard(channel, payload)`` for each notification and ``heard("", None)`` after every (re)connect
    (notifications may have been missed meanwhile).
    Reconnects with back-off after a database restart; the coordinator's poll keeps working meanwhile."""

    RETRY_MAX = 5.0

    def __init__(self, store: SharedPostgresStore, heard: Callable[[str, str | None], None]) -> None:
        self.store = store
        self.heard = heard
        self._stop = threading.Event()
        self._conn: Any = None
        self.listening = False
        self._lost = False  # the connection was lost: its return is logged
        self._thread = threading.Thread(target=self._run, name="cluster-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None:
            try:
                conn.cancel_safe(timeout=1.0)
            except Exception:  # noqa: BLE001 - it may be gone already
                pass
        if self._thread.is_alive():  # never started when the server failed to start
            self._thread.join(timeout=3.0)

    def _run(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            try:
                conn = self._conn = self.store._connect()
                conn.autocommit = True
                conn.execute(f"LISTEN {self.store.tables.channel}")
                conn.execute(f"LISTEN {self.store.tables.server_channel(self.store.server)}")
                if self._lost:
                    log.warning("%s: LISTEN is back", self.store.where)
                self.listening, self._lost = True, False
                delay = 0.05
                self.heard("", None)
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=0.25):
                        self.heard(note.channel, note.payload)
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect (the poll covers the gap)
                if self._stop.is_set():
                    break
                if self.listening:
                    log.warning(
                        "%s: LISTEN connection lost (%s); polling until it is back", self.store.where, one_line(exc)
                    )
                self.listening, self._lost = False, True
                self._close()
                self._stop.wait(delay)
                delay = min(delay * 2, self.RETRY_MAX)
        self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        close_quietly(conn)


__all__ = [
    "DEFAULT_SHARED_TABLE",
    "Ahead",
    "HOST",
    "ClusterLink",
    "HandedOff",
    "Notifications",
    "Peer",
    "SharedPostgresStore",
    "SharedRow",
    "Watcher",
    "cluster_id",
]
