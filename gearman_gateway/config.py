"""Settings from defaults, a YAML file (``--config``), gearmand's own config file (``--config-file``) and
gearmand-compatible command-line options.

Precedence: built-in defaults < YAML file < ``--config-file`` < command line. Every problem becomes a
``ConfigError`` with one clear sentence that names the setting as the user wrote it (``http.port`` in YAML,
``--http-port`` on the command line); ``gearmand`` prints it on one line and exits with status 2.

This module holds the server-wide settings. Each frontend declares its own options (protocols/options.py):
the command line, the YAML map, make_settings and the checks are assembled here from every frontend of
the registry, and ``Settings.frontend_options`` holds one options object per installed frontend.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import protocols
from gearman_gateway import monitoring, security, stores
from gearman_gateway.version import SERVER_VERSION
from protocols.options import Declared, OptionError, declared, nonnegative

if TYPE_CHECKING:
    import yaml

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
#: Event loops gearmand can run on (gearman_gateway/reactor.py), each with the kind of reactor it is: a
#: frontend that needs one kind (``Frontend.reactor``) runs on any reactor of that kind.
REACTOR_KINDS: dict[str, str] = {"epoll": "epoll", "twisted-epoll": "epoll", "asyncio": "asyncio", "uvloop": "asyncio"}
REACTORS = tuple(REACTOR_KINDS)
#: The reactor gearmand runs on unless told or an enabled frontend needs another kind.
DEFAULT_REACTOR = "epoll"
#: gearmand reads this file of options when it exists (its --config-file default); a missing one is no error.
DEFAULT_CONFIG_FILE = "/etc/gearmand.conf"
#: ``--ssl-client-cert``: ask for no client certificate, accept a client without one, or refuse it.
CLIENT_CERT_MODES = ("none", "optional", "required")
#: gearmand options that change nothing here, with why (the help and docs/compatibility.md say the same).
IGNORED_OPTIONS = ("syslog", "coredump", "store_queue_on_shutdown")


def default_data_dir() -> str:
    """/var/lib/gearman-gateway for root, else the user's state directory (XDG)."""
    if os.geteuid() == 0:
        return "/var/lib/gearman-gateway"
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "gearman-gateway")


class ConfigError(ValueError):
    pass


def default_frontend_options() -> dict[str, Any]:
    """Every installed frontend's options with their defaults."""
    frontend_declarations()  # first: a frontend whose names clash is disabled there
    return {name: frontend.options_type() for name, frontend in protocols.available().items()}


@dataclass
class Settings:
    # listening (a frontend's own port is one of its options)
    listen: list[str] = field(default_factory=list)  # empty: all IPv4 interfaces
    backlog: int = 32
    endpoints: dict[str, list[str]] = field(default_factory=dict)  # frontend -> Twisted endpoint strings
    # TLS listeners' certificate options (each frontend's ``ssl``/``ssl_port`` say which listen with TLS)
    ssl_certificate: str | None = None  # PEM: the server's certificate, then any intermediates
    ssl_key: str | None = None  # PEM, unencrypted
    ssl_ca_file: str | None = None  # PEM CAs a client certificate must chain to; given: one is asked for
    ssl_client_cert: str = "optional"  # CLIENT_CERT_MODES
    frontends: list[str] = field(default_factory=lambda: ["binary"])
    # frontend name -> its options (protocols/<name>/options.py), for every installed frontend
    frontend_options: dict[str, Any] = field(default_factory=default_frontend_options)
    # process
    daemon: bool = False
    pid_file: str | None = None
    log_file: str = "stderr"  # a path, "stderr" or "none"
    verbose: str = "NOTICE"
    user: str | None = None
    threads: int = 4  # accepted for gearmand compatibility; one reactor thread does all the work
    file_descriptors: int = 0  # RLIMIT_NOFILE to ask for; 0 keeps the system's
    reactor: str | None = None  # REACTORS; None: epoll, or the kind an enabled frontend needs (choose_reactor)
    # durable queue (gearman_gateway/stores, docs/persistence.md)
    queue_type: str = "sqlite"  # memory, sqlite, postgres, mysql, redis (gearmand's names too)
    data_dir: str = field(default_factory=lambda: default_data_dir())  # where the sqlite file lives
    queue_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # backend -> its options
    import_gearmand_queue: bool = False  # on start, copy in the jobs of a queue table gearmand wrote
    shared: bool = False  # shared mode: several servers on one PostgreSQL queue (docs/scale.md)
    shared_lease: float = 10.0  # seconds a claimed job stays this server's unless renewed
    shared_dead_after: float = 3.0  # seconds without a heartbeat after which a server's jobs are taken over
    shared_listen: bool = True  # shared mode: LISTEN for the cluster's notifications (off: poll only, pooler-safe)
    gearmand_table: str | None = None  # that table (redis: key prefix); default gearmand's own default
    retries: dict[str, Any] = field(default_factory=dict)  # retry policies for failed background jobs
    # scheduling
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
    # limits (the binary protocol's own are among its options)
    max_connections: int = 0  # 0: limited only by file descriptors
    max_output_buffer: int = 256 * 1024 * 1024
    # the memory bound on jobs, across every function (0: unlimited; scheduler/budget.py)
    max_queued_jobs: int = 0
    max_queued_bytes: int = 0
    # per peer address, and for connections that never speak (docs/security.md#limits)
    max_connections_per_ip: int = 0  # 0: unlimited
    accept_rate_per_ip: float = 0.0  # new connections per second per peer address; 0: unlimited
    accept_burst_per_ip: int = 0  # connections at once above the rate; 0: as many as one second's rate
    first_byte_timeout: float = 0.0  # seconds a new connection may stay silent; 0: forever
    # admin and shutdown
    allow_remote_shutdown: bool = False
    graceful_timeout: float = 30.0
    check_args: bool = False
    # latency histograms, job history, event hooks (gearman_gateway/monitoring.py, docs/monitoring.md)
    monitoring: dict[str, Any] = field(default_factory=dict)
    # the result cache of background jobs with a unique (gearman_gateway/results.py)
    result_cache_memory: int = 64 * 1024 * 1024  # 0: no cache
    result_ttl: float = 3600.0  # seconds a result is kept after its job finished (0: until evicted)
    # identities, permissions and tenants (gearman_gateway/security, docs/security.md); empty: allow all
    security: dict[str, Any] = field(default_factory=dict)

    @property
    def log_level(self) -> int:
        return LEVELS[self.verbose]

    def options(self, frontend: str) -> Any:
        """A frontend's options (``settings.options("http").port``)."""
        return self.frontend_options[frontend]


