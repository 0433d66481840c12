"""`gearmand`: run the job server with gearmand 1.1's command line (plus --config FILE)."""

from __future__ import annotations

import logging
import os
import pwd
import resource
import signal
import sys

import protocols
from gearman_gateway import logs
from gearman_gateway.allocator import settle_collector, tune_for_large_payloads
from gearman_gateway.cli.daemon import Daemon
from gearman_gateway.config import LEVELS, ConfigError, Settings, choose_reactor, parse_args
from gearman_gateway.durability import sqlite_queue_file
from gearman_gateway.security import TokenError, new_token
from gearman_gateway.security import hash_token as hash_token_text

log = logging.getLogger("gearman_gateway.server")
NOTICE = LEVELS["NOTICE"]


def _raise_fd_limit(wanted: int) -> None:
    """Idle worker connections are cheap here; do not let the default soft limit of 1024 cap them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if not wanted else (min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            log.warning("could not raise the file descriptor limit to %d: %s", target, error)


def _switch_user(name: str, settings: Settings) -> None:
    """Drop root after binding. The sqlite queue's directory and files (the database, its -wal and -shm,
    the lock file, and an earlier version's file it takes over) become the user's first, so the store can
    lock, write, reconnect and remove an empty file as that user."""
    entry = pwd.getpwnam(name)
    if settings.queue_type == "sqlite":
        queue_file = sqlite_queue_file(settings)
        directory = os.path.dirname(os.path.abspath(queue_file.path))
        os.makedirs(directory, exist_ok=True)
        if queue_file.ours:  # the data directory is ours to give
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        elif not _writable_by(directory, entry.pw_uid, entry.pw_gid):
            # a file the user named may sit in a directory others use (/var/lib): never give that away
            raise RuntimeError(
                f"user {name} cannot write {directory}, the directory of the queue file {queue_file.path} "
                f"({queue_file.option}); sqlite needs to make its -wal, -shm and lock files there: "
                "give the user a directory of its own"
            )
        for target in queue_file.files():
            if os.path.exists(target):
                os.chown(target, entry.pw_uid, entry.pw_gid)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def _writable_by(directory: str, uid: int, gid: int) -> bool:
    """Whether a user may create files in ``directory`` (by its mode bits; root's own access says nothing)."""
    info = os.stat(directory)
    if info.st_uid == uid:
        return bool(info.st_mode & 0o300 == 0o300)
    if info.st_gid == gid:
        return bool(info.st_mode & 0o030 == 0o030)
    return bool(info.st_mode & 0o003 == 0o003)


def _write_pid_file(path: str) -> None:
    try:
        with open(path, "w") as pid_file:
            pid_file.write(f"{os.getpid()}\n")
    except OSError as error:  # one sentence, not Python's "[Errno 2] ...: '/x'"
        raise RuntimeError(f"cannot write the pid file {path} (--pid-file): {error.strerror}") from None


def run(settings: Settings) -> int:
    if settings.user:
        try:
            pwd.getpwnam(settings.user)
        except KeyError:
            print(f"gearmand: error: unknown user {settings.user!r}", file=sys.stderr)
            return 2
    daemon = Daemon()
    if settings.daemon:
        daemon.detach()
    try:
        handler = logs.setup(settings.log_file, settings.verbose)
    except OSError as error:
        message = f"gearmand: cannot open log file {settings.log_file}: {error.strerror}"
        daemon.report(message)
        print(message, file=sys.stderr)
        return 1
    _raise_fd_limit(settings.file_descriptors)
    tune_for_large_payloads()

    from gearman_gateway.reactor import install

    kind, needed_by = choose_reactor(settings)  # before the reactor is installed: a frontend may need asyncio
    if needed_by and settings.reactor is None:
        log.log(NOTICE, "running on the %s reactor: the %s frontend needs it", kind, " and ".join(needed_by))
    try:
        reactor = install(kind)
    except Exception as error:  # uvloop missing; a reactor installed already (by a frontend package's import)
        culprits = protocols.REACTOR_IMPORTED_BY
        why = str(error)
        if culprits:
            why = (
                f"the frontend package {', '.join(culprits)} imports twisted.internet.reactor when loaded, which "
                "installs Twisted's default reactor before gearmand can choose one: uninstall it or have it import "
                "the reactor only in build()"
            )
        message = f"gearmand: cannot start: {why}"
        daemon.report(message)
        print(message, file=sys.stderr)
        return 1

    from gearman_gateway.server import Server

    server: Server | None = None

    def on_signal(signum: int, frame: object) -> None:
        if server is None:
            raise SystemExit(1)
        if signum == signal.SIGUSR1:
            reactor.callFromThread(server.shutdown, True)
        elif signum == signal.SIGHUP:
            reactor.callFromThread(logs.reopen, handler)
        else:
            reactor.callFromThread(server.shutdown, False)

    # before anything listens, so a signal that arrives as soon as the port answers is handled
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP):
        signal.signal(signum, on_signal)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        server = Server(settings, reactor)
        user = settings.user
        server.start(after_binding=(lambda: _switch_user(user, settings)) if user else None)
        if settings.pid_file:
            _write_pid_file(settings.pid_file)
    except Exception as error:  # bind failures, store unreachable, permissions: say why and stop
        message = f"gearmand: cannot start: {error}"
        log.critical(message)
        daemon.report(message)
        if not settings.daemon and settings.log_file != "stderr":
            print(message, file=sys.stderr)
        return 1
    daemon.report(None)
    log.log(NOTICE, "gearmand (gearman-gateway) started, pid %d", os.getpid())
    settle_collector()
    reactor.run(installSignalHandlers=False)
    if settings.pid_file:
        try:
            os.unlink(settings.pid_file)
        except OSError:
            pass
    log.log(NOTICE, "shutdown complete")
    return 0


def hash_token(args: list[str]) -> int:
    """``gearmand --hash-token [TOKEN]``: the line an identity's ``token:`` takes (a new random token first,
    when none is given: that one goes to the clients, the hash to the config)."""
    given = args[0].partition("=")[2] or (args[1] if len(args) > 1 else "")
    token = given or new_token()
    try:
        hashed = hash_token_text(token)
    except TokenError as error:
        print(f"gearmand: error: {error}", file=sys.stderr)
        return 2
    if not given:
        print(f"token: {token}")
    print(f"hash:  {hashed}" if not given else hashed)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0].partition("=")[0] == "--hash-token":
        return hash_token(args)
    try:
        settings = parse_args(args)
    except ConfigError as error:
        print(f"gearmand: error: {error}", file=sys.stderr)
        return 2
    if settings.check_args:
        return 0
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
