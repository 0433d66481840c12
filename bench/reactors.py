#!/usr/bin/env python3
"""Which event loop our server should run on, measured: ``gearmand --reactor epoll|asyncio|uvloop``
side by side, interleaved, with the same load generator and scenarios as compare.py.

``epoll`` is the server's own reactor (gearman_gateway/reactor.py: Twisted's epoll reactor, with the end
of turn where replies are written and grabs are answered); ``asyncio`` and ``uvloop`` run Twisted's asyncio
reactor on the standard loop or on uvloop (``pip install uvloop``; skipped when missing). The figures are
ratios to ``epoll`` from the same run.

    python3 bench/reactors.py                        # fg tasks bg, 3 rounds
    python3 bench/reactors.py --scenarios fg --rounds 5 --markdown
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import (
    OUR_GEARMAND,
    SCENARIO_ARGS,
    Server,
    fmt,
    generator_argv,
    loadavg,
    machine,
    median,
    pick_generator,
    revision,
    run_generator,
    scaled,
    table,
    write_jsonl,
)

FIGURES = {"fg": "jobs_per_s", "tasks": "jobs_per_s", "bg": "jobs_per_s", "ping": "jobs_per_s", "large": "MB_per_s"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scenarios", nargs="+", default=["fg", "tasks", "bg"], choices=list(FIGURES))
    ap.add_argument("--generator", choices=("auto", "gload", "loadgen"), default="auto")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every job count")
    ap.add_argument("--tlimit", type=float, default=30.0)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "gearman-gateway-reactors.jsonl")
    args = ap.parse_args()

    kinds = ["epoll", "asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])
    if "uvloop" not in kinds:
        print("# uvloop is not installed: measuring epoll and asyncio only", file=sys.stderr)
    gen, gload = pick_generator(args.generator)
    workdir = Path(tempfile.mkdtemp(prefix="gg-reactors-"))
    servers = [
        Server(kind, [OUR_GEARMAND, "-L", "127.0.0.1", "-p", "{PORT}", "-l", "none", "-q", "memory", "--reactor", kind],
               workdir)
        for kind in kinds
    ]  # fmt: skip
    print(f"# machine: {machine()}; gearman-gateway {revision()}; generator {gen}")
    print(f"# load before: {loadavg()}")
    rows: list[dict[str, Any]] = []
    try:
        for server in servers:
            server.start()
        for scenario in args.scenarios:
            for rnd in range(args.rounds):
                for server in servers:
                    options = scaled(SCENARIO_ARGS[scenario], args.scale)
                    row = run_generator(generator_argv(gen, gload, scenario, server, args.tlimit, 2, options), 400)
                    row.update(scenario=scenario, label=server.label, round=rnd + 1)
                    rows.append(row)
                    print(f"{scenario:6} r{rnd + 1} {server.label:8} {row.get(FIGURES[scenario], row)}", flush=True)
                    time.sleep(0.5)
    finally:
        for server in servers:
            server.stop()
        write_jsonl(args.out, rows)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"# load after: {loadavg()}; raw rows in {args.out}\n")
    out = []
    for scenario in args.scenarios:
        key = FIGURES[scenario]
        sel = [r for r in rows if r["scenario"] == scenario and "error" not in r]
        base = median([r for r in sel if r["label"] == "epoll"], key)
        for kind in kinds:
            value = median([r for r in sel if r["label"] == kind], key)
            ratio = f"{value / base:.2f}" if value and base else "-"
            out.append([scenario, key, kind, fmt(value), ratio])
    print(table(["scenario", "figure (median)", "reactor", "value", "÷ epoll"], out, args.markdown))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
