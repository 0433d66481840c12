"""`gearman`: run jobs from the shell, or serve a function with a shell command (gearmand §6.2).

Flag-compatible with the C tool of gearmand 1.1.20 (same getopt string, GNU argument permutation, `--`
ends the options, GEARMAN_SERVER overrides -h/-p), built on this package's Client and Worker.

    ls / | gearman -n -f upper             # client: one job per line
    gearman -f resize < large.jpg > thumb.jpg
    gearman -w -f wc -- wc -l              # worker: the command gets the workload on stdin

Where the C tool misbehaves we do the sensible thing (see docs/client.md): failures to connect and
timeouts exit 1 (the C tool exits 0), -n/-N handle lines of any length, -N strips only a newline, and a
worker in -n mode sends each output line once (the C tool re-sends everything read so far).
"""

from __future__ import annotations

import getopt
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from gearman_gateway.client import Client, Task, TaskState
from gearman_gateway.clientlib.errors import WORK_FAIL, GearmanError, GearmanTimeout
from gearman_gateway.worker import Job, Worker

#: The C tool's getopt string; every flag means what it means there.
OPTSTRING = "bc:f:h:HILnNp:Pst:u:vwi:dS"

USAGE = """Client mode: {name} [options] [<data>]
Worker mode: {name} -w [options] [<command> [<args> ...]]

Common options to both client and worker modes.
\t-f <function> - Function name to use for jobs (can give many)
\t-h <host>     - Job server host
\t-H            - Print this help menu
\t-v            - Print diagnostic information to stdout(false)
\t-p <port>     - Job server port
\t-t <timeout>  - Timeout in milliseconds
\t-i <pidfile>  - Create a pidfile for the process
\t-S            - Enable SSL connections (not supported here)

Client options:
\t-b            - Run jobs in the background(false)
\t-I            - Run jobs as high priority
\t-L            - Run jobs as low priority
\t-n            - Run one job per line(false)
\t-N            - Same as -n, but strip off the newline(false)
\t-P            - Prefix all output lines with functions names
\t-s            - Send job without reading from standard input
\t-u <unique>   - Unique key to use for job

Worker options:
\t-c <count>    - Number of jobs for worker to run before exiting
\t-n            - Send data packet for each line(false)
\t-N            - Same as -n, but strip off the newline(false)
\t-w            - Run in worker mode(false)
"""

#: Width of the progress bar drawn on a terminal's stderr (the bar, not counting the label).
BAR_WIDTH = 30


@dataclass
class Args:
    functions: list[str] = field(default_factory=list)
    host: str = "localhost"
    port: int = 4730
    timeout_ms: int = -1
    pid_file: str | None = None
    daemon: bool = False
    ssl: bool = False
    verbose: bool = False
    background: bool = False
    priority: str = "normal"
    per_line: bool = False
    strip_newline: bool = False
    prefix: bool = False
    no_input: bool = False
    unique: str | None = None
    worker: bool = False
    count: int = 0
    arguments: list[str] = field(default_factory=list)


class UsageError(Exception):
    pass


def atoi(text: str) -> int:
    """C's atoi, as the C tool reads -c, -p and -t: leading digits, anything else is 0."""
    text = text.strip()
    sign, digits = (-1, text[1:]) if text[:1] == "-" else (1, text.lstrip("+"))
    end = 0
    while end < len(digits) and digits[end].isdigit():
        end += 1
    return sign * int(digits[:end]) if end else 0


#: Flags without a value: the Args attribute each sets, and to what.
SWITCHES: dict[str, tuple[str, object]] = {
    "-b": ("background", True),
    "-d": ("daemon", True),
    "-I": ("priority", "high"),
    "-L": ("priority", "low"),
    "-n": ("per_line", True),
    "-P": ("prefix", True),
    "-s": ("no_input", True),
    "-S": ("ssl", True),
    "-v": ("verbose", True),
    "-w": ("worker", True),
}
#: Flags with a value: the Args attribute and how the C tool reads the value.
VALUES: dict[str, tuple[str, Callable[[str], object]]] = {
    "-c": ("count", atoi),
    "-h": ("host", str),
    "-i": ("pid_file", str),
    "-p": ("port", lambda value: atoi(value) or 4730),
    "-t": ("timeout_ms", atoi),
    "-u": ("unique", str),
}


