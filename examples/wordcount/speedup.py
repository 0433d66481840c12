"""Measure the word count's speed-up with 1, 2, 4 ... map workers on this machine.

    python examples/wordcount/speedup.py corpus.txt 1 2 4

Against the job server in GEARMAN_SERVER (default localhost:4730), which must have no other
wordcount_map workers: for each count it starts that many map_worker.py processes, runs the word count
three times and keeps the fastest run, then stops them. Prints one line per worker count.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from gearman_gateway import Client

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from wordcount import word_count  # noqa: E402

ROUNDS = 3


def wait_for_workers(count):
    """Until the server lists `count` workers of wordcount_map (admin `status`)."""
    import socket

    host, _, port = os.environ.get("GEARMAN_SERVER", "localhost:4730").split(",")[0].rpartition(":")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.create_connection((host or "localhost", int(port or 4730))) as s:
            s.sendall(b"status\n")
            reply = b""
            while not reply.endswith(b".\n"):
                reply += s.recv(65536)
        for line in reply.decode().splitlines():
            fields = line.split("\t")
            if fields[0] == "wordcount_map" and int(fields[3]) == count:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{count} wordcount_map workers did not register")


def main(path, counts):
    text = Path(path).read_text(encoding="utf-8")
    client = Client(os.environ.get("GEARMAN_SERVER", "localhost:4730"), timeout=600)
    base = None
    for n in counts:
        workers = [subprocess.Popen([sys.executable, str(HERE / "map_worker.py")]) for _ in range(n)]
        try:
            wait_for_workers(n)
            best = float("inf")
            for _ in range(ROUNDS):
                started = time.perf_counter()
                word_count(client, text, chunks=32)
                best = min(best, time.perf_counter() - started)
        finally:
            for worker in workers:
                worker.kill()
                worker.wait()
        base = base or best
        print(f"{n} worker{'s' if n > 1 else ' '}: {best:6.2f} s   speed-up {base / best:4.2f}x", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], [int(n) for n in sys.argv[2:]] or [1, 2, 4])
