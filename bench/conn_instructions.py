#!/usr/bin/env python3
"""Instructions per connection and per HTTP request, ours against Debian's gearmand, both under callgrind.

Connect/close throughput on a shared 2-CPU machine swings with the machine's load (a single-threaded server
off the CPU for a few milliseconds overflows its accept queue); instruction counts do not. Each server runs
under valgrind's callgrind with ``-b 1024`` (so that the ~50× slower server never overflows its queue) and
``-r http``; per scenario the load runs once to warm up, the counters are zeroed, the load runs again and the
counters are dumped (as bench/instructions.py does for jobs):

  connect   bench/connload.c connect/close cycles from one process (nothing sent)
  echo      connload -w: connect, one ECHO_REQ, its answer, close (a client that connects per request)
  http      ab: POST /bench on a new connection each (HTTP/1.0), one C ``gearman -w -f bench`` worker
  keepalive the same POSTs (HTTP/1.1) one after another on one kept-alive connection (ours only: gearmand
            1.1.20 closes after every response); the client is this script, whose instructions do not count

Only user-space instructions count (the kernel's TCP work is the same for both servers, and system calls are
counted by ``strace -c``, see docs/performance.md); gearmand's threads are summed.

    .venv/bin/python bench/conn_instructions.py                      # ours and gearmand, all scenarios
    .venv/bin/python bench/conn_instructions.py --tree /tmp/base     # ... and an older tree of ours
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import DEBIAN_GEARMAND, REPO, Server, ensure_debian_package, free_port, revision, table
from connect_bench import build_connload

#: echo before connect: a connect run ends with one echo (see ``load``), whose count is taken off its figure
SCENARIOS = ("echo", "connect", "http", "keepalive")
GEARMAN_TOOL = "/usr/bin/gearman"
START_TIMEOUT = 180.0
QUIET = subprocess.DEVNULL


def our_argv(tree: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        f"import sys; sys.path.insert(0, {str(tree)!r}); "
        "from gearman_gateway.cli.gearmand import main; sys.exit(main())",
        *("-q", "memory", "-l", "none"),
    ]


def callgrind(argv: list[str], out_dir: Path, label: str, http_port: int) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out_dir / label}.%p",
        *argv,
        *("-L", "127.0.0.1", "-p", "{PORT}", "-b", "1024", "-r", "http", "--http-port", str(http_port)),
    ]


def load(scenario: str, server: Server, http_port: int, count: int, connload: str, body: Path) -> int:
    """Run ``count`` of ``scenario``; the number done."""
    if scenario in ("connect", "echo"):
        argv = [connload, "-p", str(server.port), "-n", str(count), "-c", "1", *(["-w"] if scenario == "echo" else [])]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=True).stdout
        if '"errors": 0' not in done:
            raise RuntimeError(f"{server.label} {scenario}: {done}")
        if scenario == "connect":  # the server may still be behind: one answered echo after them says it is not
            subprocess.run(
                [connload, "-p", str(server.port), "-n", "1", "-c", "1", "-w"], capture_output=True, check=True
            )
        return count
    if scenario == "keepalive":
        return keepalive(http_port, count, body.read_bytes())
    argv = ["ab", "-q", "-n", str(count), "-c", "1", "-p", str(body), "-T", "text/plain"]
    out = subprocess.run(
        [*argv, f"http://127.0.0.1:{http_port}/bench"], capture_output=True, text=True, timeout=900, check=True
    ).stdout
    if "Failed requests:        0" not in out or "Non-2xx" in out:
        raise RuntimeError(f"{server.label} http: {out}")
    return count


def keepalive(http_port: int, count: int, body: bytes) -> int:
    """``count`` POSTs on one HTTP/1.1 connection, each answered before the next is sent."""
    connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=120)
    try:
        for _ in range(count):
            connection.request("POST", "/bench", body=body, headers={"Content-Type": "text/plain"})
            response = connection.getresponse()
            response.read()
            if response.status != 200 or response.will_close:
                raise RuntimeError(f"keepalive: {response.status}, will close: {response.will_close}")
    finally:
        connection.close()
    return count


def dumped(out_dir: Path, label: str, pid: int, before: set[Path]) -> int:
    for _ in range(100):
        new = sorted(set(out_dir.glob(f"{label}.{pid}*")) - before, key=lambda p: p.stat().st_mtime)
        for path in reversed(new):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith(("totals:", "summary:")):
                    return int(line.split()[1])
        time.sleep(0.1)
    raise RuntimeError(f"no callgrind dump for {label}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], help="another source tree of ours (repeatable)")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--count", type=int, default=500, help="measured connections/requests per scenario")
    parser.add_argument("--no-gearmand", action="store_true", help="ours only")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the callgrind dumps (for callgrind_annotate)")
    parser.add_argument(
        "--start-timeout", type=float, default=START_TIMEOUT, help="seconds a server may take to start under valgrind"
    )
    args = parser.parse_args()
    ensure_debian_package("/usr/bin/valgrind", "valgrind", True)
    connload = build_connload()
    out_dir = Path(tempfile.mkdtemp(prefix="gg-conn-instructions-"))
    body = out_dir / "body"
    body.write_bytes(b"ab bench body")
    servers: list[tuple[str, list[str]]] = [("ours", our_argv(REPO))]
    servers += [(f"tree{i}", our_argv(Path(t).resolve())) for i, t in enumerate(args.tree, 1)]
    if not args.no_gearmand:
        servers.append(("gearmand", [DEBIAN_GEARMAND, "-q", "builtin", "-l", str(out_dir / "gearmand.log")]))
    print(f"# ours at {revision()}; callgrind dumps in {out_dir}", file=sys.stderr)
    results: dict[tuple[str, str], float] = {}
    try:
        for label, argv in servers:
            http_port = free_port()
            server = Server(label, callgrind(argv, out_dir, label, http_port), out_dir)
            server.start(timeout=args.start_timeout)
            worker_argv = [GEARMAN_TOOL, "-h", "127.0.0.1", "-p", str(server.port), "-w", "-f", "bench"]
            worker = subprocess.Popen(worker_argv, stdin=QUIET, stdout=QUIET, stderr=QUIET)
            try:
                for scenario in args.scenarios:
                    if scenario == "keepalive" and label == "gearmand":
                        continue
                    load(scenario, server, http_port, max(args.count // 5, 20), connload, body)
                    subprocess.run(["callgrind_control", "-z", str(server.pid)], capture_output=True, check=True)
                    done = load(scenario, server, http_port, args.count, connload, body)
                    before = set(out_dir.glob(f"{label}.{server.pid}*"))
                    subprocess.run(["callgrind_control", "-d", str(server.pid)], capture_output=True, check=True)
                    total = dumped(out_dir, label, server.pid, before)
                    if scenario == "connect":
                        total -= int(results.get((label, "echo"), 0))
                    results[label, scenario] = total / done
                    print(f"{scenario:8} {label:9} {results[label, scenario]:,.0f} instructions each", file=sys.stderr)
            finally:
                worker.terminate()
                worker.wait(10)
                server.stop(timeout=60)
        rows = []
        for scenario in args.scenarios:
            reference = results.get(("gearmand", scenario))
            for label, _argv in servers:
                if (label, scenario) not in results:
                    continue
                value = results[label, scenario]
                ratio = f"{value / reference:.2f}" if reference else "-"
                rows.append([scenario, label, f"{value:,.0f}", ratio])
        print(table(["scenario", "server", "instructions each", "÷ gearmand"], rows, args.markdown))
    finally:
        if not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
