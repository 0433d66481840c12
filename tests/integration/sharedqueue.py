"""Helpers of the shared-mode tests (issue 21): a private database per test, gateways sharing it, and raw
workers that record every job they run."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from protocols.binary.packets import Packet
from tests.integration.rawclient import Raw

_databases = itertools.count(1)


def new_database(postgres: Any) -> str:
    """A fresh database on the session's PostgreSQL: the conninfo of it."""
    name = f"shared_{int(time.time() * 1000) % 10**9}_{next(_databases)}"
    with postgres.connect() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"host={postgres.host} port={postgres.port} user=postgres dbname={name}"


def shared_args(conninfo: str, lease: float = 2.0, dead_after: float = 1.0) -> list[str]:
    return [
        "-q",
        "postgres",
        "--libpq-conninfo",
        conninfo,
        "--shared",
        "--shared-lease",
        str(lease),
        "--shared-dead-after",
        str(dead_after),
    ]


def submit_background(port: int, function: bytes, payloads: list[bytes], unique: Callable[[bytes], bytes] | None = None,
                      priority: int = Packet.SUBMIT_JOB_BG) -> list[bytes]:  # fmt: skip
    """Pipelined background submits; the handles of their JOB_CREATED answers (all of them acknowledged)."""
    with Raw(port) as client:
        for data in payloads:
            client.send(priority, function, unique(data) if unique else b"", data)
        return [client.expect(Packet.JOB_CREATED, timeout=30)[0] for _ in payloads]


class RecordingWorker(threading.Thread):
    """A raw worker on one server: runs every job it gets (optionally taking ``delay`` seconds over each) and
    records its payload; stops at ``stop()`` or when its connection closes."""

    def __init__(self, port: int, *functions: bytes, delay: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.functions = functions
        self.delay = delay
        self.done: list[bytes] = []
        self.started_at: dict[bytes, float] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Raw(self.port) as raw:
                for name in self.functions:
                    raw.send(Packet.CAN_DO, name)
                self.ready.set()
                while not self.stopping.is_set():
                    raw.send(Packet.GRAB_JOB)
                    kind, args = self._next(raw)
                    if kind == Packet.NO_JOB:
                        raw.send(Packet.PRE_SLEEP)
                        while not self.stopping.is_set():
                            try:
                                kind, _ = raw.recv(0.2)
                            except TimeoutError:
                                continue
                            if kind == Packet.NOOP:
                                break
                        continue
                    if kind != Packet.JOB_ASSIGN:
                        continue
                    handle, _, data = args
                    with self.lock:
                        self.started_at[data] = time.monotonic()
                    if self.delay:
                        self.stopping.wait(self.delay)
                    raw.send(Packet.WORK_COMPLETE, handle, b"ok")
                    with self.lock:
                        self.done.append(data)
        except EOFError:
            pass
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error
        finally:
            self.ready.set()

    @staticmethod
    def _next(raw: Raw) -> tuple[int, list[bytes]]:
        while True:
            kind, args = raw.recv(10)
            if kind != Packet.NOOP:
                return kind, args

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def runs(workers: list[RecordingWorker]) -> Counter[bytes]:
    counts: Counter[bytes] = Counter()
    for worker in workers:
        with worker.lock:
            counts.update(worker.done)
    return counts
