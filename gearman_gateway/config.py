"""Settings from defaults, a YAML file (``--config``) and gearmand-compatible command-line options.

Precedence: built-in defaults < YAML file < command line. Every problem becomes a ``ConfigError`` with
one clear sentence; ``gearmand`` prints it on one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import socket
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import protocols
from gearman_gateway.version import SERVER_VERSION

#: gearmand's verbosity names, mapped onto Python logging levels (NOTICE sits between INFO and WARNING).
LEVELS: dict[str, int] = {
    "FATAL": logging.CRITICAL,
    "ALERT": logging.CRITICAL,
    "CRITICAL": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "NOTICE": 25,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
}
LEVEL_ORDER = ["FATAL", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"]

QUEUE_TYPES = {"builtin": "memory", "memory": "memory", "none": "memory"}


class ConfigError(ValueError):
    pass


@dataclass
class Settings:
    # listening
    port: int = 4730
    listen: list[str] = field(default_factory=list)  # empty: all IPv4 interfaces
    backlog: int = 32
    endpoints: dict[str, list[str]] = field(default_factory=dict)  # frontend -> Twisted endpoint strings
    frontends: list[str] = field(default_factory=lambda: ["binary"])
    http_port: int = 8080
    # process
    daemon: bool = False
    pid_file: str | None = None
    log_file: str = "stderr"  # a path, "stderr" or "none"
    verbose: str = "NOTICE"
    user: str | None = None
    threads: int = 4  # accepted for gearmand compatibility; one reactor thread does all the work
    file_descriptors: int = 0  # RLIMIT_NOFILE to ask for; 0 keeps the system's
    # scheduling
    queue_type: str = "memory"
    job_retries: int = 0
    worker_wakeup: int | None = None  # None: as many sleepers as runnable jobs; 0: all (gearmand)
    job_handle_prefix: str | None = None
    exceptions: bool = False
    round_robin: bool = False  # accepted; grabs are always fair across a worker's functions
    hashtable_buckets: int = 991  # accepted; Python dicts size themselves
    # TCP keepalive on accepted sockets (finds dead peers: lost NOOPs cause "stuck jobs", gearmand #343)
    keepalive: bool = False
    keepalive_idle: int = -1
    keepalive_interval: int = -1
    keepalive_count: int = -1
    # limits
    max_packet_size: int = 64 * 1024 * 1024
    max_admin_line: int = 8192
    max_connections: int = 0  # 0: limited only by file descriptors
    max_output_buffer: int = 256 * 1024 * 1024
    # admin and shutdown
    allow_remote_shutdown: bool = False
    graceful_timeout: float = 30.0
    check_args: bool = False

    @property
    def log_level(self) -> int:
        return LEVELS[self.verbose]


# YAML keys: nested groups map to flat Settings fields.
_YAML_KEYS: dict[str, str] = {
    "port": "port",
    "listen": "listen",
    "backlog": "backlog",
    "endpoints": "endpoints",
    "frontends": "frontends",
    "http.port": "http_port",
    "daemon": "daemon",
    "pid_file": "pid_file",
    "log_file": "log_file",
    "verbose": "verbose",
    "user": "user",
    "threads": "threads",
    "file_descriptors": "file_descriptors",
    "queue.type": "queue_type",
    "job_retries": "job_retries",
    "worker_wakeup": "worker_wakeup",
    "job_handle_prefix": "job_handle_prefix",
    "exceptions": "exceptions",
    "round_robin": "round_robin",
    "hashtable_buckets": "hashtable_buckets",
    "keepalive.enabled": "keepalive",
    "keepalive.idle": "keepalive_idle",
    "keepalive.interval": "keepalive_interval",
    "keepalive.count": "keepalive_count",
    "limits.max_packet_size": "max_packet_size",
    "limits.max_admin_line": "max_admin_line",
    "limits.max_connections": "max_connections",
    "limits.max_output_buffer": "max_output_buffer",
    "admin.allow_remote_shutdown": "allow_remote_shutdown",
    "shutdown.graceful_timeout": "graceful_timeout",
}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in ("endpoints",):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def load_yaml(path: str) -> dict[str, Any]:
    """Settings fields from a YAML file; unknown keys are an error, not silently ignored."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys")
    values: dict[str, Any] = {}
    for key, value in _flatten(data).items():
        if key not in _YAML_KEYS:
            raise ConfigError(f"config file {path}: unknown key {key!r}")
        values[_YAML_KEYS[key]] = value
    return values


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line, exit 2
        raise ConfigError(message)


def _nonnegative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _wakeup(text: str) -> int | None:
    if text.lower() == "auto":
        return None
    return _nonnegative(text)


def _port(text: str) -> int:
    """A number or a service name from /etc/services, as gearmand accepts."""
    try:
        return int(text)
    except ValueError:
        try:
            return socket.getservbyname(text, "tcp")
        except OSError:
            raise ValueError(text) from None


# argparse names the type in its message: "invalid non-negative integer value: '-1'"
_nonnegative.__name__ = "non-negative integer"
_wakeup.__name__ = "'auto' or non-negative integer"
_port.__name__ = "port number or service name"


