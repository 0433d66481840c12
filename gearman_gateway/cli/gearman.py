"""`gearman`: run jobs from the shell, or serve a function with a shell command (gearmand §6.2).

Flag-compatible with the C tool of gearmand 1.1.20 (same getopt string, GNU argument permutation, `--`
ends the options, GEARMAN_SERVER overrides -h/-p), built on this package's Client and Worker.

    ls / | gearman -n -f upper             # client: one job per line
    gearman -f resize < large.jpg > thumb.jpg
    gearman -w -f wc -- wc -l              # worker: the command gets the workload on stdin

Where the C tool misbehaves we do the sensible thing (see docs/client.md): failures to connect,
timeouts and jobs the server refuses exit 1 (the C tool exits 0), every error is one line on stderr,
-n/-N handle lines of any length, -N strips only a newline, and a worker in -n mode sends each output
line once (the C tool re-sends everything read so far).
"""

from __future__ import annotations

import getopt
import io
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import BinaryIO, NoReturn

from gearman_gateway.cli import TOKEN_VARIABLE
from gearman_gateway.client import Client, Task, TaskState
from gearman_gateway.clientlib.errors import WORK_FAIL, GearmanError, GearmanTimeout
from gearman_gateway.clientlib.links import DEFAULT_HOST, DEFAULT_PORT, Address, parse_servers
from gearman_gateway.clientlib.tls import tool_context
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
\t-S, --ssl     - Enable SSL (TLS) connections
\t--ssl-ca-file <file>      - CA certificates to verify the server with (default: the system's)
\t--ssl-certificate <file>  - Client certificate to present (PEM)
\t--ssl-key <file>          - Key of --ssl-certificate (PEM)
	GEARMAN_TOKEN - (environment) an identity's token, sent first on every connection

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
    ssl_ca_file: str | None = None
    ssl_certificate: str | None = None
    ssl_key: str | None = None
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
    """A flag the C tool does not know, or no -f: the usage text follows, as in C."""


class CliError(Exception):
    """Anything else the user must fix or know: one line on stderr, exit status 1."""


class Terminated(BaseException):
    """SIGTERM (a second one, for a worker in the middle of a job): clean up and end."""


class StdoutClosed(BaseException):
    """A worker without a command lost its standard output: it stops without answering the job it
    holds, so that the server gives the job to another worker."""


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
    "--ssl": ("ssl", True),
    "-v": ("verbose", True),
    "-w": ("worker", True),
}


def port(text: str) -> int:
    """-p as the C tool reads it (atoi; 0 is the default port), but a number that is no port is an
    error here: the C tool silently wraps it (99999 is port 34463)."""
    number = atoi(text)
    if not 0 <= number < 65536:
        raise CliError(f"-p {text}: port out of range (1-65535)")
    return number or DEFAULT_PORT


#: Flags with a value: the Args attribute and how the C tool reads the value.
VALUES: dict[str, tuple[str, Callable[[str], object]]] = {
    "-c": ("count", atoi),
    "-h": ("host", str),
    "-i": ("pid_file", str),
    "-p": ("port", port),
    "-t": ("timeout_ms", atoi),
    "-u": ("unique", str),
    "--ssl-ca-file": ("ssl_ca_file", str),
    "--ssl-certificate": ("ssl_certificate", str),
    "--ssl-key": ("ssl_key", str),
}
#: Long options (ours; the C tool has only -S): TLS and its files.
LONG_OPTIONS = ["ssl", "ssl-ca-file=", "ssl-certificate=", "ssl-key="]


def parse_args(argv: list[str]) -> tuple[Args, bool]:
    """Options as the C tool reads them; returns (args, help wanted)."""
    try:
        options, rest = getopt.gnu_getopt(argv, OPTSTRING, LONG_OPTIONS)
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
    if "" in args.functions:
        raise CliError("-f: a function name cannot be empty")
    if not args.ssl and (args.ssl_ca_file or args.ssl_certificate or args.ssl_key):
        raise CliError("--ssl-ca-file, --ssl-certificate and --ssl-key need -S (--ssl)")
    return args, wants_help


def tls_context(args: Args) -> ssl.SSLContext | None:
    """-S: TLS, verifying the server against --ssl-ca-file (else the system's CAs)."""
    if not args.ssl:
        return None
    try:
        return tool_context(args.ssl_ca_file, args.ssl_certificate, args.ssl_key)
    except ValueError as error:
        raise CliError(str(error)) from None


def servers(args: Args) -> list[str]:
    """GEARMAN_SERVER (host:port,...) wins over -h/-p, as in the C tool."""
    spec = os.environ.get("GEARMAN_SERVER")
    if not spec:
        return [str(Address(args.host or DEFAULT_HOST, args.port))]  # an IPv6 -h gets its brackets
    try:
        addresses = parse_servers(spec)
    except ValueError as error:
        raise CliError(f"GEARMAN_SERVER: {error}") from None
    if not addresses:
        raise CliError(f"GEARMAN_SERVER={spec!r} names no server")
    return [str(address) for address in addresses]