# YAML keys of the server-wide settings: nested groups map to flat Settings fields. The frontends' keys are
# added from their declarations (_yaml_keys).
_SERVER_YAML_KEYS: dict[str, str] = {
    "listen": "listen",
    "backlog": "backlog",
    "endpoints": "endpoints",
    "tls.certificate": "ssl_certificate",
    "tls.key": "ssl_key",
    "tls.ca_file": "ssl_ca_file",
    "tls.client_cert": "ssl_client_cert",
    "frontends": "frontends",
    "daemon": "daemon",
    "pid_file": "pid_file",
    "log_file": "log_file",
    "verbose": "verbose",
    "user": "user",
    "threads": "threads",
    "file_descriptors": "file_descriptors",
    "reactor": "reactor",
    "queue.type": "queue_type",
    "queue.data_dir": "data_dir",
    "queue.import_gearmand": "import_gearmand_queue",
    "queue.gearmand_table": "gearmand_table",
    "queue.shared": "shared",
    "queue.shared_lease": "shared_lease",
    "queue.shared_dead_after": "shared_dead_after",
    "queue.shared_listen": "shared_listen",
    "retries": "retries",
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
    "limits.max_connections": "max_connections",
    "limits.max_output_buffer": "max_output_buffer",
    "limits.max_queued_jobs": "max_queued_jobs",
    "limits.max_queued_bytes": "max_queued_bytes",
    "limits.max_connections_per_ip": "max_connections_per_ip",
    "limits.accept_rate_per_ip": "accept_rate_per_ip",
    "limits.accept_burst_per_ip": "accept_burst_per_ip",
    "limits.first_byte_timeout": "first_byte_timeout",
    "admin.allow_remote_shutdown": "allow_remote_shutdown",
    "shutdown.graceful_timeout": "graceful_timeout",
    "monitoring": "monitoring",
    "results.max_memory": "result_cache_memory",
    "results.ttl": "result_ttl",
    "security": "security",
}
#: each durable backend's options: ``queue.<backend>`` (a mapping, checked against stores.OPTIONS)
_SERVER_YAML_KEYS.update(
    {f"queue.{backend}": f"queue_options.{backend}" for backend in stores.OPTIONS if backend != "memory"}
)


@functools.cache
def frontend_declarations() -> dict[str, Declared]:
    """Every installed frontend's options by key (``http.port``). A frontend whose option names or flags are
    the server's or an earlier frontend's (built-ins come first) is disabled with the reason (``-r`` names it):
    one third-party package must not stop every start."""
    found: dict[str, Declared] = {}
    taken = {**{key: "the server" for key in _SERVER_YAML_KEYS}, **{f: "the server" for f in _server_fields()}}
    flags = dict.fromkeys(_server_flags(), "the server")
    registry = protocols.registry()
    for name, frontend in list(registry.frontends.items()):
        items = declared(name, frontend.options_type)
        clash = next(
            (
                f"its option {spelling!r} is taken by {taken[spelling]}"
                for item in items
                for spelling in (item.yaml, item.alias)
                if taken.get(spelling, name) != name
            ),
            None,
        ) or next(
            (f"its flag {flag} is taken by {flags[flag]}" for item in items for flag in item.flags if flag in flags),
            None,
        )
        if clash:
            registry.disable(name, clash)
            continue
        for item in items:
            taken.update(dict.fromkeys((item.yaml, item.alias), name))
            flags.update(dict.fromkeys(item.flags, f"the {name} frontend"))
            found[item.key] = item
    return found


@functools.cache
def _server_flags() -> frozenset[str]:
    """The flags of gearmand's own options (not a frontend's)."""
    return frozenset(build_parser(frontends=False)._option_string_actions)


def _server_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(Settings) if f.name != "frontend_options"]


def _yaml_keys() -> dict[str, str]:
    """YAML key -> key in make_settings' values (a Settings field, or ``frontend.option``)."""
    return {**_SERVER_YAML_KEYS, **{item.yaml: key for key, item in frontend_declarations().items()}}


