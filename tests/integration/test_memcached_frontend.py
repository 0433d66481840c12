"""The memcached frontend (`gearmand -r memcached`) over real sockets, with independent clients: pymemcache,
Debian's libmemcached-tools (text and --binary), meta-memcache (meta commands), php-memcached (binary
protocol), and raw bytes; jobs run by PyPI gear workers and Debian's C `gearman -w`."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymemcache.client.base import Client
from pymemcache.serde import pickle_serde

from tests.integration.conftest import RunningServer, ServerFactory, free_port, wait_listening
from tests.integration.test_gear_clients import WorkerThread

GEARMAN = "/usr/bin/gearman"
CURL = "/usr/bin/curl"
TIMEOUT = 10.0
pytestmark = pytest.mark.skipif("GG_TEST_SERVER" in os.environ, reason="gearmand has no memcached frontend")


def need(path: str, package: str) -> None:
    """A missing independent client fails under CI=true, else skips."""
    if not os.access(path, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing: scripts/setup --test installs {package}")
        pytest.skip(f"{path} ({package}) is not installed")


@dataclass
class Memcached:
    server: RunningServer
    port: int  # the memcached frontend's

    @property
    def gearman_port(self) -> int:
        return self.server.port

    def client(self, **options: object) -> Client:
        options.setdefault("default_noreply", False)
        options.setdefault("timeout", TIMEOUT)
        return Client(("127.0.0.1", self.port), **options)

    def talk(self, data: bytes, until: bytes | None = None, timeout: float = TIMEOUT) -> bytes:
        """Send raw bytes; read until the reply ends with ``until`` (or the server closes)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as conn:
            conn.sendall(data)
            return read_until(conn, until)

    def tool(self, name: str, *args: str, binary: bool = False) -> subprocess.CompletedProcess:
        need(f"/usr/bin/{name}", "libmemcached-tools")
        argv = [f"/usr/bin/{name}", f"--servers=127.0.0.1:{self.port}", *(["--binary"] if binary else []), *args]
        return subprocess.run(argv, capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)

    def result(self, key: str, timeout: float = TIMEOUT) -> bytes:
        """Wait for the result of ``function/unique`` with ``/t=`` waits (no sleeping)."""
        client = self.client()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                value = client.get(key + "/t=400")
                if value is not None:
                    return value
            raise TimeoutError(f"no result for {key}")
        finally:
            client.close()


def read_until(conn: socket.socket, until: bytes | None) -> bytes:
    out = b""
    while until is None or not out.endswith(until):
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        out += chunk
    return out


def start_memcached(gearmand: ServerFactory, *extra: str) -> Memcached:
    port = free_port()
    server = gearmand("-r", "memcached", "--memcached-port", str(port), *extra)
    wait_listening(port, server.proc)
    return Memcached(server, port)


@pytest.fixture
def mc(gearmand: ServerFactory) -> Memcached:
    return start_memcached(gearmand)


@pytest.fixture
def workers() -> Iterator[Callable[..., WorkerThread]]:
    """Factory: workers(mc, function, handler) runs a PyPI gear worker thread until the test ends."""
    started: list[WorkerThread] = []

    def start(target: Memcached, function: str, handler: Callable[[bytes], bytes]) -> WorkerThread:
        def run(job) -> None:
            job.sendWorkComplete(handler(bytes(job.arguments)))

        worker = WorkerThread([function], run, f"w{len(started)}")
        started.append(worker)
        worker.start(target.server)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def c_workers() -> Iterator[Callable[..., subprocess.Popen]]:
    """Factory: c_workers(mc, function, *command): Debian's C worker (no command: it echoes the workload)."""
    need(GEARMAN, "gearman-tools")
    started: list[subprocess.Popen] = []

    def start(target: Memcached, function: str, *command: str) -> subprocess.Popen:
        argv = [GEARMAN, "-h", "127.0.0.1", "-p", str(target.gearman_port), "-w", "-f", function]
        if command:
            argv += ["--", *command]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        wait_workers(target, function, 1)
        return proc

    yield start
    for proc in started:
        proc.terminate()
    for proc in started:
        proc.wait(5)


