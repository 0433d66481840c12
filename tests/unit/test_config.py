"""Settings: defaults < YAML file < gearmand-compatible command line, with one-line ConfigErrors
(reference §6.1). The last tests run the real `gearmand` entry point for its exit codes and output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import protocols
from gearman_gateway import config
from gearman_gateway.config import (
    LEVEL_ORDER,
    ConfigError,
    Settings,
    load_yaml,
    make_settings,
    parse_args,
)
from gearman_gateway.version import SERVER_VERSION
from protocols.binary.options import BinaryOptions
from protocols.http.options import HttpOptions

REPO = Path(__file__).resolve().parents[2]


def binary(settings: Settings) -> BinaryOptions:
    return settings.options("binary")


def http(settings: Settings) -> HttpOptions:
    return settings.options("http")


def test_unknown_protocol_is_a_config_error() -> None:
    assert "unknown protocol 'nosuch'" in config_error(["-r", "nosuch"])


def write(tmp_path: Path, text: str, name: str = "gearmand.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def config_error(argv: list[str]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_args(argv)
    message = str(caught.value)
    assert message and "\n" not in message  # one readable line
    return message


# ---------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    s = parse_args([])
    assert s == Settings()
    assert binary(s).port == 4730
    assert s.listen == []
    assert s.backlog == 32
    assert s.frontends == ["binary"]
    assert http(s).port == 8080
    assert s.daemon is False
    assert s.pid_file is None
    assert s.log_file == "stderr"
    assert s.verbose in LEVEL_ORDER
    assert s.user is None
    assert s.queue_type == "sqlite"  # durable by default (gearmand: builtin)
    assert s.data_dir and s.queue_options == {} and s.retries == {}
    assert s.job_retries == 0
    assert s.worker_wakeup is None
    assert s.job_handle_prefix is None
    assert s.exceptions is False
    assert s.round_robin is False
    assert s.hashtable_buckets == 991
    assert s.keepalive is False
    assert (s.keepalive_idle, s.keepalive_interval, s.keepalive_count) == (-1, -1, -1)
    assert binary(s).max_packet_size == 64 * 1024 * 1024
    assert binary(s).max_admin_line == 8192
    assert s.allow_remote_shutdown is False
    assert s.check_args is False


# ---------------------------------------------------------------------------- gearmand's options


def test_port() -> None:
    assert binary(parse_args(["-p", "4731"])).port == 4731
    assert binary(parse_args(["--port", "4732"])).port == 4732
    assert binary(parse_args(["--port=4733"])).port == 4733
    assert binary(parse_args(["-p4734"])).port == 4734
    assert binary(parse_args(["-p", "0"])).port == 0


def test_listen_is_repeatable() -> None:
    assert parse_args(["-L", "127.0.0.1"]).listen == ["127.0.0.1"]
    assert parse_args(["-L", "127.0.0.1", "--listen", "::1", "-L", "10.0.0.1"]).listen == [
        "127.0.0.1",
        "::1",
        "10.0.0.1",
    ]


def test_daemon_and_pid_file() -> None:
    s = parse_args(["-d", "-P", "/run/gearmand.pid"])
    assert s.daemon is True and s.pid_file == "/run/gearmand.pid"
    s = parse_args(["--daemon", "--pid-file", "/tmp/g.pid"])
    assert s.daemon is True and s.pid_file == "/tmp/g.pid"


@pytest.mark.parametrize("value", ["stderr", "none", "/var/log/gearmand.log"])
def test_log_file(value: str) -> None:
    assert parse_args(["-l", value]).log_file == value
    assert parse_args(["--log-file", value]).log_file == value


@pytest.mark.parametrize(
    ("given", "level"),
    [
        ("info", "INFO"),
        ("Debug", "DEBUG"),
        ("ERROR", "ERROR"),
        ("notice", "NOTICE"),
        ("fatal", "FATAL"),
        ("warning", "WARNING"),
    ],
)
def test_verbose_level_is_case_insensitive(given: str, level: str) -> None:
    assert parse_args(["--verbose", given]).verbose == level
    assert parse_args([f"--verbose={given}"]).verbose == level


def test_v_raises_verbosity() -> None:
    base = LEVEL_ORDER.index(parse_args([]).verbose)
    one = parse_args(["-v"]).verbose
    two = parse_args(["-v", "-v"]).verbose
    assert LEVEL_ORDER.index(one) == min(base + 1, len(LEVEL_ORDER) - 1)
    assert LEVEL_ORDER.index(two) == min(base + 2, len(LEVEL_ORDER) - 1)
    assert parse_args(["-vv"]).verbose == two
    assert parse_args(["--verbose", "ERROR", "-v", "-v"]).verbose == "NOTICE"
    assert parse_args(["--verbose", "ERROR", "-v"]).verbose == "WARNING"
    assert parse_args(["-v"] * 12).verbose == "DEBUG"  # capped


def test_user_threads() -> None:
    s = parse_args(["-u", "nobody", "-t", "8"])
    assert s.user == "nobody" and s.threads == 8
    assert parse_args(["--user", "gearman"]).user == "gearman"
    assert parse_args(["--threads", "0"]).threads == 0  # gearmand: 0 = guess


def test_protocol_http_adds_a_frontend() -> None:
    assert parse_args(["-r", "http"]).frontends == ["binary", "http"]
    assert parse_args(["--protocol", "http"]).frontends == ["binary", "http"]
    assert parse_args(["--protocol=HTTP", "-r", "http"]).frontends == ["binary", "http"]
    assert http(parse_args(["-r", "http", "--http-port", "8081"])).port == 8081


@pytest.mark.parametrize("name", ["builtin", "BUILTIN", "Builtin", "memory"])
def test_queue_type_builtin_is_memory(name: str) -> None:
    assert parse_args(["-q", name]).queue_type == "memory"
    assert parse_args(["--queue-type", name]).queue_type == "memory"


@pytest.mark.parametrize("value", [-1, 0, 1, 5])
def test_job_retries(value: int) -> None:
    assert parse_args(["-j", str(value)]).job_retries == value
    assert parse_args([f"--job-retries={value}"]).job_retries == value


@pytest.mark.parametrize(("given", "value"), [("auto", None), ("AUTO", None), ("0", 0), ("3", 3)])
def test_worker_wakeup(given: str, value: int | None) -> None:
    assert parse_args(["-w", given]).worker_wakeup == value
    assert parse_args(["--worker-wakeup", given]).worker_wakeup == value


def test_job_handle_prefix() -> None:
    assert parse_args(["--job-handle-prefix", "H:test"]).job_handle_prefix == "H:test"
    assert parse_args(["--job-handle-prefix", "x" * 52]).job_handle_prefix == "x" * 52


def test_keepalive_and_its_values() -> None:
    assert parse_args(["--keepalive"]).keepalive is True
    s = parse_args(["--keepalive", "--keepalive-idle", "60", "--keepalive-interval", "10", "--keepalive-count", "5"])
    assert (s.keepalive, s.keepalive_idle, s.keepalive_interval, s.keepalive_count) == (True, 60, 10, 5)


def test_backlog_round_robin_and_accepted_tuning_options() -> None:
    s = parse_args(["-b", "128", "-R", "--hashtable-buckets", "4096", "-f", "10000", "--syslog", "--coredump"])
    assert s.backlog == 128
    assert s.round_robin is True
    assert s.hashtable_buckets == 4096
    assert s.file_descriptors == 10000
    assert parse_args(["--backlog", "64", "--round-robin"]).backlog == 64


def test_exceptions_and_check_args() -> None:
    s = parse_args(["--exceptions", "--check-args"])
    assert s.exceptions is True and s.check_args is True


def test_a_typical_gearmand_command_line() -> None:
    s = parse_args(
        "-d -p 4730 -L 127.0.0.1 -P /run/gearman/gearmand.pid -l /var/log/gearman-job-server/gearman.log "
        "--verbose=INFO -u gearman -t 4 -q builtin -j 0 -w 0 --job-handle-prefix H:box -r http".split()
    )
    assert (s.daemon, binary(s).port, s.listen) == (True, 4730, ["127.0.0.1"])
    assert (s.user, s.queue_type) == ("gearman", "memory")
    assert s.log_file == "/var/log/gearman-job-server/gearman.log"
    assert (s.verbose, s.job_retries, s.worker_wakeup, s.job_handle_prefix) == ("INFO", 0, 0, "H:box")
    assert s.frontends == ["binary", "http"]


# ---------------------------------------------------------------------------- bad values


def test_unknown_option() -> None:
    assert "--bogus" in config_error(["--bogus"])


@pytest.mark.parametrize("argv", [["-p", "70000"], ["-p", "-1"], ["--port", "65536"]])
def test_port_out_of_range(argv: list[str]) -> None:
    assert "port" in config_error(argv)


def test_port_not_a_number() -> None:
    message = config_error(["-p", "notaport"])
    assert "port" in message and "notaport" in message


def test_verbose_unknown_level() -> None:
    message = config_error(["--verbose", "LOUD"])
    assert "LOUD" in message and "DEBUG" in message


def test_unknown_queue_type() -> None:
    assert "nosuch" in config_error(["-q", "nosuch"])


@pytest.mark.parametrize("value", ["-1", "lots"])
def test_bad_worker_wakeup(value: str) -> None:
    assert "wakeup" in config_error(["-w", value])


def test_job_handle_prefix_too_long() -> None:
    assert "prefix" in config_error(["--job-handle-prefix", "x" * 53])


def test_job_handle_prefix_empty() -> None:
    assert "prefix" in config_error(["--job-handle-prefix", ""])


def test_job_retries_below_minus_one() -> None:
    assert "retries" in config_error(["-j", "-2"])


def test_missing_option_value() -> None:
    assert "-p" in config_error(["-p"])


# ---------------------------------------------------------------------------- YAML


YAML = """\
port: 5000
listen: [10.0.0.1]
backlog: 100
verbose: info
log_file: none
queue:
  type: builtin
