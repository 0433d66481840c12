#!/usr/bin/env python3
"""A load generator for any Gearman job server: raw binary protocol, several processes, one epoll loop each.

It speaks only the basic packets every server supports (the same as ``../shared/bench/gload.c``) and parses
replies with the project's sans-IO codec. Scenarios and counts follow gload's (``-s NAME``):

  ping   C connections loop GRAB_JOB -> NO_JOB                     round trips/s, p50/p99
  echo   the same with ECHO_REQ/ECHO_RES (-b bytes)                 round trips/s, p50/p99
  fg     C clients synchronous SUBMIT_JOB; W workers echo the data  jobs/s, p50/p99
  tasks  1 client keeps up to -W SUBMIT_JOBs in flight; W workers   jobs/s
  bg     C clients pipeline SUBMIT_JOB_BG (-W unacknowledged each); W workers drain them
                                                                     jobs/s end to end, submit/s
  large  fg with a big payload (-b 1048576) echoed back              MB/s
  idle   first -i idle worker connections (another function), then fg   fg figures + RSS per idle connection
  queue  C clients pipeline SUBMIT_JOB_BG with no worker             server RSS per queued job

Clients, workers and idle connections are dealt round-robin to ``--procs`` processes; jobs are handed out
in small chunks from a shared counter, so a faster process takes more. Every worker is registered and asleep
before the clock starts. With ``-P PID`` the server's CPU time and RSS are read from /proc/PID. The output is
one JSON line with gload's keys, plus the generator's own CPU: ``gen_busy`` is the busiest process's CPU time
over the wall time (near 1.0 means the generator, not the server, was the limit).

    python3 bench/loadgen.py -p 4730 -s fg -P $(pidof gearmand)
    python3 bench/loadgen.py -p 4730 -s bg -c 4 -w 4 -W 100 -n 100000 --procs 2

Only ever point it at a server of your own on this machine (127.0.0.1).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import resource
import select
import socket
import ssl
import sys
import time
from array import array
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

try:
    from protocols.binary.codec import Decoder, encode_request
except ImportError:  # run from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from protocols.binary.codec import Decoder, encode_request
from protocols.binary.packets import Packet

CAN_DO, PRE_SLEEP, NOOP = int(Packet.CAN_DO), int(Packet.PRE_SLEEP), int(Packet.NOOP)
SUBMIT_JOB, JOB_CREATED, GRAB_JOB = int(Packet.SUBMIT_JOB), int(Packet.JOB_CREATED), int(Packet.GRAB_JOB)
NO_JOB, JOB_ASSIGN, WORK_COMPLETE = int(Packet.NO_JOB), int(Packet.JOB_ASSIGN), int(Packet.WORK_COMPLETE)
WORK_FAIL, ECHO_REQ, SUBMIT_JOB_BG = int(Packet.WORK_FAIL), int(Packet.ECHO_REQ), int(Packet.SUBMIT_JOB_BG)
ERROR, GRAB_JOB_UNIQ, JOB_ASSIGN_UNIQ = int(Packet.ERROR), int(Packet.GRAB_JOB_UNIQ), int(Packet.JOB_ASSIGN_UNIQ)

SCENARIOS = ("ping", "echo", "fg", "tasks", "bg", "large", "idle", "queue")
#: Per scenario: clients, workers, window, jobs, payload bytes, idle connections (run.sh's counts).
DEFAULTS: dict[str, tuple[int, int, int, int, int, int]] = {
    "ping": (16, 0, 1, 100_000, 0, 0),
    "echo": (16, 0, 1, 100_000, 64, 0),
    "fg": (16, 16, 1, 20_000, 64, 0),
    "tasks": (1, 4, 10_000, 30_000, 64, 0),
    "bg": (4, 4, 100, 100_000, 64, 0),
    "large": (4, 4, 1, 200, 1_048_576, 0),
    "idle": (16, 16, 1, 20_000, 64, 5_000),
    "queue": (4, 0, 100, 100_000, 64, 0),
}
FUNCTION, IDLE_FUNCTION, QUEUE_FUNCTION = b"bench_fn", b"bench_idle", b"bench_queued"
K_CLIENT, K_WORKER, K_IDLE = 0, 1, 2
RECV_SIZE = 256 * 1024
EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
SETUP_TIMEOUT = 300.0
#: Seconds between checks of the shared completion counters.
CHECK_INTERVAL = 0.002


@dataclass
class Spec:
    """What to run; the fields are gload's options."""

    scenario: str
    port: int
    host: str = "127.0.0.1"
    jobs: int = 0
    clients: int = 0
    workers: int = 0
    window: int = 1
    payload: int = 64
    idle: int = 0
    idle_batch: int = 8
    pid: int = 0
    tlimit: float = 30.0
    label: str = ""
    uniq: bool = False
    procs: int = 2
    tls_ca: str | None = None  # connect with TLS, verifying the server against this CA file


