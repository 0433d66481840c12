"""The binary frontend's options: gearmand's port and the two input limits of its protocol. Their flags
and YAML keys are gearmand's and this project's earlier ones (``-p``/``port``, ``limits.*``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from protocols.binary.codec import DEFAULT_MAX_LINE, DEFAULT_MAX_PACKET_SIZE
from protocols.options import check, check_port, check_tls_port, nonnegative, option, port_number, tls_on_port, tls_port


@dataclass
class BinaryOptions:
    port: int = option(
        4730,
        flags=("-p", "--port"),
        parse=port_number,
        yaml="port",
        alias="port",
        help="binary and admin port (default 4730); the default queue file is named after it",
    )
    ssl: bool = tls_on_port("--ssl", "binary and admin", yaml="ssl", alias="ssl")
    ssl_port: int | None = tls_port("--ssl-port", "binary and admin", yaml="ssl_port", alias="ssl_port")
    max_packet_size: int = option(
        DEFAULT_MAX_PACKET_SIZE,
        flags=("--max-packet-size",),
        parse=nonnegative,
        metavar="BYTES",
        yaml="limits.max_packet_size",
        alias="max_packet_size",
        help="largest packet body accepted (default 64 MiB)",
    )
    max_admin_line: int = option(
        DEFAULT_MAX_LINE,
        flags=("--max-admin-line",),
        parse=nonnegative,
        metavar="BYTES",
        yaml="limits.max_admin_line",
        alias="max_admin_line",
        help="longest admin command line (default 8192)",
    )


def check_options(options: BinaryOptions, label: Callable[[str], str]) -> None:
    check_port(options.port, label("port"))
    check_tls_port(options, label)
    check(options.max_packet_size >= 1024, f"{label('max_packet_size')} must be >= 1024")
    check(options.max_admin_line >= 64, f"{label('max_admin_line')} must be >= 64")