http:
  port: 8081
frontends: [binary, http]
keepalive:
  enabled: true
  idle: 30
  interval: 5
  count: 3
job_retries: 2
worker_wakeup: auto
job_handle_prefix: "H:yaml"
limits:
  max_packet_size: 1048576
  max_admin_line: 4096
  max_connections: 100
admin:
  allow_remote_shutdown: true
shutdown:
  graceful_timeout: 5
endpoints:
  binary: ["tcp:5000:interface=127.0.0.1"]
"""


def test_yaml_provides_values(tmp_path: Path) -> None:
    s = parse_args(["--config", write(tmp_path, YAML)])
    assert binary(s).port == 5000
    assert s.listen == ["10.0.0.1"]
    assert s.backlog == 100
    assert s.verbose == "INFO"
    assert s.log_file == "none"
    assert s.queue_type == "memory"
    assert http(s).port == 8081
    assert s.frontends == ["binary", "http"]
    assert (s.keepalive, s.keepalive_idle, s.keepalive_interval, s.keepalive_count) == (True, 30, 5, 3)
    assert s.job_retries == 2
    assert s.worker_wakeup is None
    assert s.job_handle_prefix == "H:yaml"
    assert (binary(s).max_packet_size, binary(s).max_admin_line, s.max_connections) == (1048576, 4096, 100)
    assert s.allow_remote_shutdown is True
    assert s.graceful_timeout == 5
    assert s.endpoints == {"binary": ["tcp:5000:interface=127.0.0.1"]}


def test_load_yaml_maps_nested_keys_to_fields(tmp_path: Path) -> None:
    values = load_yaml(write(tmp_path, "queue:\n  type: builtin\nkeepalive:\n  enabled: true\nport: 1\n"))
    assert values == {"queue_type": "builtin", "keepalive": True, "binary.port": 1}
    assert make_settings(values).queue_type == "memory"


def test_command_line_overrides_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, YAML)
    s = parse_args(["--config", path, "-p", "6000", "-L", "127.0.0.1", "--verbose", "debug", "-w", "0"])
    assert binary(s).port == 6000
    assert s.listen == ["127.0.0.1"]
    assert s.verbose == "DEBUG"
    assert s.worker_wakeup == 0
    assert s.backlog == 100  # not given on the command line: from the file
    # option order does not matter
    assert binary(parse_args(["-p", "6001", "--config", path])).port == 6001


def test_v_counts_from_the_yaml_level(tmp_path: Path) -> None:
    path = write(tmp_path, "verbose: WARNING\n")
    assert parse_args(["--config", path, "-v"]).verbose == "NOTICE"


def test_protocol_adds_to_yaml_frontends_without_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path, "frontends: [binary, http]\n")
    assert parse_args(["--config", path, "-r", "http"]).frontends == ["binary", "http"]
    path = write(tmp_path, "frontends: [binary]\n", "other.yaml")
    assert parse_args(["--config", path, "-r", "http"]).frontends == ["binary", "http"]


def test_empty_yaml_is_all_defaults(tmp_path: Path) -> None:
    assert parse_args(["--config", write(tmp_path, "")]) == Settings()
    assert parse_args(["--config", write(tmp_path, "# only a comment\n", "c.yaml")]) == Settings()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("bogus: 1\n", "bogus"),
        ("queue:\n  tpye: builtin\n", "queue.tpye"),
        ("port: 1\nlimits:\n  max_conections: 5\n", "limits.max_conections"),
    ],
)
def test_unknown_yaml_key(tmp_path: Path, text: str, key: str) -> None:
    message = config_error(["--config", write(tmp_path, text)])
    assert key in message


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("port: [1,\n", "line 2, column 1", "expected the node content"),
        ("a: b: c\n", "line 1, column 5", "mapping values are not allowed here"),
        ("\t- x\n", "line 1, column 1", "cannot start any token"),
        ("port: 4730\n  listen: x\n", "line 2, column 9", "mapping values are not allowed here"),
        ("port: 1\nname: 'open\n", "line 3, column 1", "found unexpected end of stream"),
    ],
)
def test_invalid_yaml_names_the_file_line_and_column(tmp_path: Path, text: str, where: str, problem: str) -> None:
    path = write(tmp_path, text)
    message = config_error(["--config", path])
    assert message.startswith(f"config file {path}, {where}: ") and problem in message


def test_yaml_that_is_not_text_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"port: 1\nname: caf\xe9\n")
    assert config_error(["--config", str(path)]) == (
        f"config file {path} is not valid YAML: byte 17: invalid continuation byte"
    )


def test_yaml_must_be_a_mapping(tmp_path: Path) -> None:
    config_error(["--config", write(tmp_path, "- port\n- 4730\n")])


def test_missing_config_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    assert path in config_error(["--config", path])


@pytest.mark.parametrize(
    "text",
    [
        "port: 70000\n",
        "port: '4730'\n",
        "verbose: LOUD\n",
        "queue:\n  type: nosuch\n",
        "worker_wakeup: -1\n",
        "worker_wakeup: sometimes\n",
        "job_retries: -5\n",
        "listen: 5\n",
        "frontends: []\n",
        "frontends: http\n",
        "threads: many\n",
        "limits:\n  max_admin_line: 10\n",
        "limits:\n  max_packet_size: 10\n",
        "shutdown:\n  graceful_timeout: -1\n",
        "job_handle_prefix: " + "x" * 60 + "\n",
        "endpoints: [tcp:4730]\n",
    ],
)
def test_bad_yaml_values(tmp_path: Path, text: str) -> None:
    config_error(["--config", write(tmp_path, text)])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("endpoints:\n  binray: ['tcp:4730']\n", "endpoints.binray: unknown protocol 'binray' (available: "),
        ("endpoints:\n  binary: tcp:4730\n", "endpoints.binary must be a list of Twisted endpoint strings"),
        ("endpoints:\n  binary: [5]\n", "endpoints.binary must be a list of Twisted endpoint strings"),
    ],
)
def test_endpoints_name_known_frontends_and_hold_endpoint_strings(tmp_path: Path, text: str, message: str) -> None:
    assert config_error(["--config", write(tmp_path, text)]).startswith(message)


@pytest.mark.parametrize(
    "text",
    [
        # These crash with TypeError/AttributeError (a traceback from `gearmand`) or are silently
        # accepted and fail later at run time; the module promises a ConfigError for every problem.
        "shutdown:\n  graceful_timeout: soon\n",
        "job_handle_prefix: 123\n",
        "worker_wakeup: [1]\n",
        "keepalive:\n  idle: often\n",
        "exceptions: 'yes'\n",
        "daemon: 'no'\n",
    ],
)
def test_wrongly_typed_yaml_values_are_config_errors(tmp_path: Path, text: str) -> None:
    config_error(["--config", write(tmp_path, text)])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http:\n  port: '8080'\n", "http.port must be a whole number, not '8080'"),
        ("http:\n  port: 70000\n", "http.port must be 0-65535, not 70000"),
        ("http:\n  request_timeout: -1\n", "http.request_timeout must be >= 0"),
        ("limits:\n  max_packet_size: 10\n", "limits.max_packet_size must be >= 1024"),
        ("keepalive:\n  idle: often\n", "keepalive.idle must be a whole number, not 'often'"),
        ("daemon: 'no'\n", "daemon must be true or false, not 'no'"),
        ("worker_wakeup: [1]\n", "worker_wakeup must be a whole number or null, not [1]"),
        ("queue:\n  type: tokyo\n", "queue.type: unknown queue type tokyo"),
        ("verbose: LOUD\n", "verbose: unknown level 'LOUD'"),
        ("retries:\n  default: {backoff: -1}\n", "retries.default.backoff must be a number >= 0, not -1"),
        ("job_retries: -5\n", "job_retries must be -1 (unlimited) or more"),
    ],
)
def test_yaml_errors_name_the_key_as_written(tmp_path: Path, text: str, message: str) -> None:
    got = config_error(["--config", write(tmp_path, text)])
    assert got.startswith(message), got


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--http-port", "70000"], "--http-port must be 0-65535, not 70000"),
        (["--max-packet-size", "10"], "--max-packet-size must be >= 1024"),
        (["--graceful-timeout", "-1"], "--graceful-timeout must be >= 0"),
        (["--fail-backoff", "-1"], "--fail-backoff must be a number >= 0"),
        (["-q", "tokyo"], "--queue-type: unknown queue type tokyo"),
        (["--job-handle-prefix", ""], "--job-handle-prefix must be 1 to 52 bytes"),
    ],
)
def test_command_line_errors_name_the_option(argv: list[str], message: str) -> None:
    assert config_error(argv).startswith(message)


def test_the_command_line_names_win_over_the_yaml_for_what_it_set(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  port: 8081\nlimits:\n  max_admin_line: 10\n")
    assert config_error(["--config", path, "--max-admin-line", "12"]).startswith("--max-admin-line must be >= 64")
    assert config_error(["--config", path, "-p", "1"]).startswith("limits.max_admin_line must be >= 64")


def test_make_settings_names_fields_for_embedding_code() -> None:
    with pytest.raises(ConfigError, match="^http_port must be 0-65535"):
        make_settings({"http_port": 70000})


def test_make_settings_rejects_unknown_fields() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        make_settings({"bogus": 1})


def test_make_settings_validates() -> None:
    assert make_settings({"port": 4731, "verbose": "debug"}).verbose == "DEBUG"
    with pytest.raises(ConfigError):
        make_settings({"port": -3})


def test_shipped_default_config_loads() -> None:
    path = REPO / "config" / "gearmand.yaml"
    parse_args(["--config", str(path)])


# ---------------------------------------------------------------------------- the gearmand command


def run_gearmand(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gearman_gateway.cli.gearmand", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("args", [("--bogus",), ("-p", "notaport")])
def test_cli_bad_arguments_exit_2_with_one_line(args: tuple[str, ...]) -> None:
    result = run_gearmand(*args)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.strip()
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli_help() -> None:
    result = run_gearmand("--help")
    assert result.returncode == 0
    for option in ("--config", "--port", "--queue-type"):
        assert option in result.stdout


def test_cli_version() -> None:
    result = run_gearmand("-V")
    assert result.returncode == 0
    assert result.stdout.startswith("gearmand ")
    assert SERVER_VERSION in result.stdout


def test_cli_check_args() -> None:
    result = run_gearmand("--check-args", "-p", "4731", "-r", "binary", "-q", "builtin", "--verbose", "info")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_queue_options_gearmand_style() -> None:
    s = parse_args(["-q", "libsqlite3", "--libsqlite3-db", "/tmp/q.db", "--libsqlite3-table", "gq"])
    assert (s.queue_type, s.queue_options, s.gearmand_table) == ("sqlite", {"sqlite": {"path": "/tmp/q.db"}}, "gq")
    s = parse_args(["-q", "libpq", "--libpq-conninfo", "host=h port=5"])
    assert (s.queue_type, s.queue_options) == ("postgres", {"postgres": {"conninfo": "host=h port=5"}})
    s = parse_args(
        [
            "-q",
            "MySQL",
            "--mysql-host",
            "db",
            "--mysql-port",
            "3307",
            "--mysql-user",
            "u",
            "--mysql-password",
            "p",
            "--mysql-db",
            "gm",
        ]
    )
    assert s.queue_options == {"mysql": {"host": "db", "port": 3307, "user": "u", "password": "p", "db": "gm"}}
    s = parse_args(["-q", "redis", "--redis-server", "r", "--redis-port", "6380", "--import-gearmand-queue"])
    assert s.queue_options == {"redis": {"host": "r", "port": 6380}} and s.import_gearmand_queue
    assert parse_args(["-q", "builtin"]).queue_type == "memory"
    assert "unknown queue type" in config_error(["-q", "tokyo"])


def test_retry_policy_options_and_yaml(tmp_path: Path) -> None:
    s = parse_args(["--fail-retries", "3", "--fail-backoff", "0.5", "--dead-letter"])
    assert s.retries == {"default": {"retries": 3, "backoff": 0.5, "dead_letter": True}}
    path = write(
        tmp_path,
        "retries:\n  default: {retries: 1}\n  functions:\n    resize: {retries: 5, dead_letter: true}\n"
        "queue:\n  type: postgres\n  postgres: {conninfo: 'dbname=q'}\n",
    )
    s = parse_args(["--config", path])
    assert s.retries["functions"]["resize"] == {"retries": 5, "dead_letter": True}
    assert s.queue_options == {"postgres": {"conninfo": "dbname=q"}}
    bad = write(tmp_path, "retries:\n  default: {tries: 1}\n", "bad.yaml")
    assert "unknown key 'tries'" in config_error(["--config", bad])
    bad = write(tmp_path, "queue:\n  sqlite: {file: x}\n", "bad2.yaml")
    assert "unknown sqlite queue option file" in config_error(["--config", bad])


def test_memcached_queue_options_gearmand_style_and_yaml(tmp_path: Path) -> None:
    s = parse_args(["-q", "libmemcached", "--libmemcached-servers", "127.0.0.1:11211,10.0.0.2"])
    assert (s.queue_type, s.queue_options) == ("memcached", {"memcached": {"servers": "127.0.0.1:11211,10.0.0.2"}})
    assert parse_args(["-q", "memcached", "--libmemcached-prefix", "gq_"]).gearmand_table == "gq_"
    path = write(tmp_path, "queue:\n  type: memcached\n  memcached: {servers: 'm:11212', prefix: 'mine:'}\n")
    assert parse_args(["--config", path]).queue_options == {"memcached": {"servers": "m:11212", "prefix": "mine:"}}
    bad = write(tmp_path, "queue:\n  memcached: {host: x}\n", "bad.yaml")
    assert "unknown memcached queue option host" in config_error(["--config", bad])


def test_store_queue_on_shutdown_is_accepted_and_changes_nothing() -> None:
    """gearmand's sqlite queue writes nothing while running and everything at shutdown with it; ours writes
    every background job before acknowledging it, so there is nothing left to store at shutdown."""
    assert parse_args(["-q", "libsqlite3", "--store-queue-on-shutdown"]) == parse_args(["-q", "libsqlite3"])


# ---------------------------------------------------------------------------- TLS options (issue 18)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ssl"], "--ssl needs --ssl-certificate and --ssl-key"),
        (["--ssl-port", "4731"], "--ssl-port needs --ssl-certificate and --ssl-key"),
        (["-r", "http", "--http-ssl"], "--http-ssl needs --ssl-certificate and --ssl-key"),
        (["--ssl-ca-file", "/nonexistent/ca.pem"], "--ssl-ca-file /nonexistent/ca.pem: not a readable file"),
        (["--ssl-client-cert", "required"], "--ssl-client-cert required needs --ssl-ca-file"),
        (["--ssl-client-cert", "maybe"], "argument --ssl-client-cert: invalid choice: 'maybe'"),
        (
            ["-p", "4730", "--ssl-port", "4730", "--ssl-certificate", __file__, "--ssl-key", __file__],
            "--ssl-port must differ from --port (4730)",
        ),
    ],
)
def test_tls_option_mistakes_are_one_clear_line(argv: list[str], message: str) -> None:
    assert config_error(argv).startswith(message)


def test_tls_options_from_the_command_line_and_yaml(tmp_path: Path) -> None:
    cert, key = write(tmp_path, "cert", "c.pem"), write(tmp_path, "key", "k.pem")
    s = parse_args(["--ssl-port", "4731", "--ssl-certificate", cert, "--ssl-key", key, "-r", "memcached"])
    assert (binary(s).ssl, binary(s).ssl_port, s.ssl_client_cert, s.ssl_ca_file) == (False, 4731, "optional", None)
    tls = f"{{certificate: {cert}, key: {key}, ca_file: {cert}, client_cert: required}}"
    text = f"ssl: true\nhttp: {{ssl_port: 8443}}\ntls: {tls}\n"
    s = parse_args(["--config", write(tmp_path, text), "-r", "http"])
    assert (binary(s).ssl, s.options("http").ssl_port, s.ssl_ca_file, s.ssl_client_cert) == (
        True,
        8443,
        cert,
        "required",
    )


# ---------------------------------------------------------------------------- --config-file (gearmand's)


@pytest.fixture
def no_default_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Where gearmand's default config file would be; it does not exist until a test writes it."""
    path = tmp_path / "etc-gearmand.conf"
    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", str(path))
    return path