# -- /proc figures


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (fields 14 and 15 of /proc/PID/stat); -1 if unknown."""
    if not pid:
        return -1.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kb(pid: int) -> int:
    """VmRSS of a process in KiB; -1 if unknown."""
    if not pid:
        return -1
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- one generator process


class Conn:
    """One TCP connection of a generator process and its protocol state."""

    __slots__ = ("sock", "fd", "kind", "decoder", "out", "writing", "sleeping", "ready", "outstanding", "t0")

    def __init__(self, host: str, port: int, kind: int, tls_ca: str | None = None) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_ca is not None:  # the handshake while still blocking
            self.sock = ssl.create_default_context(cafile=tls_ca).wrap_socket(self.sock, server_hostname=host)
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        self.kind = kind
        self.decoder = Decoder(expect=b"\x00RES")
        self.out = bytearray()
        self.writing = False
        self.sleeping = False
        self.ready = False
        self.outstanding = 0
        self.t0 = 0.0


class Part:
    """The connections one process owns, its event loop and its counters."""

    def __init__(self, spec: Spec, index: int, claimed: Synchronized, done: Any) -> None:
        self.spec = spec
        self.index = index
        self.claimed = claimed
        self.done = done
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.credits = 0
        self.exhausted = False
        self.chunk = 1 if spec.payload >= 65536 else 32
        self.local_done = self.created = self.errors = self.ready = 0
        self.t_first = self.t_last = self.t_created = 0.0
        self.latencies = array("d")
        self.rbuf = bytearray(RECV_SIZE)
        self.rview = memoryview(self.rbuf)
        scen = spec.scenario
        self.bg = scen in ("bg", "queue")
        self.echo = scen in ("ping", "echo")
        payload = bytes(97 + i % 26 for i in range(spec.payload))
        if scen == "ping":
            self.request = encode_request(GRAB_JOB)
        elif scen == "echo":
            self.request = encode_request(ECHO_REQ, payload)
        else:
            fn = QUEUE_FUNCTION if scen == "queue" else FUNCTION
            self.request = encode_request(SUBMIT_JOB_BG if self.bg else SUBMIT_JOB, fn, b"", payload)
        self.grab = encode_request(GRAB_JOB_UNIQ if spec.uniq else GRAB_JOB)
        self.pre_sleep = encode_request(PRE_SLEEP)

    def share(self, count: int) -> int:
        """How many of ``count`` connections this process owns (dealt round-robin)."""
        return len(range(self.index, count, self.spec.procs))

    def open(self, kind: int, function: bytes) -> Conn:
        conn = Conn(self.spec.host, self.spec.port, kind, self.spec.tls_ca)
        self.conns[conn.fd] = conn
        self.ep.register(conn.fd, EPOLLIN)
        if kind != K_CLIENT:
            conn.out += encode_request(CAN_DO, function) + self.grab
            self.flush(conn)
        return conn

    def flush(self, conn: Conn) -> None:
        out = conn.out
        try:
            sent = conn.sock.send(out)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        if sent == len(out):
            out.clear()
            if conn.writing:
                self.ep.modify(conn.fd, EPOLLIN)
                conn.writing = False
        else:
            del out[:sent]
            if not conn.writing:
                self.ep.modify(conn.fd, EPOLLIN | EPOLLOUT)
                conn.writing = True

    def claim(self, want: int) -> int:
        """Take up to ``want`` jobs (at least a chunk when any are left) from the shared counter."""
        if self.exhausted:
            return 0
        with self.claimed.get_lock():
            take = min(max(want, self.chunk), self.spec.jobs - self.claimed.value)
            self.claimed.value += take
        self.credits += take
        self.exhausted = take == 0
        return take

    def pump(self, conn: Conn) -> None:
        """Send requests while the client's window and the job count allow."""
        want = self.spec.window - conn.outstanding
        if want <= 0:
            return
        if self.credits < want and not self.claim(want - self.credits) and not self.credits:
            return
        n = min(want, self.credits)
        now = time.monotonic()
        if not self.t_first:
            self.t_first = now
        conn.t0 = now
        conn.out += self.request * n if n > 1 else self.request
        conn.outstanding += n
        self.credits -= n

    def loop(self, until: Any, deadline: float) -> bool:
        """Serve events until ``until()`` is true; False when the deadline passed first. The condition is
        checked every couple of milliseconds, not per event: the figures use event times, not the exit."""
        poll = self.ep.poll
        conns = self.conns
        monotonic = time.monotonic
        next_check = 0.0
        while True:
            now = monotonic()
            if now >= next_check:
                self.done[self.index] = self.local_done
                if until():
                    return True
                if now > deadline:
                    return False
                next_check = now + CHECK_INTERVAL
            events = poll(0.01)
            if not events:
                next_check = 0.0
            for fd, mask in events:
                conn = conns.get(fd)
                if conn is None:
                    continue
                if mask & EPOLLOUT:
                    self.flush(conn)
                if mask & ~EPOLLOUT:
                    self.readable(conn)

    def readable(self, conn: Conn) -> None:
        try:
            n = conn.sock.recv_into(self.rbuf)  # one reused buffer: no 256 KiB allocation per read
        except (BlockingIOError, ssl.SSLWantReadError):
            return
        except OSError:
            n = 0
        if not n:
            self.ep.unregister(conn.fd)
            del self.conns[conn.fd]
            conn.sock.close()
            self.errors += 1
            print(f"loadgen: connection closed by the server (kind {conn.kind})", file=sys.stderr)
            return
        data = self.rview[:n].tobytes()
        while self.spec.tls_ca is not None and conn.sock.pending():  # decrypted already: epoll cannot tell
            data += conn.sock.recv(conn.sock.pending())
        events = conn.decoder.receive_data(data)
        if conn.kind == K_CLIENT:
            self.client_events(conn, events)
        else:
            self.worker_events(conn, events)
        if conn.out and not conn.writing:
            self.flush(conn)

    def client_events(self, conn: Conn, events: list) -> None:
        """Count replies, then refill the client's window once for the whole read."""
        for ptype, args in events:
            if self.echo:  # any reply closes the round trip
                now = time.monotonic()
                self.latencies.append(now - conn.t0)
                self.local_done += 1
                self.t_last = now
                conn.outstanding -= 1
            elif ptype == JOB_CREATED:
                self.created += 1
                if self.bg:
                    conn.outstanding -= 1
                    if self.spec.workers == 0:  # queue: acknowledged is done
                        self.local_done += 1
            elif ptype == WORK_COMPLETE or ptype == WORK_FAIL:
                now = time.monotonic()
                if ptype == WORK_FAIL:
                    self.errors += 1
                if self.spec.window == 1:
                    self.latencies.append(now - conn.t0)
                self.local_done += 1
                self.t_last = now
                conn.outstanding -= 1
            elif ptype == ERROR:
                self.error(args)
        if self.bg:
            self.t_created = time.monotonic()
            if self.spec.workers == 0:
                self.t_last = self.t_created
        self.pump(conn)

    def worker_events(self, conn: Conn, events: list) -> None:
        out = conn.out
        for ptype, args in events:
            if ptype == JOB_ASSIGN or ptype == JOB_ASSIGN_UNIQ:
                out += encode_request(WORK_COMPLETE, args[0], b"" if self.bg else args[-1])
                out += self.grab
                conn.sleeping = False
                if self.bg:
                    self.local_done += 1
                    self.t_last = time.monotonic()
            elif ptype == NOOP:
                if conn.sleeping:
                    out += self.grab
                    conn.sleeping = False
            elif ptype == NO_JOB:  # the first one also proves that CAN_DO was processed
                if not conn.ready:
                    conn.ready = True
                    self.ready += 1
                out += self.pre_sleep
                conn.sleeping = True
            elif ptype == ERROR:
                self.error(args)

    def error(self, args: list[bytes]) -> None:
        self.errors += 1
        if self.errors < 5:
            print(f"loadgen: server ERROR {b' '.join(args)!r}", file=sys.stderr)

    def open_idle(self, count: int) -> None:
        """Open ``count`` idle workers, ``idle_batch`` at a time, each registered before the next batch."""
        opened = 0
        deadline = time.monotonic() + SETUP_TIMEOUT
        while opened < count:
            batch = min(self.spec.idle_batch, count - opened)
            for _ in range(batch):
                self.open(K_IDLE, IDLE_FUNCTION)
            opened += batch
            target = opened
            if not self.loop(lambda target=target: self.ready >= target, deadline):
                raise TimeoutError("idle connections did not register")

    def total_done(self) -> int:
        return sum(self.done)


