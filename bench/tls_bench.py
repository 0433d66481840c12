#!/usr/bin/env python3
"""TLS against plaintext on one server in the same run: our gearmand with a plaintext port and a TLS port
beside it (``--ssl-port``), loadgen.py driving each in turn (``--tls-ca`` for TLS), and Debian's gearmand
(plaintext only: Debian builds it without TLS) as the reference. Reports jobs/s and the server's CPU time
per job for each, and the generator's busiest process (``gen_busy`` near 1.0: the generator was the limit).

    .venv/bin/python bench/tls_bench.py                         # fg, tasks, bg, large; 3 rounds, medians
    .venv/bin/python bench/tls_bench.py --scenarios fg --rounds 1 --markdown

Certificates are made for the run (tests/tlscerts.py: ECDSA P-256, TLS 1.3 unless the client caps it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from benchlib import (
    DEBIAN_GEARMAND,
    LOADGEN,
    OUR_GEARMAND,
    REPO,
    SCENARIO_ARGS,
    Server,
    free_port,
    loadavg,
    machine,
    revision,
    run_generator,
    scaled,
    table,
)

sys.path.insert(0, str(REPO))
from tests.tlscerts import make_pki  # noqa: E402

SCENARIOS = ("fg", "tasks", "bg", "large")


def loadgen(scenario: str, port: int, pid: int, label: str, scale: float, tls_ca: str | None) -> dict:
    args = scaled(list(SCENARIO_ARGS[scenario]), scale)
    argv = [sys.executable, str(LOADGEN), "-H", "127.0.0.1", "-p", str(port), "-P", str(pid), "-s", scenario,
            "-l", label, "-t", "60", "-j", "2", *args, *(["--tls-ca", tls_ca] if tls_ca else [])]  # fmt: skip
    return run_generator(argv, timeout=180)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=0.5, help="times the standard job counts (default 0.5)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gg-tls-bench-"))
    pki = make_pki(work / "pki")
    tls_port = free_port()
    ours = Server(
        "ours",
        [OUR_GEARMAND, "-L", "127.0.0.1", "-p", "{PORT}", "-q", "memory", "-l", "none", "--config-file=",
         "--ssl-port", str(tls_port), "--ssl-certificate", pki.server_cert, "--ssl-key", pki.server_key],
        work,
    ).start()  # fmt: skip
    servers = [ours]
    if os.access(DEBIAN_GEARMAND, os.X_OK):
        servers.append(
            Server(
                "gearmand", [DEBIAN_GEARMAND, "-L", "127.0.0.1", "-p", "{PORT}", "-q", "builtin", "-l", "none"], work
            )
        )
        servers[-1].start()
    sides = [("ours plaintext", ours, ours.port, None), ("ours TLS", ours, tls_port, pki.ca)]
    if len(servers) > 1:
        sides.append(("gearmand (plaintext)", servers[1], servers[1].port, None))
    rows = []
    try:
        for scenario in args.scenarios:
            results: dict[str, list[dict]] = {label: [] for label, *_ in sides}
            for _ in range(args.rounds):  # interleaved: the machine's load changes hit every side alike
                for label, server, port, ca in sides:
                    results[label].append(loadgen(scenario, port, server.pid, label, args.scale, ca))
            plain_rate = None
            for label, *_ in sides:
                good = [r for r in results[label] if "error" not in r and not r.get("timeout")]
                if not good:
                    rows.append([scenario, label, "error: " + str(results[label][-1].get("error"))[:60]] + [""] * 4)
                    continue
                key = "MB_per_s" if scenario == "large" else "jobs_per_s"
                rate = statistics.median(r[key] for r in good)
                cpu = statistics.median(r["server_cpu_s"] * 1e6 / max(r["completed"], 1) for r in good)
                busy = statistics.median(r["gen_busy"] for r in good)
                plain_rate = rate if label == "ours plaintext" else plain_rate
                ratio = f"{rate / plain_rate:.2f}" if plain_rate else ""
                unit = "MB/s" if scenario == "large" else "jobs/s"
                rows.append([scenario, label, f"{rate:,.1f} {unit}", ratio, f"{cpu:,.0f}", f"{busy:.2f}"])
    finally:
        for server in servers:
            server.stop()
    print(f"# bench/tls_bench.py at {revision()}; {machine()}; load {loadavg()}; median of {args.rounds} rounds")
    header = ["scenario", "side", "throughput", "÷ ours plaintext", "server CPU µs/job", "gen_busy"]
    print(table(header, rows, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
