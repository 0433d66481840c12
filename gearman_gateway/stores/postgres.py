"""The PostgreSQL store (gearmand's ``Postgres``/``libpq``), on psycopg 3.

Durability: ``add`` returns after COMMIT, and with ``synchronous_commit`` on (the server default, and what this
store sets for its own session if the server has it off) PostgreSQL answers COMMIT only once the transaction's
WAL is flushed to disk. An acknowledged batch therefore survives a crash of the database server or its machine
(unless the server runs with ``fsync=off``, which is logged as a warning).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from gearman_gateway.stores.sql import DEFAULT_TABLE, SqlStore, one_line

log = logging.getLogger(__name__)


class PostgresStore(SqlStore):
    name = "postgres"
    gearmand_table = "queue"
    types = {"id": "BIGINT", "bytes": "BYTEA", "blob": "BYTEA", "bool": "BOOLEAN"}
    driver_errors = (psycopg.Error,)

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
