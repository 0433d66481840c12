"""What compare.py and durability.py share: servers started and stopped by PID, the two load generators
(gload, the neutral C one, and loadgen.py), medians and tables, and the machine's description."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LOADGEN = BENCH / "loadgen.py"
#: ../shared/bench/gload.c beside the checkout; GG_GLOAD_C names it for a worktree that has no ../shared
GLOAD_C = Path(os.environ.get("GG_GLOAD_C") or REPO.parent / "shared" / "bench" / "gload.c")
#: OpenStack gear's pure-Python server as ../shared/bench runs it (``gear_server.py PORT [--nodelay]``).
GEAR_SERVER = REPO.parent / "shared" / "bench" / "servers" / "gear_server.py"
OUR_GEARMAND = str(Path(sys.executable).parent / "gearmand")
DEBIAN_GEARMAND = "/usr/sbin/gearmand"
#: Perl Gearman::Server, Debian's package gearman-server (the C one is /usr/sbin/gearmand, gearman-job-server).
PERL_GEARMAND = "/usr/bin/gearmand"
HOST = "127.0.0.1"
FD_LIMIT = 20_000
GENERATORS = ("auto", "gload", "loadgen")

#: gload/loadgen options per scenario: ../shared/bench/run.sh's counts ("queue" is loadgen's own).
SCENARIO_ARGS: dict[str, list[str]] = {
    "ping": ["-c", "16", "-n", "100000"],
    "fg": ["-c", "16", "-w", "16", "-n", "20000", "-b", "64"],
    "tasks": ["-w", "4", "-W", "10000", "-n", "30000", "-b", "64"],
    "bg": ["-c", "4", "-w", "4", "-W", "100", "-n", "100000", "-b", "64"],
    "large": ["-c", "4", "-w", "4", "-n", "200", "-b", "1048576"],
    "idle": ["-i", "5000", "-c", "16", "-w", "16", "-n", "20000", "-b", "64"],
    "queue": ["-c", "4", "-W", "100", "-n", "100000", "-b", "64"],
}
#: Scenarios gload does not have: always run with loadgen.py.
LOADGEN_ONLY = {"queue"}


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _limits(cpus: Sequence[int] | None) -> Callable[[], None]:
    """A preexec_fn: raise the open-file limit (5,000 idle connections) and pin to ``cpus`` if given."""

    def apply() -> None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = FD_LIMIT if hard == resource.RLIM_INFINITY else min(FD_LIMIT, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        if cpus:
            os.sched_setaffinity(0, cpus)

    return apply


class Server:
    """A Gearman server process started by us on a free loopback port, stopped by its PID.

    ``uniq``: its workers must use GRAB_JOB_UNIQ (gear knows no GRAB_JOB), so the generators get ``-u``.
    ``idle_batch``: idle connections to open at once in all, for a server with a tiny listen backlog (gear
    listens with backlog 1: more SYNs at once are dropped and retried seconds later)."""

    def __init__(
        self,
        label: str,
        argv: Sequence[str],
        workdir: Path,
        cpus: Sequence[int] | None = None,
        *,
        uniq: bool = False,
        idle_batch: int | None = None,
    ) -> None:
        self.label = label
        self.argv_template = list(argv)
        self.workdir = workdir
        self.cpus = cpus
        self.uniq = uniq
        self.idle_batch = idle_batch
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{label}.log"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def argv(self) -> list[str]:
        return [a.replace("{PORT}", str(self.port)) for a in self.argv_template]

    def start(self, timeout: float = 30.0) -> Server:
        """Start on a new free port (stopping our previous process first) and wait until it accepts."""
        self.stop()
        self.port = free_port()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_limits(self.cpus),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"{self.label} exited before listening:\n{self.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.label} did not listen on {self.port} within {timeout}s")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to our PID, SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# -- Debian packages the benchmarks need


def ensure_debian_package(binary: str, package: str, install: bool) -> None:
    """Install ``package`` when ``binary`` is missing; stop its packaged service if it runs (it would share the
    CPUs with the measured servers)."""
    if not os.access(binary, os.X_OK):
        if not install:
            raise SystemExit(f"{binary} is missing (apt-get install {package})")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", package]
        print(f"# installing Debian's {package}", file=sys.stderr)
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=False)
            subprocess.run(cmd, env=env, check=True)
    service = shutil.which("service")
    if service:
        status = subprocess.run([service, package, "status"], capture_output=True, check=False)
        # gearman-server's init script exits 0 silently when disabled in /etc/default (then nothing runs)
        if status.returncode == 0 and status.stdout.strip():
            print(f"# stopping the packaged {package} service", file=sys.stderr)
            subprocess.run([service, package, "stop"], capture_output=True, check=False)


# -- load generators


def build_gload(dest_dir: Path | None = None) -> str | None:
    """Build ../shared/bench/gload.c with gcc (once; reused while newer than the source); None if impossible."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not GLOAD_C.exists() or not gcc:
        return None
    dest = (dest_dir or Path(tempfile.gettempdir())) / "gearman-gateway-gload"
    if dest.exists() and dest.stat().st_mtime >= GLOAD_C.stat().st_mtime:
        return str(dest)
    result = subprocess.run([gcc, "-O2", "-o", str(dest), str(GLOAD_C)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"# gload did not build: {result.stderr.strip()[:500]}", file=sys.stderr)
        return None
    return str(dest)


def pick_generator(choice: str) -> tuple[str, str | None]:
    """(``gload`` or ``loadgen``, gload's path): ``auto`` takes gload when it builds."""
    if choice == "loadgen":
        return "loadgen", None
    gload = build_gload()
    if gload:
        return "gload", gload
    if choice == "gload":
        raise SystemExit(f"gload is not available: gcc and {GLOAD_C} are needed (or use --generator loadgen)")
    print("# gload not available (no gcc or no ../shared/bench/gload.c): using loadgen.py", file=sys.stderr)
    return "loadgen", None


def generator_argv(
    generator: str,
    gload: str | None,
    scenario: str,
    server: Server,
    tlimit: float,
    procs: int,
    options: Sequence[str] | None = None,
) -> list[str]:
    """The command that runs ``scenario`` against ``server`` with the chosen generator; ``options`` replace the
    scenario's standard counts. The server's own needs (``uniq``, ``idle_batch``) are added for either generator."""
    common = ["-p", str(server.port), "-P", str(server.pid), "-t", str(tlimit), "-l", server.label, "-s", scenario]
    args = list(SCENARIO_ARGS[scenario] if options is None else options)
    use_gload = generator == "gload" and scenario not in LOADGEN_ONLY
    if server.uniq:
        args.append("-u")  # the same flag in gload and loadgen.py
    if server.idle_batch and "-i" in args:  # loadgen's -B is per process, gload's for its one thread
        args += ["-B", str(server.idle_batch if use_gload else max(1, server.idle_batch // procs))]
    if use_gload:
        assert gload
        return [gload, "-h", HOST, *common, *args]
    return [sys.executable, str(LOADGEN), "-H", HOST, *common, "-j", str(procs), *args]


def run_generator(argv: Sequence[str], timeout: float, cpus: Sequence[int] | None = None) -> dict[str, Any]:
    """Run one generator command and return its JSON line (``{"error": ...}`` if it printed none)."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, preexec_fn=_limits(cpus), check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"generator took over {timeout:.0f}s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            row = json.loads(line)
            row.setdefault("generator", "gload")
            return row
    return {"error": f"exit {done.returncode}: {done.stderr.strip()[-500:]}"}


def scaled(args: list[str], scale: float, idle: int | None = None) -> list[str]:
    """Scenario options with the job count (-n) multiplied by ``scale`` and the idle count (-i) replaced."""
    out = list(args)
    for flag, fn in (("-n", lambda v: max(1, round(int(v) * scale))), ("-i", lambda v: idle if idle else int(v))):
        if flag in out:
            i = out.index(flag) + 1
            out[i] = str(fn(out[i]))
    return out


# -- figures and tables


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float)) and r[key] >= 0]
    return statistics.median(values) if values else None


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """A plain or Markdown table; the first column left-aligned, the others right-aligned."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    out = []
    for r in [header, *rows]:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        out.append("  ".join(cells))
    return "\n".join(out)


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as uptime prints them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine() -> str:
    """nproc, CPU model and memory, one line."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    return f"{os.cpu_count()} CPUs, {model}, {mem_kb / 1048576:.1f} GiB RAM, Python {sys.version.split()[0]}"


def revision() -> str:
    """The checkout's commit, with ``-dirty`` when the working tree has changes (the server runs from it)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
        )
    except OSError:
        return "?"
    return done.stdout.strip() or "?"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