def build_parser() -> argparse.ArgumentParser:
    S = argparse.SUPPRESS  # noqa: N806 - only options given on the command line override the YAML
    p = _Parser(
        prog="gearmand",
        add_help=False,
        argument_default=S,
        description="Gearman job server (gearman-gateway), compatible with gearmand 1.1.",
        epilog="Options not given fall back to --config FILE (YAML), then to the defaults shown.",
    )
    g = p.add_argument_group("general")
    g.add_argument("-h", "--help", action="help", help="show this help and exit")
    g.add_argument("-V", "--version", action="version", version=f"gearmand {SERVER_VERSION}")
    g.add_argument("--config", metavar="FILE", dest="config", help="YAML configuration file")
    g.add_argument("--check-args", action="store_true", dest="check_args", help="validate options and exit")
    g = p.add_argument_group("listening")
    g.add_argument("-p", "--port", type=_port, help="binary and admin port (default 4730)")
    g.add_argument(
        "-L", "--listen", action="append", metavar="ADDRESS", help="address to listen on; repeatable (default all IPv4)"
    )
    g.add_argument("-b", "--backlog", type=_nonnegative, help="listen backlog (default 32)")
    g.add_argument(
        "-r",
        "--protocol",
        action="append",
        dest="protocols",
        metavar="NAME",
        help="enable another protocol frontend (e.g. http); repeatable",
    )
    g.add_argument("--http-port", type=_port, dest="http_port", help="HTTP frontend port (default 8080)")
    g = p.add_argument_group("process")
    g.add_argument("-d", "--daemon", action="store_true", help="detach into the background")
    g.add_argument("-P", "--pid-file", dest="pid_file", metavar="FILE", help="write the process id here")
    g.add_argument(
        "-l", "--log-file", dest="log_file", metavar="FILE", help="log file, or 'stderr' (default) or 'none'"
    )
    g.add_argument(
        "--verbose",
        metavar="LEVEL",
        type=str.upper,
        help="log level: " + ", ".join(LEVEL_ORDER) + " (default NOTICE)",
    )
    g.add_argument("-v", action="count", dest="more_verbose", help="one level more verbose; repeatable")
    g.add_argument("-u", "--user", help="switch to this user after binding the ports")
    g.add_argument("-t", "--threads", type=_nonnegative, help="accepted for compatibility; ignored")
    g.add_argument("-f", "--file-descriptors", type=_nonnegative, dest="file_descriptors", help="RLIMIT_NOFILE")
    g.add_argument("--syslog", action="store_true", help="accepted for compatibility; ignored")
    g.add_argument("--coredump", action="store_true", help="accepted for compatibility; ignored")
    g = p.add_argument_group("scheduling")
    g.add_argument(
        "-q",
        "--queue-type",
        dest="queue_type",
        metavar="NAME",
        help="job store: builtin/memory (default)",
    )
    g.add_argument(
        "-j",
        "--job-retries",
        type=int,
        dest="job_retries",
        help="attempts before a job whose worker dies or times out is failed (0 or -1: unlimited)",
    )
    g.add_argument(
        "-w",
        "--worker-wakeup",
        type=_wakeup,
        dest="worker_wakeup",
        metavar="N",
        help="NOOPs per wake-up: auto (one per runnable job, default), 0 (every sleeper) or N",
    )
    g.add_argument("--job-handle-prefix", dest="job_handle_prefix", metavar="PREFIX", help="default H:<hostname>")
    g.add_argument("--exceptions", action="store_true", help="turn on the exceptions option for every client")
    g.add_argument("-R", "--round-robin", action="store_true", dest="round_robin", help="accepted; always fair")
    g.add_argument("--hashtable-buckets", type=_nonnegative, dest="hashtable_buckets", help="accepted; ignored")
    g = p.add_argument_group("keepalive")
    g.add_argument("--keepalive", action="store_true", help="TCP keepalive on accepted connections")
    g.add_argument("--keepalive-idle", type=int, dest="keepalive_idle", metavar="SECONDS")
    g.add_argument("--keepalive-interval", type=int, dest="keepalive_interval", metavar="SECONDS")
    g.add_argument("--keepalive-count", type=int, dest="keepalive_count", metavar="N")
    g = p.add_argument_group("limits")
    g.add_argument(
        "--max-packet-size",
        type=_nonnegative,
        dest="max_packet_size",
        metavar="BYTES",
        help="largest packet body accepted (default 64 MiB)",
    )
    g.add_argument(
        "--max-admin-line",
        type=_nonnegative,
        dest="max_admin_line",
        metavar="BYTES",
        help="longest admin command line (default 8192)",
    )
    g.add_argument(
        "--max-connections",
        type=_nonnegative,
        dest="max_connections",
        metavar="N",
        help="refuse connections beyond N (default 0: unlimited)",
    )
    g.add_argument(
        "--max-output-buffer",
        type=_nonnegative,
        dest="max_output_buffer",
        metavar="BYTES",
        help="close a peer that stops reading once this much is queued for it (default 256 MiB)",
    )
    g.add_argument(
        "--allow-remote-shutdown",
        action="store_true",
        dest="allow_remote_shutdown",
        help="accept the admin `shutdown` command from non-loopback peers",
    )
    g.add_argument(
        "--graceful-timeout",
        type=float,
        dest="graceful_timeout",
        metavar="SECONDS",
        help="longest wait for running jobs on a graceful shutdown (default 30)",
    )
    return p


