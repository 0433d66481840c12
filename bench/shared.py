#!/usr/bin/env python3
"""Shared mode (issue 21, docs/scale.md): background jobs/s with 1, 2 and 3 gateways on one PostgreSQL, against
one server on sqlite and one on postgres (its own table), in the same run; CPU per job of the gateways and of
PostgreSQL; and the foreground latency of a relayed job against a local one.

Throughput: the ``bg`` scenario (clients pipeline SUBMIT_JOB_BG, workers drain), split over the gateways: one
generator per gateway, started together, each with its share of the jobs and its own clients and workers (so
jobs stay on the server they were submitted to: the shared path is an owned insert and a delete per job). jobs/s
is all jobs over the wall time from the first start to the last generator's end. CPU per job is user + system
time over the run, from /proc: of the gateway processes, of PostgreSQL's backends (one session per gateway
connection: they scale with cores) and of its other processes (WAL writer, checkpointer, autovacuum...), and of the
load generators (getrusage of the children). "% of a core" is CPU time over wall time: the busiest gateway near
100 % means that gateway was the bottleneck; everything together near the machine's cores means the machine was.

Relay latency: one client submits SUBMIT_JOB one at a time (each waits for its WORK_COMPLETE) to gateway A; the
worker is on A (local) or only on B (relayed through the database); median and p99 over ``--latency-jobs``.

    python3 bench/shared.py                  # 30,000 jobs per run, 2 rounds, 300 latency samples
    python3 bench/shared.py --jobs 60000 --rounds 3 --markdown
    python3 bench/shared.py --rounds 3 --throughput-only --markdown   # the CPU table only (issue 21, item 5)
    python3 bench/shared.py --rounds 0 --latency-jobs 500 --markdown  # the latency table only
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import (
    OUR_GEARMAND,
    REPO,
    SCENARIO_ARGS,
    Server,
    generator_argv,
    loadavg,
    machine,
    pick_generator,
    revision,
    scaled,
    table,
)
from durability import private_postgres

sys.path.insert(0, str(REPO))
from protocols.binary.packets import Packet  # noqa: E402
from tests.integration.rawclient import Raw  # noqa: E402
from tests.integration.sharedqueue import RecordingWorker, submit_background  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (0 for one that is gone)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK


def postgres_pids(conninfo: str) -> tuple[list[int], list[int]]:
    """PostgreSQL's client backends (``postgres: USER DB HOST(PORT) ...``), and the postmaster with its other
    children (WAL writer, checkpointer, autovacuum launcher...)."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        data = conn.execute("SHOW data_directory").fetchone()[0]
        user = conn.execute("SELECT current_user").fetchone()[0]
    master = int(Path(data, "postmaster.pid").read_text().split()[0])
    ps = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(master)], capture_output=True, text=True).stdout
    backends, others = [], [master]
    for line in ps.splitlines():
        pid, _, args = line.strip().partition(" ")
        (backends if args.startswith(f"postgres: {user} ") else others).append(int(pid))
    return backends, others


