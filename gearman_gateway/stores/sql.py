"""What the three SQL backends (sqlite, postgres, mysql) share: one table layout, one set of statements, one
transaction wrapper that turns every driver exception into a StoreError.

A backend subclass only says how to connect, how to set up its session, how it claims the table for one
server (ownership.py), and the few words its SQL dialect spells differently (column types, parameter marker,
how to read a gearmand text column as raw bytes).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from gearman_gateway.stores.base import StoreConflict, StoredJob, StoreError

DEFAULT_TABLE = "gearman_gateway_queue"
#: Our columns, in the order every statement and every row tuple uses.
COLUMNS = ("job_id", "handle", "unique_key", "function_name", "priority", "data", "when_to_run", "dead", "reason")
#: Ids per ``IN (...)`` list: far below every backend's limit on bound parameters (sqlite's is 32766), and
#: one statement per 500 rows instead of one per row (PyMySQL's executemany only batches INSERTs).
IDS_PER_STATEMENT = 500
#: Table names go into SQL text (drivers cannot bind identifiers), so only plain identifiers are accepted.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}\Z")


def check_table_name(backend: str, table: str) -> str:
    """A table name that is safe to paste into SQL, or ValueError (a configuration mistake)."""
    if not _IDENTIFIER.match(table):
        raise ValueError(f"{backend} store: table name {table!r} is not a plain SQL identifier")
    return table


def one_line(exc: BaseException) -> str:
    """A driver's message on one line (libpq's span several), or the exception's class when it has none."""
    text = " ".join(str(exc).split())
    return text if text and text != "(0, '')" else f"{type(exc).__name__} (connection closed)"


def close_quietly(conn: Any) -> None:
    """Close a DB-API connection, if any; closing a dead one may fail in any way, and it is gone either way."""
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass


def as_bytes(value: bytes | str | memoryview | None) -> bytes:
    """gearmand keeps unique and function in text columns; the scheduler wants bytes."""
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


#: Rows per multi-row INSERT: 9 parameters each stays far below every driver's parameter limit.
ROWS_PER_INSERT = 200


