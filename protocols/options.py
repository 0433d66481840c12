"""A frontend's options, declared once for the command line, the YAML file and code that embeds the server.

A frontend keeps its options in a dataclass whose fields are made with ``option()``: the default, and how
users spell the setting (its flags and help, its YAML key, its flat name for ``make_settings``). config.py
reads these declarations from every registered frontend to build the ``--help`` group, the YAML key map
and the type checks; the frontend itself checks only what a type cannot say (``Frontend.validate``, which
raises ``OptionError`` naming the setting through the ``label`` it is given: ``--http-port`` on the command
line, ``http.port`` in YAML). Nothing here imports Twisted: config.py reads it before a reactor exists.

    @dataclass
    class LineOptions:
        port: int = option(7003, flags=("--lineproto-port",), parse=port_number, metavar="PORT",
                           help="port of the line frontend (default 7003)")

gives ``--lineproto-port``, the YAML key ``lineproto.port`` and ``make_settings({"lineproto": {"port": 0}})``
(or the flat ``lineproto_port``).
"""

from __future__ import annotations

import dataclasses
import socket
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: The key of a field's metadata under which ``option()`` keeps its ``Option``.
METADATA_KEY = "gearman_gateway.option"


class OptionError(ValueError):
    """A frontend option's value is wrong; the message names the option as the user wrote it."""


@dataclass(frozen=True)
class Option:
    """How users spell one option (a field of a frontend's options dataclass)."""

    flags: tuple[str, ...] = ()  # command-line flags, e.g. ("-p", "--port"); none: YAML and code only
    help: str = ""
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None  # a flag's text -> value; default from the field's type
    yaml: str | None = None  # the YAML key path; default "<frontend>.<field>"
    alias: str | None = None  # the flat name for make_settings; default "<frontend>_<field>"


def option(
    default: Any = dataclasses.MISSING,
    *,
    flags: tuple[str, ...] = (),
    help: str = "",
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
    yaml: str | None = None,
    alias: str | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field that is a user-facing option (see the module's docstring)."""
    spec = Option(tuple(flags), help, metavar, parse, yaml, alias)
    return field(default=default, default_factory=default_factory, metadata={METADATA_KEY: spec})


@dataclass(frozen=True)
class Declared:
    """One option of one frontend, with every name resolved: what config.py builds its maps from."""

    frontend: str
    field: str
    key: str  # "<frontend>.<field>": the option's key in make_settings' values and in error labels
    yaml: str
    alias: str
    flags: tuple[str, ...]
    help: str
    metavar: str | None
    parse: Callable[[str], Any] | None
    hint: Any  # the field's type

    @property
    def flag(self) -> str | None:
        """The flag that names the option in messages: its long form."""
        return max(self.flags, key=len) if self.flags else None


def declared(frontend: str, options_type: type) -> list[Declared]:
    """The options a frontend's options dataclass declares, in field order."""
    hints = typing.get_type_hints(options_type)
    found = []
    for item in dataclasses.fields(options_type):
        spec = item.metadata.get(METADATA_KEY) or Option()
        found.append(
            Declared(
                frontend=frontend,
                field=item.name,
                key=f"{frontend}.{item.name}",
                yaml=spec.yaml or f"{frontend}.{item.name}",
                alias=spec.alias or f"{frontend}_{item.name}",
                flags=spec.flags,
                help=spec.help,
                metavar=spec.metavar,
                parse=spec.parse,
                hint=hints[item.name],
            )
        )
    return found


@dataclass
class NoOptions:
    """The options of a frontend that has none."""


# -- parsers for flags (argparse names the function in its message: "invalid port number or service name value")


def nonnegative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def port_number(text: str) -> int:
    """A number or a service name from /etc/services, as gearmand accepts."""
    try:
        return int(text)
    except ValueError:
        try:
            return socket.getservbyname(text, "tcp")
        except OSError:
            raise ValueError(text) from None


nonnegative.__name__ = "non-negative integer"
port_number.__name__ = "port number or service name"


# -- checks for Frontend.validate


def check(ok: bool, message: str) -> None:
    if not ok:
        raise OptionError(message)


def check_port(value: Any, label: str) -> None:
    check(isinstance(value, int) and 0 <= value <= 65535, f"{label} must be 0-65535, not {value!r}")


# -- TLS on a frontend's listeners (protocols/listening.py reads the fields ``ssl`` and ``ssl_port``)


def tls_on_port(flag: str, what: str, **names: Any) -> Any:
    """The ``ssl`` option: the frontend's port itself speaks TLS (gearmand's ``--ssl`` for the binary one)."""
    return option(
        False,
        flags=(flag,),
        help=f"TLS on the {what} port instead of plaintext (needs --ssl-certificate and --ssl-key)",
        **names,
    )


def tls_port(flag: str, what: str, **names: Any) -> Any:
    """The ``ssl_port`` option: a TLS listener beside the plaintext one (e.g. plain on loopback, TLS outside)."""
    return option(
        None,
        flags=(flag,),
        parse=port_number,
        metavar="PORT",
        help=f"also listen with TLS for the {what} frontend on this port (default: none)",
        **names,
    )


def check_tls_port(options: Any, label: Any) -> None:
    """A TLS port beside the plaintext one cannot be the same port."""
    if options.ssl_port is None:
        return
    check_port(options.ssl_port, label("ssl_port"))
    check(
        options.ssl_port != options.port or options.port == 0,
        f"{label('ssl_port')} must differ from {label('port')} ({options.port})",
    )
