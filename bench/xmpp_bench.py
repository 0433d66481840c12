#!/usr/bin/env python3
"""The XMPP frontend's figures (docs/performance.md, "XMPP frontend"), all in one run:

1. chat round trip: one user sends ``reverse <payload>`` and waits for the answer, ``--round-trips`` times
   in a row; median and p99 in milliseconds (message to the bot, job to the worker, result back, reply);
2. burst: ``--users`` users each send ``--burst`` jobs at once; chat jobs per second until the last reply;
3. what ``-r xmpp`` costs the binary frontend: gload's ``fg`` scenario (16 clients, 16 workers, 64-byte
   payloads) against gearmand without and with ``-r xmpp`` (the bot logged in, idle), ``--rounds``
   interleaved rounds each; median jobs/s and their ratio (the goal is >= 0.85), and jobs per CPU-second
   the server process used (all its threads: the bot's included), which a machine busy with other work
   disturbs far less than jobs/s.

Everything runs on this machine: a private prosody from Debian's package (tests/xmppfixture.py: free
loopback port, temp dir, its per-client rate limit raised), our gearmand, the chat users (slixmpp, in this
process) and a worker (PyPI ``gear``, on a thread of this process) for the chat jobs.

    .venv/bin/python bench/xmpp_bench.py                     # the defaults: 200 round trips, 4 x 100, 5 rounds
    .venv/bin/python bench/xmpp_bench.py --rounds 3 --fg-jobs 20000
    .venv/bin/python bench/xmpp_bench.py --asyncio   # also the binary frontend on --reactor asyncio
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]  # tests/xmppfixture.py, bench/benchlib.py

import benchlib  # noqa: E402
import gear  # noqa: E402
import yaml  # noqa: E402

from tests import xmppfixture  # noqa: E402
from tests.xmppfixture import ChatUser, ProsodyServer, run  # noqa: E402

BOT = "bot@localhost"
USERS = ("alice", "bob", "carol", "dave")


def write_config(directory: Path, prosody: ProsodyServer) -> Path:
    password_file = directory / "bot.password"
    password_file.write_text(prosody.password("bot") + "\n")
    block = {
        "jid": f"{BOT}/bench",
        "password_file": str(password_file),
        "host": prosody.host,
        "port": prosody.port,
        "ca_file": str(prosody.ca_file),
        "allowed": ["localhost"],
        "rate_limit": 0,
    }
    path = directory / "xmpp.yaml"
    path.write_text(yaml.safe_dump({"xmpp": block}))
    return path


def wait_connected(server: benchlib.Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.create_connection((benchlib.HOST, server.port), timeout=5) as conn:
            conn.sendall(b"show frontends\r\n")
            reply = b""
            while not reply.endswith(b".\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                reply += chunk
        if b"xmpp\tconnected" in reply:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the bot did not connect:\n{server.log_tail()}")


class ReverseWorker:
    """``reverse`` for the chat jobs: a gear worker (TCP_NODELAY) on a thread of its own."""

    def __init__(self, port: int, count: int = 2) -> None:
        self.workers = []
        for index in range(count):
            worker = gear.Worker(f"bench-{index}")
            worker.addServer(benchlib.HOST, port)
            worker.waitForServer()
            for connection in worker.active_connections:
                connection.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            worker.registerFunction("reverse")
            threading.Thread(target=self._serve, args=(worker,), daemon=True).start()
            self.workers.append(worker)

    @staticmethod
    def _serve(worker: gear.Worker) -> None:
        while True:
            try:
                job = worker.getJob()
            except gear.InterruptedError:
                return
            job.sendWorkComplete(bytes(job.arguments)[::-1])

    def stop(self) -> None:
        for worker in self.workers:
            worker.stopWaitingForJobs()
            worker.shutdown()


async def round_trips(prosody: ProsodyServer, count: int) -> list[float]:
    user = await ChatUser(prosody, "alice", resource="rtt").start()
    times = []
    try:
        for index in range(count + 10):
            payload = f"round trip {index}"
            start = time.perf_counter()
            user.send(BOT, f"reverse {payload}")
            got = await user.receive(30)
            elapsed = time.perf_counter() - start
            assert got.body == payload[::-1], got
            if index >= 10:  # the first few warm up TLS buffers and caches
                times.append(elapsed * 1000)
    finally:
        await user.stop()
    return times


async def burst(prosody: ProsodyServer, per_user: int) -> float:
    users = [await ChatUser(prosody, name, resource="burst").start() for name in USERS]

    async def one(user: ChatUser) -> None:
        sent = {}
        for index in range(per_user):
            thread = f"{index}-{uuid.uuid4().hex[:8]}"
            sent[thread] = f"burst {index}"
            user.send(BOT, f"reverse burst {index}", thread=thread)
        while sent:
            got = await user.receive(60)
            assert got.body == sent.pop(got.thread)[::-1], got

    try:
        start = time.perf_counter()
        await asyncio.gather(*(one(user) for user in users))
        elapsed = time.perf_counter() - start
    finally:
        for user in users:
            await user.stop()
    return per_user * len(users) / elapsed


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (all its threads); None: this one."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy(pids: dict[str, int | None], phase):  # type: ignore[no-untyped-def]
    """Run ``phase()`` and say how much CPU each process used meanwhile (where the bottleneck is)."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    start = time.perf_counter()
    result = phase()
    wall = time.perf_counter() - start
    used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    return result, ", ".join(f"{name} {seconds / wall:.0%} of a CPU" for name, seconds in used.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--burst", type=int, default=100, help="jobs per user in the burst (4 users)")
    parser.add_argument("--rounds", type=int, default=5, help="fg rounds per server (interleaved)")
    parser.add_argument("--fg-jobs", type=int, default=20000)
    parser.add_argument("--asyncio", action="store_true", help="also fg on --reactor asyncio, without the bot")
    args = parser.parse_args()
    gload = benchlib.build_gload()
    if gload is None:
        raise SystemExit("gload does not build (gcc and ../shared/bench/gload.c are needed)")
    root = Path(tempfile.mkdtemp(prefix="xmpp-bench-"))
    prosody = xmppfixture.start_prosody(root)
    config = write_config(root, prosody)
    common = [benchlib.OUR_GEARMAND, "-L", benchlib.HOST, "-p", "{PORT}", "-q", "memory", "-l", "stderr"]
    plain = benchlib.Server("binary", common, root)
    with_xmpp = benchlib.Server("binary+xmpp", [*common, "--config", str(config), "-r", "xmpp"], root)
    # the alternative design's floor: the binary frontend on Twisted's asyncio reactor, which slixmpp on
    # the reactor's own loop would need (the bot itself not even running)
    on_asyncio = benchlib.Server("binary on asyncio", [*common, "--reactor", "asyncio"], root)
    servers = [plain, with_xmpp, *([on_asyncio] if args.asyncio else [])]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop what we started (finally below)
    print(f"# {benchlib.machine()}; load before: {benchlib.loadavg()}; revision {benchlib.revision()}")
    try:
        with_xmpp.start()
        wait_connected(with_xmpp)
        worker = ReverseWorker(with_xmpp.port)
        try:
            assert prosody.proc is not None
            pids = {"gearmand": with_xmpp.pid, "prosody": prosody.proc.pid, "chat users + worker": None}
            times, rtt_cpu = busy(pids, lambda: run(round_trips(prosody, args.round_trips)))
            rate, burst_cpu = busy(pids, lambda: run(burst(prosody, args.burst)))
        finally:
            worker.stop()
        p99 = statistics.quantiles(times, n=100)[98]
        print(f"chat round trip ({len(times)} fg jobs): median {statistics.median(times):.1f} ms, p99 {p99:.1f} ms")
        print(f"#   CPU meanwhile: {rtt_cpu}")
        print(f"burst ({len(USERS)} users x {args.burst} jobs): {rate:.0f} chat jobs/s")
        print(f"#   CPU meanwhile: {burst_cpu}")
        fg_args = benchlib.scaled(benchlib.SCENARIO_ARGS["fg"], args.fg_jobs / 20000)
        results: dict[str, list[float]] = {server.label: [] for server in servers}
        per_cpu: dict[str, list[float]] = {server.label: [] for server in servers}
        for _ in range(args.rounds):
            for server in servers:
                server.start()
                if server is with_xmpp:
                    wait_connected(server)
                row = benchlib.run_generator(
                    benchlib.generator_argv("gload", gload, "fg", server, 120, 1, fg_args), 180
                )
                server.stop()
                if "error" in row:
                    raise SystemExit(f"{server.label}: {row['error']}")
                results[server.label].append(row["jobs_per_s"])
                per_cpu[server.label].append(row["completed"] / row["server_cpu_s"])
        for label, values in results.items():
            print(
                f"fg {label}: median {statistics.median(values):,.0f} jobs/s, "
                f"{statistics.median(per_cpu[label]):,.0f} jobs per server CPU-second; "
                f"rounds {[round(v) for v in values]} / {[round(v) for v in per_cpu[label]]}"
            )
        for other, what in ((with_xmpp, "with -r xmpp / without"), (on_asyncio, "--reactor asyncio (no bot) / ours")):
            if other.label not in results:
                continue
            ratio = statistics.median(results[other.label]) / statistics.median(results[plain.label])
            cpu_ratio = statistics.median(per_cpu[other.label]) / statistics.median(per_cpu[plain.label])
            print(f"fg ratio {what}: {ratio:.3f} in jobs/s, {cpu_ratio:.3f} in jobs per server CPU-second")
        print(f"# load after: {benchlib.loadavg()}")
    finally:
        for server in servers:
            server.stop()
        prosody.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
