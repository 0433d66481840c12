#!/usr/bin/env python3
"""Background throughput of our server with each durable queue, in one run: memory, sqlite, postgres.

The ``bg`` scenario (clients pipeline SUBMIT_JOB_BG, up to 100 unacknowledged each; workers drain them; jobs/s
is first submit to last WORK_COMPLETE, submit/s is until every JOB_CREATED is back) against three servers
started side by side: ``-q memory``, ``-q sqlite --data-dir TMP`` and ``-q postgres`` on a private PostgreSQL
(started like tests/dbfixtures.py does, as the postgres user, in a temp dir on a free port). The runs are
interleaved (memory, sqlite, postgres, memory, ...) and the medians printed with the ratios to memory. Issue 3's
goal: durability by default costs no more than half, i.e. sqlite/memory >= 0.5.

    python3 bench/durability.py                      # 3 rounds of 100,000 jobs, gload if gcc builds it
    python3 bench/durability.py --rounds 5 --generator loadgen --markdown
    python3 bench/durability.py --stores memory sqlite
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchlib import (
    OUR_GEARMAND,
    REPO,
    SCENARIO_ARGS,
    Server,
    fmt,
    free_port,
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

STORES = ("memory", "sqlite", "postgres")


@contextlib.contextmanager
def private_postgres(root: Path) -> Iterator[str]:
    """A private PostgreSQL for the run; yields its conninfo. tests/dbfixtures.py's start_postgres when it
    imports (it needs pytest), else the same recipe here (TESTING.md)."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # PostgreSQL runs as its own user
    try:
        sys.path.insert(0, str(REPO))
        from tests.dbfixtures import start_postgres
    except ImportError:
        start_postgres = None
    if start_postgres is not None:
        server = start_postgres(root)
        try:
            yield server.conninfo
        finally:
            server.cleanup()
        return
    yield from _own_postgres(root)


def _own_postgres(root: Path) -> Iterator[str]:
    """initdb and postgres as the postgres user (they refuse root), data and socket in ``root``."""
    import glob
    import os

    import psycopg

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True)
    if not found:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    bindir = Path(found[0]).parent
    user: dict[str, Any] = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
    data = root / "pgdata"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    initdb = subprocess.run(
        [bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
        check=False, capture_output=True, text=True, **user,
    )  # fmt: skip
    if initdb.returncode != 0:
        raise RuntimeError(f"initdb failed: {initdb.stderr.strip()[-500:]}")
    port = free_port()
    with open(root / "postgres.log", "wb") as log:
        proc = subprocess.Popen(
            [bindir / "postgres", "-D", data, "-p", str(port), "-k", root, "-c", "listen_addresses=127.0.0.1"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **user,
        )  # fmt: skip
    conninfo = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(conninfo, connect_timeout=2).close()
                break
            except psycopg.Error:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: see {root / 'postgres.log'}") from None
                time.sleep(0.1)
        yield conninfo
    finally:
        proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--generator", choices=("auto", "gload", "loadgen"), default="auto")
    ap.add_argument("--procs", type=int, default=2, help="loadgen.py processes")
    ap.add_argument("--tlimit", type=float, default=60.0)
    ap.add_argument("--ours", default=OUR_GEARMAND)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "gearman-gateway-durability.jsonl")
    args = ap.parse_args()

    gen, gload = pick_generator(args.generator)
    workdir = Path(tempfile.mkdtemp(prefix="gg-durability-"))
    workdir.chmod(0o755)
    base = [args.ours, "-L", "127.0.0.1", "-p", "{PORT}", "-l", "none"]
    print(f"# machine: {machine()}; gearman-gateway {revision()}")
    print(f"# load before: {loadavg()}; generator: {gen}; rounds {args.rounds}; {args.jobs:,} jobs per run")
    rows: list[dict[str, Any]] = []
    servers: list[Server] = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        options = {
            "memory": ["-q", "memory"],
            "sqlite": ["-q", "sqlite", "--data-dir", str(workdir / "sqlite")],
        }
        if "postgres" in args.stores:
            try:
                conninfo = stack.enter_context(private_postgres(workdir / "pg"))
                options["postgres"] = ["-q", "postgres", "--libpq-conninfo", conninfo]
            except Exception as exc:  # noqa: BLE001 - report and measure the others
                print(f"# postgres left out: {type(exc).__name__}: {exc}", file=sys.stderr)
        try:
            for store in args.stores:
                if store in options:
                    servers.append(Server(store, base + options[store], workdir).start())
                    print(f"# {store}: pid {servers[-1].pid}: {' '.join(servers[-1].argv)}")
            bg = scaled(SCENARIO_ARGS["bg"], args.jobs / 100_000)
            for rnd in range(args.rounds):
                for server in servers:
                    if not server.alive:
                        print(f"# {server.label} died; restarting:\n{server.log_tail(5)}", file=sys.stderr)
                        server.start()
                    load = loadavg()
                    argv = generator_argv(gen, gload, "bg", server, args.tlimit, args.procs, bg)
                    row = run_generator(argv, args.tlimit + 120)
                    row.update(label=server.label, generator=gen, round=rnd + 1, load=load)
                    rows.append(row)
                    shown = row.get("error") or f"jobs/s {row['jobs_per_s']} submit/s {row['submit_per_s']}"
                    print(f"bg r{rnd + 1} {server.label:8} load {load:15} {shown}", flush=True)
                    time.sleep(0.5)
        finally:
            for server in servers:
                server.stop()
            write_jsonl(args.out, rows)
    print(f"# load after: {loadavg()}; raw rows in {args.out}\n")
    print(durability_table([s.label for s in servers], rows, args.markdown))
    return 1 if any("error" in r for r in rows) else 0


def durability_table(labels: list[str], rows: list[dict[str, Any]], markdown: bool) -> str:
    """Median jobs/s and submit/s per store, and each store's ratio to memory."""
    ok = [r for r in rows if "error" not in r]
    med: dict[str, tuple[float | None, float | None]] = {}
    for store in labels:
        mine = [r for r in ok if r["label"] == store]
        med[store] = (median(mine, "jobs_per_s"), median(mine, "submit_per_s"))
    mem = med.get("memory", (None, None))
    out = []
    for store in labels:
        jobs, submits = med[store]
        ratios = [f"{v / m:.2f}" if v and m else "-" for v, m in zip((jobs, submits), mem, strict=True)]
        goal = "sqlite/memory >= 0.5" if store == "sqlite" else ""
        met = ("yes" if jobs and mem[0] and jobs / mem[0] >= 0.5 else "no") if goal else ""
        out.append([store, fmt(jobs), fmt(submits), *ratios, goal, met])
    header = ["queue (-q)", "bg jobs/s end to end", "submits/s acknowledged", "jobs/s ÷ memory", "submits/s ÷ memory",
              "goal", "met"]  # fmt: skip
    return table(header, out, markdown)


if __name__ == "__main__":
    sys.exit(main())