def _part_main(spec: Spec, index: int, claimed: Synchronized, done: Any, ctrl: Any, gates: list[Any]) -> None:
    """One generator process: idle connections, workers, clients, then the measured run; reports to ``ctrl``."""
    try:
        part = Part(spec, index, claimed, done)
        part.open_idle(part.share(spec.idle))
        idle_ready = part.ready
        ctrl.put(("idle", index, idle_ready))
        gates[0].wait(SETUP_TIMEOUT)
        workers = part.share(spec.workers)
        for _ in range(workers):
            part.open(K_WORKER, FUNCTION)
        if not part.loop(lambda: part.ready >= idle_ready + workers, time.monotonic() + 30):
            raise TimeoutError("workers did not register")
        clients = [part.open(K_CLIENT, b"") for _ in range(part.share(spec.clients))]
        ctrl.put(("ready", index, 0))
        gates[1].wait(SETUP_TIMEOUT)
        cpu0 = own_cpu_s()
        for conn in clients:
            part.pump(conn)
            if conn.out:
                part.flush(conn)
        finished = part.loop(lambda: part.total_done() >= spec.jobs, time.monotonic() + spec.tlimit)
        part.done[index] = part.local_done
        cpu = own_cpu_s() - cpu0
        result = {
            "done": part.local_done,
            "created": part.created,
            "errors": part.errors,
            "timeout": not finished,
            "t_first": part.t_first,
            "t_last": part.t_last,
            "t_created": part.t_created,
            "cpu_s": cpu,
            "latencies": part.latencies.tobytes(),
        }
        ctrl.put(("result", index, result))
        gates[2].wait(SETUP_TIMEOUT)  # keep the connections open until every process is done
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the run
        ctrl.put(("error", index, f"{type(exc).__name__}: {exc}"))