def _yaml_names() -> dict[str, str]:
    """A value's key -> the YAML key that sets it, for messages."""
    return {target: key for key, target in _yaml_keys().items()}


def _dict_keys() -> set[str]:
    """YAML keys whose value is a mapping taken whole."""
    whole = {"endpoints", "retries", *(k for k, t in _SERVER_YAML_KEYS.items() if t.startswith("queue_options."))}
    whole.update(("monitoring", "security"))
    whole.update(item.yaml for item in frontend_declarations().values() if _origin(item.hint) is dict)
    return whole


def _origin(hint: Any) -> Any:
    return typing.get_origin(hint) or hint


def _flatten(data: dict[str, Any], whole: set[str], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in whole:
            flat.update(_flatten(value, whole, path + "."))
        else:
            flat[path] = value
    return flat


def load_yaml(path: str) -> dict[str, Any]:
    """Settings fields from a YAML file; unknown keys are an error, not silently ignored."""
    import yaml  # here: most servers start without a config file, and yaml is a fair part of a start-up

    try:
        text = Path(path).read_bytes()  # yaml decodes it (UTF-8/16 with a BOM) and says where it is not text
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path}{_yaml_problem(error)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys")
    values: dict[str, Any] = {}
    keys = _yaml_keys()
    for key, value in _flatten(data, _dict_keys()).items():
        if key not in keys:
            raise ConfigError(f"config file {path}: unknown key {key!r}")
        target = keys[key]
        if target.startswith("queue_options."):
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"config file {path}: {key} must be a mapping of options")
            values.setdefault("queue_options", {})[target.partition(".")[2]] = value or {}
        else:
            values[target] = value
    return values


def _yaml_problem(error: yaml.YAMLError) -> str:
    """Where and what, on one line: ", line 3, column 7: mapping values are not allowed here"."""
    import yaml

    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or getattr(error, "reason", None)
    if isinstance(error, yaml.reader.ReaderError):  # not text: it has a byte position, not a line
        return f" is not valid YAML: byte {error.position}: {error.reason}"
    if mark is None or not problem:
        return f" is not valid YAML: {' '.join(str(error).split())}"
    where = f", line {mark.line + 1}, column {mark.column + 1}"
    context = getattr(error, "context", None)
    return f"{where}: {problem}" + (f" ({context})" if context else "")