def parse_args(argv: list[str]) -> Settings:
    """Settings for a command line; raises ConfigError with one readable sentence."""
    parser = build_parser()
    try:
        namespace = parser.parse_args(argv)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    given = vars(namespace)
    values: dict[str, Any] = {}
    if "config" in given:
        values.update(load_yaml(given.pop("config")))
    more_verbose = given.pop("more_verbose", 0)
    protocols = given.pop("protocols", None)
    for name in ("syslog", "coredump"):
        given.pop(name, None)
    values.update(given)
    if protocols:
        frontends = list(values.get("frontends", ["binary"]))
        for name in protocols:
            if name.lower() not in frontends:
                frontends.append(name.lower())
        values["frontends"] = frontends
    settings = make_settings(values)
    if more_verbose:
        index = min(LEVEL_ORDER.index(settings.verbose) + more_verbose, len(LEVEL_ORDER) - 1)
        settings.verbose = LEVEL_ORDER[index]
    return settings


def make_settings(values: dict[str, Any]) -> Settings:
    """A validated Settings from field values (from YAML or code embedding the server)."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    for name in values:
        if name not in fields:
            raise ConfigError(f"unknown setting {name!r}")
    hints = typing.get_type_hints(Settings)
    for name, value in values.items():
        _check_type(name, value, hints[name])
    settings = Settings(**values)
    _validate(settings)
    return settings


def _check_type(name: str, value: Any, hint: Any) -> None:
    """YAML gives any type: refuse what the field cannot hold (a quoted 'no' is not False)."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for kind in allowed:
        origin = typing.get_origin(kind) or kind
        if kind is type(None) and value is None:
            return
        if origin is bool and isinstance(value, bool):
            return
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if origin is float and isinstance(value, int | float) and not isinstance(value, bool):
            return
        if origin is str and isinstance(value, str):
            return
        if origin is list and isinstance(value, list | str):
            return
        if origin is dict and isinstance(value, dict):
            return
    if name == "worker_wakeup" and isinstance(value, str):
        return  # "auto", checked below
    names = " or ".join(getattr(typing.get_origin(k) or k, "__name__", str(k)) for k in allowed)
    names = names.replace("NoneType", "null").replace("str", "text").replace("int", "whole number")
    raise ConfigError(f"{name} must be {names}, not {value!r}")


def _validate(s: Settings) -> None:
    def check(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    for name in ("port", "http_port"):
        value = getattr(s, name)
        check(
            isinstance(value, int) and 0 <= value <= 65535, f"{name.replace('_', '-')} must be 0-65535, not {value!r}"
        )
    if isinstance(s.listen, str):
        s.listen = [s.listen]
    check(isinstance(s.listen, list), "listen must be a list of addresses")
    s.verbose = str(s.verbose).upper()
    check(s.verbose in LEVELS, f"unknown verbose level {s.verbose!r} (use one of {', '.join(LEVEL_ORDER)})")
    queue = str(s.queue_type).lower()
    check(
        queue in QUEUE_TYPES,
        f"unknown queue type {s.queue_type!r} (available: {', '.join(sorted(QUEUE_TYPES))})",
    )
    s.queue_type = QUEUE_TYPES[queue]
    if isinstance(s.worker_wakeup, str):
        check(s.worker_wakeup.lower() == "auto", "worker_wakeup must be auto or a number")
        s.worker_wakeup = None
    check(s.worker_wakeup is None or s.worker_wakeup >= 0, "worker-wakeup must be auto or >= 0")
    check(isinstance(s.job_retries, int) and s.job_retries >= -1, "job-retries must be -1 (unlimited) or more")
    for name in ("backlog", "max_admin_line", "max_connections", "max_output_buffer", "threads"):
        check(isinstance(getattr(s, name), int) and getattr(s, name) >= 0, f"{name} must be a whole number >= 0")
    check(isinstance(s.max_packet_size, int) and s.max_packet_size >= 1024, "max-packet-size must be >= 1024")
    check(s.max_admin_line >= 64, "max-admin-line must be >= 64")
    check(s.graceful_timeout >= 0, "graceful-timeout must be >= 0")
    if s.job_handle_prefix is not None:
        check(0 < len(s.job_handle_prefix.encode()) <= 52, "job-handle-prefix must be 1 to 52 bytes")
    check(isinstance(s.frontends, list) and bool(s.frontends), "frontends must be a non-empty list")
    s.frontends = [str(f).lower() for f in s.frontends]
    known = protocols.available()
    for name in s.frontends:
        check(name in known, f"unknown protocol {name!r} (available: {', '.join(sorted(known))})")
    check(isinstance(s.endpoints, dict), "endpoints must map frontend names to lists of endpoint strings")
