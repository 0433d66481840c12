#!/usr/bin/env python3
"""Instructions per job over the memcached frontend against the same work over the binary protocol, counted
by valgrind's callgrind (a figure that does not move with the machine's load; see bench/instructions.py).

One server per source tree (``gearmand -q memory -r memcached`` under callgrind); per pair of scenarios,
each is run once to warm up, the counters are zeroed, the measured run goes, and the counters are dumped:

  mc-submit  bench/mcload.c ``-m submit``: 4 connections pipeline ``set bench`` (window 100), 4 memcached
             workers take the jobs with ``get bench/t=400``      -- against gload ``bg`` (the same shape)
  mc-rt      bench/mcload.c ``-m rt``: 16 clients ``set bench/<unique>`` -> ``get bench/<unique>/t=400``,
             16 workers ``get bench/open/t=400`` -> ``set bench/close``  -- against gload ``fg``
  mc-rt-noreply    ``mc-rt`` with each ``set`` sent ``noreply`` (pymemcache's default), its ``get`` right after
  mc-rt-pipelined  ``mc-rt`` with ``set`` and ``get`` in one write (one round trip)  -- both against gload ``fg``
  mc-set     bench/mcload.c ``-m submit -w 0``: 4 connections pipeline ``set mcqueued`` (window 100), nobody
             works them: the ``set`` alone                  -- against loadgen.py ``queue`` (SUBMIT_JOB_BG alone)

The ratio binary ÷ memcached of instructions per job is the throughput ratio the server would reach where it
is the bottleneck (system calls aside, which callgrind does not count).

    .venv/bin/python bench/mc_instructions.py                      # this tree
    .venv/bin/python bench/mc_instructions.py --tree /tmp/base     # ... and an older one
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    LOADGEN,
    LOADGEN_ONLY,
    REPO,
    SCENARIO_ARGS,
    Server,
    build_gload,
    ensure_debian_package,
    free_port,
    revision,
    table,
)
from instructions import GENERATOR_TIMEOUT, START_TIMEOUT, dumped_instructions, server_argv
from memcached_bench import build_mcload

#: memcached scenario -> (mcload arguments, the binary scenario doing the same work)
PAIRS = {
    "mc-submit": (["-m", "submit", "-c", "4", "-W", "100", "-w", "4", "-n", "5000"], "bg"),
    "mc-rt": (["-m", "rt", "-c", "16", "-w", "16", "-n", "2000"], "fg"),
    "mc-set": (["-m", "submit", "-c", "4", "-W", "100", "-w", "0", "-n", "5000", "-f", "mcqueued"], "queue"),
    "mc-rt-noreply": (["-m", "rt", "-N", "-c", "16", "-w", "16", "-n", "2000"], "fg"),
    "mc-rt-pipelined": (["-m", "rt", "-P", "-c", "16", "-w", "16", "-n", "2000"], "fg"),
}
#: The binary scenarios at the same job counts as their memcached pair.
BINARY_JOBS = {"bg": "5000", "fg": "2000", "queue": "5000"}


def generator(name: str, server: Server, mc_port: int, gload: str, mcload: str) -> list[str]:
    if name in PAIRS:
        return [mcload, "-p", str(mc_port), "-t", str(GENERATOR_TIMEOUT), *PAIRS[name][0]]
    args = list(SCENARIO_ARGS[name])
    args[args.index("-n") + 1] = BINARY_JOBS[name]
    if name in LOADGEN_ONLY:  # (a Python generator: callgrind counts the server only)
        common = ["-H", "127.0.0.1", "-p", str(server.port), "-P", str(server.pid), "-t", "600", "-j", "1"]
        return [sys.executable, str(LOADGEN), *common, "-s", name, *args]
    return [gload, "-h", "127.0.0.1", "-p", str(server.port), "-P", str(server.pid), "-s", name, "-t", "600", *args]


def run_once(argv: list[str]) -> int:
    """Jobs done by one generator run (mcload's ``n``, gload's and loadgen.py's ``completed``)."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=GENERATOR_TIMEOUT, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{argv[0]}: {done.stderr.strip()[-300:]}")
    row = json.loads(lines[-1])
    if row.get("errors"):
        raise RuntimeError(f"{argv}: {row}")
    return int(row.get("completed", row.get("n", 0)))


def wait_listening(port: int, timeout: float) -> None:
    """The memcached frontend may listen a little after the Gearman port (under callgrind, seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


#: Pause after each run: the generator's last waits end (t=400) before the next run's jobs come.
SETTLE = 1.0


def measure(server: Server, argv: list[str], out_dir: Path) -> float:
    run_once(argv)  # warm up
    time.sleep(SETTLE)
    subprocess.run(["callgrind_control", "-z", str(server.pid)], capture_output=True, check=True)
    jobs = run_once(argv)
    time.sleep(SETTLE)  # the waits the generator left behind end (counted: their cost is part of the run)
    before = set(out_dir.glob(f"{server.label}.{server.pid}*"))
    subprocess.run(["callgrind_control", "-d", str(server.pid)], capture_output=True, check=True)
    return dumped_instructions(out_dir, server.label, server.pid, before) / jobs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], help="another source tree to count (repeatable)")
    parser.add_argument("--pairs", nargs="+", choices=list(PAIRS), default=list(PAIRS))
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get install valgrind")
    args = parser.parse_args()

    ensure_debian_package("/usr/bin/valgrind", "valgrind", not args.no_install)
    out_dir = Path(tempfile.mkdtemp(prefix="gg-mc-instructions-"))
    gload = build_gload()
    if gload is None:
        raise SystemExit("gload is needed (gcc and ../shared/bench/gload.c)")
    mcload = build_mcload(out_dir)
    trees = [REPO, *(Path(t).resolve() for t in args.tree)]
    print(f"# {revision()}; callgrind dumps in {out_dir}", file=sys.stderr)
    rows = []
    try:
        for index, tree in enumerate(trees):
            label = f"tree{index}"
            mc_port = free_port()
            argv = server_argv(tree, out_dir, label) + ["-r", "memcached", "--memcached-port", str(mc_port)]
            server = Server(label, argv, out_dir)
            server.start(timeout=START_TIMEOUT)
            wait_listening(mc_port, START_TIMEOUT)
            try:
                for pair in args.pairs:
                    binary = PAIRS[pair][1]
                    mc = measure(server, generator(pair, server, mc_port, gload, mcload), out_dir)
                    bin_ = measure(server, generator(binary, server, mc_port, gload, mcload), out_dir)
                    print(f"{pair:9} {tree}  {mc:,.0f} vs {binary} {bin_:,.0f} per job", file=sys.stderr)
                    rows.append([pair, str(tree), f"{mc:,.0f}", f"{bin_:,.0f}", f"{bin_ / mc:.2f}"])
            finally:
                server.stop()
        header = ["pair", "tree", "memcached instr/job", "binary instr/job", "binary ÷ memcached"]
        print(table(header, rows, args.markdown))
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