def test_config_file_holds_options_as_on_the_command_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# gearmand options\n--port=4731 -L 127.0.0.1\n--verbose\nINFO   --job-retries 3  # trailing comment\n"
        "-q libmemcached --libmemcached-servers=127.0.0.1:11300\n--keepalive\n",
        "gearmand.conf",
    )
    s = parse_args(["--config-file", path])
    assert (binary(s).port, s.listen, s.verbose, s.job_retries, s.keepalive) == (4731, ["127.0.0.1"], "INFO", 3, True)
    assert (s.queue_type, s.queue_options) == ("memcached", {"memcached": {"servers": "127.0.0.1:11300"}})


def test_the_command_line_wins_over_the_config_file_option_by_option(tmp_path: Path) -> None:
    path = write(tmp_path, "--port=4731 -L 127.0.0.2 -L 127.0.0.3 --backlog 7\n", "gearmand.conf")
    s = parse_args([f"--config-file={path}", "-p", "4732", "-L", "127.0.0.1"])
    assert (binary(s).port, s.listen, s.backlog) == (4732, ["127.0.0.1"], 7)  # -L given: the file's list is replaced


def test_config_file_sits_between_the_yaml_and_the_command_line(tmp_path: Path) -> None:
    yaml_path = write(tmp_path, "port: 5000\nbacklog: 100\nverbose: WARNING\n")
    conf = write(tmp_path, f"--config {yaml_path}\n--port 5001 --verbose DEBUG\n", "gearmand.conf")
    s = parse_args(["--config-file", conf, "--verbose", "INFO"])
    assert (binary(s).port, s.backlog, s.verbose) == (5001, 100, "INFO")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port=4731\n", "unrecognized arguments: port=4731 (options keep their dashes: --port=4731)"),
        ("--bogus=1\n", "unrecognized arguments: --bogus=1"),
        ("--port=abc\n", "argument -p/--port: invalid port number or service name value: 'abc'"),
        ("--port=70000\n", "--port must be 0-65535, not 70000"),
        ("--check-args\n", "unrecognized arguments: --check-args"),  # as in gearmand: command line only
        ("--help\n", "unrecognized arguments: --help"),
        ("--config-file=/etc/other.conf\n", "unrecognized arguments: --config-file=/etc/other.conf"),
    ],
)
def test_config_file_mistakes_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text, "gearmand.conf")
    got = config_error(["--config-file", path])
    assert got.endswith(message), got
    assert path in got or message.startswith("--port must")


