#!/usr/bin/env python3
"""HTTP throughput: gearman-gateway's http frontend against gearmand -r http, in one run.

Each server gets the same workers (Debian's C ``gearman -w -f bench``, which answers every job at once
with an empty result) and the same load: ``--concurrency`` clients, split over ``--processes`` load
processes, each sending ``POST /bench`` with a distinct body (so no two jobs coalesce) for
``--duration`` seconds. Reported: requests/s, p50 and p99 latency, errors.

Modes:
  close      a new TCP connection per request (``Connection: close``): all gearmand 1.1.20 can do,
             since it closes every connection after one response.
  keepalive  persistent connections; gearman-gateway only.

Load generators (``--generator``):
  python     this script's own asyncio clients (the default): no extra package, but on a 2-CPU machine
             they cost more CPU than the servers, so they are the bottleneck and hide differences.
  wrk        wrk (C, ``apt-get install wrk``) with a Lua script that sends a distinct body per request,
             ``--processes`` threads and ``--concurrency`` connections.
  ab         ApacheBench (C, ``apt-get install apache2-utils``): HTTP/1.0 POSTs of one identical body,
             a new connection each (close mode only), ``--requests`` of them.
Each row also gives the server's CPU per request and its share of a CPU, and the load generator's CPU
per request: whichever side is near a whole CPU (or the two together near the machine's CPUs) is the
bottleneck.

    python3 bench/http_bench.py                      # both servers, both modes, 10 s each
    python3 bench/http_bench.py --duration 5 --concurrency 50 --servers ours
    python3 bench/http_bench.py --generator wrk --concurrency 8 --processes 2 --workers 4 --rounds 3
    python3 bench/http_bench.py --generator ab --concurrency 8 --requests 3000 --workers 4 --modes close
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

REAL_GEARMAND = "/usr/sbin/gearmand"
GEARMAN_TOOL = "/usr/bin/gearman"  # absolute: our package's `gearman` script would shadow it on PATH
OUR_GEARMAND = str(Path(sys.executable).parent / "gearmand")
FUNCTION = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


# -- one load process: asyncio protocols, no streams (the generator must cost less than the servers)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


class _Client(asyncio.Protocol):
    """One simulated client: sends a request, waits for the whole response, records the latency, sends
    the next (on the same connection with keep-alive, on a new one otherwise)."""

    def __init__(self, load: _Load, tag: str, n: int) -> None:
        self.load = load
        self.tag = tag
        self.n = n  # requests sent so far: bodies are tag-1, tag-2, ...
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.start = 0.0
        self.need = -1  # bytes of the whole response, once its head is in

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        self.n += 1
        body = f"{self.tag}-{self.n}".encode()
        self.buffer = b""
        self.need = -1
        self.start = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.load.head + b"%d\r\n\r\n" % len(body) + body)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.need < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.need = end + 4 + _content_length(self.buffer[:end])
        if len(self.buffer) >= self.need:
            head = self.buffer[:40]
            ok = head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")) and b"WORK_COMPLETE" in self.buffer[: self.need]
            self.load.done(self, ok)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.need < 0 or len(self.buffer) < self.need:
            if self.transport is not None and self.start:
                self.load.done(self, False, lost=True)


class _Load:
    def __init__(self, port: int, keepalive: bool, seconds: float) -> None:
        self.port = port
        self.keepalive = keepalive
        self.deadline = time.perf_counter() + seconds
        connection = b"keep-alive" if keepalive else b"close"
        self.head = (
            b"POST /"
            + FUNCTION.encode()
            + b" HTTP/1.1\r\nHost: bench\r\nConnection: "
            + connection
            + b"\r\nContent-Length: "
        )
        self.latencies: list[float] = []
        self.errors = 0
        self.running = 0
        self.finished = asyncio.get_running_loop().create_future()

    def done(self, client: _Client, ok: bool, lost: bool = False) -> None:
        now = time.perf_counter()
        self.latencies.append(now - client.start)
        client.start = 0.0
        if not ok:
            self.errors += 1
        if now >= self.deadline:
            if client.transport is not None:
                client.transport.close()
            self.running -= 1
            if not self.running and not self.finished.done():
                self.finished.set_result(None)
            return
        if self.keepalive and ok and not lost:
            client.send()
            return
        if client.transport is not None and not lost:
            client.transport.close()
        client.transport = None
        asyncio.ensure_future(self.connect(client.tag, client.n))

    async def connect(self, tag: str, n: int = 0) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.create_connection(lambda: _Client(self, tag, n), "127.0.0.1", self.port)
                return
            except OSError:  # e.g. out of ephemeral ports in close mode: count it and try again
                self.errors += 1
                await asyncio.sleep(0.01)


def _load_process(port: int, keepalive: bool, clients: int, seconds: float, tag: str, out) -> None:  # noqa: ANN001
    async def run() -> tuple[list[float], int]:
        load = _Load(port, keepalive, seconds)
        load.running = clients
        for i in range(clients):
            await load.connect(f"{tag}.{i}")
        await load.finished
        return load.latencies, load.errors

    out.send(asyncio.run(run()))
    out.close()


@dataclass
class Result:
    server: str
    mode: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_us: float = 0.0  # server CPU (user + system) per request
    server_share: float = 0.0  # of one CPU, over the run
    generator_us: float = 0.0  # load generator CPU per request

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def row(self) -> str:
        return (
            f"| {self.server} | {self.mode} | {self.rate:,.0f} | {self.p50_ms:.2f} | {self.p99_ms:.2f} "
            f"| {self.requests:,} | {self.errors} | {self.server_us:.0f} | {self.server_share:.2f} "
            f"| {self.generator_us:.0f} |"
        )


# -- C load generators: wrk and ab

#: wrk's Lua: a distinct body per request (thread id and counter), so that no two jobs coalesce.
WRK_SCRIPT = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tag", tostring(os.time()) .. "-" .. tostring(threads))
end
local counter = 0
local close = os.getenv("HTTP_BENCH_CLOSE") == "1"
request = function()
  counter = counter + 1
  local body = tag .. "-" .. counter
  local headers = {["Content-Length"] = tostring(#body)}
  if close then headers["Connection"] = "close" end
  return wrk.format("POST", "/FUNCTION", headers, body)
end
""".replace("FUNCTION", FUNCTION)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _ms(text: str) -> float:
    """wrk's latency figure ("812.00us", "1.20ms", "2.01s") in milliseconds."""
    number, unit = re.fullmatch(r"([0-9.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def run_wrk(server: str, port: int, mode: str, concurrency: int, threads: int, seconds: float) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    try:
        env = {**os.environ, "HTTP_BENCH_CLOSE": "1" if mode == "close" else "0"}
        argv = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds:g}s", "--latency"]
        argv += ["-s", script.name, f"http://127.0.0.1:{port}/{FUNCTION}"]
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 60, check=True).stdout
    finally:
        os.unlink(script.name)
    done = re.search(r"(\d+) requests in ([0-9.]+)(\w+)", out)
    assert done, out
    elapsed = float(done.group(2)) * {"ms": 1e-3, "s": 1.0, "m": 60.0}[done.group(3)]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    return Result(
        server,
        mode,
        int(done.group(1)),
        errors,
        elapsed,
        _ms(p50.group(1)) if p50 else 0,
        _ms(p99.group(1)) if p99 else 0,
    )