def parse_args(argv: list[str]) -> tuple[Args, bool]:
    """Options as the C tool reads them; returns (args, help wanted)."""
    try:
        options, rest = getopt.gnu_getopt(argv, OPTSTRING)
    except getopt.GetoptError as error:
        raise UsageError(f"-{error.opt}" if error.opt else str(error)) from None
    args = Args(arguments=rest)
    wants_help = False
    for flag, value in options:
        if flag in SWITCHES:
            attribute, setting = SWITCHES[flag]
            setattr(args, attribute, setting)
        elif flag in VALUES:
            attribute, convert = VALUES[flag]
            setattr(args, attribute, convert(value))
        elif flag == "-f":
            args.functions.append(value)
        elif flag == "-N":
            args.per_line = args.strip_newline = True
        elif flag == "-H":
            wants_help = True
    if not wants_help and not args.functions:
        raise UsageError("No Functions were provided")
    return args, wants_help


def servers(args: Args) -> str:
    """GEARMAN_SERVER (host:port,...) wins over -h/-p, as in the C tool."""
    return os.environ.get("GEARMAN_SERVER") or f"{args.host}:{args.port}"


# -- client mode


class ClientOutput:
    """The C tool's output routing: data and results to stdout; warnings, exceptions, failures to stderr."""

    def __init__(self, args: Args, stdout: BinaryIO, stderr: BinaryIO, bar: bool) -> None:
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.bar = bar
        self.bar_shown = False
        self.failed = False

    def _write(self, stream: BinaryIO, task: Task, data: bytes) -> None:
        self._clear_bar()
        if self.args.prefix:
            data = task._function + b": " + data
        stream.write(data)
        stream.flush()

    def created(self, task: Task) -> None:
        if self.args.verbose:
            self.stdout.write(f"Task created: {task.handle}\n".encode())
            self.stdout.flush()

    def data(self, task: Task) -> None:
        self._write(self.stdout, task, task.data)

    def warning(self, task: Task) -> None:
        self._write(self.stderr, task, task.data)

    def status(self, task: Task) -> None:
        percent = task.numerator * 100 // task.denominator if task.denominator else 0
        self._write(self.stdout, task, b"%d%% Complete\n" % percent)
        if self.bar:
            self._draw_bar(task, percent)

    def fail(self, task: Task) -> None:
        self.failed = True
        if task.state is TaskState.ERROR:
            self._write(self.stderr, task, f"gearman: {task.error}\n".encode())
        else:
            self._write(self.stderr, task, b"Job failed\n")

    def _draw_bar(self, task: Task, percent: int) -> None:
        filled = BAR_WIDTH * max(0, min(percent, 100)) // 100
        label = f"{task.function} " if self.args.prefix or len(self.args.functions) > 1 else ""
        self.stderr.write(f"\r{label}[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:3d}%".encode())
        self.stderr.flush()
        self.bar_shown = True

    def _clear_bar(self) -> None:
        if self.bar_shown:
            self.stderr.write(b"\r\x1b[K")
            self.stderr.flush()
            self.bar_shown = False


def workloads(args: Args, stdin: BinaryIO) -> Iterator[bytes]:
    if args.arguments:
        for argument in args.arguments:
            yield os.fsencode(argument)
    elif args.no_input:
        yield b""
    elif args.per_line:
        for line in stdin:
            yield line[:-1] if args.strip_newline and line.endswith(b"\n") else line
    else:
        yield stdin.read()


def run_client(args: Args, stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO, bar: bool) -> int:
    timeout = args.timeout_ms / 1000 if args.timeout_ms >= 0 else None
    client = Client(servers(args), timeout=timeout)
    out = ClientOutput(args, stdout, stderr, bar)
    client.set_created_fn(out.created)
    client.set_data_fn(out.data)
    client.set_complete_fn(out.data)
    client.set_warning_fn(out.warning)
    client.set_exception_fn(out.warning)
    client.set_status_fn(out.status)
    client.set_fail_fn(out.fail)
    kind = {"high": "_high", "low": "_low"}.get(args.priority, "")
    add = getattr(client, f"add_task{kind}{'_background' if args.background else ''}")
    try:
        for workload in workloads(args, stdin):
            for function in args.functions:
                add(function, workload, args.unique)
            client.run_tasks()
    except GearmanTimeout:
        out._clear_bar()
        stderr.write(f"gearman: timeout: no result within {args.timeout_ms} ms\n".encode())
        return 1
    finally:
        out._clear_bar()
        client.close()
    return 1 if out.failed else 0


