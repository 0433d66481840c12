"""`gearadmin`: the admin tool, option-compatible with gearmand's (reference §3.4).

What a command prints is byte for byte what Debian's gearadmin 1.1.20 prints, in the same order when
several options are given (the C tool runs them in a fixed order, not in the order typed). Deliberate
differences: it reads list replies up to their `.` line instead of stopping after 5 ms of silence; it
exits 1 when the server answers ERR or the connection fails (the C tool exits 0 on ERR); and every
error is one line on standard error.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import ssl
import sys
from typing import NoReturn

from gearman_gateway.cli import TOKEN_VARIABLE
from gearman_gateway.clientlib.tls import tool_context

#: Option -> admin command, in the order the C tool runs them (it pushes them on a stack in the reverse
#: order); our own commands come after gearmand's.
COMMANDS = [
    ("getpid", "getpid"),
    ("create_function", "create function"),
    ("drop_function", "drop function"),
    ("show_jobs", "show jobs"),
    ("show_unique_jobs", "show unique jobs"),
    ("cancel_job", "cancel job"),
    ("server_verbose", "verbose"),
    ("server_version", "version"),
    ("workers", "workers"),
    ("priority_status", "prioritystatus"),
    ("status", "status"),
    ("requeue_dead_job", "requeue dead"),
    ("delete_dead_job", "delete dead"),
    ("show_dead_jobs", "show dead jobs"),
    ("show_store", "show store"),
    ("shutdown", "shutdown"),
]
LIST_COMMANDS = {"status", "prioritystatus", "workers", "show jobs", "show unique jobs", "show dead jobs", "show store"}
#: Exit status when a command's reply is ERR, or the server cannot be talked to.
FAILED = 1


class AdminError(Exception):
    """A one-line error for the user."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not argparse's usage block (the C tool also exits 1 on a bad option)."""
        self.exit(FAILED, f"gearadmin: {message} (--help lists the options)\n")


def build_parser() -> Parser:
    p = Parser(
        prog="gearadmin",
        add_help=False,
        description="Gearman server admin tool",
        epilog=f"{TOKEN_VARIABLE}=TOKEN in the environment: run the commands as that identity (docs/security.md)",
    )
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-h", "--host", default="localhost", help="server host (default localhost)")
    p.add_argument("-p", "--port", default="4730", help="server port number or service name (default 4730)")
    p.add_argument("-t", "--timeout", type=float, default=10.0, help="seconds to wait for a reply (default 10)")
    p.add_argument("-S", "--ssl", action="store_true", help="TLS (SSL) connection")
    p.add_argument(
        "--ssl-ca-file", metavar="FILE", help="with -S: CAs to verify the server with (default: the system's)"
    )
    p.add_argument("--ssl-certificate", metavar="FILE", help="with -S: client certificate to present (PEM)")
    p.add_argument("--ssl-key", metavar="FILE", help="with -S: the key of --ssl-certificate (PEM)")
    p.add_argument("--status", action="store_true", help="functions with queued, running and worker counts")
    p.add_argument("--priority-status", action="store_true", help="queued jobs per priority")
    p.add_argument("--workers", action="store_true", help="connections and their functions")
    p.add_argument("--server-version", action="store_true", help="server version")
    p.add_argument("--server-verbose", action="store_true", help="server log level")
    p.add_argument("--getpid", action="store_true", help="server process id")
    p.add_argument("--show-jobs", action="store_true", help="jobs in memory")
    p.add_argument("--show-unique-jobs", action="store_true", help="unique keys of jobs in memory")
    p.add_argument("--cancel-job", metavar="HANDLE", help="remove a job")
    p.add_argument("--create-function", metavar="NAME", help="create a function")
    p.add_argument("--drop-function", metavar="NAME", help="drop a function nobody serves")
    p.add_argument("--show-dead-jobs", action="store_true", help="background jobs that failed for good")
    p.add_argument("--show-store", action="store_true", help="the durable queue's state")
    p.add_argument("--requeue-dead-job", metavar="HANDLE", help="run a dead job again ('all' for every one)")
    p.add_argument("--delete-dead-job", metavar="HANDLE", help="forget a dead job ('all' for every one)")
    p.add_argument("--shutdown", action="store_true", help="stop the server (loopback only by default)")
    return p


def commands(args: argparse.Namespace) -> list[bytes]:
    """The admin lines to send, in the C tool's order; an option's argument goes as the user's bytes."""
    lines = []
    for attr, command in COMMANDS:
        value = getattr(args, attr)
        if value is True:
            lines.append(command.encode())
        elif value:
            argument = os.fsencode(value)
            if any(c in argument for c in b"\r\n\0"):
                raise AdminError(f"--{attr.replace('_', '-')}: the argument cannot contain a line break or NUL")
            lines.append(command.encode() + b" " + argument)
    return lines