def run_ab(server: str, port: int, mode: str, concurrency: int, requests: int) -> Result:
    if mode != "close":
        raise SystemExit("ab: close mode only (its keep-alive is HTTP/1.0's, which neither server keeps)")
    with tempfile.NamedTemporaryFile("wb", suffix=".body", delete=False) as body:
        body.write(b"ab bench body")
    try:
        argv = ["ab", "-q", "-n", str(requests), "-c", str(concurrency), "-p", body.name, "-T", "text/plain"]
        argv.append(f"http://127.0.0.1:{port}/{FUNCTION}")
        out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True).stdout
    finally:
        os.unlink(body.name)

    def number(pattern: str) -> float:
        found = re.search(pattern, out, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    complete = int(number(r"^Complete requests:\s+(\d+)"))
    errors = int(number(r"^Failed requests:\s+(\d+)") + number(r"^Non-2xx responses:\s+(\d+)"))
    elapsed = number(r"^Time taken for tests:\s+([0-9.]+)")
    return Result(server, mode, complete, errors, elapsed, number(r"^\s+50%\s+(\d+)"), number(r"^\s+99%\s+(\d+)"))


def measured(run, server_pid: int) -> Result:  # noqa: ANN001
    """``run()``'s Result with the server's and the generator's CPU per request filled in."""
    server0, generator0 = cpu_seconds(server_pid), children_cpu()
    result: Result = run()
    server_cpu, generator_cpu = cpu_seconds(server_pid) - server0, children_cpu() - generator0
    count = max(result.requests, 1)
    result.server_us = server_cpu / count * 1e6
    result.server_share = server_cpu / max(result.seconds, 1e-9)
    result.generator_us = generator_cpu / count * 1e6
    return result


def run_load(server: str, port: int, mode: str, concurrency: int, processes: int, seconds: float) -> Result:
    keepalive = mode == "keepalive"
    per_process = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    pipes = []
    workers = []
    started = time.perf_counter()
    for index, clients in enumerate(per_process):
        receive, send = multiprocessing.Pipe(duplex=False)
        process = multiprocessing.Process(
            target=_load_process, args=(port, keepalive, clients, seconds, f"{os.getpid()}.{index}", send)
        )
        process.start()
        pipes.append(receive)
        workers.append(process)
    latencies: list[float] = []
    errors = 0
    for receive in pipes:
        got, bad = receive.recv()
        latencies.extend(got)
        errors += bad
    for process in workers:
        process.join()
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return Result(server, mode, len(latencies), errors, min(elapsed, seconds), quantiles[49] * 1e3, quantiles[98] * 1e3)


# -- servers and workers


class Stack:
    """A server with -r http and its workers; stopped by PID only."""

    def __init__(self, name: str, binary: str, workers: int) -> None:
        self.name = name
        self.port = free_port()
        self.http_port = free_port()
        args = [binary, "-L", "127.0.0.1", "-p", str(self.port), "-r", "http", "--http-port", str(self.http_port)]
        args += ["-q", "builtin"]  # both in memory: foreground jobs are never stored anyway
        if binary == REAL_GEARMAND:
            args += ["-l", "stderr"]
        else:
            args += ["-l", "none"]
        self.server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port)
        wait_listening(self.http_port)
        self.workers = [
            subprocess.Popen(
                [GEARMAN_TOOL, "-h", "127.0.0.1", "-p", str(self.port), "-w", "-f", FUNCTION],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]
        time.sleep(0.5)  # let the workers register

    def stop(self) -> None:
        for process in [*self.workers, self.server]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.workers, self.server]:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def tree_launcher(tree: Path) -> str:
    """An executable that runs our gearmand from another source tree (first on the import path)."""
    launcher = Path(tempfile.mkdtemp(prefix="gg-tree-")) / "gearmand"
    launcher.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(tree)!r})\n"
        "from gearman_gateway.cli.gearmand import main\nsys.exit(main())\n"
    )
    launcher.chmod(0o755)
    return str(launcher)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--processes", type=int, default=2, help="load-generating processes (default 2)")
    parser.add_argument("--workers", type=int, default=8, help="C gearman workers per server (default 8)")
    parser.add_argument("--servers", default="ours,gearmand", help="comma list of: ours, gearmand")
    parser.add_argument("--modes", default="close,keepalive", help="comma list of: close, keepalive")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load first (default 1)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs of every case, interleaved; the median run is reported"
    )
    parser.add_argument("--generator", choices=("python", "wrk", "ab"), default="python", help="load generator")
    parser.add_argument("--requests", type=int, default=3000, help="ab: requests per run (default 3000)")
    parser.add_argument("--tree", action="append", default=[], help="another source tree of ours to run too")
    args = parser.parse_args(argv)
    if args.generator != "python" and not shutil.which(args.generator):
        package = {"wrk": "wrk", "ab": "apache2-utils"}[args.generator]
        parser.error(f"{args.generator} is not installed (apt-get install {package})")
    if not os.access(GEARMAN_TOOL, os.X_OK):
        parser.error(f"{GEARMAN_TOOL} is missing (Debian package gearman-tools)")
    binaries = {"ours": OUR_GEARMAND if os.access(OUR_GEARMAND, os.X_OK) else shutil.which("gearmand") or "gearmand"}
    if os.access(REAL_GEARMAND, os.X_OK):
        binaries["gearmand"] = REAL_GEARMAND
    for index, tree in enumerate(args.tree, 1):
        binaries[f"tree{index}"] = tree_launcher(Path(tree).resolve())
        args.servers += f",tree{index}"
    stacks: dict[str, Stack] = {}
    runs: dict[tuple[str, str], list[Result]] = {}
    try:
        for name in args.servers.split(","):
            if name not in binaries:
                print(f"skipping {name}: not installed", file=sys.stderr)
                continue
            stacks[name] = Stack(name, binaries[name], args.workers)
        cases = [
            (name, mode)
            for mode in args.modes.split(",")
            for name in stacks
            if not (mode == "keepalive" and name == "gearmand")  # gearmand 1.1.20 closes after one response
            and not (mode == "keepalive" and args.generator == "ab")
        ]

        def load(name: str, port: int, mode: str, seconds: float) -> Result:
            if args.generator == "wrk":
                return run_wrk(name, port, mode, args.concurrency, args.processes, seconds)
            if args.generator == "ab":
                count = args.requests if seconds == args.duration else max(args.concurrency, args.requests // 10)
                return run_ab(name, port, mode, args.concurrency, count)
            return run_load(name, port, mode, args.concurrency, args.processes, seconds)

        for _ in range(args.rounds):  # interleaved, so a busy moment on the machine hits every case alike
            for name, mode in cases:
                port = stacks[name].http_port
                if args.warmup:
                    load(name, port, mode, args.warmup)
                result = measured(partial(load, name, port, mode, args.duration), stacks[name].server.pid)
                print(result.row(), file=sys.stderr)
                runs.setdefault((name, mode), []).append(result)
    finally:
        for stack in stacks.values():
            stack.stop()
    results = [sorted(found, key=lambda r: r.rate)[len(found) // 2] for found in runs.values()]
    print(
        f"\n{args.generator}: {args.concurrency} clients in {args.processes} processes, {args.workers} workers, "
        f"{args.duration:g} s per run, median of {args.rounds}, {os.cpu_count()} CPUs, "
        f"load average {Path('/proc/loadavg').read_text().split()[0]}\n"
    )
    print(
        "| server | connections | requests/s | p50 ms | p99 ms | requests | errors "
        "| server µs/request | server CPU share | generator µs/request |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        print(result.row())
    return 0 if all(r.errors == 0 for found in runs.values() for r in found) else 1


if __name__ == "__main__":
    sys.exit(main())
