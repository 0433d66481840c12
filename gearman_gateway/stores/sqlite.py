"""The sqlite store (gearmand's ``libsqlite3``), the default: one file, no server to run.

Durability. The database runs in WAL mode. A COMMIT appends the transaction's pages to the ``-wal`` file with
write() before it returns, so once ``add`` returns the rows are in the kernel's page cache, which outlives the
process: a SIGKILL or a crash of the server right after the acknowledgement loses nothing, because the next
open replays the WAL. That is what ``synchronous=NORMAL`` gives. It does not fsync on commit, so an OS crash or
a power cut can still lose the last transactions. ``synchronous=FULL`` (our default) also fsyncs the WAL on every
COMMIT, so an acknowledged batch survives those as well. With one transaction per batch (group commit) that is
one fsync per batch, 0.2 ms on the test machine. ``normal`` is an option for those who accept the risk.

One server per file: the first ``open`` locks the file for the process until ``close`` (see sqlite_file);
a reconnect is ``open`` again and keeps the lock.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from gearman_gateway.stores.base import StoreError
from gearman_gateway.stores.sql import DEFAULT_TABLE, SqlStore
from gearman_gateway.stores.sqlite_file import QueueFile

log = logging.getLogger(__name__)

SYNCHRONOUS = ("full", "normal", "extra")


class SqliteStore(SqlStore):
    name = "sqlite"
    gearmand_table = "gearman_queue"
    param = "?"
    types = {"id": "INTEGER", "bytes": "BLOB", "blob": "BLOB", "bool": "INTEGER"}
    # gearmand binds unique and function as TEXT; the cast returns their stored bytes whatever the encoding.
    text_as_bytes = "CAST({} AS BLOB)"
    gearmand_order = "ORDER BY rowid"  # the order gearmand replays in
    driver_errors = (sqlite3.Error,)
    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(
        self,
        path: str | Path,
        table: str = DEFAULT_TABLE,
        synchronous: str = "full",
        busy_timeout: float = 5.0,
    ) -> None:
        if not str(path):
            raise ValueError("sqlite store: a database file is required (path, gearmand's --libsqlite3-db)")
        if synchronous.lower() not in SYNCHRONOUS:
            raise ValueError(f"sqlite store: synchronous must be one of {', '.join(SYNCHRONOUS)}, not {synchronous!r}")
        self.path = str(path)
        self.synchronous = synchronous.upper()
        #: Seconds a write waits for another process's lock before it fails ("database is locked").
        self.busy_timeout = busy_timeout
        super().__init__(table, self.path)
        #: The file's lock and life; the server replaces it for the default file (durability.build_store).
        self.file = QueueFile(self.path)

    def open(self) -> None:
        try:
            self.file.claim(self.table)
        except StoreError as error:
            raise StoreError(f"{self.where}: {error}") from None
        super().open()

    def close(self) -> None:
        super().close()
        self.file.release(self.table)

    def _connect(self) -> Any:
        # Used from the store thread only, which is not the thread that created the object.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]  # must run outside a transaction
            if str(mode).lower() != "wal":
                log.warning("%s: journal mode is %s, not WAL (an in-memory database keeps nothing)", self.where, mode)
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except sqlite3.Error:
            conn.close()
            raise
        return conn