def test_a_config_file_given_must_exist_but_the_default_may_be_missing(
    tmp_path: Path, no_default_config_file: Path
) -> None:
    assert config_error(["--config-file", str(tmp_path / "nope.conf")]) == (
        f"cannot read --config-file {tmp_path / 'nope.conf'}: No such file or directory"
    )
    assert parse_args([]) == Settings()  # gearmand too ignores a missing /etc/gearmand.conf


def test_a_default_config_file_that_cannot_be_read_is_ignored_as_gearmand_does(no_default_config_file: Path) -> None:
    no_default_config_file.mkdir()  # unreadable as a file (root reads any mode; a non-root user gets EACCES)
    assert parse_args([]) == Settings()
    assert config_error(["--config-file", str(no_default_config_file)]) == (
        f"cannot read --config-file {no_default_config_file}: Is a directory"
    )


def test_the_default_config_file_is_read_when_it_exists(no_default_config_file: Path) -> None:
    no_default_config_file.write_text("--port=4799\n")
    assert binary(parse_args([])).port == 4799
    assert binary(parse_args(["-p", "4800"])).port == 4800
    assert binary(parse_args(["--config-file="])).port == 4730  # '' reads no file
    no_default_config_file.write_text("--ssl\n")
    assert config_error(["--check-args"]) == "--ssl needs --ssl-certificate and --ssl-key"


