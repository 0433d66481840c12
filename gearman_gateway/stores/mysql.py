"""The MySQL/MariaDB store (gearmand's ``MySQL``), on PyMySQL.

Durability: the table is InnoDB and ``add`` returns after COMMIT. With ``innodb_flush_log_at_trx_commit=1``
(the default) InnoDB answers COMMIT only after its redo log is flushed to disk, so an acknowledged batch
survives a crash of the database server or its machine. Other values of that server-wide setting flush about
once a second; the store logs a warning when it finds one.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pymysql

from gearman_gateway.stores.sql import DEFAULT_TABLE, SqlStore

log = logging.getLogger(__name__)


class MysqlStore(SqlStore):
    name = "mysql"
    gearmand_table = "gearman_queue"
    types = {"id": "BIGINT", "bytes": "BLOB", "blob": "LONGBLOB", "bool": "BOOLEAN"}
    table_options = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    # gearmand's unique and function are VARCHARs in the table's character set; BINARY gives their stored bytes.
    text_as_bytes = "CAST({} AS BINARY)"
    driver_errors = (pymysql.MySQLError, OSError)

    def __init__(
        self,
        host: str = "localhost",
        port: int = 3306,
        user: str = "",
        password: str = "",
        db: str = "",
        table: str = DEFAULT_TABLE,
        unix_socket: str | None = None,
        connect_timeout: float = 5.0,
        lock_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        if not db:
            raise ValueError("mysql store: a database name is required (db, gearmand's --mysql-db)")
        self.host, self.port, self.user, self.password, self.db = host, int(port), user, password, db
        self.unix_socket = unix_socket
        self.connect_timeout = connect_timeout
        #: A write that waits longer than this for a row or table lock (LOCK TABLES, ...) fails instead of hanging.
        self.lock_timeout = lock_timeout
        self.read_timeout = read_timeout
        place = unix_socket or f"{host}:{self.port}"
        super().__init__(table, f"{user}@{place}/{db}")

    def _connect(self) -> Any:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.db,
            unix_socket=self.unix_socket,
            charset="utf8mb4",
            binary_prefix=True,  # bytes go as _binary'...', so payloads that are not UTF-8 stay as they are
            autocommit=False,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            write_timeout=self.read_timeout,
        )

    def _prepare_session(self, cursor: Any) -> None:
        seconds = max(1, math.ceil(self.lock_timeout))  # both settings take whole seconds
        # innodb_lock_wait_timeout: row locks; lock_wait_timeout: table (metadata) locks, a year by default.
        cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {seconds}, lock_wait_timeout = {seconds}")
        cursor.execute("SELECT @@innodb_flush_log_at_trx_commit")
        (flush,) = cursor.fetchone()
        if int(flush) != 1:
            log.warning(
                "%s: innodb_flush_log_at_trx_commit=%s; a crash of the server's machine can lose the last second "
                "of jobs (1 makes every commit durable)",
                self.where,
                flush,
            )
