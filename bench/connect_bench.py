#!/usr/bin/env python3
"""Connect/close cycles per second on the binary port: ours against Debian's gearmand, side by side.

What PHP and Perl web apps do that open a Gearman connection per page view. bench/connload.c (built with
gcc, like gload) runs ``--cycles`` connect/close cycles from ``--processes`` processes against each server,
with the default listen backlog (32, both servers) and with ``-b 1024``; the rounds are interleaved. Per
run: cycles/s, connects slower than 0.5 s (a SYN dropped by a full accept queue is retried after 1 s),
accept-queue overflows (``nstat TcpExtListenOverflows``: machine-wide, so other programs' count too), and
the server's CPU time per cycle (user and system, from /proc) next to the load generator's, which says
which side was the bottleneck.

    .venv/bin/python bench/connect_bench.py                           # 20,000 cycles, 4 processes, 3 rounds
    .venv/bin/python bench/connect_bench.py --cycles 5000 --rounds 1 --markdown
    .venv/bin/python bench/connect_bench.py --tree /tmp/base --backlogs 1024  # ... and an older tree of ours
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchlib import BENCH, DEBIAN_GEARMAND, OUR_GEARMAND, Server, loadavg, machine, revision, table

CONNLOAD_C = BENCH / "connload.c"


def build_connload(dest_dir: Path | None = None) -> str:
    """bench/connload.c built with gcc (reused while newer than the source)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        raise SystemExit("gcc is needed to build bench/connload.c")
    dest = (dest_dir or Path(tempfile.gettempdir())) / "gearman-gateway-connload"
    if dest.exists() and dest.stat().st_mtime >= CONNLOAD_C.stat().st_mtime:
        return str(dest)
    subprocess.run([gcc, "-O2", "-o", str(dest), str(CONNLOAD_C)], check=True)
    return str(dest)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def overflows() -> int:
    """The kernel's TcpExtListenOverflows counter (all listening sockets of the machine)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split()[1:], values.split()[1:], strict=True)).get("ListenOverflows", 0))
    return 0


def run_once(connload: str, server: Server, cycles: int, processes: int) -> dict[str, Any]:
    user0, sys0 = cpu_seconds(server.pid)
    generator0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    overflow0 = overflows()
    done = subprocess.run(
        [connload, "-p", str(server.port), "-n", str(cycles), "-c", str(processes)],
        capture_output=True,
        text=True,
        timeout=max(600, cycles),
        check=False,
    )
    generator1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    user1, sys1 = cpu_seconds(server.pid)
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    done_cycles = max(row["cycles"], 1)
    row["overflows"] = overflows() - overflow0
    row["server_user_us"] = (user1 - user0) / done_cycles * 1e6
    row["server_sys_us"] = (sys1 - sys0) / done_cycles * 1e6
    row["generator_us"] = (
        (generator1.ru_utime - generator0.ru_utime + generator1.ru_stime - generator0.ru_stime) / done_cycles * 1e6
    )
    row["server_cpu_share"] = ((user1 - user0) + (sys1 - sys0)) / max(row["seconds"], 1e-9)
    return row


def tree_gearmand(tree: Path) -> list[str]:
    """Our gearmand from another source tree (put first on the import path), e.g. a ``git worktree``."""
    code = (
        f"import sys; sys.path.insert(0, {str(tree)!r}); "
        "from gearman_gateway.cli.gearmand import main; sys.exit(main())"
    )
    return [sys.executable, "-c", code]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=20_000, help="connect/close cycles per run (default 20,000)")
    parser.add_argument("--processes", type=int, default=4, help="connecting processes (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--backlogs", default="default,1024", help="comma list: default (32) and/or numbers")
    parser.add_argument("--tree", action="append", default=[], help="another source tree of ours to run too")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    connload = build_connload()
    workdir = Path(tempfile.mkdtemp(prefix="gg-connect-"))
    servers: list[Server] = []
    for backlog in args.backlogs.split(","):
        extra = [] if backlog == "default" else ["-b", backlog]
        ours = [OUR_GEARMAND, "-L", "127.0.0.1", "-p", "{PORT}", "-q", "memory", "-l", "none", *extra]
        servers.append(Server(f"ours {backlog}", ours, workdir))
        for index, tree in enumerate(args.tree, 1):
            other = [*tree_gearmand(Path(tree).resolve()), *ours[1:]]
            servers.append(Server(f"tree{index} {backlog}", other, workdir))
        if os.access(DEBIAN_GEARMAND, os.X_OK):
            theirs = [DEBIAN_GEARMAND, "-L", "127.0.0.1", "-p", "{PORT}", "-l", str(workdir / "gearmand.log"), *extra]
            servers.append(Server(f"gearmand {backlog}", theirs, workdir))
    print(f"# {machine()}; ours at {revision()}; load average before: {loadavg()}", file=sys.stderr)
    rows: dict[str, list[dict[str, Any]]] = {server.label: [] for server in servers}
    try:
        for server in servers:
            server.start()
        for round_number in range(args.rounds):
            for server in servers:
                row = run_once(connload, server, args.cycles, args.processes)
                rows[server.label].append(row)
                print(f"# round {round_number + 1} {server.label}: {json.dumps(row)}", file=sys.stderr)
    finally:
        for server in servers:
            server.stop()
    print(f"# load average after: {loadavg()}", file=sys.stderr)
    header = [
        "server, backlog",
        "cycles/s",
        "ratio",
        "connects > 0.5 s",
        "overflows",
        "p99 ms",
        "server µs/cycle (user+sys)",
        "server CPU share",
        "generator µs/cycle",
    ]
    out = []
    for label, found in rows.items():
        if not found:
            continue
        middle = sorted(found, key=lambda r: r["cycles_per_s"])[len(found) // 2]
        backlog = label.split()[1]
        reference = rows.get(f"gearmand {backlog}") or []
        ratio = (
            f"{middle['cycles_per_s'] / statistics.median(r['cycles_per_s'] for r in reference):.2f}"
            if reference
            else "-"
        )
        out.append(
            [
                label,
                f"{middle['cycles_per_s']:,.0f}",
                ratio,
                str(middle["slow"]),
                str(middle["overflows"]),
                f"{middle['p99_ms']:.2f}",
                f"{middle['server_user_us']:.0f}+{middle['server_sys_us']:.0f}",
                f"{middle['server_cpu_share']:.2f}",
                f"{middle['generator_us']:.0f}",
            ]
        )
    print(table(header, out, markdown=args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