# -- worker mode


class CommandRunner:
    """A worker callback running the given command per job: workload on stdin, stdout is the result."""

    def __init__(self, args: Args, stdout: BinaryIO, stderr: BinaryIO) -> None:
        self.args = args
        self.stdout = stdout
        self.stderr = stderr

    def __call__(self, job: Job) -> object:
        if not self.args.arguments:
            # as the C tool: no command echoes the workload here and returns an empty result
            self.stdout.write(job.workload)
            self.stdout.flush()
            return b""
        try:
            proc = subprocess.Popen(self.args.arguments, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as error:
            self.stderr.write(f"gearman: {self.args.arguments[0]}: {error.strerror or error}\n".encode())
            return WORK_FAIL
        if self.args.per_line:
            return self._stream_lines(job, proc)
        output, _ = proc.communicate(job.workload)
        if proc.returncode != 0:
            if output:
                job.send_data(output)
            return WORK_FAIL
        return output

    def _stream_lines(self, job: Job, proc: subprocess.Popen[bytes]) -> object:
        assert proc.stdin is not None and proc.stdout is not None
        feeder = threading.Thread(target=_feed, args=(proc.stdin, job.workload), daemon=True)
        feeder.start()
        for line in proc.stdout:
            job.send_data(line[:-1] if self.args.strip_newline and line.endswith(b"\n") else line)
        feeder.join()
        return WORK_FAIL if proc.wait() != 0 else b""


def _feed(pipe: BinaryIO, data: bytes) -> None:
    try:
        pipe.write(data)
    except BrokenPipeError:
        pass
    finally:
        try:
            pipe.close()
        except BrokenPipeError:
            pass


def run_worker(args: Args, stdout: BinaryIO, stderr: BinaryIO) -> int:
    worker = Worker(servers(args))
    runner = CommandRunner(args, stdout, stderr)
    for function in args.functions:
        worker.add_function(function, runner)
    timeout = args.timeout_ms / 1000 if args.timeout_ms >= 0 else None
    remaining = args.count
    try:
        while True:
            if not worker.work(timeout):
                stderr.write(f"gearman: timeout: no job within {args.timeout_ms} ms\n".encode())
                stderr.flush()
            if remaining > 0:
                remaining -= 1  # as in the C tool, a timeout counts as one of the -c jobs
                if remaining == 0:
                    return 0
    finally:
        worker.close()


# -- process


def daemonize() -> None:
    """Detach like the C tool's -d: fork, new session, standard streams on /dev/null."""
    if os.fork():
        os._exit(0)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    name = os.path.basename(sys.argv[0]) or "gearman"
    try:
        args, wants_help = parse_args(argv)
    except UsageError as error:
        sys.stderr.write(f"\n{name}\tError in usage({error}).\n\n" + USAGE.format(name=name))
        return 1
    if wants_help:
        sys.stdout.write(USAGE.format(name=name))
        return 0
    if args.ssl:
        sys.stderr.write(f"{name}: SSL (-S) is not supported by this client\n")
        return 1
    if args.daemon:
        daemonize()
    if args.pid_file:
        with open(args.pid_file, "w") as pid_file:
            pid_file.write(f"{os.getpid()}\n")
    stdout, stderr = sys.stdout.buffer, sys.stderr.buffer
    try:
        if args.worker:
            return run_worker(args, stdout, stderr)
        bar = sys.stderr.isatty() and shutil.get_terminal_size().columns > BAR_WIDTH + 10
        return run_client(args, sys.stdin.buffer, stdout, stderr, bar)
    except GearmanError as error:
        stderr.write(f"{name}: {error}\n".encode())
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    finally:
        if args.pid_file:
            try:
                os.unlink(args.pid_file)
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