def _on_off(text: str) -> bool:
    """An on|off option's value."""
    value = {"on": True, "off": False, "true": True, "false": False, "yes": True, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected on or off, not {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line, exit 2
        raise ConfigError(message)


def _wakeup(text: str) -> int | None:
    if text.lower() == "auto":
        return None
    return nonnegative(text)


# argparse names the type in its message: "invalid 'auto' or non-negative integer value: '-1'"
_wakeup.__name__ = "'auto' or non-negative integer"


def build_parser(for_file: bool = False, frontends: bool = True) -> argparse.ArgumentParser:
    """gearmand's command line; ``for_file``: the options a --config-file may hold (not help, version,
    --check-args or another --config-file, as in gearmand); ``frontends``: with each frontend's own options."""
    if frontends:
        frontend_declarations()  # first: it may disable a frontend whose names clash
    S = argparse.SUPPRESS  # noqa: N806 - only options given on the command line override the YAML
    p = _Parser(
        prog="gearmand",
        add_help=False,
        argument_default=S,
        description="Gearman job server (gearman-gateway), compatible with gearmand 1.1.",
        epilog="Options not given fall back to --config-file (gearmand's options), then to --config FILE (YAML), "
        "then to the defaults shown.",
    )
    g = p.add_argument_group("general")
    if not for_file:
        g.add_argument("-h", "--help", action="help", help="show this help and exit")
        g.add_argument("-V", "--version", action="version", version=f"gearmand {SERVER_VERSION}")
        g.add_argument(
            "--config-file",
            metavar="FILE",
            dest="config_file",
            help=f"gearmand's config file: options as on the command line (--port=4730 or --port 4730), "
            f"separated by spaces or newlines; # starts a comment; the command line wins (default "
            f"{DEFAULT_CONFIG_FILE}, read if it exists; '' reads none)",
        )
        g.add_argument("--check-args", action="store_true", dest="check_args", help="validate options and exit")
        g.add_argument(
            "--hash-token",
            nargs="?",
            const="",
            metavar="TOKEN",
            dest="hash_token",
            help="print the sha256: hash of TOKEN for an identity's token: in the config (docs/security.md), "
            "and exit; without TOKEN, make a random one and print both",
        )
    g.add_argument("--config", metavar="FILE", dest="config", help="YAML configuration file")
    g = p.add_argument_group("listening (every frontend; each has its own port below)")
    g.add_argument(
        "-L", "--listen", action="append", metavar="ADDRESS", help="address to listen on; repeatable (default all IPv4)"
    )
    g.add_argument("-b", "--backlog", type=nonnegative, help="listen backlog (default 32)")
    g.add_argument(
        "-r",
        "--protocol",
        action="append",
        dest="protocols",
        metavar="NAME",
        help="enable another protocol frontend (installed: " + ", ".join(protocols.available()) + "); repeatable",
    )
    g = p.add_argument_group(
        "TLS (the certificate of every TLS listener: --ssl, --ssl-port, --http-ssl, --memcached-ssl...)"
    )
    g.add_argument(
        "--ssl-certificate", dest="ssl_certificate", metavar="FILE", help="the server's certificate (PEM, chain after)"
    )
    g.add_argument("--ssl-key", dest="ssl_key", metavar="FILE", help="the unencrypted PEM key of --ssl-certificate")
    g.add_argument(
        "--ssl-ca-file",
        dest="ssl_ca_file",
        metavar="FILE",
        help="CA certificates (PEM) that client certificates must chain to; given, clients are asked for one "
        "and a presented one that fails verification is refused",
    )
    g.add_argument(
        "--ssl-client-cert",
        dest="ssl_client_cert",
        choices=CLIENT_CERT_MODES,
        help="with --ssl-ca-file: none (do not ask), optional (default: a client without one is accepted) or required",
    )
    if frontends:
        _add_frontend_groups(p)
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
    g.add_argument("-t", "--threads", type=nonnegative, help="accepted for compatibility; ignored")
    g.add_argument(
        "-f",
        "--file-descriptors",
        type=nonnegative,
        dest="file_descriptors",
        metavar="N",
        help="open files to allow (RLIMIT_NOFILE; default: raise to the hard limit)",
    )
    g.add_argument(
        "--reactor",
        type=str.lower,
        metavar="NAME",
        help="event loop: " + ", ".join(REACTORS) + " (default epoll, ours and the fastest, or asyncio when an "
        "enabled frontend needs it; twisted-epoll is Twisted's own epoll reactor; asyncio and uvloop run Twisted "
        "on an asyncio loop; uvloop must be installed)",
    )
    g.add_argument("--syslog", action="store_true", help="accepted for compatibility; ignored (logs go to -l)")
    g.add_argument("--coredump", action="store_true", help="accepted for compatibility; ignored")
    g = p.add_argument_group("scheduling")
    g.add_argument(
        "-q",
        "--queue-type",
        dest="queue_type",
        metavar="NAME",
        help="durable queue: sqlite (default), postgres, mysql, redis, memcached (may evict jobs), or "
        "builtin/memory (nothing kept); gearmand's names libsqlite3, Postgres, MySQL, libmemcached are accepted",
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
    g.add_argument("--hashtable-buckets", type=nonnegative, dest="hashtable_buckets", help="accepted; ignored")
    g = p.add_argument_group("durable queue (see docs/persistence.md)")
    g.add_argument(
        "--data-dir",
        dest="data_dir",
        metavar="DIR",
        help="where the sqlite queue file lives (default /var/lib/gearman-gateway as root, else "
        "~/.local/state/gearman-gateway)",
    )
    for option, backend, key, kind, text in _QUEUE_OPTIONS:
        g.add_argument(option, dest=f"q:{backend}:{key}", type=kind, metavar=key.upper(), help=text)
    for option in _GEARMAND_TABLE_OPTIONS:
        g.add_argument(
            option, dest=f"t:{option}", metavar="TABLE", help="gearmand's own table (prefix), read by the import"
        )
    g.add_argument(
        "--shared",
        action="store_true",
        dest="shared",
        help="postgres only: share the queue with other servers on the same tables (see docs/scale.md)",
    )
    g.add_argument(
        "--shared-lease",
        type=float,
        dest="shared_lease",
        metavar="SECONDS",
        help="shared mode: how long a job a server claimed stays its own unless renewed (default 10)",
    )
    g.add_argument(
        "--shared-dead-after",
        type=float,
        dest="shared_dead_after",
        metavar="SECONDS",
        help="shared mode: a server silent this long is dead and its jobs are taken over (default 3)",
    )
    g.add_argument(
        "--shared-listen",
        type=_on_off,
        dest="shared_listen",
        metavar="on|off",
        help="shared mode: LISTEN for the cluster's notifications (default on); off: poll only (up to a second "
        "more latency), with session settings per transaction and no prepared statements, as a transaction-mode "
        "pooler (PgBouncer) needs",
    )
    g.add_argument(
        "--store-queue-on-shutdown",
        action="store_true",
        dest="store_queue_on_shutdown",
        help="accepted for compatibility; ignored: every background job is stored before it is acknowledged",
    )
    g.add_argument(
        "--import-gearmand-queue",
        action="store_true",
        dest="import_gearmand_queue",
        help="on start, copy in the jobs of gearmand's queue table (same backend); run once when switching",
    )
    g.add_argument(
        "--fail-retries",
        type=nonnegative,
        dest="r:retries",
        metavar="N",
        help="run a background job a worker failed (WORK_FAIL/EXCEPTION) up to N more times (default 0)",
    )
    g.add_argument(
        "--fail-backoff",
        type=float,
        dest="r:backoff",
        metavar="SECONDS",
        help="wait before the first such retry, doubling after (default 1)",
    )
    g.add_argument(
        "--dead-letter",
        action="store_true",
        dest="r:dead_letter",
        help="keep background jobs that failed for good in the dead-letter list (admin `show dead jobs`)",
    )
    g = p.add_argument_group("keepalive")
    g.add_argument("--keepalive", action="store_true", help="TCP keepalive on accepted connections")
    g.add_argument("--keepalive-idle", type=int, dest="keepalive_idle", metavar="SECONDS")
    g.add_argument("--keepalive-interval", type=int, dest="keepalive_interval", metavar="SECONDS")
    g.add_argument("--keepalive-count", type=int, dest="keepalive_count", metavar="N")
    g = p.add_argument_group("limits")
    g.add_argument(
        "--max-connections",
        type=nonnegative,
        dest="max_connections",
        metavar="N",
        help="refuse connections beyond N (default 0: unlimited)",
    )
    g.add_argument(
        "--max-output-buffer",
        type=nonnegative,
        dest="max_output_buffer",
        metavar="BYTES",
        help="close a peer that stops reading once this much is queued for it (default 256 MiB)",
    )
    g.add_argument(
        "--max-queued-jobs",
        type=nonnegative,
        dest="max_queued_jobs",
        metavar="N",
        help="jobs in memory (queued or running, every function) past which submits get QUEUE_ERROR; nothing "
        "queued is dropped (default 0: unlimited)",
    )
    g.add_argument(
        "--max-queued-bytes",
        type=nonnegative,
        dest="max_queued_bytes",
        metavar="BYTES",
        help="payload bytes of the jobs in memory past which submits get QUEUE_ERROR (default 0: unlimited)",
    )
    g.add_argument(
        "--max-connections-per-ip",
        type=nonnegative,
        dest="max_connections_per_ip",
        metavar="N",
        help="refuse a peer address's connections beyond N open ones (default 0: unlimited)",
    )
    g.add_argument(
        "--accept-rate-per-ip",
        type=float,
        dest="accept_rate_per_ip",
        metavar="PER_SECOND",
        help="new connections a peer address may open per second; more are closed at once (default 0: unlimited)",
    )
    g.add_argument(
        "--accept-burst-per-ip",
        type=nonnegative,
        dest="accept_burst_per_ip",
        metavar="N",
        help="connections a peer address may open at once above --accept-rate-per-ip (default: one second's worth)",
    )
    g.add_argument(
        "--first-byte-timeout",
        type=float,
        dest="first_byte_timeout",
        metavar="SECONDS",
        help="close a connection that has sent nothing this long after it was accepted (default 0: never)",
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
    g.add_argument(
        "--result-cache-memory",
        type=nonnegative,
        dest="result_cache_memory",
        metavar="BYTES",
        help="memory bound of the cache of background jobs' results, LRU (default 64 MiB; 0: no cache)",
    )
    g.add_argument(
        "--result-ttl",
        type=float,
        dest="result_ttl",
        metavar="SECONDS",
        help="how long a background job's result is kept after it finished (default 3600; 0: until evicted)",
    )
    return p


#: How an option's flag parses its text when the option does not say: by the field's type.
_PARSE_BY_TYPE: dict[Any, Callable[[str], Any]] = {int: int, float: float, str: str}


def _add_frontend_groups(parser: argparse.ArgumentParser) -> None:
    """One group per installed frontend that has flags, under the frontend's title."""
    by_frontend: dict[str, list[Declared]] = {}
    for item in frontend_declarations().values():
        if item.flags:
            by_frontend.setdefault(item.frontend, []).append(item)
    for name, items in by_frontend.items():
        frontend = protocols.load(name)
        group = parser.add_argument_group(frontend.title or f"{name} frontend (-r {name})")
        for item in items:
            kinds = [k for k in typing.get_args(item.hint) if k is not type(None)] or [item.hint]
            if kinds == [bool]:
                group.add_argument(*item.flags, action="store_true", dest=item.key, help=item.help)
                continue
            metavar = item.metavar or item.field.upper()
            if _origin(item.hint) is list:  # a list option's flag is repeatable: each gives one item
                group.add_argument(*item.flags, action="append", type=item.parse or str, dest=item.key,
                                   metavar=metavar, help=item.help)  # fmt: skip
                continue
            parse = item.parse or _PARSE_BY_TYPE.get(_origin(kinds[0]), str)
            group.add_argument(*item.flags, type=parse, dest=item.key, metavar=metavar, help=item.help)


#: gearmand's queue options: (option, backend, our option name, type); gearmand's table and prefix
#: options name the table that --import-gearmand-queue reads.
_QUEUE_OPTIONS = [
    (
        "--libsqlite3-db",
        "sqlite",
        "path",
        str,
        "sqlite: the database file (default DATA_DIR/queue-PORT.sqlite3, one per port)",
    ),
    ("--libpq-conninfo", "postgres", "conninfo", str, "postgres: libpq connection string"),
    ("--mysql-host", "mysql", "host", str, "mysql: server host (default localhost)"),
    ("--mysql-port", "mysql", "port", int, "mysql: server port (default 3306)"),
    ("--mysql-user", "mysql", "user", str, "mysql: user"),
    ("--mysql-password", "mysql", "password", str, "mysql: password"),
    ("--mysql-db", "mysql", "db", str, "mysql: database"),
    ("--redis-server", "redis", "host", str, "redis: server host (default 127.0.0.1)"),
    ("--redis-port", "redis", "port", int, "redis: server port (default 6379)"),
    ("--redis-password", "redis", "password", str, "redis: password"),
    (
        "--libmemcached-servers",
        "memcached",
        "servers",
        str,
        "memcached: servers, host[:port] separated by commas (default 127.0.0.1:11211); memcached may evict jobs",
    ),
]
_GEARMAND_TABLE_OPTIONS = [
    "--libsqlite3-table",
    "--libpq-table",
    "--mysql-table",
    "--redis-prefix",
    "--libmemcached-prefix",
]


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, Any]:
    try:
        return vars(parser.parse_args(argv))
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _flag(field_name: str) -> str:
    """The long option of a Settings field (every field with one is spelled this way)."""
    return "--" + field_name.replace("_", "-")


#: How the retry options of the command line appear in the YAML paths that _validate_retries names.
_RETRY_FLAGS = {"retries": "--fail-retries", "backoff": "--fail-backoff", "dead_letter": "--dead-letter"}


def read_config_file(path: str, required: bool = True) -> dict[str, Any]:
    """gearmand's --config-file: the options it holds, parsed like a command line (gearmand 1.1.20 splits the
    file at spaces and line ends and parses the words as arguments). A ``#`` word starts a comment to the end
    of its line. Unlike gearmand, a stray word (``port=4730``, which gearmand silently ignores) is an error.
    A file that cannot be read is an error only if ``required``: gearmand ignores a default file it cannot open
    (missing, or root's own that a user's test harness may not read)."""
    try:
        text = Path(path).read_bytes().decode("utf-8", "surrogateescape")  # as Python decodes argv
    except OSError as error:
        if not required:
            return {}
        raise ConfigError(f"cannot read --config-file {path}: {error.strerror}") from None
    words: list[str] = []
    for line in text.splitlines():
        for word in line.split():
            if word.startswith("#"):
                break
            words.append(word)
    try:
        return _parse(build_parser(for_file=True), words)
    except ConfigError as error:
        raise ConfigError(f"--config-file {path}: {error}{_dashes_hint(words)}") from None


def _dashes_hint(words: list[str]) -> str:
    """An option written without its dashes (``port=4730``, as other daemons' config files have it)."""
    for word in words:
        if re.fullmatch(r"[a-z][a-z0-9-]*=.*", word):
            return f" (options keep their dashes: --{word})"
    return ""


def parse_args(argv: list[str]) -> Settings:
    """Settings for a command line; raises ConfigError with one readable sentence."""
    given = _parse(build_parser(), argv)
    explicit = "config_file" in given
    config_file = given.pop("config_file", DEFAULT_CONFIG_FILE)
    if config_file:
        # the command line wins, option by option (a repeatable option given there replaces the file's)
        given = {**read_config_file(config_file, required=explicit), **given}
    values: dict[str, Any] = {}
    labels: dict[str, str] = {}
    if "config" in given:
        values.update(load_yaml(given.pop("config")))
        names = _yaml_names()
        labels.update({name: names.get(name, name) for name in values})
    for name in [key for key in given if key.startswith("q:")]:
        _, backend, option = name.split(":")
        values.setdefault("queue_options", {}).setdefault(backend, {})[option] = given.pop(name)
    for name in [key for key in given if key.startswith("t:")]:
        values["gearmand_table"] = given.pop(name)
        labels["gearmand_table"] = name[2:]
    for name in [key for key in given if key.startswith("r:")]:
        values.setdefault("retries", {}).setdefault("default", {})[name[2:]] = given.pop(name)
        labels[f"retries.default.{name[2:]}"] = _RETRY_FLAGS[name[2:]]
    given.pop("hash_token", None)  # cli/gearmand.py answers it before parsing
    more_verbose = given.pop("more_verbose", 0)
    enabled = given.pop("protocols", None)
    for name in IGNORED_OPTIONS:
        given.pop(name, None)
    values.update(given)
    declarations = frontend_declarations()
    labels.update({name: declarations[name].flag if name in declarations else _flag(name) for name in given})
    if enabled:
        frontends = list(values.get("frontends", ["binary"]))
        for name in enabled:
            if name.lower() not in frontends:
                frontends.append(name.lower())
        values["frontends"] = frontends
    settings = make_settings(values, labels)
    if more_verbose:
        index = min(LEVEL_ORDER.index(settings.verbose) + more_verbose, len(LEVEL_ORDER) - 1)
        settings.verbose = LEVEL_ORDER[index]
    return settings


def make_settings(values: dict[str, Any], labels: dict[str, str] | None = None) -> Settings:
    """A validated Settings from values (from YAML or code embedding the server): Settings fields, and
    frontend options as a block per frontend (``{"http": {"port": 0}}``), as ``frontend.option`` keys or by
    their flat names (``http_port``, ``port``). ``labels`` name values (and retry policy keys) as the user
    wrote them, for the messages; by default as they are written in ``values``."""
    names = dict(labels or {})
    server, options = _split(values, names)

    def label(key: str) -> str:
        return names.get(key, key)

    hints = typing.get_type_hints(Settings)
    for name, value in server.items():
        _check_type(name, label(name), value, hints[name])
    frontend_options = {}
    for name, frontend in protocols.available().items():
        given = options.get(name, {})
        option_hints = typing.get_type_hints(frontend.options_type)
        for field_name, value in given.items():
            _check_type(field_name, label(f"{name}.{field_name}"), value, option_hints[field_name])
        frontend_options[name] = frontend.options_type(**given)
    settings = Settings(**server, frontend_options=frontend_options)
    _validate(settings, label)
    for name, frontend in protocols.available().items():
        try:
            frontend.validate(frontend_options[name], lambda field_name, name=name: label(f"{name}.{field_name}"))
        except OptionError as error:
            raise ConfigError(str(error)) from None
    return settings


def _split(values: dict[str, Any], labels: dict[str, str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(Settings fields, frontend -> option -> value), without nulls (null: the default). Labels are added
    for the spellings that are not the key itself (a flat name, a frontend block)."""
    fields = set(_server_fields())
    declarations = frontend_declarations()
    aliases = {item.alias: key for key, item in declarations.items()}
    frontends = protocols.available()
    server: dict[str, Any] = {}
    options: dict[str, dict[str, Any]] = {}

    def put(key: str, value: Any, written: str) -> None:
        if key not in declarations:
            raise ConfigError(f"unknown setting {written!r}")
        labels.setdefault(key, written)
        if value is not None:
            item = declarations[key]
            options.setdefault(item.frontend, {})[item.field] = value

    for name, value in values.items():
        if name in fields:
            if value is not None:
                server[name] = value
        elif name in declarations:
            put(name, value, name)
        elif name in aliases:
            put(aliases[name], value, name)
        elif name in frontends and isinstance(value, dict):
            for option_name, option_value in value.items():
                put(f"{name}.{option_name}", option_value, f"{name}.{option_name}")
        else:
            raise ConfigError(f"unknown setting {name!r}")
    return server, options


#: How a message names what a field may hold.
_KIND_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "text", list: "a list",
               dict: "a mapping", type(None): "null"}  # fmt: skip


def _check_type(field_name: str, label: str, value: Any, hint: Any) -> None:
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
    if field_name == "worker_wakeup" and isinstance(value, str):
        return  # "auto", checked below
    names = " or ".join(_KIND_NAMES.get(typing.get_origin(k) or k, str(k)) for k in allowed)
    raise ConfigError(f"{label} must be {names}, not {_shown(value)}")


def _shown(value: Any) -> str:
    """A value as the user wrote it in YAML or on the command line: 'text', 5, true, [1, 2]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=1_000_000).strip().removesuffix("...").strip()


_POLICY_FIELDS = {"retries": int, "backoff": float, "factor": float, "max_backoff": float, "dead_letter": bool}


def _validate_retries(retries: dict[str, Any], label: Callable[[str], str]) -> None:
    """retries: {default: POLICY, functions: {NAME: POLICY}}; a POLICY sets any of _POLICY_FIELDS."""
    unknown = sorted(set(retries) - {"default", "functions"})
    if unknown:
        raise ConfigError(f"retries: unknown key {unknown[0]!r} (use default and functions)")
    policies = [("retries.default", retries.get("default") or {})]
    functions = retries.get("functions") or {}
    if not isinstance(functions, dict):
        raise ConfigError("retries.functions must map function names to policies")
    policies += [(f"retries.functions.{name}", policy or {}) for name, policy in functions.items()]
    for where, policy in policies:
        if not isinstance(policy, dict):
            raise ConfigError(f"{where} must be a mapping")
        for key, value in policy.items():
            kind = _POLICY_FIELDS.get(key)
            if kind is None:
                raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(_POLICY_FIELDS)})")
            ok = (
                isinstance(value, bool)
                if kind is bool
                else (
                    isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and value >= 0
                    and (kind is float or isinstance(value, int))
                )
            )
            if not ok:
                must = "true or false" if kind is bool else "a whole number >= 0" if kind is int else "a number >= 0"
                raise ConfigError(f"{label(f'{where}.{key}')} must be {must}, not {_shown(value)}")


#: The limits that count something (docs/security.md#limits); 0 is unlimited.
_COUNT_LIMITS = ("max_queued_jobs", "max_queued_bytes", "max_connections_per_ip", "accept_burst_per_ip")


def _validate(s: Settings, label: Callable[[str], str] = str) -> None:
    """Ranges and cross-checks; ``label`` names a field as the user wrote it."""

    def check(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    if isinstance(s.listen, str):
        s.listen = [s.listen]
    check(isinstance(s.listen, list), f"{label('listen')} must be a list of addresses")
    if s.reactor is not None:
        s.reactor = str(s.reactor).lower()
        check(
            s.reactor in REACTORS,
            f"{label('reactor')}: unknown reactor {s.reactor!r} (use one of {', '.join(REACTORS)})",
        )
    s.verbose = str(s.verbose).upper()
    check(s.verbose in LEVELS, f"{label('verbose')}: unknown level {s.verbose!r} (use one of {', '.join(LEVEL_ORDER)})")
    try:
        s.queue_type = stores.backend_name(str(s.queue_type))
    except ValueError as error:
        raise ConfigError(f"{label('queue_type')}: {error}".replace("Unknown queue", "unknown queue type")) from None
    for backend, options in s.queue_options.items():
        check(backend in stores.OPTIONS, f"queue options for unknown backend {backend!r}")
        check(isinstance(options, dict), f"queue.{backend} must be a mapping of options")
        unknown = sorted(set(options) - set(stores.OPTIONS[backend]))
        known = ", ".join(stores.OPTIONS[backend])
        check(not unknown, f"unknown {backend} queue option {', '.join(unknown)} (known: {known})")
    if s.shared:
        check(s.queue_type == "postgres", f"{label('shared')} needs the postgres queue (-q postgres)")
    check(s.shared_lease > 0, f"{label('shared_lease')} must be > 0 seconds")
    check(s.shared_dead_after > 0, f"{label('shared_dead_after')} must be > 0 seconds")
    _validate_retries(s.retries, label)
    try:
        monitoring.validate(s.monitoring)
        monitoring.check_durable_store(s.monitoring, s.queue_type)
    except monitoring.MonitoringError as error:
        raise ConfigError(str(error)) from None
    try:
        security.parse_policy(s.security)
    except security.PolicyError as error:
        raise ConfigError(str(error)) from None
    if isinstance(s.worker_wakeup, str):
        check(s.worker_wakeup.lower() == "auto", f"{label('worker_wakeup')} must be auto or a number")
        s.worker_wakeup = None
    check(s.worker_wakeup is None or s.worker_wakeup >= 0, f"{label('worker_wakeup')} must be auto or >= 0")
    check(s.job_retries >= -1, f"{label('job_retries')} must be -1 (unlimited) or more")
    for name in ("backlog", "max_connections", "max_output_buffer", "threads", *_COUNT_LIMITS):
        check(getattr(s, name) >= 0, f"{label(name)} must be a whole number >= 0")
    for name in ("accept_rate_per_ip", "first_byte_timeout"):
        check(getattr(s, name) >= 0, f"{label(name)} must be >= 0")
    check(s.graceful_timeout >= 0, f"{label('graceful_timeout')} must be >= 0")
    check(s.result_cache_memory >= 0, f"{label('result_cache_memory')} must be >= 0")
    check(s.result_ttl >= 0, f"{label('result_ttl')} must be >= 0")
    if s.job_handle_prefix is not None:
        check(0 < len(s.job_handle_prefix.encode()) <= 52, f"{label('job_handle_prefix')} must be 1 to 52 bytes")
    check(isinstance(s.frontends, list) and bool(s.frontends), f"{label('frontends')} must be a non-empty list")
    s.frontends = [str(f).lower() for f in s.frontends]
    known = protocols.available()
    for name in s.frontends:
        check(name in known, protocols.unknown_message(name))
    for name, endpoints in s.endpoints.items():  # a misspelt name would leave that frontend on its default port
        where = f"{label('endpoints')}.{name}"
        check(name in known, f"{where}: {protocols.unknown_message(name)}")
        check(
            isinstance(endpoints, list) and all(isinstance(e, str) and e for e in endpoints),
            f"{where} must be a list of Twisted endpoint strings (tcp:PORT:interface=ADDRESS, ssl:...)",
        )
    _validate_tls(s, label)
    choose_reactor(s, label)


def _validate_tls(s: Settings, label: Callable[[str], str]) -> None:
    """TLS listeners need a certificate and its key; the files must be readable (their contents are checked
    when the listeners are made); ``required`` client certificates need a CA to verify them with."""

    def check(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    def name(field_name: str) -> str:  # as written, else as its flag (a default)
        written = label(field_name)
        return _flag(field_name) if written == field_name else written

    check(
        s.ssl_client_cert in CLIENT_CERT_MODES,
        f"{name('ssl_client_cert')} must be one of {', '.join(CLIENT_CERT_MODES)}, not {s.ssl_client_cert!r}",
    )
    check(
        s.ssl_client_cert != "required" or s.ssl_ca_file is not None,
        f"{name('ssl_client_cert')} required needs {name('ssl_ca_file')} to verify client certificates with",
    )
    for option in ("ssl_certificate", "ssl_key", "ssl_ca_file"):
        path = getattr(s, option)
        check(path is None or os.access(path, os.R_OK), f"{name(option)} {path}: not a readable file")
    tls = [
        label(f"{frontend}.{option}")
        for frontend in s.frontends
        for option in ("ssl", "ssl_port")
        if getattr(s.frontend_options.get(frontend), option, None) not in (None, False)
    ]
    check(
        not tls or (s.ssl_certificate is not None and s.ssl_key is not None),
        f"{', '.join(tls)} needs {name('ssl_certificate')} and {name('ssl_key')}",
    )


def choose_reactor(s: Settings, label: Callable[[str], str] = str) -> tuple[str, list[str]]:
    """The reactor to install, and the enabled frontends that chose it: the one given (it must be of the kind
    every enabled frontend needs), else the kind's default (asyncio's for a frontend that needs asyncio), else
    epoll. Read before the reactor is installed (cli/gearmand.py)."""
    needs = {name: protocols.load(name).reactor for name in s.frontends}
    needs = {name: kind for name, kind in needs.items() if kind is not None}
    for name, kind in needs.items():
        if kind not in REACTOR_KINDS.values():
            raise ConfigError(f"the {name} frontend needs a {kind!r} reactor, which gearmand does not have")
    kinds = sorted(set(needs.values()))
    if len(kinds) > 1:
        raise ConfigError(
            "the enabled frontends need different reactors: "
            + ", ".join(f"{name} needs {kind}" for name, kind in needs.items())
        )
    if not kinds:
        return s.reactor or DEFAULT_REACTOR, []
    kind = kinds[0]
    if s.reactor is not None and REACTOR_KINDS[s.reactor] != kind:
        fitting = [name for name, of in REACTOR_KINDS.items() if of == kind]
        frontends = " and ".join(needs)
        raise ConfigError(
            f"{label('reactor')} {s.reactor} cannot run the {frontends} frontend, which needs an {kind} reactor "
            f"(use {' or '.join(fitting)}, or leave the reactor unset)"
        )
    return s.reactor or kind, list(needs)
