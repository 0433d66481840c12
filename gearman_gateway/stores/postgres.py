"""The PostgreSQL store (gearmand's ``Postgres``/``libpq``), on psycopg 3.

Durability: ``add`` returns after COMMIT, and with ``synchronous_commit`` on (the server default, and what this
store sets for its own session if the server has it off) PostgreSQL answers COMMIT only once the transaction's
WAL is flushed to disk. An acknowledged batch therefore survives a crash of the database server or its machine
(unless the server runs with ``fsync=off``, which is logged as a warning).

One server per table: the store's session holds a session-level advisory lock on the table (two keys:
LOCK_CLASS and a hash of ``schema.table``; ``pg_locks`` shows them as classid and objid) for as long as it is
connected. PostgreSQL drops it when the session ends, a crash of gearmand included. A second server's
``pg_try_advisory_lock`` fails and its message names the holder from ``pg_stat_activity``: our sessions set
``application_name`` to ``gearman-gateway PID@HOST`` unless the conninfo sets one. Behind a pooler that shares
server sessions between clients (PgBouncer in transaction mode) a session lock means nothing: connect directly.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from gearman_gateway.stores.base import StoreError
from gearman_gateway.stores.ownership import APPLICATION, in_use, this_process
from gearman_gateway.stores.sql import DEFAULT_TABLE, SqlStore, one_line

log = logging.getLogger(__name__)

#: The first key of our advisory locks ("ggwq"), which keeps them apart from other applications' one-key locks.
LOCK_CLASS = int.from_bytes(b"ggwq", "big")
#: Seconds a reconnect waits for its own earlier session, which it has ended, to let go of the lock.
OLD_SESSION_WAIT = 5.0


def lock_key(schema: str, table: str) -> int:
    """The second key: a signed 32-bit hash of the table's qualified name (unquoted identifiers fold to lower
    case, so ``MyQueue`` and ``myqueue`` are one table and one key)."""
    digest = hashlib.sha256(f"{schema}.{table.lower()}".encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


class PostgresStore(SqlStore):
    name = "postgres"
    gearmand_table = "queue"
    types = {"id": "BIGINT", "bytes": "BYTEA", "blob": "BYTEA", "bool": "BOOLEAN"}
    driver_errors = (psycopg.Error,)
    integrity_errors = (psycopg.IntegrityError,)
    own_queue = (
        "give this one its own table (queue.postgres.table in a YAML --config file) or database (dbname in "
        "--libpq-conninfo)"
    )

    def __init__(
        self,
        conninfo: str = "",
        table: str = DEFAULT_TABLE,
        connect_timeout: float = 5.0,
        lock_timeout: float = 5.0,
        statement_timeout: float = 30.0,
    ) -> None:
        try:
            self._params = conninfo_to_dict(conninfo)
        except psycopg.Error as exc:
            raise ValueError(f"postgres store: bad conninfo: {one_line(exc)}") from exc
        self.conninfo = conninfo
        self.connect_timeout = connect_timeout
        #: A write that waits longer than this for a lock (e.g. someone's LOCK TABLE) fails instead of hanging.
        self.lock_timeout = lock_timeout
        self.statement_timeout = statement_timeout
        shown = " ".join(
            f"{key}={self._params[key]}" for key in ("host", "port", "dbname", "user") if key in self._params
        )
        super().__init__(table, f"({shown or 'libpq defaults'})")
        #: (backend pid, backend start) of the session that took the lock: a reconnect that finds the lock
        #: still held by it (a connection only our side saw die) ends it instead of waiting for ever.
        self._session: tuple[int, Any] | None = None

    def _connect(self) -> Any:
        # Defaults for what the conninfo leaves out. libpq takes whole seconds to connect; tcp_user_timeout and
        # keepalives drop a connection to a server that went away without a word (a network partition), so a
        # write fails instead of hanging for the kernel's 15 minutes of retransmissions.
        defaults = {
            "connect_timeout": max(1, math.ceil(self.connect_timeout)),
            "tcp_user_timeout": int(self.statement_timeout * 1000),
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        defaults["application_name"] = f"{APPLICATION} {this_process()}"[:63]  # names us to a second server
        extra = {key: value for key, value in defaults.items() if key not in self._params}
        return psycopg.connect(self.conninfo, autocommit=False, **extra)

    def _prepare_session(self, cursor: Any) -> None:
        cursor.execute(
            "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false), "
            "current_setting('synchronous_commit'), current_setting('fsync')",
            (f"{int(self.lock_timeout * 1000)}ms", f"{int(self.statement_timeout * 1000)}ms"),
        )
        _, _, synchronous_commit, fsync = cursor.fetchone()
        if synchronous_commit == "off":  # COMMIT would return before the WAL is on disk
            cursor.execute("SET synchronous_commit = on")
        if fsync == "off":
            log.warning("%s: the server runs with fsync=off; a crash of its machine can lose jobs", self.where)

    def _claim(self, cursor: Any) -> None:
        # the table's schema: where it is, else where CREATE TABLE will put it
        cursor.execute(
            "SELECT COALESCE((SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass(%s)), current_schema(), '')",
            (self.table,),
        )
        key = lock_key(cursor.fetchone()[0], self.table)
        if not self._try_lock(cursor, key):
            holder = self._holder(cursor, key)
            if holder is not None and self._session == (holder[0], holder[4]):
                self._end_old_session(cursor, key, holder[0])
            elif holder is not None or not self._try_lock(cursor, key):  # else its holder let go meanwhile
                raise in_use(self.where, self._describe(holder), self.own_queue)
        self._remember_session(cursor)

    @staticmethod
    def _try_lock(cursor: Any, key: int) -> bool:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, key))
        return bool(cursor.fetchone()[0])

    def _remember_session(self, cursor: Any) -> None:
        cursor.execute("SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        pid, started = cursor.fetchone()
        self._session = (pid, started)

    @staticmethod
    def _holder(cursor: Any, key: int) -> tuple[int, str, str, int | None, Any] | None:
        """(pid, application_name, client address, client port, backend start) of the session holding the lock."""
        cursor.execute(
            "SELECT l.pid, COALESCE(a.application_name, ''), COALESCE(host(a.client_addr), ''), a.client_port, "
            "a.backend_start FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = %s::oid "
            "AND l.objid = %s::oid AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (LOCK_CLASS, key & 0xFFFFFFFF),
        )
        row = cursor.fetchone()
        return tuple(row) if row else None  # type: ignore[return-value]

    @staticmethod
    def _describe(holder: tuple[int, str, str, int | None, Any] | None) -> str:
        if holder is None:
            return "a postgres session that let go just now: try again"
        pid, application, address, port, _ = holder
        session = f"postgres session pid {pid}" + (f" from {address}:{port}" if address and port else "")
        if application.startswith(APPLICATION + " "):
            who = application[len(APPLICATION) + 1 :]
            return f"{'this process: another store object' if who == this_process() else who}, {session}"
        return session + (f", application_name {application}" if application else "")

    def _end_old_session(self, cursor: Any, key: int, pid: int) -> None:
        """The lock is still held by this store's own earlier session, which only our side saw die (a network
        cut): end it, and take the lock once PostgreSQL has let it go."""
        log.warning("%s: ending this server's earlier session (pid %d), which still holds the table", self.where, pid)
        cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + OLD_SESSION_WAIT
        while not self._try_lock(cursor, key):
            if time.monotonic() > deadline:
                raise StoreError(
                    f"{self.where}: open failed: this server's earlier session (pid {pid}) still holds the table"
                )
            time.sleep(0.02)