def port_number(text: str) -> int:
    """A number, or a service name as the C tool accepts (`-p gearman` where /etc/services has it)."""
    try:
        port = int(text, 10)
    except ValueError:
        try:
            return socket.getservbyname(text, "tcp")
        except OSError:
            raise AdminError(f"-p {text}: not a port number or a known service name") from None
    if not 0 < port < 65536:
        raise AdminError(f"-p {text}: port out of range (1-65535)")
    return port


def connect(host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls is None:
            return sock
        try:
            return tls.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
    except ssl.SSLError as error:
        raise AdminError(f"TLS with {host}:{port} failed: {error.reason or error}") from None
    except UnicodeError:  # the IDNA codec refuses it before any lookup (an empty or too long label)
        raise AdminError(f"cannot connect to {host}:{port}: bad host name") from None
    except TimeoutError:
        raise AdminError(f"cannot connect to {host}:{port}: no answer within {timeout:g} s") from None
    except OSError as error:
        raise AdminError(f"cannot connect to {host}:{port}: {error.strerror or error}") from None


def read_reply(sock: socket.socket, command: bytes) -> bytes | None:
    """One whole reply: a line, or a list up to its `.` line. None when the server closed first."""
    data = b""
    is_list = command.decode("ascii", "replace") in LIST_COMMANDS
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
        if data.startswith(b"ERR") and data.endswith(b"\n"):
            return data
        if is_list:
            if data == b".\n" or data.endswith(b"\n.\n"):
                return data
        elif data.endswith(b"\n"):
            return data


def show(reply: bytes, stdout: int, stderr: int) -> bool:
    """Print a reply as the C tool does; False for ERR."""
    if reply.startswith(b"OK\r"):
        _write(stdout, b"OK\n")
    elif reply.startswith(b"OK "):
        _write(stdout, reply[3:])
    elif reply.startswith(b"ERR "):
        _write(stderr, b"Error: " + reply[4:])
        return False
    else:
        _write(stdout, reply)
    return True


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """-S: TLS, verifying the server against --ssl-ca-file (else the system's CAs)."""
    files = (args.ssl_ca_file, args.ssl_certificate, args.ssl_key)
    if not args.ssl:
        if any(files):
            raise AdminError("--ssl-ca-file, --ssl-certificate and --ssl-key need -S (--ssl)")
        return None
    try:
        return tool_context(*files)
    except ValueError as error:
        raise AdminError(str(error)) from None


def run(args: argparse.Namespace, lines: list[bytes]) -> int:
    host = args.host
    port = port_number(args.port)
    status = 0
    token = os.environ.get(TOKEN_VARIABLE)
    with connect(host, port, args.timeout, tls_context(args)) as sock:
        if token:  # the identity's token first (docs/security.md): `auth TOKEN` answers OK <identity>
            lines = [b"auth " + os.fsencode(token), *lines]
        for line in lines:
            try:
                sock.sendall(line + b"\r\n")
                reply = read_reply(sock, line)
            except TimeoutError:
                raise AdminError(f"no reply from {host}:{port} within {args.timeout:g} s") from None
            except OSError as error:
                raise AdminError(f"lost the connection to {host}:{port}: {error.strerror or error}") from None
            if reply is None:
                raise AdminError(f"{host}:{port} closed the connection before replying to {line.decode()!r}")
            if line.startswith(b"auth "):
                if reply.startswith(b"ERR"):
                    raise AdminError(f"{TOKEN_VARIABLE} refused: {reply[4:].decode(errors='replace').strip()}")
                continue
            if not show(reply, 1, 2):
                status = FAILED
    return status


#: Longest -t accepted: a day (a socket timeout must fit in C's time types).
MAX_TIMEOUT = 86400


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        if not 0 < args.timeout <= MAX_TIMEOUT:  # also inf and nan, which sockets refuse with a traceback
            raise AdminError(f"-t {args.timeout:g}: the timeout must be a number of seconds from 0 to {MAX_TIMEOUT}")
        lines = commands(args)
        if not lines:
            raise AdminError("No option execution operation given. (--help lists the options)")
        return run(args, lines)
    except AdminError as error:
        _say(f"gearadmin: {error}\n")
        return FAILED
    except BrokenPipeError:  # stdout closed early (`gearadmin --workers | head -1`): quiet, as `yes | head`
        _die_by(signal.SIGPIPE)
    except KeyboardInterrupt:
        _die_by(signal.SIGINT)


def _say(text: str) -> None:
    try:
        _write(2, text.encode(errors="replace"))
    except OSError:
        pass


def _die_by(signum: int) -> NoReturn:
    """End as the C tool would when killed by ``signum``, so that shells and scripts see the same status."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
