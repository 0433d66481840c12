"""Private PostgreSQL, MariaDB, Redis and memcached servers for tests, started from the Debian packages' binaries.

Each server runs as a process we start (in a session of its own, so that stopping it also stops its
children), on a free loopback port, with its data in its own temp dir. A test can stop it gracefully, crash it
(``stop("immediate")``, ``kill()``), freeze it (``pause()``) and start it again on the same port and data
(``restart()``) without touching anything else: never the machine's shared servers on 5432/3306/6379/11211.

The slow part of a database's first start, creating its data directory, is done once per session into a
template that every instance copies (``cp -a``, ~0.1 s).

``start_postgres(root)``, ``start_mariadb(root)``, ``start_redis(root)`` and ``start_memcached(root)`` raise
DbUnavailable when a server cannot run here; ``unavailable(reason)`` turns that into a skip, or a failure under CI=true.
``start_postgres_standby(primary, root)`` clones a running PostgreSQL into a streaming standby (``promote()``
makes it the primary), for failover tests.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

HOST = "127.0.0.1"
#: Seconds a server may take to answer after its start; a loaded CI machine is slow, a healthy one needs < 1 s.
START_TIMEOUT = 30.0
#: Seconds a graceful stop may take before the process group is killed.
STOP_TIMEOUT = 15.0
#: Attempts at a first start: another process may take the free port between our probe and the server's bind.
START_ATTEMPTS = 3
IS_ROOT = os.geteuid() == 0
#: Every server started by this process and not yet cleaned up, for the exit-time safety net.
_LIVE: set[DbServer] = set()


class DbUnavailable(Exception):
    """This database server cannot be run on this machine (binary missing, start failed); says why."""


def unavailable(reason: str) -> NoReturn:
    """Skip the test, except in CI (CI=true), where a database that cannot start is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def make_root() -> Path:
    """A temp dir for one test session's servers; others may traverse it (PostgreSQL runs as its own user)."""
    root = Path(tempfile.mkdtemp(prefix="gg-db-"))
    root.chmod(0o755)
    return root