def test_cli_check_args_reads_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "--port=4731\nverbose=INFO\n", "gearmand.conf")
    result = run_gearmand("--check-args", "--config-file", path)
    assert result.returncode == 2
    assert result.stderr == (
        f"gearmand: error: --config-file {path}: unrecognized arguments: verbose=INFO "
        "(options keep their dashes: --verbose=INFO)\n"
    )


# ---------------------------------------------------------------------------- every option of gearmand 1.1.20

#: A value for each option of gearmand 1.1.20's --help that takes one (found by reading its output).
SAMPLE_VALUES = {
    "backlog": "32", "file-descriptors": "1024", "job-retries": "0", "job-handle-prefix": "H:x",
    "hashtable-buckets": "991", "keepalive-idle": "60", "keepalive-interval": "10", "keepalive-count": "5",
    "log-file": "stderr", "listen": "127.0.0.1", "pid-file": "/tmp/gearmand.pid", "protocol": "http",
    "queue-type": "builtin", "config-file": "", "threads": "4", "user": "nobody", "verbose": "INFO",
    "worker-wakeup": "0", "http-port": "8080", "port": "4730", "ssl-ca-file": "ca.pem",
    "ssl-certificate": "cert.pem", "ssl-key": "key.pem", "libmemcached-servers": "127.0.0.1:11211",
    "libmemcached-prefix": "gear_", "libsqlite3-db": "/tmp/q.db", "libsqlite3-table": "gearman_queue",
    "libpq-conninfo": "dbname=gearman", "libpq-table": "queue", "redis-server": "127.0.0.1", "redis-port": "6379",
    "redis-password": "secret", "redis-prefix": "_gear_", "mysql-host": "localhost", "mysql-port": "3306",
    "mysql-user": "gearman", "mysql-password": "secret", "mysql-db": "gearman", "mysql-table": "gearman_queue",
}  # fmt: skip


