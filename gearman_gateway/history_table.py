"""The durable job history's table in the configured store (sqlite, PostgreSQL, MySQL): plain blocking SQL.

Kept apart from the queue's own table and connection: the history is written by a thread of its own
(gearman_gateway/durable_history.py) and read by admin commands, so neither waits for the other nor for
the queue's commits. The table is ``<queue table>_history``, one row per finished job, indexed by the
time it finished (what reads, pruning and the retention ask for).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from gearman_gateway.history import HistoryEntry

log = logging.getLogger("gearman_gateway.history")

#: Stores that can hold the history (queue types); the others are refused at start-up.
SUPPORTED = ("sqlite", "postgres", "mysql")
#: Default retention: a week.
RETENTION = 7 * 86400.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RETENTION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*\Z")

#: The table's columns: ``HistoryEntry``'s fields, in its order.
COLUMNS = (
    "handle",
    "function_name",
    "unique_key",
    "priority",
    "background",
    "submitted",
    "started",
    "finished",
    "outcome",
    "exception_data",
    "worker",
)
_FLOAT = {"sqlite": "REAL", "postgres": "DOUBLE PRECISION", "mysql": "DOUBLE"}
#: How a read connection bounds its statements (whole-statement timeouts), per backend; MySQL and MariaDB
#: name it differently (the one the server lacks fails, and is skipped).
_READ_TIMEOUT = {
    "postgres": ["SELECT set_config('statement_timeout', '{ms}ms', false)"],
    "mysql": ["SET SESSION max_execution_time = {ms}", "SET SESSION max_statement_time = {s}"],
}


def parse_retention(value: Any) -> float:
    """Seconds from ``7d``, ``12h``, ``30m``, ``45s``, ``2w`` or a number of seconds; ValueError if not > 0."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _RETENTION.match(str(value))
        if match is None:
            raise ValueError(value)
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(value)
    return seconds


def table_name(queue_table: str) -> str:
    return f"{queue_table[:54]}_history"


def as_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else bytes(value)


class HistoryTable:
    """One connection to the history table, made by the queue store's own ``_connect`` (same file or
    server, same settings). Use it from one thread."""

    def __init__(self, store: Any, kind: str) -> None:
        self.store = store
        self.kind = kind
        self.table = table_name(store.table)
        self.where = f"{store.where.rsplit(' table ', 1)[0]} table {self.table}"
        self._param = store.param
        self._conn: Any = None
        marks = ", ".join([store.param] * len(COLUMNS))
        self._insert = f"INSERT INTO {self.table} ({', '.join(COLUMNS)}) VALUES ({marks})"

    def open(self, statement_timeout: float | None = None) -> None:
        """Connect, and make the table and its index if they are missing."""
        conn = self._conn = self.store._connect()
        cur = conn.cursor()
        if statement_timeout is not None:
            for statement in _READ_TIMEOUT.get(self.kind, []):
                try:
                    cur.execute(statement.format(ms=int(statement_timeout * 1000), s=statement_timeout))
                except self.store.driver_errors:
                    conn.rollback()
        types = self.store.types
        blob, real = types["bytes"], _FLOAT[self.kind]
        index = f"{self.table}_finished"
        inline = f", INDEX {index} (finished)" if self.kind == "mysql" else ""  # MySQL has no CREATE INDEX IF ...
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (handle {blob} NOT NULL, function_name {blob} NOT NULL, "
            f"unique_key {blob} NOT NULL, priority INTEGER NOT NULL, background {types['bool']} NOT NULL, "
            f"submitted {real} NOT NULL, started {real} NOT NULL, finished {real} NOT NULL, "
            f"outcome VARCHAR(16) NOT NULL, exception_data {blob} NOT NULL, worker {blob} NOT NULL{inline})"
            f"{self.store.table_options}"
        )
        if not inline:
            cur.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {self.table} (finished)")
        conn.commit()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a broken connection: nothing left to do
                pass

    def _connection(self) -> Any:
        if self._conn is None:
            self.open()
        return self._conn

    def _run(self, work: Any) -> Any:
        """``work(cursor)`` in one transaction; a driver error drops the connection (the next call makes
        a new one) and is raised again."""
        conn = self._connection()
        try:
            cur = conn.cursor()
            result = work(cur)
            conn.commit()
            return result
        except self.store.driver_errors:
            self.close()
            raise

    def write(self, entries: list[Any]) -> None:
        """``HistoryEntry`` s or plain tuples of its fields: the fields are COLUMNS, in order (bool is an int to
        sqlite and MySQL)."""
        self._run(lambda cur: cur.executemany(self._insert, entries))

    def prune(self, before: float) -> int:
        """Delete the rows of jobs that finished before ``before``; how many went."""

        def work(cur: Any) -> int:
            cur.execute(f"DELETE FROM {self.table} WHERE finished < {self._param}", (before,))
            return int(cur.rowcount or 0)

        return self._run(work)

    def entries(
        self,
        function: bytes | None = None,
        outcome: str | None = None,
        since: float | None = None,
        before: float | None = None,
        limit: int | None = None,
    ) -> list[HistoryEntry]:
        """Newest first, like ``History.entries``; ``before``: only jobs that finished earlier."""
        p = self._param
        where, params = [], []
        for clause, value in (
            (f"function_name = {p}", function),
            (f"outcome = {p}", outcome),
            (f"finished >= {p}", since),
            (f"finished < {p}", before),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"SELECT {', '.join(COLUMNS)} FROM {self.table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY finished DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"

        def work(cur: Any) -> list[Any]:
            cur.execute(sql, params)
            return list(cur.fetchall())

        return [
            HistoryEntry(
                as_bytes(r[0]),
                as_bytes(r[1]),
                as_bytes(r[2]),
                int(r[3]),
                bool(r[4]),
                float(r[5]),
                float(r[6]),
                float(r[7]),
                str(r[8]),
                as_bytes(r[9]),
                as_bytes(r[10]),
            )
            for r in self._run(work)
        ]
