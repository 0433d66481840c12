#!/usr/bin/env python3
"""The memcached frontend against the binary protocol (same server, same work) and a real memcached 1.6.

In one run, rounds interleaved (the machine is shared: ratios within a round are what to read):

  submit  memcached: 4 connections pipeline ``set bench`` (window 100) while 4 memcached workers take the
          jobs with ``get bench/t=400``  -- binary: gload ``bg``, 4 clients pipelining SUBMIT_JOB_BG
          (window 100), 4 workers. Reported: submits/s (until the last STORED / JOB_CREATED) and jobs/s
          (until the last job is done).
  rt      memcached: 16 clients each ``set bench/<unique>`` -> STORED -> ``get bench/<unique>/t=400`` until
          the result comes; 16 memcached workers ``get bench/open/t=400`` -> ``set bench/close`` (echo)
          -- binary: gload ``fg``, 16 clients SUBMIT_JOB -> WORK_COMPLETE, 16 workers. Round trips/s.
  rt-noreply  the same, each client's ``set`` with ``noreply`` (pymemcache's default) and its ``get`` in a
          write of its own right after: no STORED to wait for
  rt-pipelined  the same, ``set`` and ``get`` in one write (one round trip, as a binary SUBMIT_JOB is)
  rt-gearman-workers  ``rt`` with 16 Gearman (binary protocol) workers instead of memcached ones
  ceiling a real memcached (/usr/bin/memcached, its default 4 threads): ``set``/``get`` pairs/s with 16
          clients, and pipelined ``set``/s like ``submit`` (no workers).

Load generators: bench/mcload.c (one thread, memcached text protocol) and ../shared/bench/gload.c (one
thread, Gearman binary), both built with gcc. The CPU seconds of the server and of the generator are
reported for each run: the side near 1 CPU-second per wall second is the bottleneck.

    .venv/bin/python bench/memcached_bench.py                 # 3 rounds
    .venv/bin/python bench/memcached_bench.py --rounds 5 --jobs 50000 --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchlib import HOST, OUR_GEARMAND, Server, build_gload, free_port, loadavg, machine, revision

BENCH = Path(__file__).resolve().parent
MCLOAD_C = BENCH / "mcload.c"
MEMCACHED = "/usr/bin/memcached"
TIMEOUT = 600.0


def build_mcload(dest_dir: Path) -> str:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        raise SystemExit("gcc is needed to build bench/mcload.c")
    dest = dest_dir / "mcload"
    subprocess.run([gcc, "-O2", "-o", str(dest), str(MCLOAD_C)], check=True)
    return str(dest)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(argv: list[str], server_pid: int) -> dict[str, Any]:
    before = cpu_seconds(server_pid)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    server_cpu = cpu_seconds(server_pid) - before
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": done.stderr.strip()[-300:]}
    row = json.loads(lines[-1])
    row["server_cpu"] = server_cpu
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=30000, help="jobs per submit run")
    parser.add_argument("--round-trips", type=int, default=10000, help="round trips per rt run")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if not os.access(MEMCACHED, os.X_OK):
        raise SystemExit(f"{MEMCACHED} is missing (apt-get install memcached)")
    workdir = Path(tempfile.mkdtemp(prefix="memcached-bench-"))
    mcload = build_mcload(workdir)
    gload = build_gload(workdir)
    if gload is None:
        raise SystemExit("gload did not build (gcc and ../shared/bench/gload.c are needed)")
    mc_port = free_port()
    ours = Server(
        "ours",
        [OUR_GEARMAND, "-L", HOST, "-p", "{PORT}", "-q", "memory", "-l", "none", "-r", "memcached"]
        + ["--memcached-port", str(mc_port)],
        workdir,
    )
    real = Server("memcached", [MEMCACHED, "-l", HOST, "-p", "{PORT}", "-U", "0", "-u", "root", "-m", "1024"], workdir)
    n, rt = str(args.jobs), str(args.round_trips)
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        ours.start()
        real.start()
        runs = {
            "memcached submit": (ours, [mcload, "-p", str(mc_port), "-m", "submit", "-c", "4", "-W", "100", "-w", "4"]),
            "binary bg": (ours, [gload, "-s", "bg", "-c", "4", "-W", "100", "-w", "4", "-b", "64"]),
            "memcached rt": (ours, [mcload, "-p", str(mc_port), "-m", "rt", "-c", "16", "-w", "16", "-n", rt]),
            "memcached rt-noreply": (
                ours,
                [mcload, "-p", str(mc_port), "-N", "-m", "rt", "-c", "16", "-w", "16", "-n", rt],
            ),
            "memcached rt-pipelined": (
                ours,
                [mcload, "-p", str(mc_port), "-P", "-m", "rt", "-c", "16", "-w", "16", "-n", rt],
            ),
            "memcached rt-gearman-workers": (
                ours,
                [mcload, "-p", str(mc_port), "-g", "{GEARMAN_PORT}", "-m", "rt", "-c", "16", "-w", "16", "-n", rt],
            ),
            "binary fg": (ours, [gload, "-s", "fg", "-c", "16", "-w", "16", "-b", "64", "-n", rt]),
            "real set/get": (real, [mcload, "-m", "setget", "-c", "16", "-n", rt]),
            "real set": (real, [mcload, "-m", "submit", "-c", "4", "-W", "100", "-w", "0"]),
        }
        for round_number in range(args.rounds):
            print(f"# round {round_number + 1}/{args.rounds}, load {loadavg()}", file=sys.stderr)
            for name, (server, argv) in runs.items():
                argv = [*argv, "-p", str(server.port)] if "-p" not in argv else argv
                argv = [str(server.port) if arg == "{GEARMAN_PORT}" else arg for arg in argv]
                if name in ("memcached submit", "binary bg", "real set"):
                    argv = [*argv, "-n", n]
                if argv[0] == gload:
                    argv = [*argv, "-h", HOST, "-t", "300"]
                row = run(argv, server.pid)
                results.setdefault(name, []).append(row)
                print(f"#   {name}: {json.dumps(row)}", file=sys.stderr)
    finally:
        ours.stop()
        real.stop()

    def med(name: str, key: str) -> float:
        values = [row[key] for row in results[name] if key in row and row[key] is not None]
        return statistics.median(values) if values else float("nan")

    def busy(name: str, cpu_key: str, wall_key: str) -> float:
        """CPU seconds per wall second (1.0: one core all the time)."""
        return statistics.median(row[cpu_key] / row[wall_key] for row in results[name] if row.get(wall_key))

    submits = med("memcached submit", "submit_rate"), med("binary bg", "submit_per_s"), med("real set", "rate")
    round_trips = med("memcached rt", "rate"), med("binary fg", "jobs_per_s"), med("real set/get", "rate")
    table = [
        ("set submits/s", *submits),
        ("jobs done/s (submit + work)", med("memcached submit", "rate"), med("binary bg", "jobs_per_s"), None),
        ("set -> result round trips/s", *round_trips),
        ("... set noreply, then get (pymemcache's default)", med("memcached rt-noreply", "rate"), round_trips[1], None),
        ("... set and get in one write (one round trip)", med("memcached rt-pipelined", "rate"), round_trips[1], None),
        ("... with Gearman workers", med("memcached rt-gearman-workers", "rate"), round_trips[1], None),
    ]
    sep = " | " if args.markdown else "  "
    header = ["measure", "memcached frontend", "binary protocol", "ratio", "real memcached 1.6", "ratio to it"]
    print(("| " if args.markdown else "") + sep.join(header) + (" |" if args.markdown else ""))
    if args.markdown:
        print("|" + "---|" * len(header))
    for label, ours_value, binary_value, real_value in table:
        cells = [
            label,
            f"{ours_value:,.0f}",
            f"{binary_value:,.0f}",
            f"{ours_value / binary_value:.2f}",
            "—" if real_value is None else f"{real_value:,.0f}",
            "—" if real_value is None else f"{ours_value / real_value:.3f}",
        ]
        print(("| " if args.markdown else "") + sep.join(cells) + (" |" if args.markdown else ""))
    print()
    print("server CPU per job (µs, medians; the load-independent figure on a shared machine):")
    for name, count in (
        ("memcached submit", "n"),
        ("binary bg", "jobs"),
        ("memcached rt", "n"),
        ("memcached rt-noreply", "n"),
        ("memcached rt-pipelined", "n"),
        ("memcached rt-gearman-workers", "n"),
        ("binary fg", "jobs"),
        ("real set/get", "n"),
        ("real set", "n"),
    ):
        per_job = statistics.median(row["server_cpu"] / row[count] * 1e6 for row in results[name] if row.get(count))
        print(f"  {name:28s} {per_job:8.1f}")
    print("CPU seconds per wall second, server / generator (medians):")
    for name, cpu, wall, gen in (
        ("memcached submit", "server_cpu", "seconds", "cpu"),
        ("binary bg", "server_cpu", "wall_s", "gen_cpu_s"),
        ("memcached rt", "server_cpu", "seconds", "cpu"),
        ("memcached rt-noreply", "server_cpu", "seconds", "cpu"),
        ("memcached rt-pipelined", "server_cpu", "seconds", "cpu"),
        ("memcached rt-gearman-workers", "server_cpu", "seconds", "cpu"),
        ("binary fg", "server_cpu", "wall_s", "gen_cpu_s"),
        ("real set/get", "server_cpu", "seconds", "cpu"),
        ("real set", "server_cpu", "seconds", "cpu"),
    ):
        print(f"  {name:28s} {busy(name, cpu, wall):.2f} / {busy(name, gen, wall):.2f}")
    print(f"\n{machine()}; load {loadavg()}; revision {revision()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