# -- the parent


def _collect(ctrl: Any, kind: str, count: int, procs: list[Any], timeout: float) -> dict[int, Any]:
    """Wait for one ``kind`` message from each of ``count`` processes."""
    got: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    while len(got) < count:
        try:
            what, index, value = ctrl.get(timeout=0.5)
        except queue.Empty:
            if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError(f"generator processes did not report {kind!r} in time") from None
            continue
        if what == "error":
            raise RuntimeError(f"generator process {index}: {value}")
        if what == kind:
            got[index] = value
    return got


def run(spec: Spec) -> dict[str, Any]:
    """Run one scenario and return gload's figures as a dict."""
    scen = spec.scenario
    nprocs = max(1, min(spec.procs, spec.clients + spec.workers + spec.idle))
    spec.procs = nprocs
    _raise_fd_limit()
    ctx = mp.get_context("fork")
    claimed = ctx.Value("q", 0)
    done = ctx.RawArray("q", nprocs)
    ctrl = ctx.Queue()
    gates = [ctx.Event() for _ in range(3)]
    rss0 = proc_rss_kb(spec.pid)
    procs = [ctx.Process(target=_part_main, args=(spec, i, claimed, done, ctrl, gates)) for i in range(nprocs)]
    for p in procs:
        p.start()
    try:
        t_idle = time.monotonic()
        idle_ready = sum(_collect(ctrl, "idle", nprocs, procs, SETUP_TIMEOUT).values())
        t_idle = time.monotonic() - t_idle
        rss1 = -1
        if spec.idle:
            time.sleep(0.2)
            rss1 = proc_rss_kb(spec.pid)
        gates[0].set()
        _collect(ctrl, "ready", nprocs, procs, SETUP_TIMEOUT)
        time.sleep(0.1)
        scpu0 = proc_cpu_s(spec.pid)
        t_go = time.monotonic()
        gates[1].set()
        parts = list(_collect(ctrl, "result", nprocs, procs, spec.tlimit + 60).values())
        t_end = time.monotonic()
        scpu1 = proc_cpu_s(spec.pid)
        if scen == "queue":
            time.sleep(0.2)
        rss2 = proc_rss_kb(spec.pid)
    finally:
        for gate in gates:
            gate.set()
        for p in procs:
            p.join(10)
            if p.exitcode is None:
                p.kill()
                p.join()
    completed = sum(r["done"] for r in parts)
    starts = [r["t_first"] for r in parts if r["t_first"]]
    t_first = min(starts) if starts else t_go
    t_last = max([r["t_last"] for r in parts] + [t_first])
    wall = (t_last if t_last > t_first else t_end) - t_first
    wall = max(wall, 1e-9)
    lat = array("d")
    for r in parts:
        lat.frombytes(r["latencies"])
    lat = sorted(lat)
    out: dict[str, Any] = {
        "scenario": scen,
        "label": spec.label,
        "jobs": spec.jobs,
        "completed": completed,
        "clients": spec.clients,
        "workers": spec.workers,
        "window": spec.window,
        "payload": spec.payload,
        "wall_s": round(wall, 3),
        "jobs_per_s": round(completed / wall),
    }
    if scen in ("bg", "queue"):
        created = sum(r["created"] for r in parts)
        t_created = max(r["t_created"] for r in parts)
        out["submit_per_s"] = round(created / max((t_created if t_created > t_first else t_end) - t_first, 1e-9))
    if scen == "large":
        out["MB_per_s"] = round(completed * spec.payload / 1048576 / wall, 1)
    if lat:
        out["p50_ms"] = round(lat[len(lat) // 2] * 1e3, 3)
        out["p99_ms"] = round(lat[int(len(lat) * 0.99)] * 1e3, 3)
    if scen == "idle":
        out.update(
            idle_conns=idle_ready,
            idle_open_s=round(t_idle, 2),
            rss_before_idle_kb=rss0,
            rss_with_idle_kb=rss1,
            rss_per_idle_conn_kb=round((rss1 - rss0) / idle_ready, 2) if idle_ready and rss1 >= 0 else -1,
        )
    if scen == "queue":
        out.update(
            queued_jobs=completed,
            rss_before_kb=rss0,
            rss_after_kb=rss2,
            rss_per_queued_job_b=round((rss2 - rss0) * 1024 / completed) if completed and rss2 >= 0 else -1,
        )
    cpus = [r["cpu_s"] for r in parts]
    out.update(
        gen_cpu_s=round(sum(cpus), 2),
        gen_procs=nprocs,
        gen_busy=round(max(cpus) / max(t_end - t_go, 1e-9), 2),
        server_cpu_s=round(scpu1 - scpu0, 2) if scpu0 >= 0 and scpu1 >= 0 else -1,
        server_rss_kb=rss2,
        errors=sum(r["errors"] for r in parts),
        timeout=any(r["timeout"] for r in parts),
        generator="loadgen.py",
    )
    return out


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def spec_from_args(argv: list[str] | None = None) -> Spec:
    """Parse gload-style options (``-H`` for the host, since ``-h`` is help)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-s", "--scenario", required=True, choices=SCENARIOS)
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, required=True)
    ap.add_argument("-n", "--jobs", type=int, help="jobs (round trips for ping/echo)")
    ap.add_argument("-c", "--clients", type=int)
    ap.add_argument("-w", "--workers", type=int)
    ap.add_argument("-W", "--window", type=int, help="requests in flight per client (tasks, bg, queue)")
    ap.add_argument("-b", "--payload", type=int, help="payload bytes")
    ap.add_argument("-i", "--idle", type=int, help="idle worker connections (idle)")
    ap.add_argument("-B", "--idle-batch", type=int, default=8, help="idle connections opened at once per process")
    ap.add_argument("-P", "--pid", type=int, default=0, help="server PID, for its CPU time and RSS")
    ap.add_argument("-t", "--tlimit", type=float, default=30.0, help="seconds for the measured part")
    ap.add_argument("-l", "--label", default="")
    ap.add_argument("-u", "--uniq", action="store_true", help="workers use GRAB_JOB_UNIQ")
    ap.add_argument("-j", "--procs", type=int, default=2, help="generator processes (default 2)")
    ap.add_argument("--tls-ca", metavar="FILE", help="connect with TLS, verifying the server against this CA")
    a = ap.parse_args(argv)
    clients, workers, window, jobs, payload, idle = DEFAULTS[a.scenario]
    if a.scenario in ("fg", "large", "idle", "ping", "echo"):
        a.window = 1
    if a.scenario == "tasks":
        a.clients = 1
    if a.scenario in ("ping", "echo", "queue"):
        a.workers = 0
    pick = lambda given, default: default if given is None else given  # noqa: E731
    return Spec(
        scenario=a.scenario,
        host=a.host,
        port=a.port,
        jobs=pick(a.jobs, jobs),
        clients=pick(a.clients, clients),
        workers=pick(a.workers, workers),
        window=pick(a.window, window),
        payload=pick(a.payload, payload),
        idle=pick(a.idle, idle) if a.scenario == "idle" else 0,
        idle_batch=a.idle_batch,
        pid=a.pid,
        tlimit=a.tlimit,
        label=a.label,
        uniq=a.uniq,
        procs=a.procs,
        tls_ca=a.tls_ca,
    )


def main(argv: list[str] | None = None) -> int:
    spec = spec_from_args(argv)
    result = run(spec)
    print(json.dumps(result), flush=True)
    return 1 if result["timeout"] else 0


if __name__ == "__main__":
    sys.exit(main())
