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

    python3 bench/http_bench.py                      # both servers, both modes, 10 s each
    python3 bench/http_bench.py --duration 5 --concurrency 50 --servers ours
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
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

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def row(self) -> str:
        return (
            f"| {self.server} | {self.mode} | {self.rate:,.0f} | {self.p50_ms:.2f} | {self.p99_ms:.2f} "
            f"| {self.requests:,} | {self.errors} |"
        )


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
    args = parser.parse_args(argv)
    if not os.access(GEARMAN_TOOL, os.X_OK):
        parser.error(f"{GEARMAN_TOOL} is missing (Debian package gearman-tools)")
    binaries = {"ours": OUR_GEARMAND if os.access(OUR_GEARMAND, os.X_OK) else shutil.which("gearmand") or "gearmand"}
    if os.access(REAL_GEARMAND, os.X_OK):
        binaries["gearmand"] = REAL_GEARMAND
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
        ]
        for _ in range(args.rounds):  # interleaved, so a busy moment on the machine hits every case alike
            for name, mode in cases:
                port = stacks[name].http_port
                if args.warmup:
                    run_load(name, port, mode, args.concurrency, args.processes, args.warmup)
                result = run_load(name, port, mode, args.concurrency, args.processes, args.duration)
                print(result.row(), file=sys.stderr)
                runs.setdefault((name, mode), []).append(result)
    finally:
        for stack in stacks.values():
            stack.stop()
    results = [sorted(found, key=lambda r: r.rate)[len(found) // 2] for found in runs.values()]
    print(
        f"\n{args.concurrency} clients in {args.processes} processes, {args.workers} workers, "
        f"{args.duration:g} s per run, median of {args.rounds}, {os.cpu_count()} CPUs\n"
    )
    print("| server | connections | requests/s | p50 ms | p99 ms | requests | errors |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for result in results:
        print(result.row())
    return 0 if all(r.errors == 0 for found in runs.values() for r in found) else 1


if __name__ == "__main__":
    sys.exit(main())