def gearmand_1_1_20_options() -> list[tuple[str, bool]]:
    """(long option, takes a value) for every option Debian's gearmand lists in its --help."""
    reference = "/usr/sbin/gearmand"
    if not Path(reference).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reference} is missing: scripts/setup --test installs gearman-job-server")
        pytest.skip(f"{reference} is not installed")
    text = subprocess.run([reference, "--help"], capture_output=True, text=True, timeout=30).stdout
    found = re.findall(r"^  (?:-\w \[ )?--([a-z0-9-]+)(?: \])?( arg)?", text, re.MULTILINE)
    assert len(found) >= 49, text  # 1.1.20 lists 49
    return [(name, bool(arg)) for name, arg in found]


def test_every_option_of_gearmand_1_1_20_is_accepted() -> None:
    for name, takes_value in gearmand_1_1_20_options():
        if name in ("help", "version"):
            continue  # they print and exit: test_cli_help, test_cli_version
        argv = [f"--{name}={SAMPLE_VALUES[name]}" if takes_value else f"--{name}"]
        if name.startswith("ssl"):  # known, but each needs real files (test_tls_option_mistakes_are_one_clear_line)
            assert f"--{name}" in config_error(argv) and "unrecognized" not in config_error(argv), name
        else:
            parse_args(argv)  # no ConfigError


