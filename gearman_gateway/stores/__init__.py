"""Durable queues (DESIGN.md seam 3): one module per backend behind the Store protocol of ``base``.

``create_store(kind, **options)`` builds one by name; gearmand's ``-q`` names are accepted as aliases. A
backend's module (and its driver) is imported only when it is chosen, so a server on sqlite never loads
psycopg, PyMySQL, redis-py or pymemcache.
"""

from __future__ import annotations

import importlib
from typing import Any

from gearman_gateway.stores.base import QueueHeld, Store, StoreConflict, StoredJob, StoreError

__all__ = [
    "ALIASES",
    "BACKENDS",
    "GEARMAND_TABLES",
    "OPTIONS",
    "QueueHeld",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoredJob",
    "create_store",
]

#: Our backend names -> "module:class".
BACKENDS: dict[str, str] = {
    "memory": "gearman_gateway.stores.memory:MemoryStore",
    "sqlite": "gearman_gateway.stores.sqlite:SqliteStore",
    "postgres": "gearman_gateway.stores.postgres:PostgresStore",
    "mysql": "gearman_gateway.stores.mysql:MysqlStore",
    "redis": "gearman_gateway.stores.redis:RedisStore",
    "memcached": "gearman_gateway.stores.memcached:MemcachedStore",  # not durable: memcached evicts
}

#: gearmand's queue names (``-q``, case-insensitive) and other spellings -> our backend names.
ALIASES: dict[str, str] = {
    "builtin": "memory",
    "none": "memory",
    "libsqlite3": "sqlite",
    "sqlite3": "sqlite",
    "libpq": "postgres",
    "postgresql": "postgres",
    "mariadb": "mysql",
    "libmemcached": "memcached",
}

#: What import_gearmand reads by default: gearmand's default table (redis, memcached: key prefix) per backend.
GEARMAND_TABLES: dict[str, str] = {
    "sqlite": "gearman_queue",
    "postgres": "queue",
    "mysql": "gearman_queue",
    "redis": "_gear_",
    "memcached": "gear_",
}

_TABLE = "table name (default gearman_gateway_queue); gearmand's own table is read only by import_gearmand"
_LOCK = "seconds a write waits for a lock held by someone else before it fails (default 5)"
_OWNER_TTL = (
    "seconds the owner key that keeps other servers off this queue outlives its last renewal (default 15): how "
    "long a server that vanished from another machine keeps the next one from starting"
)

#: Every backend's options (the keyword arguments of create_store), with what they mean and their defaults.
OPTIONS: dict[str, dict[str, str]] = {
    "memory": {},
    "sqlite": {
        "path": "database file, required (gearmand --libsqlite3-db)",
        "table": _TABLE,
        "synchronous": "full (default: fsync per commit, survives power loss) or normal (survives a process kill)",
        "busy_timeout": "seconds a write waits for another process's lock on the file before it fails (default 5)",
    },
    "postgres": {
        "conninfo": "libpq connection string or URI (gearmand --libpq-conninfo; default empty = libpq defaults)",
        "table": _TABLE,
        "connect_timeout": "seconds to connect (default 5; a connect_timeout in conninfo wins)",
        "lock_timeout": _LOCK,
        "statement_timeout": "seconds one statement may run (default 30)",
    },
    "mysql": {
        "host": "server host (gearmand --mysql-host; default localhost, over TCP)",
        "port": "server port (gearmand --mysql-port; default 3306)",
        "user": "user name (gearmand --mysql-user)",
        "password": "password (gearmand --mysql-password)",
        "db": "database, required (gearmand --mysql-db)",
        "table": _TABLE + " (gearmand --mysql-table names gearmand's)",
        "unix_socket": "path of the server's Unix socket, instead of host and port",
        "connect_timeout": "seconds to connect (default 5)",
        "lock_timeout": _LOCK,
        "read_timeout": "seconds to wait for the server's answer (default 30)",
    },
    "redis": {
        "host": "server host (gearmand --redis-server; default 127.0.0.1)",
        "port": "server port (gearmand --redis-port; default 6379)",
        "password": "password (gearmand --redis-password)",
        "username": "ACL user name (default: none)",
        "db": "database number (default 0)",
        "prefix": "key prefix (default gearman_gateway_queue:); gearmand's --redis-prefix is read only by import",
        "socket_timeout": "seconds to wait for the server's answer (default 10)",
        "connect_timeout": "seconds to connect (default 5)",
        "owner_ttl": _OWNER_TTL,
    },
    "memcached": {
        "servers": "host[:port] list, comma-separated (gearmand --libmemcached-servers; default 127.0.0.1:11211)",
        "prefix": "key prefix (default gearman_gateway_queue:); gearmand's --libmemcached-prefix is read by import",
        "connect_timeout": "seconds to connect (default 5)",
        "socket_timeout": "seconds to wait for the server's answer (default 10)",
        "owner_ttl": _OWNER_TTL,
    },
}


def backend_name(kind: str) -> str:
    """Our name for a backend given by our name or by gearmand's (case-insensitive), or ValueError."""
    name = kind.strip().lower()
    name = ALIASES.get(name, name)
    if name not in BACKENDS:
        known = ", ".join(sorted({*BACKENDS, *ALIASES}))
        raise ValueError(f"Unknown queue {kind} (known: {known})")
    return name


def create_store(kind: str, **options: Any) -> Store:
    """A new, not yet opened store. Unknown names and options are ValueErrors: configuration mistakes."""
    name = backend_name(kind)
    unknown = sorted(set(options) - set(OPTIONS[name]))
    if unknown:
        known = ", ".join(OPTIONS[name]) or "none"
        raise ValueError(f"{name} store: unknown option {', '.join(unknown)} (known: {known})")
    module_name, _, class_name = BACKENDS[name].partition(":")
    store_class = getattr(importlib.import_module(module_name), class_name)
    return store_class(**options)