def encode(text: str) -> bytes:
    """Names and messages as bytes: what came from argv or the wire as bytes goes back unchanged."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def write_all(stream: BinaryIO, data: bytes) -> None:
    """Write every byte: an unbuffered write may take only part (a pipe interrupted by a signal)."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        view = view[written if written is not None else 0 :]


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
        write_all(stream, data)

    def created(self, task: Task) -> None:
        if self.args.verbose:
            write_all(self.stdout, f"Task created: {task.handle}\n".encode())

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
        if task.state is TaskState.ERROR:  # refused by the server (ERROR packet), or no server reachable
            self._write(self.stderr, task, encode(f"gearman: {task.error}\n"))
        else:
            self._write(self.stderr, task, b"Job failed\n")

    def _draw_bar(self, task: Task, percent: int) -> None:
        filled = BAR_WIDTH * max(0, min(percent, 100)) // 100
        label = task._function + b" " if self.args.prefix or len(self.args.functions) > 1 else b""
        write_all(self.stderr, b"\r" + label + f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:3d}%".encode())
        self.bar_shown = True

    def _clear_bar(self) -> None:
        if self.bar_shown:
            self.bar_shown = False
            write_all(self.stderr, b"\r\x1b[K")


def workloads(args: Args, stdin: BinaryIO) -> Iterator[bytes]:
    if args.arguments:
        for argument in args.arguments:
            yield os.fsencode(argument)
    elif args.no_input:
        yield b""
    else:
        try:
            if args.per_line:
                for line in stdin:
                    yield line[:-1] if args.strip_newline and line.endswith(b"\n") else line
            else:
                yield stdin.read()
        except OSError as error:  # e.g. `gearman -f fn < some/directory`
            raise CliError(f"cannot read standard input: {error.strerror or error}") from None


def run_client(args: Args, stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO, bar: bool) -> int:
    timeout = args.timeout_ms / 1000 if args.timeout_ms >= 0 else None
    client = Client(
        servers(args), timeout=timeout, ssl_context=tls_context(args), token=os.environ.get(TOKEN_VARIABLE) or None
    )
    unique = os.fsencode(args.unique) if args.unique is not None else None
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
                add(os.fsencode(function), workload, unique)
            client.run_tasks()
    except GearmanTimeout:
        out._clear_bar()
        write_all(stderr, f"gearman: timeout: no result within {args.timeout_ms} ms\n".encode())
        return 1
    finally:
        out._clear_bar()
        client.close()
    return 1 if out.failed else 0


# -- worker mode


