"""Instructions (callgrind) one ``gearmand`` spends to start, answer ``version`` and stop on SIGTERM.

The test suite starts the server hundreds of times, so its start-up is part of the suite's time; callgrind
counts instructions, not seconds, so the figure does not depend on what else the machine is doing.

    .venv/bin/python bench/startup_instructions.py                      # this tree's .venv/bin/gearmand
    .venv/bin/python bench/startup_instructions.py /tmp/base/.venv/bin/gearmand --config x.yaml
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers_version(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"version\n")
            return conn.recv(100).startswith(b"OK")
    except OSError:
        return False


def count(gearmand: Path, extra: list[str], timeout: float = 120.0) -> int:
    """Total instructions of one start, one ``version`` and one SIGTERM stop."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="gg-startup-") as data:
        dump = Path(data) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}", str(gearmand.parent / "python")]
        command += [str(gearmand), "-L", "127.0.0.1", "-p", str(port), "-l", "none", "--data-dir", data, *extra]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while not answers_version(port):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"gearmand did not answer on port {port} (exit code {server.poll()})")
                time.sleep(0.05)
        finally:
            server.terminate()
            server.wait()
        for line in dump.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise SystemExit(f"no totals in {dump}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gearmand", nargs="?", type=Path, default=HERE.parent / ".venv" / "bin" / "gearmand")
    parser.add_argument("--runs", type=int, default=3)
    options, extra = parser.parse_known_args()
    runs = [count(options.gearmand, extra) for _ in range(options.runs)]
    print(f"{options.gearmand}: " + " · ".join(f"{total / 1e6:,.0f} M" for total in runs) + " instructions")


if __name__ == "__main__":
    sys.exit(main())