def function_line(target: Memcached, function: str) -> tuple[int, int, int]:
    """(queued, running, workers) from our own `stats gearman`."""
    out = target.talk(b"stats gearman\r\n", until=b"END\r\n").decode()
    values = {}
    for line in out.splitlines():
        if line.startswith(f"STAT {function}:"):
            name, value = line[5:].rsplit(" ", 1)
            values[name.rsplit(":", 1)[1]] = int(value)
    return values.get("queued", 0), values.get("running", 0), values.get("workers", 0)


def wait_workers(target: Memcached, function: str, count: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while function_line(target, function)[2] < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no worker for {function}")
        time.sleep(0.02)


def reverse(data: bytes) -> bytes:
    return data[::-1]


# ---------------------------------------------------------------------------- pymemcache as a client


def test_pymemcache_submits_and_reads_results_byte_exactly(gearmand: ServerFactory, workers) -> None:
    limit = 256 * 1024
    target = start_memcached(gearmand, "--memcached-max-value-size", str(limit))
    workers(target, "reverse", reverse)
    client = target.client()
    values = {
        "nul": b"a\x00b\r\nc\r\n\x00",
        "crlf": b"\r\nEND\r\n",
        "empty": b"",
        "max": bytes(range(256)) * (limit // 256),
    }
    for unique, value in values.items():
        assert client.set(f"reverse/{unique}", value) is True
    for unique, value in values.items():
        assert target.result(f"reverse/{unique}") == value[::-1]
    assert client.get_many([f"reverse/{u}" for u in values]) == {f"reverse/{u}": v[::-1] for u, v in values.items()}
    with pytest.raises(Exception, match="object too large"):
        client.set("reverse/big", b"x" * (limit + 1))
    assert client.version().startswith(b"1.6")


def test_text_in_text_out_through_the_flags(mc: Memcached, workers) -> None:
    workers(mc, "upper", lambda data: data.upper())
    client = mc.client(serde=pickle_serde)
    client.set("upper/t1", "héllo")  # pymemcache's serde: a str goes with flag 16 and comes back a str
    assert mc.result("upper/t1") == b"H\xc3\xa9LLO"
    deadline = time.monotonic() + TIMEOUT
    value = None
    while value is None and time.monotonic() < deadline:
        value = client.get("upper/t1/t=400")
    assert value == "HéLLO"


def test_pymemcache_with_its_default_noreply(mc: Memcached, workers) -> None:
    workers(mc, "reverse", reverse)
    client = Client(("127.0.0.1", mc.port), timeout=TIMEOUT)  # default_noreply=True: set sends noreply
    assert client.set("reverse/n1", b"abc") is True
    assert client.add("reverse/n1", b"zzz") is True  # noreply: the NOT_STORED is never heard
    assert mc.result("reverse/n1") == b"cba"
    assert client.delete("reverse/n1") is True
    assert client.get("reverse/n1") is None


def test_coalescing_add_vs_set(mc: Memcached, workers) -> None:
    client = mc.client()
    assert client.set("job/same", b"one") is True
    assert client.set("job/same", b"two") is True  # joins the queued job
    assert client.add("job/same", b"three") is False
    assert function_line(mc, "job")[0] == 1
    seen: list[bytes] = []
    workers(mc, "job", lambda data: seen.append(data) or b"done")
    assert mc.result("job/same") == b"done"
    assert seen == [b"one"]
    assert client.add("job/same", b"again") is False  # its result is kept
    assert client.set("job/same", b"again") is True  # a new run
    assert mc.result("job/same") == b"done" and seen == [b"one", b"again"]


def test_delete_cancels_a_queued_job(mc: Memcached, workers) -> None:
    client = mc.client()
    client.set("work/cancel-me", b"never")
    client.set("work/keep", b"ok")
    assert client.delete("work/cancel-me") is True
    assert client.delete("work/cancel-me") is False
    seen: list[bytes] = []
    workers(mc, "work", lambda data: seen.append(data) or data)
    assert mc.result("work/keep") == b"ok"
    assert seen == [b"ok"]
    assert mc.talk(b"delete work\r\n", until=b"\r\n").startswith(b"CLIENT_ERROR ")


def test_queue_delete_when_allowed(gearmand: ServerFactory) -> None:
    target = start_memcached(gearmand, "--memcached-allow-queue-delete")
    client = target.client()
    for index in range(3):
        client.set("drop", b"%d" % index)
    assert client.delete("drop") is True
    assert function_line(target, "drop")[0] == 0


def test_flush_all_wipes_results_never_jobs(mc: Memcached, workers) -> None:
    client = mc.client()
    worker = workers(mc, "f", reverse)
    client.set("f/done", b"abc")
    assert mc.result("f/done") == b"cba"
    worker.stop()
    client.set("f/queued", b"x")
    assert client.flush_all() is True
    assert client.get("f/done") is None
    assert function_line(mc, "f")[0] == 1


# ---------------------------------------------------------------------------- a memcached client as the worker


def memcached_worker(target: Memcached, function: str, count: int, errors: list[str]) -> threading.Thread:
    """A pymemcache worker: get <function>/open, complete with set <function>/close, ``count`` times."""

    def run() -> None:
        client = target.client()
        try:
            for _ in range(count):
                value = None
                deadline = time.monotonic() + TIMEOUT
                while value is None and time.monotonic() < deadline:
                    value = client.get(f"{function}/open/t=400")
                assert value is not None, "no work came"
                assert client.set(f"{function}/close", value[::-1]) is True
        except Exception as error:
            errors.append(repr(error))
        finally:
            client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_pymemcache_worker_serves_a_c_gearman_client(mc: Memcached) -> None:
    need(GEARMAN, "gearman-tools")
    errors: list[str] = []
    thread = memcached_worker(mc, "reverse", 2, errors)
    for text in (b"hello world", b"abc\x00def"):
        out = subprocess.run(
            [GEARMAN, "-h", "127.0.0.1", "-p", str(mc.gearman_port), "-f", "reverse"],
            input=text,
            capture_output=True,
            timeout=TIMEOUT,
        )
        assert out.stdout == text[::-1]
    thread.join(TIMEOUT)
    assert errors == []


def test_a_dropped_worker_connection_gives_its_job_back(mc: Memcached, workers) -> None:
    client = mc.client()
    client.set("rev/dropped", b"payload")
    worker = socket.create_connection(("127.0.0.1", mc.port), timeout=TIMEOUT)
    worker.sendall(b"get rev/open\r\n")
    assert read_until(worker, b"END\r\n") == b"VALUE rev/open 0 7\r\npayload\r\nEND\r\n"
    assert function_line(mc, "rev")[1] == 1  # running on the memcached worker
    worker.close()
    workers(mc, "rev", reverse)
    assert mc.result("rev/dropped") == b"daolyap"


def test_abort_and_peek(mc: Memcached, workers) -> None:
    client = mc.client()
    client.set("q/item", b"data", flags=0)
    assert client.get("q/peek") == b"data"
    assert client.get("q/peek") == b"data"
    assert client.get("q/open") == b"data"
    assert client.get("q/peek") is None  # it runs here
    assert client.get("q/abort") is None
    assert function_line(mc, "q")[0:2] == (1, 0)
    assert client.get("q/open") == b"data"
    assert client.set("q/fail", b"it broke") is True
    assert client.get("q/item/error") == b"it broke"
    assert client.get("q/item") is None


def test_c_gearman_worker_runs_memcached_jobs(mc: Memcached, c_workers) -> None:
    c_workers(mc, "shout", "tr", "a-z", "A-Z")
    mc.client().set("shout/u1", b"quiet please")
    assert mc.result("shout/u1") == b"QUIET PLEASE"


# ---------------------------------------------------------------------------- results from other frontends


def test_results_of_jobs_submitted_over_the_binary_protocol_and_http(gearmand: ServerFactory, workers) -> None:
    need(GEARMAN, "gearman-tools")
    need(CURL, "curl")
    http_port = free_port()
    target = start_memcached(gearmand, "-r", "http", "--http-port", str(http_port))
    wait_listening(http_port, target.server.proc)
    subprocess.run(
        [GEARMAN, "-h", "127.0.0.1", "-p", str(target.gearman_port), "-b", "-f", "reverse", "-u", "bin1", "binary"],
        check=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    curl = [CURL, "-s", "-H", "X-Gearman-Background: true", "-H", "X-Gearman-Unique: web1"]
    subprocess.run([*curl, "--data-binary", "http", f"http://127.0.0.1:{http_port}/reverse"], check=True)
    workers(target, "reverse", reverse)
    assert target.result("reverse/bin1") == b"yranib"
    assert target.result("reverse/web1") == b"ptth"
    out = subprocess.run(
        [CURL, "-s", "-i", f"http://127.0.0.1:{http_port}/_gearman/results/reverse/bin1"], capture_output=True
    ).stdout
    assert out.startswith(b"HTTP/1.1 200") and b"X-Gearman-Command: WORK_COMPLETE" in out and out.endswith(b"yranib")
    out = subprocess.run(
        [CURL, "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{http_port}/_gearman/results/x/y"],
        capture_output=True,
    ).stdout
    assert out == b"404"


def test_result_ttl_expires(gearmand: ServerFactory, workers) -> None:
    target = start_memcached(gearmand, "--result-ttl", "0.5")
    workers(target, "r", reverse)
    client = target.client()
    client.set("r/default", b"ab")
    client.set("r/own", b"cd", expire=60)  # the set's exptime wins
    assert target.result("r/default") == b"ba"
    assert target.result("r/own") == b"dc"
    deadline = time.monotonic() + TIMEOUT
    while client.get("r/default") is not None:
        assert time.monotonic() < deadline, "the result never expired"
        time.sleep(0.05)  # a TTL is time passing: nothing to await
    assert client.get("r/own") == b"dc"
    assert client.touch("r/own", 1) is True
    assert client.touch("r/default", 1) is False


def test_results_are_evicted_lru_under_the_memory_bound(gearmand: ServerFactory, workers) -> None:
    target = start_memcached(gearmand, "--result-cache-memory", "25000")
    workers(target, "big", lambda data: data * 10)  # 5,000 bytes (and some) each: four fit
    client = target.client()
    for index in range(4):
        client.set(f"big/{index}", b"%d" % index * 500)
        assert target.result(f"big/{index}") == b"%d" % index * 5000
    assert client.get("big/0") is not None  # 0 is now the most recently used: 1 goes first
    client.set("big/4", b"4" * 500)
    assert target.result("big/4") == b"4" * 5000
    assert client.get("big/1") is None
    assert all(client.get(f"big/{index}") is not None for index in (0, 2, 3, 4))
    stats = client.stats()
    assert stats[b"evictions"] == 1 and stats[b"limit_maxbytes"] == 25000


# ---------------------------------------------------------------------------- libmemcached-tools


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_libmemcached_tools(mc: Memcached, workers, tmp_path: Path, binary: bool) -> None:
    seen: list[bytes] = []
    workers(mc, "convert", lambda data: seen.append(data) or data.upper())
    source = tmp_path / "convert"  # memccp's key is the file's name: a job of that function
    source.write_bytes(b"file contents\r\n\x00end")
    assert mc.tool("memccp", str(source), binary=binary).returncode == 0
    client = mc.client()
    client.set("convert/u", b"for memccat")
    result = mc.result("convert/u")
    assert result == b"FOR MEMCCAT"
    deadline = time.monotonic() + TIMEOUT
    while b"file contents\r\n\x00end" not in seen:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    out = mc.tool("memccat", "convert/u", binary=binary)
    assert out.returncode == 0 and out.stdout == b"FOR MEMCCAT\n"  # memccat adds the newline
    assert mc.tool("memccat", "convert/missing", binary=binary).returncode != 0
    before = function_line(mc, "probe")
    exists = mc.tool("memcexist", "probe/x", binary=binary)
    assert exists.returncode != 0  # nothing kept under that key
    assert function_line(mc, "probe") == before  # and nothing submitted
    assert mc.tool("memcexist", "convert/u", binary=binary).returncode == 0
    assert mc.tool("memcrm", "convert/u", binary=binary).returncode == 0
    assert client.get("convert/u") is None
    stat = mc.tool("memcstat", binary=binary)
    assert stat.returncode == 0 and b"gearman_jobs" in stat.stdout
    client.set("convert/again", b"x")
    assert mc.result("convert/again") == b"X"
    assert mc.tool("memcflush", binary=binary).returncode == 0
    assert client.get("convert/again") is None


# ---------------------------------------------------------------------------- meta commands, php-memcached


def test_meta_memcache(mc: Memcached, workers) -> None:
    from meta_memcache import CacheClient, Key, ServerAddress
    from meta_memcache.configuration import connection_pool_factory_builder

    seen: list[bytes] = []
    workers(mc, "meta", lambda data: seen.append(data) or data[::-1])
    cache = CacheClient.cache_client_from_servers(
        servers=[ServerAddress(host="127.0.0.1", port=mc.port)],
        connection_pool_factory_fn=connection_pool_factory_builder(recv_timeout=TIMEOUT),
    )
    assert cache.set(Key("meta/plain"), b"abc", ttl=0) is True
    assert cache.set(Key("meta/with space é"), b"base64 key", ttl=0) is True  # sent base64 with b
    assert mc.result("meta/plain") == b"cba"
    assert cache.get(Key("meta/plain")) == b"cba"
    deadline = time.monotonic() + TIMEOUT
    while cache.get(Key("meta/with space é/t=400")) is None:  # mg <base64> b ...: a wait too
        assert time.monotonic() < deadline
    assert cache.get(Key("meta/with space é")) == b"yek 46esab"
    assert cache.delete(Key("meta/plain")) is True
    assert cache.get(Key("meta/plain")) is None
    assert sorted(seen) == [b"abc", b"base64 key"]


def test_php_memcached_binary_protocol(mc: Memcached, workers, tmp_path: Path) -> None:
    need("/usr/bin/php", "php-cli")
    if subprocess.run(["php", "-r", "exit(extension_loaded('memcached') ? 0 : 1);"]).returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("php-memcached is missing: scripts/setup --test installs it")
        pytest.skip("php-memcached is not installed")
    workers(mc, "php", reverse)
    script = tmp_path / "client.php"
    script.write_text(
        f"""<?php
$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
$m->setOption(Memcached::OPT_COMPRESSION, false);
$m->addServer('127.0.0.1', {mc.port});
foreach (['a', 'b', 'c'] as $u) {{ if (!$m->set("php/$u", "value-$u")) {{ echo "set failed\\n"; exit(1); }} }}
for ($i = 0; $i < 200; $i++) {{
    $got = $m->getMulti(['php/a', 'php/b', 'php/c', 'php/none']);
    if (is_array($got) && count($got) == 3) {{ ksort($got); echo json_encode($got), "\\n"; exit(0); }}
    usleep(20000);
}}
echo "no results\\n"; exit(1);
"""
    )
    out = subprocess.run(["php", str(script)], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == b'{"php\\/a":"a-eulav","php\\/b":"b-eulav","php\\/c":"c-eulav"}\n'


# ---------------------------------------------------------------------------- bad input


def test_bad_input_answers_that_request_only(gearmand: ServerFactory) -> None:
    target = start_memcached(gearmand, "--memcached-max-value-size", "100")
    long_key = b"k" * 251
    out = target.talk(
        b"bogus\r\nget\r\nset x 0 0 notanumber\r\nget " + long_key + b"\r\n"
        b"set big 0 0 200\r\n"
        + b"v" * 200
        + b"\r\nset ok 0 0 2\r\nabXX\r\nset \x7fkey 0 0 1\r\nx\r\nversion\r\nmn\r\n",
        until=b"\r\nMN\r\n",  # the meta no-op's answer: the last of them (a VERSION line ends in a version)
    )
    out += target.talk(b"version\r\n", until=b"\r\n")
    assert out.split(b"\r\n")[:7] == [
        b"ERROR",
        b"ERROR",
        b"CLIENT_ERROR bad command line format",
        b"CLIENT_ERROR bad command line format",
        b"SERVER_ERROR object too large for cache",
        b"CLIENT_ERROR bad data chunk",
        b"ERROR",  # memcached reads on after the bad chunk: "XX" is no command
    ]
    assert function_line(target, "big") == (0, 0, 0)


def test_half_a_value_then_silence_times_out(gearmand: ServerFactory) -> None:
    target = start_memcached(gearmand, "--memcached-read-timeout", "0.5")
    stalled = socket.create_connection(("127.0.0.1", target.port), timeout=TIMEOUT)
    stalled.sendall(b"set f/u 0 0 100\r\nonly half")
    other = target.client()
    assert other.set("f/other", b"fine") is True  # other connections go on
    started = time.monotonic()
    try:
        assert stalled.recv(100) == b""  # closed by the server
    except ConnectionResetError:
        pass  # (aborted: it sent no complete request, there is nothing to finish)
    assert time.monotonic() - started < 5
    stalled.close()
    other.close()
    assert function_line(target, "f")[0] == 1  # the half value submitted nothing
    deadline = time.monotonic() + TIMEOUT  # nothing leaks: only the connection asking is left
    while b"STAT curr_connections 1\r\n" not in target.talk(b"stats\r\n", until=b"END\r\n"):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_garbage_binary_headers(mc: Memcached) -> None:
    garbage = struct.pack(">BBHBBHIIQ", 0x80, 0x01, 300, 8, 0, 0, 4, 0, 0)  # key and extras overrun the body
    with socket.create_connection(("127.0.0.1", mc.port), timeout=TIMEOUT) as conn:
        conn.sendall(garbage)
        reply = read_until(conn, None)
    assert reply[0] == 0x81 and struct.unpack(">H", reply[6:8])[0] != 0
    with socket.create_connection(("127.0.0.1", mc.port), timeout=TIMEOUT) as conn:
        conn.sendall(b"\x80" + os.urandom(200))
        read_until(conn, None)  # an error or a close, never a hang
    assert mc.client().version().startswith(b"1.6")


# ---------------------------------------------------------------------------- load


def test_ten_thousand_set_get_pairs_over_twenty_connections(gearmand: ServerFactory, workers) -> None:
    target = start_memcached(gearmand, "-q", "memory")
    for _ in range(4):
        workers(target, "echo", lambda data: data)
    errors: list[str] = []
    done = [0]
    lock = threading.Lock()

    def run(connection: int) -> None:
        client = target.client()
        try:
            for index in range(500):
                key = f"echo/{connection}-{index}"
                value = b"%d:%d" % (connection, index)
                assert client.set(key, value) is True
                result = None
                deadline = time.monotonic() + 30
                while result is None and time.monotonic() < deadline:
                    result = client.get(key + "/t=400")
                assert result == value, (key, result)
                with lock:
                    done[0] += 1
        except Exception as error:
            errors.append(repr(error))
        finally:
            client.close()

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert done[0] == 10_000


def test_tools_are_where_setup_puts_them() -> None:
    """libmemcached-tools are the reference clients above: scripts/setup --test installs them."""
    if os.environ.get("CI") == "true":
        assert shutil.which("memccp") and shutil.which("memcexist")


def test_a_half_closed_connection_gets_every_answer(gearmand: ServerFactory, workers) -> None:
    """`printf ... | nc`: the client sends, then half-closes; waits included, everything is answered."""
    mc = start_memcached(gearmand, "--memcached-max-wait", "10000")
    workers(mc, "reverse", reverse)
    with socket.create_connection(("127.0.0.1", mc.port), timeout=TIMEOUT + 5) as conn:
        conn.sendall(b"set reverse/nc 0 0 5\r\nhello\r\nget reverse/nc/t=10000\r\nversion\r\n")
        conn.shutdown(socket.SHUT_WR)
        out = read_until(conn, None)
    assert out.startswith(b"STORED\r\nVALUE reverse/nc/t=10000 0 5\r\nolleh\r\nEND\r\nVERSION 1.6")


def test_a_worker_that_leaves_while_waiting_eats_no_job(gearmand: ServerFactory) -> None:
    """A worker closes while its `get <function>/t=` waits: the next job stays for others (a plain get
    completes the job it takes, so one handed to the gone worker would be lost)."""
    mc = start_memcached(gearmand, "--memcached-max-wait", "10000")
    with socket.create_connection(("127.0.0.1", mc.port), timeout=TIMEOUT) as conn:
        conn.sendall(b"get leaving/t=10000\r\n")
        wait_workers(mc, "leaving", 1)
        conn.shutdown(socket.SHUT_WR)
        assert read_until(conn, None) == b"END\r\n"  # the wait ended as a miss, then the close
    client = mc.client()
    assert client.set("leaving", b"job") is True
    assert client.get("leaving/peek") == b"job"
    assert client.get("leaving") == b"job"


def test_the_benchmark_runs() -> None:
    """bench/memcached_bench.py at a tiny scale: it builds its generators, runs every measure, prints ratios."""
    need("/usr/bin/memcached", "memcached")
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the load generators")
    bench = Path(__file__).resolve().parents[2] / "bench" / "memcached_bench.py"
    out = subprocess.run(
        [sys.executable, str(bench), "--rounds", "1", "--jobs", "400", "--round-trips", "160"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "set -> result round trips/s" in out.stdout and "server CPU per job" in out.stdout
