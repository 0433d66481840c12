#!/usr/bin/env python3
"""Our server against Debian's C gearmand 1.1.20, side by side in one run, with the ratios of issue 6's goals.

Starts both servers on free loopback ports (ours: the ``gearmand`` script next to this Python, ``-q memory``;
Debian's: /usr/sbin/gearmand, installed with apt-get when missing), runs every scenario A,B,A,B,... for
``--rounds`` rounds with one load generator, and prints the medians, ours/gearmand and the goal of each figure.
Every process it starts is stopped by its PID at the end.

``--others gear perl`` adds the two servers issue 6 also names ("every figure at least 2x OpenStack gear and
the Perl server"), interleaved with the others in every round, and a second table: each throughput figure
and KiB RSS per idle connection of each of them, ours/theirs and the goal (ours >= 2x; RSS ours <= 0.5x).
``gear`` is OpenStack gear's pure-Python server, run as ../shared/bench/servers/gear_server.py PORT --nodelay
with this Python (which must have the PyPI package ``gear``: use the project's .venv/bin/python); its workers
use GRAB_JOB_UNIQ (``-u`` for either generator; loadgen.py's ping sends GRAB_JOB whatever -u says, so gear's
ping runs with gload only). ``perl`` is Gearman::Server, /usr/bin/gearmand from Debian's gearman-server
(installed with apt-get when missing). A run that hits ``--tlimit`` (gear's idle scenario is slow) keeps its
rate over what completed and is marked "(timeout)" in that table.

Generators (``--generator``): ``gload`` is the neutral C one in ../shared/bench (built with gcc), ``loadgen``
is bench/loadgen.py (Python, several processes), ``auto`` takes gload when it builds, ``both`` runs every
scenario with each and adds a table of how far loadgen's figures are from gload's. The ``queue`` scenario
(RSS after 100k queued background jobs of 64 bytes) always uses loadgen.py; it and ``idle`` run on freshly
started servers, so that RSS growth is not hidden by memory that earlier runs freed.

    python3 bench/compare.py                         # fg tasks bg large idle queue, 3 rounds
    python3 bench/compare.py --rounds 5 --scenarios fg bg --markdown
    python3 bench/compare.py --generator both --scenarios fg tasks bg
    python3 bench/compare.py --pin 0:1 --generator both --procs 1   # server on CPU 0, generator on CPU 1
    .venv/bin/python bench/compare.py --scenarios ping fg tasks bg large idle --others gear perl
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import (
    DEBIAN_GEARMAND,
    GEAR_SERVER,
    LOADGEN_ONLY,
    OUR_GEARMAND,
    PERL_GEARMAND,
    SCENARIO_ARGS,
    Server,
    ensure_debian_package,
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

#: (scenario, key, what, goal): goal ">=x"/"<=x" is on ours/gearmand, "abs<=x" on our own figure.
FIGURES: list[tuple[str, str, str, str]] = [
    ("ping", "jobs_per_s", "round trips/s", ""),
    ("ping", "p99_ms", "p99 ms", ""),
    ("fg", "jobs_per_s", "jobs/s", ">=1.0"),
    ("fg", "p50_ms", "p50 ms", ""),
    ("fg", "p99_ms", "p99 ms", "<=1.0"),
    ("tasks", "jobs_per_s", "jobs/s", ">=1.0"),
    ("bg", "jobs_per_s", "jobs/s end to end", ">=1.0"),
    ("bg", "submit_per_s", "submits/s acknowledged", ""),
    ("large", "MB_per_s", "MB/s", ">=0.5"),
    ("idle", "jobs_per_s", "jobs/s", ""),
    ("idle", "p99_ms", "p99 ms", ""),
    ("idle", "rss_per_idle_conn_kb", "KiB RSS per idle connection", "abs<=4"),
    ("queue", "rss_after_kb", "RSS KiB with 100k queued", ""),
    ("queue", "rss_per_queued_job_b", "RSS bytes per queued job", ""),
]
#: Scenarios that measure RSS growth: each run gets freshly started servers, whose allocator has no memory freed
#: by earlier runs to reuse (on a warm server 5,000 idle connections can cost no RSS at all).
FRESH = {"idle", "queue"}
DEFAULT_SCENARIOS = ["fg", "tasks", "bg", "large", "idle", "queue"]
#: --others: the other servers issue 6 compares with, and what each is.
OTHERS = {
    "gear": "OpenStack gear's pure-Python server (../shared/bench/servers/gear_server.py --nodelay)",
    "perl": f"Perl Gearman::Server ({PERL_GEARMAND}, Debian's gearman-server)",
}
#: (scenario, key, what, goal) of the --others table: goal on ours/theirs, issue 6's "at least 2x" (RSS: half).
OTHER_FIGURES: list[tuple[str, str, str, str]] = [
    ("ping", "jobs_per_s", "round trips/s", ""),  # the floor, not one of issue 6's figures
    ("fg", "jobs_per_s", "jobs/s", ">=2.0"),
    ("tasks", "jobs_per_s", "jobs/s", ">=2.0"),
    ("bg", "jobs_per_s", "jobs/s end to end", ">=2.0"),
    ("large", "MB_per_s", "MB/s", ">=2.0"),
    ("idle", "jobs_per_s", "jobs/s", ">=2.0"),
    ("idle", "rss_per_idle_conn_kb", "KiB RSS per idle connection", "<=0.5"),
]
#: Idle connections opened at once against gear, which listens with backlog 1 (gload's default, 2, works).
GEAR_IDLE_BATCH = 2
#: loadgen.py scenarios that ignore -u: its ping always sends GRAB_JOB, which gear never answers, so a server
#: that needs GRAB_JOB_UNIQ runs them with gload only.
LOADGEN_IGNORES_UNIQ = {"ping"}


def ensure_debian_gearmand(install: bool) -> None:
    """The reference C gearmand, /usr/sbin/gearmand from gearman-job-server."""
    ensure_debian_package(DEBIAN_GEARMAND, "gearman-job-server", install)


def ensure_gear() -> None:
    """gear_server.py runs with this Python: fail now, not at the first scenario, if it cannot import gear."""
    if not GEAR_SERVER.exists():
        raise SystemExit(f"--others gear: {GEAR_SERVER} is missing")
    if subprocess.run([sys.executable, "-c", "import gear"], capture_output=True, check=False).returncode != 0:
        raise SystemExit(f"--others gear: {sys.executable} cannot import gear (run with .venv/bin/python)")


def ensure_others(names: list[str], install: bool) -> None:
    """Check (and install) the --others servers before anything starts."""
    if "gear" in names:
        ensure_gear()
    if "perl" in names:
        ensure_debian_package(PERL_GEARMAND, "gearman-server", install)


def other_servers(names: list[str], workdir: Path, cpus: list[int] | None) -> list[Server]:
    """The --others servers, in the order given (each once)."""
    servers = []
    for name in dict.fromkeys(names):
        if name == "gear":
            argv = [sys.executable, str(GEAR_SERVER), "{PORT}", "--nodelay"]
            servers.append(Server("gear", argv, workdir, cpus, uniq=True, idle_batch=GEAR_IDLE_BATCH))
        elif name == "perl":
            servers.append(Server("perl", [PERL_GEARMAND, "-L", "127.0.0.1", "-p", "{PORT}"], workdir, cpus))
    return servers


def parse_cpus(text: str) -> list[int]:
    return [int(c) for c in text.split(",") if c != ""]


def short(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"ERROR {row['error']}"
    keys = ("jobs_per_s", "submit_per_s", "MB_per_s", "p99_ms", "rss_per_idle_conn_kb", "rss_per_queued_job_b")
    figures = " ".join(f"{k}={row[k]}" for k in keys if k in row)
    timeout = " TIMEOUT" if row.get("timeout") else ""
    return f"{figures} gen_cpu_s={row.get('gen_cpu_s')} server_cpu_s={row.get('server_cpu_s')}{timeout}"


def run_all(args: argparse.Namespace, servers: list[Server], generators: list[tuple[str, str | None]]) -> list[dict]:
    """Every scenario, round and server (interleaved), with each generator; returns the JSON rows."""
    rows: list[dict[str, Any]] = []
    gen_cpus = parse_cpus(args.pin.split(":")[1]) if args.pin else None
    for scenario in args.scenarios:
        fresh = scenario in FRESH
        gens = [(n, p) for n, p in generators if scenario not in LOADGEN_ONLY or n == "loadgen"]
        if not gens:
            gens = [("loadgen", None)]
        for server in servers:
            if fresh:
                server.stop()
            elif not server.alive:
                server.start()
                print(f"# {server.label}: pid {server.pid}: {' '.join(server.argv)}")
        for rnd in range(args.rounds):
            for server in servers:
                for gen, gload in gens:
                    if gen == "loadgen" and server.uniq and scenario in LOADGEN_IGNORES_UNIQ:
                        print(f"{scenario:6} r{rnd + 1} {server.label:9} {gen:8} skipped: it sends GRAB_JOB")
                        continue
                    if fresh:
                        server.start()
                    elif not server.alive:
                        print(f"# {server.label} died ({server.log_tail(5)}); restarting", file=sys.stderr)
                        server.start()
                    options = scaled(SCENARIO_ARGS[scenario], args.scale, args.idle)
                    argv = generator_argv(gen, gload, scenario, server, args.tlimit, args.procs, options)
                    load = loadavg()
                    row = run_generator(argv, args.tlimit + 400, gen_cpus)
                    row.update(scenario=scenario, label=server.label, generator=gen, round=rnd + 1, load=load)
                    rows.append(row)
                    print(f"{scenario:6} r{rnd + 1} {server.label:9} {gen:8} load {load:15} {short(row)}", flush=True)
                    if fresh:
                        server.stop()
                    time.sleep(0.5)
    return rows


def ratio_table(rows: list[dict], gen: str, labels: tuple[str, str], markdown: bool) -> str:
    """Medians per figure for the two servers, ours/gearmand, the goal and whether it is met."""
    base, ours = labels
    out = []
    for scenario, key, what, goal in FIGURES:
        sel = [r for r in rows if r["scenario"] == scenario and r["generator"] == gen and "error" not in r]
        if not sel:
            continue
        b = median([r for r in sel if r["label"] == base], key)
        o = median([r for r in sel if r["label"] == ours], key)
        ratio = o / b if o is not None and b else None
        met = ""
        if goal.startswith("abs<="):
            met = "yes" if o is not None and o <= float(goal[5:]) else "no"
        elif goal and ratio is not None:
            limit = float(goal[2:])
            met = "yes" if (ratio >= limit if goal.startswith(">=") else ratio <= limit) else "no"
        shown_goal = f"ours <= {goal[5:]}" if goal.startswith("abs") else goal
        out.append([scenario, what, fmt(b), fmt(o), f"{ratio:.2f}" if ratio is not None else "-", shown_goal, met])
        if scenario == "idle" and key == "jobs_per_s":  # fg with idle connections within 10 % of fg without
            fg = [r for r in rows if r["scenario"] == "fg" and r["generator"] == gen and "error" not in r]
            rel = []
            for label in (base, ours):
                idle_v, fg_v = (
                    median([r for r in sel if r["label"] == label], key),
                    median([r for r in fg if r["label"] == label], key),
                )
                rel.append(idle_v / fg_v if idle_v is not None and fg_v else None)
            if rel[1] is not None:
                met = "yes" if rel[1] >= 0.9 else "no"
                cells = [f"{v:.2f}" if v is not None else "-" for v in rel]
                out.append([scenario, "idle jobs/s / fg jobs/s", *cells, "-", "ours >= 0.90", met])
    header = ["scenario", "figure (median)", base, ours, f"{ours}/{base}", "goal", "met"]
    return table(header, out, markdown)


def others_table(rows: list[dict], gen: str, others: list[Server], markdown: bool) -> str:
    """Issue 6's "every figure at least 2x gear and the Perl server": each other server's medians, ours/theirs,
    the goal and whether it is met. A rate with a run that hit --tlimit is marked "(timeout)": it is over the
    jobs that completed (RSS per idle connection is measured before the timed part)."""

    def cell(sel: list[dict], label: str, key: str, rate: bool) -> tuple[float | None, str]:
        mine = [r for r in sel if r["label"] == label]
        value = median(mine, key)
        timeout = " (timeout)" if rate and value is not None and any(r.get("timeout") for r in mine) else ""
        return value, fmt(value) + timeout

    out = []
    for scenario, key, what, goal in OTHER_FIGURES:
        sel = [r for r in rows if r["scenario"] == scenario and r["generator"] == gen and "error" not in r]
        if not sel:
            continue
        rate = key != "rss_per_idle_conn_kb"
        o, ours_cell = cell(sel, "ours", key, rate)
        for server in others:
            label = server.label
            t, their_cell = cell(sel, label, key, rate)
            if gen == "loadgen" and server.uniq and scenario in LOADGEN_IGNORES_UNIQ:
                their_cell = "gload only (loadgen sends GRAB_JOB)"
            ratio = o / t if o is not None and t else None
            met = shown = ""
            if goal:
                limit = float(goal[2:])
                ok = ratio is not None and (ratio >= limit if goal[:2] == ">=" else ratio <= limit)
                met = "-" if ratio is None else "yes" if ok else "no"
                shown = f"ours {goal[:2]} {limit:g}x"
            out.append(
                [scenario, what, label, their_cell, ours_cell, f"{ratio:.2f}" if ratio is not None else "-", shown, met]
            )
    header = ["scenario", "figure (median)", "server", "theirs", "ours", "ours/theirs", "goal", "met"]
    return table(header, out, markdown)


def generator_table(rows: list[dict], labels: tuple[str, str], markdown: bool) -> str:
    """loadgen.py's medians next to gload's for the same server, and each generator's CPU per job."""
    out = []
    for scenario, key, what, _goal in FIGURES:
        if key not in ("jobs_per_s", "MB_per_s") or scenario in LOADGEN_ONLY:
            continue
        for label in labels:
            sel = [r for r in rows if r["scenario"] == scenario and r["label"] == label and "error" not in r]
            g = [r for r in sel if r["generator"] == "gload"]
            lg = [r for r in sel if r["generator"] == "loadgen"]
            if not g or not lg:
                continue
            mg, ml = median(g, key), median(lg, key)
            cpu = [
                median([{"v": r["gen_cpu_s"] / r["completed"] * 1e6} for r in x if r.get("completed")], "v")
                for x in (g, lg)
            ]
            busy = median(lg, "gen_busy")
            out.append(
                [scenario, what, label, fmt(mg), fmt(ml), f"{ml / mg:.2f}" if mg and ml else "-",
                 fmt(cpu[0]), fmt(cpu[1]), fmt(busy)]
            )  # fmt: skip
    header = ["scenario", "figure", "server", "gload", "loadgen", "loadgen/gload", "gload µs CPU/job",
              "loadgen µs CPU/job", "loadgen busiest proc"]  # fmt: skip
    return table(header, out, markdown)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each scenario per server (default 3)")
    ap.add_argument("--scenarios", nargs="+", default=DEFAULT_SCENARIOS, choices=list(SCENARIO_ARGS))
    ap.add_argument("--generator", choices=("auto", "gload", "loadgen", "both"), default="auto")
    ap.add_argument("--procs", type=int, default=2, help="loadgen.py processes (default 2)")
    ap.add_argument("--tlimit", type=float, default=30.0, help="seconds per measured run (default 30)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every job count (e.g. 0.2 for a quick look)")
    ap.add_argument("--idle", type=int, default=None, help="idle connections in the idle scenario (default 5000)")
    ap.add_argument("--ours", default=OUR_GEARMAND, help=f"our gearmand script (default {OUR_GEARMAND})")
    ap.add_argument("--queue-type", default="memory", help="our -q (default memory, as gearmand keeps none)")
    ap.add_argument("--gearmand", default=DEBIAN_GEARMAND, help="the reference server binary")
    ap.add_argument(
        "--others",
        nargs="+",
        default=[],
        choices=list(OTHERS),
        metavar="NAME",
        help="also run these servers in every round and print ours/theirs against issue 6's 2x goal: "
        + "; ".join(f"{k}: {v}" for k, v in OTHERS.items())
        + " (default: none)",
    )
    ap.add_argument(
        "--no-install", action="store_true", help="do not apt-get install gearman-job-server (nor gearman-server)"
    )
    ap.add_argument("--pin", default="", help="SERVER_CPUS:GENERATOR_CPUS, e.g. 0:1 (default: no pinning)")
    ap.add_argument("--markdown", action="store_true", help="print the tables in Markdown")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "gearman-gateway-compare.jsonl")
    args = ap.parse_args()

    if args.gearmand == DEBIAN_GEARMAND:
        ensure_debian_gearmand(not args.no_install)
    ensure_others(args.others, not args.no_install)
    if args.generator == "both":
        generators = [pick_generator("gload"), ("loadgen", None)]
    else:
        generators = [pick_generator(args.generator)]
    server_cpus = parse_cpus(args.pin.split(":")[0]) if args.pin else None
    workdir = Path(tempfile.mkdtemp(prefix="gg-compare-"))
    servers = [
        Server("gearmand", [args.gearmand, "-L", "127.0.0.1", "-p", "{PORT}", "-l", "none"], workdir, server_cpus),
        Server(
            "ours",
            [args.ours, "-L", "127.0.0.1", "-p", "{PORT}", "-l", "none", "-q", args.queue_type,
             "--data-dir", str(workdir / "data")],
            workdir,
            server_cpus,
        ),
        *other_servers(args.others, workdir, server_cpus),
    ]  # fmt: skip
    print(f"# machine: {machine()}; gearman-gateway {revision()}")
    print(f"# load before: {loadavg()}; generator(s): {', '.join(g for g, _ in generators)}; rounds {args.rounds}")
    rows: list[dict[str, Any]] = []
    try:
        rows = run_all(args, servers, generators)
    finally:
        for server in servers:
            server.stop()
        write_jsonl(args.out, rows)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"# load after: {loadavg()}; raw rows in {args.out}\n")
    labels = ("gearmand", "ours")
    others = servers[2:]
    for gen, _ in generators:
        print(f"## with {gen}\n" if len(generators) > 1 else "")
        print(ratio_table(rows, gen, labels, args.markdown) + "\n")
        if others:
            print(f"## ours against {', '.join(s.label for s in others)} (issue 6: at least 2x)\n")
            print(others_table(rows, gen, others, args.markdown) + "\n")
    if len(generators) > 1:
        print("## loadgen.py against gload, same servers\n")
        print(generator_table(rows, labels, args.markdown))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