def children_cpu() -> float:
    """User + system CPU seconds of this process's children that have ended (the load generators)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_config(label: str, servers: list[Server], gen: str, gload: str | None, jobs: int, conninfo: str) -> dict:
    share = scaled(SCENARIO_ARGS["bg"], jobs / len(servers) / 100_000)
    argvs = [generator_argv(gen, gload, "bg", server, 120, 1, share) for server in servers]
    ours = [s.pid for s in servers]
    backends, others = postgres_pids(conninfo)  # now that the gateways have their sessions (backends)
    before = [cpu_seconds([pid]) for pid in ours], cpu_seconds(backends), cpu_seconds(others), children_cpu()
    start = time.monotonic()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for argv in argvs]
    outs = [proc.communicate(timeout=300) for proc in procs]
    wall = time.monotonic() - start
    per_gateway = [cpu_seconds([pid]) - was for pid, was in zip(ours, before[0], strict=True)]
    used_backends, used_others = cpu_seconds(backends) - before[1], cpu_seconds(others) - before[2]
    used_gen = children_cpu() - before[3]
    errors = [err.strip()[-300:] for proc, (_, err) in zip(procs, outs, strict=True) if proc.returncode]
    done = jobs if not errors else 0
    return {
        "label": label,
        "jobs_per_s": round(done / wall) if done else 0,
        "gateway_cpu_us_per_job": round(sum(per_gateway) / jobs * 1e6, 1),
        "postgres_cpu_us_per_job": round((used_backends + used_others) / jobs * 1e6, 1),
        "backends_cpu_us_per_job": round(used_backends / jobs * 1e6, 1),
        "pg_other_cpu_us_per_job": round(used_others / jobs * 1e6, 1),
        "generator_cpu_us_per_job": round(used_gen / jobs * 1e6, 1),
        "busiest_gateway_core": round(max(per_gateway) / wall, 3),
        "postgres_cores": round((used_backends + used_others) / wall, 3),
        "all_cores": round((sum(per_gateway) + used_backends + used_others + used_gen) / wall, 3),
        "error": "; ".join(errors),
    }


def latency(submit_port: int, worker_port: int, count: int, unique: bool = False) -> tuple[float, float]:
    """Median and p99 seconds of a foreground job's round trip, the worker on ``worker_port``; ``unique``: each
    job with a unique of its own (as libgearman's clients send), which shared mode coalesces cluster-wide."""
    function = b"lat%d%s" % (worker_port, b"u" if unique else b"")
    stop = threading.Event()

    def work() -> None:
        with contextlib.suppress(EOFError, OSError), Raw(worker_port) as raw:
            raw.send(Packet.CAN_DO, function)
            while not stop.is_set():
                raw.send(Packet.GRAB_JOB)
                kind, args = raw.recv(10)
                if kind == Packet.NO_JOB:
                    raw.send(Packet.PRE_SLEEP)
                    with contextlib.suppress(TimeoutError):
                        raw.recv(0.5)  # a NOOP, or nothing before we look at stop again
                    continue
                if kind == Packet.JOB_ASSIGN:
                    raw.send(Packet.WORK_COMPLETE, args[0], b"ok")

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    samples = []
    with Raw(submit_port) as client:
        deadline = time.monotonic() + 10
        while True:  # until the relay (or the local worker) serves the function
            client.send(Packet.SUBMIT_JOB, function, b"", b"warm")
            client.expect(Packet.JOB_CREATED)
            with contextlib.suppress(TimeoutError):
                if client.recv(2)[0] == Packet.WORK_COMPLETE:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the function is never served")
        for index in range(count):
            started = time.perf_counter()
            client.send(Packet.SUBMIT_JOB, function, b"u-%d-%d" % (time.monotonic_ns(), index) if unique else b"", b"x")
            client.expect(Packet.JOB_CREATED)
            client.expect(Packet.WORK_COMPLETE)
            samples.append(time.perf_counter() - started)
    stop.set()
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def latency_rows(name: str, a: int, b: int, count: int) -> list[list[str]]:
    """The latency table's rows: local and relayed, without and with a unique per job."""
    rows = []
    for label, worker_port, unique in (
        ("local worker", a, False),
        ("local worker, a unique per job", a, True),
        ("relayed (worker on another gateway)", b, False),
        ("relayed, a unique per job", b, True),
    ):
        median, p99 = latency(a, worker_port, count, unique)
        rows.append([name + label, f"{median * 1000:.2f}", f"{p99 * 1000:.2f}"])
    return rows


def claim_path(submit: list[Server], work: Server, jobs: int, conninfo: str, hold: bool) -> float:
    """Jobs/s of background jobs submitted to gateways without workers (handed to the cluster) and claimed by
    four raw workers on another gateway; ``hold``: with a transaction left open (and its snapshot held) for the
    whole run, which keeps vacuum from removing the dead rows that every claim and delete leaves."""
    import psycopg

    function = b"claim%d" % time.monotonic_ns()
    workers = [RecordingWorker(work.port, function) for _ in range(4)]
    for worker in workers:
        worker.start()
        worker.ready.wait(5)
    with contextlib.ExitStack() as stack:
        if hold:
            blocker = stack.enter_context(psycopg.connect(conninfo))
            blocker.execute("SELECT txid_current()")  # a transaction with an id, open until the end
        start = time.monotonic()
        threads = [
            threading.Thread(
                target=submit_background, args=(s.port, function, [b"%d" % i for i in range(jobs // len(submit))])
            )
            for s in submit
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        total = jobs // len(submit) * len(submit)
        while sum(len(w.done) for w in workers) < total:
            if time.monotonic() - start > 300:
                raise RuntimeError("claimed jobs did not all run within 300 s")
            time.sleep(0.01)
        wall = time.monotonic() - start
    for worker in workers:
        worker.stop()
    return total / wall


#: The CPU table's columns after the configuration: (heading, row key, format).
CPU_COLUMNS = [
    ("jobs/s (median)", "jobs_per_s", "{:,.0f}"),
    ("gateways CPU µs/job", "gateway_cpu_us_per_job", "{:.1f}"),
    ("PG backends µs/job", "backends_cpu_us_per_job", "{:.1f}"),
    ("PG other µs/job", "pg_other_cpu_us_per_job", "{:.1f}"),
    ("load generators µs/job", "generator_cpu_us_per_job", "{:.1f}"),
    ("busiest gateway, % of a core", "busiest_gateway_core", "{:.0%}"),
    ("PostgreSQL, cores", "postgres_cores", "{:.2f}"),
    ("all measured, cores", "all_cores", "{:.2f}"),
]


def cpu_table(rows: list[dict[str, Any]], labels: list[str], markdown: bool) -> str:
    """Medians over the rounds of each configuration."""
    lines = []
    for label in labels:
        mine = [r for r in rows if r["label"] == label and not r["error"]]
        if not mine:
            lines.append([label, "error"] + [""] * (len(CPU_COLUMNS) - 1))
            continue
        lines.append([label] + [form.format(statistics.median(r[key] for r in mine)) for _, key, form in CPU_COLUMNS])
    return table(["configuration"] + [heading for heading, _, _ in CPU_COLUMNS], lines, markdown)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=30_000)
    ap.add_argument("--latency-jobs", type=int, default=300)
    ap.add_argument("--claim-jobs", type=int, default=10_000, help="jobs per claim-path run")
    ap.add_argument("--generator", choices=("auto", "gload", "loadgen"), default="auto")
    ap.add_argument("--ours", default=OUR_GEARMAND)
    ap.add_argument(
        "--compare",
        metavar="GEARMAND",
        help="another gearmand (e.g. a wrapper running a baseline tree): its shared configurations and latencies "
        "are measured in the same run, interleaved with ours",
    )
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--throughput-only", action="store_true", help="only the jobs/s and CPU table")
    args = ap.parse_args()

    gen, gload = pick_generator(args.generator)
    workdir = Path(tempfile.mkdtemp(prefix="gg-shared-"))
    workdir.chmod(0o755)
    base = [args.ours, "-L", "127.0.0.1", "-p", "{PORT}", "-l", "none"]
    print(f"# machine: {machine()}; gearman-gateway {revision()}")
    print(f"# load before: {loadavg()}; generator: {gen}; {args.rounds} rounds of {args.jobs:,} jobs")
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        conninfo = stack.enter_context(private_postgres(workdir / "pg"))
        shared = ["-q", "postgres", "--libpq-conninfo", conninfo, "--shared"]
        configs = {
            "sqlite, 1 server": [["-q", "sqlite", "--data-dir", str(workdir / "sqlite")]],
            "postgres, 1 server": [["-q", "postgres", "--libpq-conninfo", conninfo]],
            "shared, 1 gateway": [shared],
            "shared, 2 gateways": [shared] * 2,
            "shared, 3 gateways": [shared] * 3,
        }
        binaries = {label: args.ours for label in configs}
        if args.compare:
            for label in ("shared, 1 gateway", "shared, 3 gateways"):
                configs["compare: " + label] = configs[label]
                binaries["compare: " + label] = args.compare
        for rnd in range(args.rounds):
            for label, options in configs.items():
                argv = [binaries[label], *base[1:]]
                servers = [Server(f"{label[:6]}{i}", argv + opts, workdir).start() for i, opts in enumerate(options)]
                try:
                    time.sleep(0.5)
                    row = run_config(label, servers, gen, gload, args.jobs, conninfo)
                finally:
                    for server in servers:
                        server.stop()
                row.update(round=rnd + 1, load=loadavg())
                rows.append(row)
                print(f"r{rnd + 1} {label:20} {row}", flush=True)
        if args.throughput_only:
            print(f"# load after: {loadavg()}\n")
            print(cpu_table(rows, list(configs), args.markdown))
            return 1 if any(r["error"] for r in rows) else 0
        claims: dict[bool, list[float]] = {False: [], True: []}
        latencies: list[list[str]] = []
        if args.compare:
            gateways = [Server(f"cmp{i}", [args.compare, *base[1:], *shared], workdir).start() for i in range(2)]
            try:
                time.sleep(1.0)
                latencies = latency_rows("compare: ", gateways[0].port, gateways[1].port, args.latency_jobs)
            finally:
                for server in gateways:
                    server.stop()
        a, b, c = (Server(f"relay{i}", base + shared, workdir).start() for i in range(3))
        try:
            time.sleep(1.0)
            latencies[:0] = latency_rows("", a.port, b.port, args.latency_jobs)
            for _ in range(args.rounds):
                for hold in (False, True):
                    claims[hold].append(claim_path([a, b], c, args.claim_jobs, conninfo, hold))
                    print(f"claim path, transaction held open {hold}: {claims[hold][-1]:,.0f} jobs/s", flush=True)
        finally:
            a.stop()
            b.stop()
            c.stop()
    print(f"# load after: {loadavg()}\n")
    if rows:
        print(cpu_table(rows, list(configs), args.markdown))
        print()
    print(
        table(
            ["foreground job", "median ms", "p99 ms"],
            latencies,
            args.markdown,
        )
    )
    if not claims[False]:  # --rounds 0: the latency table only
        return 1 if any(r["error"] for r in rows) else 0
    print()
    print(
        table(
            ["claim path (submitted to 2 gateways, run by workers on a third)", "jobs/s (median)"],
            [
                ["no long transaction", f"{statistics.median(claims[False]):,.0f}"],
                ["a transaction held open for the whole run", f"{statistics.median(claims[True]):,.0f}"],
            ],
            args.markdown,
        )
    )
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