def test_our_help_lists_every_option_of_gearmand_1_1_20() -> None:
    ours = run_gearmand("--help").stdout
    missing = [name for name, _ in gearmand_1_1_20_options() if f"--{name}" not in ours]
    assert not missing


# ---------------------------------------------------------------------------- frontend options (issue 14)


def test_every_frontend_comes_through_the_entry_points() -> None:
    from importlib.metadata import entry_points

    declared = {ep.name: ep.value for ep in entry_points(group=protocols.ENTRY_POINT_GROUP)}
    assert declared["binary"] == "protocols.binary:FRONTEND" and declared["http"] == "protocols.http:FRONTEND"
    assert set(protocols.available()) >= {"binary", "http"}
    assert not hasattr(protocols, "_BUILT_IN")  # no second, hand-kept list


def test_settings_hold_every_installed_frontends_options() -> None:
    s = Settings()
    assert set(s.frontend_options) == set(protocols.available())
    assert s.options("binary") == BinaryOptions() and s.options("http") == HttpOptions()


@pytest.mark.parametrize(
    "values",
    [
        {"http": {"port": 0, "prefix": "/x/"}},  # a block, as in YAML
        {"http.port": 0, "http.prefix": "/x/"},  # frontend.option keys
        {"http_port": 0, "http_prefix": "/x/"},  # the flat names Settings had before
    ],
)
def test_make_settings_takes_frontend_options_in_every_spelling(values: dict[str, object]) -> None:
    s = make_settings({**values, "listen": ["127.0.0.1"]})
    assert (http(s).port, http(s).prefix, s.listen) == (0, "/x/", ["127.0.0.1"])


