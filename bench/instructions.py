#!/usr/bin/env python3
"""Instructions per job of our server, counted by valgrind's callgrind: a figure that does not move with the
machine's load, for comparing two versions of the code where throughput is too noisy to tell (on a shared
2-vCPU machine, jobs/s of the same code varies by ±20 % from run to run; this count repeats to 0.01 %).

Each source tree (the current one by default; ``--tree DIR`` adds another, e.g. a ``git worktree`` of an
older commit) runs as ``gearmand -q memory`` under callgrind. Per scenario, gload runs once to warm up, the
counters are zeroed (``callgrind_control -z``), gload runs the measured load, and the counters are dumped.
Only user-space instructions count (system calls are the kernel's), and the server runs ~50× slower than
usual, so replies batch differently than at full speed: use it to compare code, not to predict jobs/s.

    .venv/bin/python bench/instructions.py                       # this tree: tasks, fg, bg, ping
    git worktree add /tmp/base 9f85ac5
    .venv/bin/python bench/instructions.py --tree /tmp/base      # ... and the ratio to an older commit
    .venv/bin/python bench/instructions.py --monitoring          # this tree, off and with latency + history on
    .venv/bin/python bench/instructions.py --queue sqlite --config a.yaml --config b.yaml   # one count per config

valgrind is installed with apt-get when missing (``--no-install`` to refuse).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import (
    REPO,
    SCENARIO_ARGS,
    Server,
    build_gload,
    ensure_debian_package,
    generator_argv,
    revision,
    run_generator,
    scaled,
    table,
)

#: The scenarios' standard counts times this: a tenth keeps a run under a minute under callgrind.
DEFAULT_SCALE = 0.1
SCENARIOS = ("tasks", "fg", "bg", "ping")
#: Under callgrind the server needs much longer to start and to answer.
START_TIMEOUT = 600.0  # a loaded machine (other suites running) starts callgrind slowly
GENERATOR_TIMEOUT = 600.0


def server_argv(tree: Path, out_dir: Path, label: str, config: str | None = None, queue: str = "memory") -> list[str]:
    """Our gearmand from ``tree`` (put first on the import path) under callgrind."""
    launcher = (
        f"import sys; sys.path.insert(0, {str(tree)!r}); "
        "from gearman_gateway.cli.gearmand import main; sys.exit(main())"
    )
    return [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out_dir / label}.%p",
        sys.executable,
        "-c",
        launcher,
        *("-L", "127.0.0.1", "-p", "{PORT}", "-l", "none", "-q", queue),
        *("--data-dir", str(out_dir / f"{label}-data")),
        *(("--config", config) if config else ()),
    ]


def dumped_instructions(out_dir: Path, label: str, pid: int, before: set[Path]) -> int:
    """The ``totals`` of the dump callgrind wrote since ``before`` was listed."""
    new = sorted(set(out_dir.glob(f"{label}.{pid}*")) - before, key=lambda p: p.stat().st_mtime)
    for path in reversed(new):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise RuntimeError(f"no callgrind dump for {label} (pid {pid}) in {out_dir}")


def measure(server: Server, gload: str, scenario: str, scale: float, out_dir: Path) -> tuple[int, int]:
    """(instructions, jobs) of one measured run of ``scenario``, after a warm-up run."""
    options = scaled(SCENARIO_ARGS[scenario], scale)
    argv = generator_argv("gload", gload, scenario, server, GENERATOR_TIMEOUT, 1, options)
    warm = run_generator(argv, GENERATOR_TIMEOUT)
    if "error" in warm:
        raise RuntimeError(f"{server.label} {scenario} warm-up: {warm['error']}")
    subprocess.run(["callgrind_control", "-z", str(server.pid)], capture_output=True, check=True)
    row = run_generator(argv, GENERATOR_TIMEOUT)
    if "error" in row or row.get("errors"):
        raise RuntimeError(f"{server.label} {scenario}: {row}")
    before = set(out_dir.glob(f"{server.label}.{server.pid}*"))
    subprocess.run(["callgrind_control", "-d", str(server.pid)], capture_output=True, check=True)
    return dumped_instructions(out_dir, server.label, server.pid, before), int(row["completed"])


#: ``--monitoring``: latency histograms and the job history on (both are off by default).
MONITORING_YAML = "monitoring:\n  latency: {enabled: true}\n  history: {enabled: true}\n"


def runs_to_count(
    configs: list[str], monitoring: bool, others: list[Path], out_dir: Path
) -> list[tuple[Path, str | None, str]]:
    """(tree, config, name) per server to count: this tree once per config (plain if none), with
    monitoring on if asked, then the other trees plain."""
    runs: list[tuple[Path, str | None, str]] = [(REPO, c, f"{REPO} --config {c}") for c in configs]
    if not configs:
        runs.append((REPO, None, str(REPO)))
    if monitoring:
        path = out_dir / "monitoring.yaml"
        path.write_text(MONITORING_YAML)
        runs.append((REPO, str(path), f"{REPO} --monitoring"))
    runs.extend((tree, None, str(tree)) for tree in others)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], help="another source tree to count (repeatable)")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS[:3]))
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE, help="times the standard job counts")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        help="a YAML config for this tree (the first); repeat to count this tree once per config",
    )
    parser.add_argument(
        "--monitoring",
        action="store_true",
        help="also count this tree with latency and history on (monitoring.latency/history.enabled)",
    )
    parser.add_argument(
        "--queue",
        default="memory",
        help="queue type of every server (default memory; sqlite for monitoring.history.durable, in --data-dir)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the callgrind dumps (callgrind_annotate them)")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get install valgrind")
    args = parser.parse_args()

    ensure_debian_package("/usr/bin/valgrind", "valgrind", not args.no_install)
    gload = build_gload()
    if gload is None:
        raise SystemExit("gload is needed (gcc and ../shared/bench/gload.c)")
    out_dir = Path(tempfile.mkdtemp(prefix="gg-instructions-"))
    runs = runs_to_count(args.config, args.monitoring, [Path(t).resolve() for t in args.tree], out_dir)
    print(f"# {revision()}; callgrind dumps in {out_dir}", file=sys.stderr)
    results: dict[tuple[str, int], float] = {}
    try:
        for index, (tree, config, name) in enumerate(runs):
            label = f"tree{index}"
            server = Server(label, server_argv(tree, out_dir, label, config, args.queue), out_dir)
            server.start(timeout=START_TIMEOUT)
            try:
                for scenario in args.scenarios:
                    instructions, jobs = measure(server, gload, scenario, args.scale, out_dir)
                    results[scenario, index] = instructions / jobs
                    print(f"{scenario:6} {name}  {instructions / jobs:,.0f} instructions/job", file=sys.stderr)
            finally:
                server.stop()
        rows = []
        for scenario in args.scenarios:
            first = results[scenario, 0]
            for index, (_, _, name) in enumerate(runs):
                value = results[scenario, index]
                rows.append([scenario, name, f"{value:,.0f}", f"{value / first:.3f}"])
        print(table(["scenario", "tree", "instructions/job", "÷ first"], rows, args.markdown))
    finally:
        if not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
