"""`gearadmin`: the admin tool, option-compatible with gearmand's (reference §3.4).

Unlike the C tool it reads list replies up to their `.` line instead of stopping after 5 ms of silence,
and it exits 1 when the server answers ERR (the C tool prints the error but exits 0).
"""

from __future__ import annotations

import argparse
import socket
import sys

#: option -> admin command, in the order the C tool runs them
COMMANDS = [
    ("status", "status"),
    ("priority_status", "prioritystatus"),
    ("workers", "workers"),
    ("server_version", "version"),
    ("server_verbose", "verbose"),
    ("getpid", "getpid"),
    ("show_jobs", "show jobs"),
    ("show_unique_jobs", "show unique jobs"),
    ("show_dead_jobs", "show dead jobs"),
    ("show_store", "show store"),
    ("shutdown", "shutdown"),
]
WITH_ARGUMENT = [
    ("cancel_job", "cancel job"),
    ("create_function", "create function"),
    ("drop_function", "drop function"),
    ("requeue_dead_job", "requeue dead"),
    ("delete_dead_job", "delete dead"),
]
LIST_COMMANDS = {"status", "prioritystatus", "workers", "show jobs", "show unique jobs", "show dead jobs", "show store"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gearadmin", add_help=False, description="Gearman server admin tool")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-h", "--host", default="localhost", help="server host (default localhost)")
    p.add_argument("-p", "--port", default="4730", help="server port (default 4730)")
    p.add_argument("-t", "--timeout", type=float, default=10.0, help="seconds to wait for a reply (default 10)")
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


def read_reply(sock: socket.socket, command: str) -> bytes:
    data = b""
    is_list = command in LIST_COMMANDS
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
        if data.startswith(b"ERR") and data.endswith(b"\n"):
            return data
        if is_list:
            if data == b".\n" or data.endswith(b"\n.\n"):
                return data
        elif data.endswith(b"\n"):
            return data


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    commands = [cmd for attr, cmd in COMMANDS if getattr(args, attr)]
    commands += [f"{cmd} {getattr(args, attr)}" for attr, cmd in WITH_ARGUMENT if getattr(args, attr)]
    if not commands:
        print("No option execution operation given.", file=sys.stderr)
        build_parser().print_usage(sys.stderr)
        return 1
    status = 0
    try:
        with socket.create_connection((args.host, int(args.port)), timeout=args.timeout) as sock:
            for command in commands:
                sock.sendall(command.encode() + b"\r\n")
                reply = read_reply(sock, command)
                text = reply.decode("utf-8", "replace")
                if text.startswith("OK\r\n") or text == "OK\n":
                    print("OK")
                elif text.startswith("OK "):
                    print(text[3:].rstrip("\r\n"))
                elif text.startswith("ERR "):
                    print("Error: " + text[4:].rstrip("\r\n"), file=sys.stderr)
                    status = 1
                else:
                    sys.stdout.write(text)
    except (OSError, ValueError) as error:
        print(f"gearadmin: cannot talk to {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