def test_make_settings_keeps_the_binary_frontends_old_names() -> None:
    s = make_settings({"port": 0, "max_packet_size": 2048, "max_admin_line": 100})
    assert (binary(s).port, binary(s).max_packet_size, binary(s).max_admin_line) == (0, 2048, 100)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"http": {"port": 70000}}, "http.port must be 0-65535, not 70000"),
        ({"http.max_body_size": -1}, "http.max_body_size must be >= 0"),
        ({"http": {"bogus": 1}}, "unknown setting 'http.bogus'"),
        ({"nosuch": {"port": 1}}, "unknown setting 'nosuch'"),
        ({"port": "4730"}, "port must be a whole number, not '4730'"),
        ({"max_admin_line": 10}, "max_admin_line must be >= 64"),
    ],
)
def test_make_settings_names_frontend_options_as_given(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(values)
    assert str(caught.value).startswith(message), caught.value


def test_the_reactor_is_chosen_from_the_frontends_unless_given() -> None:
    s = parse_args([])
    assert s.reactor is None and config.choose_reactor(s) == ("epoll", [])
    s = parse_args(["--reactor", "twisted-epoll", "-r", "http"])
    assert config.choose_reactor(s) == ("twisted-epoll", [])
    assert "twisted-epoll" in config_error(["--reactor", "kqueue"])


def test_help_groups_each_frontends_flags_under_its_title() -> None:
    text = run_gearmand("--help").stdout
    text = text[text.index("\n\n") :]  # the groups, after the usage lines
    binary_group = text.index("binary protocol and admin commands")
    http_group = text.index("http frontend (-r http):")
    assert binary_group < text.index("-p PORT, --port PORT") < text.index("--max-admin-line BYTES") < http_group
    assert http_group < text.index("--http-port PORT") < text.index("--http-keepalive-timeout SECONDS")