class CommandRunner:
    """A worker callback running the given command per job: workload on stdin, stdout is the result."""

    def __init__(self, args: Args, stdout: BinaryIO, stderr: BinaryIO, disconnect: Callable[[], None]) -> None:
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        #: Closes the worker's connections without a word, so that its servers re-queue what it holds.
        self.disconnect = disconnect
        #: A job is running (SIGTERM then waits for its end).
        self.busy = False

    def __call__(self, job: Job) -> object:
        self.busy = True
        try:
            return self._run(job)
        finally:
            self.busy = False

    def _run(self, job: Job) -> object:
        if not self.args.arguments:
            # as the C tool: no command echoes the workload here and returns an empty result
            try:
                write_all(self.stdout, job.workload)
            except BrokenPipeError:
                self.disconnect()
                raise StdoutClosed from None
            return b""
        try:
            proc = subprocess.Popen(self.args.arguments, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as error:
            say(self.stderr, f"gearman: {self.args.arguments[0]}: {error.strerror or error}\n")
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


class Termination:
    """What SIGTERM and SIGINT do. A client ends at once. A worker ends at once when idle; on SIGTERM
    it first finishes the job it is running (its result is not lost). Interrupted in a job (SIGINT, a
    second SIGTERM), it drops its connections before anything can report the job failed, so that the
    server gives the job to another worker."""

    def __init__(self) -> None:
        self.requested = False
        self.worker: Worker | None = None
        self.runner: CommandRunner | None = None

    def terminate(self, signum: int, frame: FrameType | None) -> None:
        if self.worker is not None and self.runner is not None and self.runner.busy and not self.requested:
            self.requested = True
            self.worker.stop()  # work() returns when the job is done
            return
        self._drop()
        raise Terminated

    def interrupt(self, signum: int, frame: FrameType | None) -> None:
        self._drop()
        raise KeyboardInterrupt

    def _drop(self) -> None:
        if self.worker is not None:
            self.worker.close()


def run_worker(args: Args, stdout: BinaryIO, stderr: BinaryIO, termination: Termination) -> int:
    worker = Worker(servers(args), ssl_context=tls_context(args), token=os.environ.get(TOKEN_VARIABLE) or None)
    runner = CommandRunner(args, stdout, stderr, worker.close)
    for function in args.functions:
        worker.add_function(os.fsencode(function), runner)
    termination.worker, termination.runner = worker, runner
    timeout = args.timeout_ms / 1000 if args.timeout_ms >= 0 else None
    remaining = args.count
    try:
        while True:
            worked = worker.work(timeout)
            if termination.requested:
                raise Terminated
            if not worked:
                say(stderr, f"gearman: timeout: no job within {args.timeout_ms} ms\n")
            if remaining > 0:
                remaining -= 1  # as in the C tool, a timeout counts as one of the -c jobs
                if remaining == 0:
                    return 0
    finally:
        termination.worker = None
        worker.close()


# -- process


class PidFile:
    """-i FILE: opened before anything else (a bad path is an error on the terminal, even with -d),
    holding the pid of the process that serves, and removed when that process ends."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as error:
            raise CliError(f"-i {path}: cannot write the pid file: {error.strerror or error}") from None

    def write(self, pid: int) -> None:
        try:
            os.write(self._fd, b"%d\n" % pid)
        except OSError as error:
            self.remove()
            raise CliError(f"-i {self.path}: cannot write the pid file: {error.strerror or error}") from None
        finally:
            self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass


def daemonize(pid_file: PidFile | None, stderr: BinaryIO) -> None:
    """Detach like the C tool's -d: fork, new session, standard streams on /dev/null. The parent
    writes the daemon's pid before it returns to the shell, and the daemon waits for that, so that
    the file is there when `gearman -d` returns and never outlives the daemon."""
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child:
        os.close(ready_r)
        try:
            if pid_file is not None:
                pid_file.write(child)
        except CliError as error:
            os.kill(child, signal.SIGKILL)  # our own child, still waiting on the pipe
            say(stderr, f"gearman: {error}\n")
            os._exit(1)
        os._exit(0)
    os.close(ready_w)
    os.read(ready_r, 1)  # returns at end of file: the parent is done
    os.close(ready_r)
    if pid_file is not None:
        pid_file.close()
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def say(stream: BinaryIO | None, text: str) -> None:
    """An error line on stderr; a closed stderr is no reason for a traceback."""
    if stream is None:
        return
    try:
        write_all(stream, encode(text))
    except OSError:
        pass


class OneLineFormatter(logging.Formatter):
    """The library's log records as `gearman: message`, never with a traceback."""

    def formatException(self, ei: object) -> str:  # noqa: N802 - logging's name
        return ""

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return ""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", " ")


def log_to(stream: BinaryIO, name: str) -> None:
    text = open(stream.fileno(), "w", errors="replace", buffering=1, closefd=False)  # noqa: SIM115
    handler = logging.StreamHandler(text)
    handler.setFormatter(OneLineFormatter(f"{name}: %(message)s"))
    logger = logging.getLogger("gearman_gateway")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False


def std_stream(fd: int, mode: str) -> BinaryIO:
    """Unbuffered access to a standard descriptor (a closed one reads as empty and swallows output)."""
    try:
        return open(fd, mode, buffering=0, closefd=False)  # noqa: SIM115 - lives as long as the process
    except OSError:
        return open(os.devnull, mode, buffering=0)  # noqa: SIM115


def die_by(signum: int) -> NoReturn:
    """End as a C tool killed by ``signum`` would, so that shells and scripts see the same status."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    name = os.path.basename(sys.argv[0]) or "gearman"
    stdin, stdout, stderr = std_stream(0, "rb"), std_stream(1, "wb"), std_stream(2, "wb")
    try:
        args, wants_help = parse_args(argv)
    except UsageError as error:
        say(stderr, f"\n{name}\tError in usage({error}).\n\n" + USAGE.format(name=name))
        return 1
    except CliError as error:
        say(stderr, f"{name}: {error}\n")
        return 1
    if wants_help:
        say(stdout, USAGE.format(name=name))
        return 0
    termination = Termination()
    signal.signal(signal.SIGTERM, termination.terminate)
    signal.signal(signal.SIGINT, termination.interrupt)
    pid_file: PidFile | None = None
    died_by = 0
    try:
        pid_file = PidFile(args.pid_file) if args.pid_file else None
        if args.daemon:
            daemonize(pid_file, stderr)
        elif pid_file is not None:
            pid_file.write(os.getpid())
        log_to(stderr, name)
        if args.worker:
            return run_worker(args, stdout, stderr, termination)
        bar = os.isatty(2) and shutil.get_terminal_size().columns > BAR_WIDTH + 10
        return run_client(args, io.BufferedReader(stdin), stdout, stderr, bar)  # type: ignore[arg-type]
    except (CliError, GearmanError) as error:
        say(stderr, f"{name}: {error}\n")
        return 1
    except (BrokenPipeError, StdoutClosed):  # `gearman ... | head -c1`: quiet, as `yes | head -c1`
        died_by = signal.SIGPIPE
    except OSError as error:  # anything else the system refused: one line, never a traceback
        say(stderr, f"{name}: {error.strerror or error}\n")
        return 1
    except Terminated:
        died_by = signal.SIGTERM
    except KeyboardInterrupt:
        died_by = signal.SIGINT
    finally:
        if pid_file is not None:
            pid_file.remove()
    die_by(died_by)


if __name__ == "__main__":
    sys.exit(main())
