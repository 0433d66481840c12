"""The http frontend's options (``gearmand -r http``): flags ``--http-*``, the YAML ``http:`` block."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from protocols.options import check, check_port, check_tls_port, nonnegative, option, port_number, tls_on_port, tls_port

#: Request bodies larger than this get 413 by default: an HTTP job's payload is read whole into memory.
MAX_BODY_SIZE = 64 * 1024 * 1024


@dataclass
class HttpOptions:
    port: int = option(8080, flags=("--http-port",), parse=port_number, help="HTTP frontend port (default 8080)")
    ssl: bool = tls_on_port("--http-ssl", "http")
    ssl_port: int | None = tls_port("--http-ssl-port", "http")
    request_timeout: float = option(
        30.0,
        flags=("--http-request-timeout",),
        metavar="SECONDS",
        help="answer 504 when no worker takes a request's job within this time (default 30; 0: wait forever)",
    )
    max_body_size: int = option(
        MAX_BODY_SIZE,
        flags=("--http-max-body-size",),
        parse=nonnegative,
        metavar="BYTES",
        help="largest request body; larger ones get 413 (default 64 MiB)",
    )
    prefix: str = option(
        "/_gearman/",
        flags=("--http-prefix",),
        metavar="PATH",
        help="path of the JSON API, metrics and dashboard (default /_gearman/)",
    )
    token: str | None = option(
        None,
        flags=("--http-token",),
        metavar="TOKEN",
        help="bearer token required under --http-prefix (default: none; prefer the config file)",
    )
    keepalive_timeout: float = option(
        60.0,
        flags=("--http-keepalive-timeout",),
        metavar="SECONDS",
        help="close idle keep-alive connections after this (default 60; 0: never)",
    )


def check_options(options: HttpOptions, label: Callable[[str], str]) -> None:
    check_port(options.port, label("port"))
    check_tls_port(options, label)
    for name in ("request_timeout", "keepalive_timeout", "max_body_size"):
        check(getattr(options, name) >= 0, f"{label(name)} must be >= 0")
    prefix = options.prefix
    check(
        prefix.startswith("/") and prefix.endswith("/") and len(prefix) > 2,
        f"{label('prefix')} must start and end with '/' and name something, not {prefix!r}",
    )
    check(
        prefix.isascii() and prefix.isprintable() and " " not in prefix,
        f"{label('prefix')} must be printable ASCII without spaces, not {prefix!r}",
    )
    token = options.token
    check(
        token is None or (token != "" and token.isascii() and token.isprintable()),
        f"{label('token')} must be printable ASCII text",
    )
