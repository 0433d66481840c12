"""The memcached frontend's options: ``--memcached-*`` flags and the YAML ``memcached:`` block."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from protocols.memcached.limits import DEFAULT_MAX_VALUE_SIZE
from protocols.options import check, check_port, check_tls_port, nonnegative, option, port_number, tls_on_port, tls_port

#: Longest ``/t=<ms>`` wait served by default: below gomemcache's 500 ms default read timeout, so that a
#: client that waits gets a miss rather than a timeout of its own (which would make it drop the connection).
DEFAULT_MAX_WAIT_MS = 400

#: Seconds a connection may hold part of a request (half a value, a line without its end) without sending
#: more before it is closed: a stalled client must not keep a buffer for ever.
DEFAULT_READ_TIMEOUT = 30.0


@dataclass
class MemcachedOptions:
    port: int = option(
        11211, flags=("--memcached-port",), parse=port_number, help="memcached frontend port (default 11211)"
    )
    ssl: bool = tls_on_port("--memcached-ssl", "memcached")
    ssl_port: int | None = tls_port("--memcached-ssl-port", "memcached")
    max_value_size: int = option(
        DEFAULT_MAX_VALUE_SIZE,
        flags=("--memcached-max-value-size",),
        parse=nonnegative,
        metavar="BYTES",
        help="largest value (job workload or result) a set may carry (default 1 MiB, memcached's -I)",
    )
    max_wait_ms: int = option(
        DEFAULT_MAX_WAIT_MS,
        flags=("--memcached-max-wait",),
        parse=nonnegative,
        metavar="MS",
        help="cap on a key's /t=<ms> wait (default 400, below common client timeouts; 0: never wait)",
    )
    read_timeout: float = option(
        DEFAULT_READ_TIMEOUT,
        flags=("--memcached-read-timeout",),
        metavar="SECONDS",
        help="close a connection that sent part of a request and then nothing for this long (default 30)",
    )
    allow_queue_delete: bool = option(
        False,
        flags=("--memcached-allow-queue-delete",),
        help="let `delete <function>` cancel every queued job of a function (Kestrel's; off by default)",
    )


def check_options(options: MemcachedOptions, label: Callable[[str], str]) -> None:
    check_port(options.port, label("port"))
    check_tls_port(options, label)
    check(options.max_value_size >= 1, f"{label('max_value_size')} must be >= 1")
    check(options.max_wait_ms >= 0, f"{label('max_wait_ms')} must be >= 0")
    check(options.read_timeout > 0, f"{label('read_timeout')} must be > 0")