def _find(*candidates: str) -> str:
    for pattern in candidates:
        for path in sorted(glob.glob(pattern), reverse=True):  # the newest PostgreSQL first
            if os.access(path, os.X_OK):
                return path
        found = shutil.which(pattern)
        if found:
            return found
    raise DbUnavailable(f"{candidates[0]} not found (scripts/setup --test installs the database servers)")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class DbServer:
    """One private server process. ``host``/``port``/``pid`` say where it is; the methods control it."""

    kind = "db"
    #: The signal of a graceful stop ("fast" for PostgreSQL).
    stop_signal: signal.Signals = signal.SIGTERM
    #: The signal of the server's own crash-like stop, if it has one (else stop("immediate") is a SIGKILL).
    immediate_signal: signal.Signals | None = None

    def __init__(self, directory: Path, port: int) -> None:
        self.host = HOST
        self.port = port
        self.dir = directory
        self.data_dir = directory / "data"
        self.log_path = directory / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} pid={self.pid} dir={self.dir}>"

    # -- what a kind of server provides

    def command(self) -> list[str]:
        raise NotImplementedError

    def ping(self) -> None:
        """Raise unless the server answers a query."""
        raise NotImplementedError

    def after_start(self) -> None:
        """Set-up once the server answers (e.g. create the test database)."""

    def popen_user(self) -> dict[str, Any]:
        return {}

    def popen_env(self) -> dict[str, str] | None:
        """The server's environment (None: ours)."""
        return None

    # -- control

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> DbServer:
        """Start on this port and data dir and wait until it answers; DbUnavailable if it does not."""
        if self.running:
            return self
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaches every child
                env=self.popen_env(),
                **self.popen_user(),
            )
        _LIVE.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise DbUnavailable(
                    f"{self.kind} on port {self.port} exited with {self.proc.returncode}:\n{_tail(self.log_path)}"
                )
            try:
                self.ping()
                break
            except Exception as exc:  # noqa: BLE001 - any failure to answer means "not ready yet"
                if time.monotonic() > deadline:
                    self.stop("kill")
                    raise DbUnavailable(f"{self.kind} on port {self.port} did not answer: {exc}") from exc
                time.sleep(0.02)
        self.after_start()
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown; ``immediate``: a crash without clean shutdown (PostgreSQL's own immediate
        mode; SIGKILL for the others); ``kill``: SIGKILL to the whole process group, which is a crash of the
        machine as far as the server can tell. Waits until the process is gone."""
        if mode not in ("fast", "immediate", "kill"):
            raise ValueError(f"stop mode {mode!r}: fast, immediate or kill")
        if not self.running:
            return
        assert self.proc is not None
        sig = {"fast": self.stop_signal, "immediate": self.immediate_signal}.get(mode)
        if sig is not None:
            self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT)
                return
        self._kill_group()  # kill mode, no immediate mode of its own, or a stop that hung

    def kill(self) -> None:
        """SIGKILL the server and its children."""
        self.stop("kill")

    def restart(self, mode: str = "fast") -> DbServer:
        """Stop (if running) with ``mode`` and start again on the same port and data."""
        self.stop(mode)
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: the server still accepts TCP connections (the kernel does) but never answers."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def cleanup(self) -> None:
        """Stop the server (whatever its state) and delete its directory. The data is thrown away, so the stop
        is an immediate one (PostgreSQL still frees its shared memory; the others are killed)."""
        if self.running:
            self.resume()
            self.stop("immediate")
        _LIVE.discard(self)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def _kill_group(self) -> None:
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()


class PostgresServer(DbServer):
    kind = "postgres"
    stop_signal = signal.SIGINT  # PostgreSQL's "fast" shutdown: ends sessions, checkpoints, exits
    immediate_signal = signal.SIGQUIT  # "immediate" shutdown: no checkpoint, crash recovery at the next start

    def __init__(self, directory: Path, port: int, bin_dir: str, env: dict[str, str] | None = None) -> None:
        super().__init__(directory, port)
        self.bin_dir = bin_dir
        self.env = env  # more environment for the server, e.g. PYTHONPATH for PL/Python

    def promote(self) -> None:
        """A standby becomes a primary (``pg_ctl promote``, which waits until it accepts writes)."""
        _run([f"{self.bin_dir}/pg_ctl", "promote", "-w", "-t", "30", "-D", str(self.data_dir)], "pg_ctl promote",
             **_as_postgres_user())  # fmt: skip

    def replicate_synchronously(self) -> None:
        """On a primary with a standby attached: from now on a COMMIT returns only once every standby has applied
        it (``synchronous_standby_names = '*'``, ``synchronous_commit = remote_apply``). Set with ALTER SYSTEM,
        after the standby was cloned, so that the standby does not inherit it: once promoted it must not wait for
        a standby of its own."""
        with self.connect() as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("ALTER SYSTEM SET synchronous_commit = 'remote_apply'")
            conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + START_TIMEOUT
            query = "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
            while conn.execute(query).fetchone()[0] == 0:
                if time.monotonic() > deadline:
                    raise DbUnavailable(f"no synchronous standby attached to {self!r}")
                time.sleep(0.02)

    @property
    def conninfo(self) -> str:
        return f"host={self.host} port={self.port} user=postgres dbname=postgres"

    def store_options(self, **extra: Any) -> dict[str, Any]:
        return {"conninfo": self.conninfo, **extra}

    def connect(self, autocommit: bool = True) -> Any:
        import psycopg

        return psycopg.connect(self.conninfo, autocommit=autocommit, connect_timeout=5)

    def command(self) -> list[str]:
        return [
            f"{self.bin_dir}/postgres",
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-k", str(self.dir),  # its Unix socket in our dir, not /var/run/postgresql
            "-c", "listen_addresses=127.0.0.1",
            # After a crash PostgreSQL syncs its data dir before recovery: one syncfs() instead of an fsync per
            # file (2.5 s here). fsync itself stays on, as in production.
            "-c", "recovery_init_sync_method=syncfs",
        ]  # fmt: skip

    def ping(self) -> None:
        with self.connect() as conn:
            conn.execute("SELECT 1")

    def popen_user(self) -> dict[str, Any]:
        return _as_postgres_user()

    def popen_env(self) -> dict[str, str] | None:
        return {**os.environ, **self.env} if self.env else None


class MariaDbServer(DbServer):
    kind = "mariadb"
    database = "test"
    #: Small InnoDB files: the data dir is copied for every instance.
    INNODB = ["--innodb-log-file-size=4M", "--innodb-data-file-path=ibdata1:4M:autoextend"]

    def store_options(self, **extra: Any) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": "root", "password": "", "db": self.database, **extra}

    def connect(self, database: str | None = "test", autocommit: bool = True) -> Any:
        import pymysql

        return pymysql.connect(
            host=self.host, port=self.port, user="root", password="", database=database, autocommit=autocommit,
            connect_timeout=5,
        )  # fmt: skip

    def command(self) -> list[str]:
        return [
            _find("mariadbd", "/usr/sbin/mariadbd"),
            "--no-defaults",
            f"--datadir={self.data_dir}",
            *(["--user=root"] if IS_ROOT else []),
            f"--bind-address={self.host}",
            f"--port={self.port}",
            f"--socket={self.dir}/sock",
            f"--pid-file={self.dir}/pid",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            *self.INNODB,
        ]

    def ping(self) -> None:
        self.connect(database=None).close()

    def after_start(self) -> None:
        conn = self.connect(database=None)
        try:
            conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        finally:
            conn.close()


class RedisServer(DbServer):
    kind = "redis"

    def store_options(self, **extra: Any) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, **extra}

    def connect(self, db: int = 0) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries: redis-py's default backs off for seconds, which would slow every readiness probe.
        return redis.Redis(host=self.host, port=self.port, db=db, socket_timeout=5, retry=Retry(NoBackoff(), 0))

    def command(self) -> list[str]:
        # The append-only file with an fsync per write: the configuration under which Redis keeps an acknowledged
        # write across a crash, so a restart() or kill() shows what a durable deployment keeps.
        return [
            _find("redis-server", "/usr/bin/redis-server"),
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--daemonize", "no",
        ]  # fmt: skip

    def ping(self) -> None:
        client = self.connect()
        try:
            client.ping()
        finally:
            client.close()


class MemcachedServer(DbServer):
    """memcached keeps nothing across a restart: ``restart()`` and ``kill()`` give an empty cache, by design."""

    kind = "memcached"
    #: Cache size (MB): small, as each test's server is its own.
    MEMORY_MB = 64

    def __init__(self, directory: Path, port: int, options: tuple[str, ...] = ()) -> None:
        super().__init__(directory, port)
        self.options = options  # more memcached options, e.g. ("-M",) or ("-o", "no_lru_crawler")

    @property
    def servers(self) -> str:
        return f"{self.host}:{self.port}"

    def store_options(self, **extra: Any) -> dict[str, Any]:
        return {"servers": self.servers, **extra}

    def connect(self) -> Any:
        from pymemcache.client.base import Client

        # noreply off: a test sees memcached's answer to every write
        return Client((self.host, self.port), connect_timeout=5, timeout=5, default_noreply=False)

    def command(self) -> list[str]:
        return [
            _find("memcached", "/usr/bin/memcached"),
            "--listen", self.host,
            "--port", str(self.port),
            "--udp-port", "0",
            "--memory-limit", str(self.MEMORY_MB),
            *(["--user", "root"] if IS_ROOT else []),  # memcached refuses to run as root without it
            *self.options,
        ]  # fmt: skip

    def ping(self) -> None:
        with socket.create_connection((self.host, self.port), timeout=5) as conn:
            conn.sendall(b"version\r\n")
            if not conn.recv(100).startswith(b"VERSION "):
                raise DbUnavailable("memcached did not answer version")


# -- templates and start functions


def _as_postgres_user() -> dict[str, Any]:
    """initdb and postgres refuse to run as root: as root, run them as the ``postgres`` user."""
    if not IS_ROOT:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def _template(root: Path, name: str, create: Callable[[Path], None]) -> Path:
    """A data directory made once per session root (by ``create``) and copied for each instance."""
    path = root / f"template-{name}"
    if not path.exists():
        staging = root / f"template-{name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        create(staging)
        staging.rename(path)
    return path


def _run(args: list[str], what: str, **kwargs: Any) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, **kwargs)
    if result.returncode != 0:
        raise DbUnavailable(f"{what} failed ({result.returncode}): {(result.stderr or result.stdout)[-2000:]}")


def _instance_dir(root: Path, kind: str) -> Path:
    directory = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=root))
    directory.chmod(0o755)
    return directory


def _start(server_for_port: Callable[[int], DbServer], template: Path | Callable[[Path], None]) -> DbServer:
    """Copy the template into the instance's dir (or make its data dir with ``template(data_dir)``) and start
    it; retry on a new port if the bind was lost."""
    for attempt in range(START_ATTEMPTS):
        server = server_for_port(free_port())
        shutil.rmtree(server.data_dir, ignore_errors=True)
        if callable(template):
            template(server.data_dir)
        else:
            _run(["cp", "-a", str(template), str(server.data_dir)], "copy of the data template")
        try:
            return server.start()
        except DbUnavailable:
            server.cleanup()
            if attempt == START_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def start_postgres(root: Path, env: dict[str, str] | None = None, plpython: bool = False) -> PostgresServer:
    """A PostgreSQL server (user postgres, trust auth, database postgres) on a free port, with ``env`` added to
    its environment. ``plpython``: the server must have PL/Python 3 (DbUnavailable without its package)."""
    bin_dir = os.path.dirname(_find("/usr/lib/postgresql/*/bin/postgres"))
    if plpython:
        version = Path(bin_dir).parent.name
        if not os.path.exists(f"{Path(bin_dir).parent}/lib/plpython3.so"):
            raise DbUnavailable(
                f"plpython3u not found for PostgreSQL {version}: postgresql-plpython3-{version} is not installed "
                "(scripts/setup --test installs it)"
            )
    user = _as_postgres_user()

    def initdb(path: Path) -> None:
        path.mkdir(mode=0o700)
        if IS_ROOT:
            shutil.chown(path, "postgres", "postgres")
        args = [f"{bin_dir}/initdb", "-D", str(path), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]
        _run(args, "initdb", **user)

    template = _template(root, "postgres", initdb)

    def server(port: int) -> PostgresServer:
        directory = _instance_dir(root, "postgres")
        if IS_ROOT:
            shutil.chown(directory, "postgres", "postgres")  # its Unix socket and lock file go here
        return PostgresServer(directory, port, bin_dir, env)

    return _start(server, template)  # type: ignore[return-value]


def start_postgres_standby(primary: PostgresServer, root: Path) -> PostgresServer:
    """A streaming standby of ``primary`` on a free port: ``pg_basebackup -R`` (its primary_conninfo points at
    ``primary``), started as a hot standby that answers read-only queries."""

    def clone(path: Path) -> None:
        args = [f"{primary.bin_dir}/pg_basebackup", "-h", primary.host, "-p", str(primary.port), "-U", "postgres",
                "-D", str(path), "-R", "-X", "stream", "-c", "fast", "--no-sync"]  # fmt: skip
        _run(args, "pg_basebackup", **_as_postgres_user())

    def server(port: int) -> PostgresServer:
        directory = _instance_dir(root, "postgres-standby")
        if IS_ROOT:
            shutil.chown(directory, "postgres", "postgres")
        return PostgresServer(directory, port, primary.bin_dir, primary.env)

    return _start(server, clone)  # type: ignore[return-value]


def start_mariadb(root: Path) -> MariaDbServer:
    """A MariaDB server (root with an empty password over TCP, database ``test``) on a free port."""
    install_db = _find("mariadb-install-db", "/usr/bin/mariadb-install-db")

    def install(path: Path) -> None:
        args = [install_db, "--no-defaults", f"--datadir={path}", "--auth-root-authentication-method=normal"]
        args += ["--skip-test-db", *MariaDbServer.INNODB] + (["--user=root"] if IS_ROOT else [])
        _run(args, "mariadb-install-db")

    template = _template(root, "mariadb", install)
    return _start(lambda port: MariaDbServer(_instance_dir(root, "mariadb"), port), template)  # type: ignore[return-value]


def start_redis(root: Path) -> RedisServer:
    """A Redis server (no password, AOF with fsync per write) on a free port."""

    def empty(path: Path) -> None:
        path.mkdir()

    template = _template(root, "redis", empty)
    return _start(lambda port: RedisServer(_instance_dir(root, "redis"), port), template)  # type: ignore[return-value]


def start_memcached(root: Path, *options: str) -> MemcachedServer:
    """A memcached server (64 MB, no UDP, no persistence, and these options) on a free port."""

    def empty(path: Path) -> None:
        path.mkdir()

    template = _template(root, "memcached", empty)  # memcached has no data dir; the copy keeps _start uniform
    return _start(lambda port: MemcachedServer(_instance_dir(root, "memcached"), port, options), template)  # type: ignore[return-value]


@atexit.register
def _kill_leftovers() -> None:
    """If the test process ends without its teardown (an interrupt), no server outlives it."""
    for server in list(_LIVE):
        server.resume()
        server.kill()
