"""The MySQL/MariaDB store (gearmand's ``MySQL``), on PyMySQL.

Durability: the table is InnoDB and ``add`` returns after COMMIT. With ``innodb_flush_log_at_trx_commit=1``
(the default) InnoDB answers COMMIT only after its redo log is flushed to disk, so an acknowledged batch
survives a crash of the database server or its machine. Other values of that server-wide setting flush about
once a second; the store logs a warning when it finds one.

One server per table: the store's connection holds a named lock, ``GET_LOCK('gearman_gateway:DB.TABLE', 0)``,
for as long as it is connected; the server drops it when the connection ends, a crash of gearmand included.
A second server's GET_LOCK fails and its message names the holder's connection (IS_USED_LOCK and the process
list: its id, client address and user).
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any

import pymysql

from gearman_gateway.stores.base import StoreError
from gearman_gateway.stores.ownership import in_use
from gearman_gateway.stores.sql import DEFAULT_TABLE, SqlStore

log = logging.getLogger(__name__)

LOCK_PREFIX = "gearman_gateway:"
#: The longest lock name MySQL takes; a longer one is replaced by a hash.
MAX_LOCK_NAME = 64
#: Seconds a reconnect waits for its own earlier connection, which it has killed, to let go of the lock.
OLD_SESSION_WAIT = 5


def lock_name(db: str, table: str) -> str:
    """The named lock of one table (lock names are server-wide: the database is part of it)."""
    name = f"{LOCK_PREFIX}{db}.{table}"
    if len(name) > MAX_LOCK_NAME:
        name = LOCK_PREFIX + hashlib.sha256(name.encode()).hexdigest()[: MAX_LOCK_NAME - len(LOCK_PREFIX)]
    return name


class MysqlStore(SqlStore):
    name = "mysql"
    gearmand_table = "gearman_queue"
    types = {"id": "BIGINT", "bytes": "BLOB", "blob": "LONGBLOB", "bool": "BOOLEAN"}
    table_options = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    # gearmand's unique and function are VARCHARs in the table's character set; BINARY gives their stored bytes.
    text_as_bytes = "CAST({} AS BINARY)"
    driver_errors = (pymysql.MySQLError, OSError)
    integrity_errors = (pymysql.IntegrityError,)
    own_queue = "give this one its own table (queue.mysql.table in a YAML --config file) or database (--mysql-db)"

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
        #: The connection id that took the lock: a reconnect that finds the lock still held by it (a connection
        #: only our side saw die) kills it instead of waiting for the server to notice.
        self._session: int | None = None

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

    def _claim(self, cursor: Any) -> None:
        cursor.execute("SELECT DATABASE(), @@lower_case_table_names, CONNECTION_ID()")
        db, lower_case, connection = cursor.fetchone()
        name = lock_name(db, self.table.lower() if int(lower_case) else self.table)
        cursor.execute("SELECT GET_LOCK(%s, 0)", (name,))
        if cursor.fetchone()[0] != 1:
            cursor.execute("SELECT IS_USED_LOCK(%s)", (name,))
            (holder,) = cursor.fetchone()
            if holder is not None and holder == self._session:
                self._end_old_session(cursor, name, holder)
            else:
                cursor.execute("SELECT GET_LOCK(%s, 0)", (name,))  # its holder may have let go meanwhile
                if cursor.fetchone()[0] != 1:
                    raise in_use(self.where, self._describe(cursor, holder), self.own_queue)
        self._session = connection

    @staticmethod
    def _describe(cursor: Any, holder: int | None) -> str:
        if holder is None:
            return "a connection that let go just now: try again"
        cursor.execute("SELECT HOST, USER FROM information_schema.PROCESSLIST WHERE ID = %s", (holder,))
        row = cursor.fetchone()
        return f"mysql connection {holder}" + (f" from {row[0]} as {row[1]}" if row else "")

    def _end_old_session(self, cursor: Any, name: str, connection: int) -> None:
        log.warning(
            "%s: killing this server's earlier connection %d, which still holds the table", self.where, connection
        )
        cursor.execute("KILL CONNECTION %s", (connection,))
        cursor.execute("SELECT GET_LOCK(%s, %s)", (name, OLD_SESSION_WAIT))
        if cursor.fetchone()[0] != 1:
            raise StoreError(
                f"{self.where}: open failed: this server's earlier connection {connection} still holds the table"
            )