class SqlStore:
    """The Store protocol on a DB-API 2 connection; one transaction per call."""

    name: ClassVar[str]
    #: gearmand's default table for this backend: the usual argument of import_gearmand.
    gearmand_table: ClassVar[str]
    #: The bound-parameter marker of the driver's paramstyle ("qmark" or "format").
    param: ClassVar[str] = "%s"
    #: SQL types for the kinds of column (id, bytes, blob, bool) and options after ``CREATE TABLE (...)``.
    types: ClassVar[Mapping[str, str]]
    table_options: ClassVar[str] = ""
    #: An expression that reads one of gearmand's text columns as its raw bytes ("{}" = the column as is).
    text_as_bytes: ClassVar[str] = "{}"
    #: ``ORDER BY`` that gives gearmand's replay order when importing its table ("" = the table's own order).
    gearmand_order: ClassVar[str] = ""
    #: The driver's exception classes: any of them becomes a StoreError.
    driver_errors: ClassVar[tuple[type[BaseException], ...]]
    #: Those that mean a row broke the table's constraints (a job id stored already): a StoreConflict.
    integrity_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    #: How a second server gets a table of its own, for the message it gets when this one is taken.
    own_queue: ClassVar[str] = ""
    #: One server per table: ``open`` claims it (``_claim``) on the store's session. Issue 21's shared mode
    #: (several servers on one PostgreSQL table, coordinating row by row) is a store with this off.
    exclusive: bool = True

    def __init__(self, table: str, where: str) -> None:
        self.table = check_table_name(self.name, table)
        #: Where this store writes, for messages (never a password).
        self.where = f"{self.name} store {where} table {table}"
        self._conn: Any = None
        cols = ", ".join(COLUMNS)
        marks = ", ".join([self.param] * len(COLUMNS))
        self._insert_head = f"INSERT INTO {table} ({cols}) VALUES "
        self._row_marks = f"({marks})"
        self._inserts: dict[int, str] = {}  # rows per statement -> statement
        self._select = f"SELECT {cols} FROM {table} ORDER BY job_id"

    # -- what a backend provides

    def _connect(self) -> Any:
        """A new DB-API connection, not in autocommit mode."""
        raise NotImplementedError

    def _prepare_session(self, cursor: Any) -> None:
        """Session settings (timeouts, durability); the default has none."""

    def _claim(self, cursor: Any) -> None:
        """Make this session the table's only user for as long as it lasts, or raise QueueHeld naming the
        holder. The default claims nothing (sqlite locks its file before it connects)."""

    # -- the Store protocol

    def open(self) -> None:
        """(Re)connect, claim the table for this server, create it if missing and check that an existing one
        has our layout."""
        self._disconnect()
        try:
            self._conn = self._connect()
        except self.driver_errors as exc:
            raise StoreError(f"{self.where}: connect failed: {one_line(exc)}") from exc
        try:
            with self._transaction("open") as cur:
                self._prepare_session(cur)
                self._set_up(cur)
        except StoreError:
            self._disconnect()
            raise

    def _set_up(self, cur: Any) -> None:
        """In ``open``'s transaction: claim the table, create it if missing, check its layout."""
        if self.exclusive:  # before the table is created: two servers never race to create it
            self._claim(cur)
        cur.execute(self._create_table())
        found = self._columns(cur, self.table)
        if found != set(COLUMNS):
            raise StoreError(
                f"{self.where}: the table exists with other columns ({', '.join(sorted(found))}); "
                f"a table written by gearmand is read by the import option, not used as our queue"
            )

    def close(self) -> None:
        """The end of the store's use, and of its claim: the session ends (a reconnect is ``open`` again,
        which drops the old connection)."""
        self._disconnect()

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        close_quietly(conn)

    def add(self, jobs: list[StoredJob]) -> None:
        if not jobs:
            return
        with self._transaction(f"add of {len(jobs)} jobs") as cur:
            self._insert_rows(cur, jobs)

    def _insert_rows(self, cur: Any, jobs: list[StoredJob]) -> None:
        """Multi-row INSERTs of up to ROWS_PER_INSERT rows: one statement per chunk instead of one per row,
        which also means one release of Python's GIL per chunk (per-row releases make the store thread
        and the reactor thread fight over it)."""
        for start in range(0, len(jobs), ROWS_PER_INSERT):
            chunk = jobs[start : start + ROWS_PER_INSERT]
            statement = self._inserts.get(len(chunk))
            if statement is None:
                statement = self._inserts[len(chunk)] = self._insert_head + ", ".join([self._row_marks] * len(chunk))
            params = [
                value
                for j in chunk
                for value in (j.job_id, j.handle, j.unique, j.function, j.priority, j.data, j.when, j.dead, j.reason)
            ]
            cur.execute(statement, params)

    def write(
        self, adds: list[StoredJob], removes: list[int], buries: list[tuple[int, str]], revives: list[int]
    ) -> None:
        """A whole group commit in ONE transaction (one fsync): new rows, deletes, buries, revives."""
        what = f"batch of {len(adds)} adds and {len(removes)} removes"
        with self._transaction(what) as cur:
            if adds:
                self._insert_rows(cur, adds)
            self._each_chunk(cur, f"DELETE FROM {self.table}", (), removes)
            for job_id, reason in buries:
                self._each_chunk(cur, self._set_dead(), (True, reason), [job_id])
            self._each_chunk(cur, self._set_dead(), (False, ""), revives)

    def remove(self, job_ids: list[int]) -> None:
        self._by_ids(f"remove of {len(job_ids)} jobs", f"DELETE FROM {self.table}", (), job_ids)

    def bury(self, job_ids: list[int], reason: str) -> None:
        self._by_ids(f"bury of {len(job_ids)} jobs", self._set_dead(), (True, reason), job_ids)

    def revive(self, job_ids: list[int]) -> None:
        self._by_ids(f"revive of {len(job_ids)} jobs", self._set_dead(), (False, ""), job_ids)

    def load(self) -> list[StoredJob]:
        with self._transaction("load") as cur:
            cur.execute(self._select)
            rows = cur.fetchall()
        return [
            StoredJob(
                job_id=int(job_id),
                handle=as_bytes(handle),
                function=as_bytes(function),
                unique=as_bytes(unique),
                priority=int(priority),
                data=as_bytes(data),
                when=int(when),
                dead=bool(dead),
                reason=reason or "",
            )
            for job_id, handle, unique, function, priority, data, when, dead, reason in rows
        ]

    def import_gearmand(self, table: str) -> list[StoredJob]:
        """Read gearmand's table (reference §5.2) in gearmand's replay order; an old one may lack when_to_run."""
        check_table_name(self.name, table)
        with self._transaction(f"import of gearmand table {table}") as cur:
            found = self._columns(cur, table)
            missing = {"unique_key", "function_name", "data"} - found
            if missing:
                raise StoreError(f"{self.where}: {table} is not a gearmand queue table (no {', '.join(missing)})")
            when = "when_to_run" if "when_to_run" in found else "0"
            priority = "priority" if "priority" in found else "1"
            text = self.text_as_bytes
            cur.execute(
                f"SELECT {text.format('unique_key')}, {text.format('function_name')}, {priority}, data, {when} "
                f"FROM {table} {self.gearmand_order}"
            )
            rows = cur.fetchall()
        return [
            StoredJob(
                job_id=0,
                handle=b"",
                function=as_bytes(function),
                unique=as_bytes(unique),
                priority=min(max(int(prio if prio is not None else 1), 0), 2),
                data=as_bytes(data),
                when=int(when_to_run or 0),
            )
            for unique, function, prio, data, when_to_run in rows
        ]

    # -- shared machinery

    @contextmanager
    def _transaction(self, what: str) -> Iterator[Any]:
        """A cursor whose statements commit together; any failure rolls back and becomes one StoreError."""
        conn = self._conn
        if conn is None:
            raise StoreError(f"{self.where}: {what} failed: the store is not open")
        try:
            cur = conn.cursor()
            try:
                yield cur
            finally:
                cur.close()
            conn.commit()
        except BaseException as exc:
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001 - the connection may be dead; the first error is the one to report
                pass
            if isinstance(exc, self.integrity_errors):
                raise StoreConflict(f"{self.where}: {what} failed: {one_line(exc)}") from exc
            if isinstance(exc, self.driver_errors):
                raise StoreError(f"{self.where}: {what} failed: {one_line(exc)}") from exc
            raise

    def _by_ids(self, what: str, statement: str, params: Sequence[Any], job_ids: list[int]) -> None:
        """One transaction that applies ``statement ... WHERE job_id IN (...)`` to every id, in chunks."""
        if not job_ids:
            return
        with self._transaction(what) as cur:
            self._each_chunk(cur, statement, params, job_ids)

    def _each_chunk(self, cur: Any, statement: str, params: Sequence[Any], job_ids: list[int]) -> None:
        for start in range(0, len(job_ids), IDS_PER_STATEMENT):
            chunk = job_ids[start : start + IDS_PER_STATEMENT]
            marks = ", ".join([self.param] * len(chunk))
            cur.execute(f"{statement} WHERE job_id IN ({marks})", (*params, *chunk))

    def _set_dead(self) -> str:
        return f"UPDATE {self.table} SET dead = {self.param}, reason = {self.param}"

    def _create_table(self) -> str:
        t = self.types
        return (
            f"CREATE TABLE IF NOT EXISTS {self.table} (job_id {t['id']} PRIMARY KEY, handle {t['bytes']} NOT NULL, "
            f"unique_key {t['bytes']} NOT NULL, function_name {t['bytes']} NOT NULL, priority INTEGER NOT NULL, "
            f"data {t['blob']} NOT NULL, when_to_run BIGINT NOT NULL, dead {t['bool']} NOT NULL, "
            f"reason TEXT NOT NULL){self.table_options}"
        )

    @staticmethod
    def _columns(cur: Any, table: str) -> set[str]:
        """The column names of a table, read from an empty result (portable across the three drivers)."""
        cur.execute(f"SELECT * FROM {table} WHERE 1 = 0")
        cur.fetchall()
        return {str(d[0]).lower() for d in cur.description}
