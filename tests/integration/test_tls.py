"""TLS on the binary, HTTP and memcached listeners (issue 18), with independent clients: PyPI gear (TLS 1.2
only, client certificates), Perl's Gearman::Client/Gearman::Worker (use_ssl), curl, pymemcache, and this
project's client library, gearman and gearadmin. Refused: a client certificate from another CA, an expired
one, a plaintext client on the TLS port, and (``required``) a client without one, while an established
connection keeps working. Certificates are made at test time (tests/tlscerts.py)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gear
import pytest
from pymemcache.client.base import Client as MemcacheClient

from gearman_gateway.client import Client
from gearman_gateway.clientlib.errors import ServerError
from gearman_gateway.worker import Worker
from tests.integration.conftest import RunningServer, _factory, free_port, wait_listening
from tests.tlscerts import Pki, make_pki

BIN = Path(sys.executable).parent
TIMEOUT = 10.0


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is missing: scripts/setup --test installs it")
        pytest.skip(f"{tool} is not installed")
    return path


class TlsServer:
    """A running gearmand with a plaintext binary port, a TLS binary port beside it, and TLS-only HTTP and
    memcached ports."""

    def __init__(self, server: RunningServer, tls_port: int, http_port: int, memcached_port: int) -> None:
        self.server, self.tls_port, self.http_port, self.memcached_port = server, tls_port, http_port, memcached_port


def start_tls_server(start, pki: Pki, *extra: str) -> TlsServer:  # type: ignore[no-untyped-def]
    tls_port, http_port, memcached_port = free_port(), free_port(), free_port()
    server = start(
        "-q", "memory", "--ssl-port", str(tls_port),
        "--ssl-certificate", pki.server_cert, "--ssl-key", pki.server_key, "--ssl-ca-file", pki.ca,
        "-r", "http", "--http-port", str(http_port), "--http-ssl",
        "-r", "memcached", "--memcached-port", str(memcached_port), "--memcached-ssl",
        *extra,
    )  # fmt: skip
    wait_listening(tls_port, server.proc)
    return TlsServer(server, tls_port, http_port, memcached_port)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsServer]:
    """One server for the module (client certificates optional)."""
    start, started = _factory(tmp_path_factory.mktemp("tls-server"), str(BIN / "gearmand"))
    yield start_tls_server(start, pki)
    for server in started:
        server.stop()


def gear_worker(port: int, pki: Pki, name: str, function: bytes, jobs: int = 1) -> threading.Thread:
    """A PyPI gear worker over TLS (client certificate ``name``) answering ``jobs`` jobs with the
    workload upper-cased, in a thread."""
    cert, key = pki.client(name)
    worker = gear.Worker(name)
    worker.addServer("127.0.0.1", port, ssl_key=key, ssl_cert=cert, ssl_ca=pki.ca)
    worker.waitForServer(timeout=TIMEOUT)
    worker.registerFunction(function)

    def serve() -> None:
        try:
            for _ in range(jobs):
                job = worker.getJob()
                job.sendWorkComplete(job.arguments.upper())
        finally:
            worker.shutdown()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def gear_client(port: int, pki: Pki, name: str) -> gear.Client:
    cert, key = pki.client(name)
    client = gear.Client(name)
    client.addServer("127.0.0.1", port, ssl_key=key, ssl_cert=cert, ssl_ca=pki.ca)
    client.waitForServer(timeout=TIMEOUT)
    return client


def gear_run(client: gear.Client, function: bytes, data: bytes) -> bytes:
    job = gear.Job(function, data)
    client.submitJob(job)
    deadline = time.monotonic() + TIMEOUT
    while not job.complete and time.monotonic() < deadline:
        time.sleep(0.005)  # gear's client has no blocking wait for a job
    assert job.complete, "no result within the timeout"
    return b"".join(job.data)


def workers_of(server: RunningServer, function: str, count: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for line in server.admin("status").splitlines():
            fields = line.split("\t")
            if fields[0] == function and int(fields[3]) >= count:
                return
        time.sleep(0.02)
    raise AssertionError(f"no {count} worker(s) of {function}")


def handshake(port: int, context: ssl.SSLContext) -> str:
    """The TLS version a handshake with ``context`` agreed; raises what the failure raised."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"version\n")
            reply = sock.recv(100)  # TLS 1.3: a refused client certificate is heard only here
            assert reply.startswith(b"OK "), reply
            return str(sock.version())


def context_for(pki: Pki, cert: tuple[str, str] | None, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca)
    if cert is not None:
        context.load_cert_chain(*cert)
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


# ---------------------------------------------------------------------------- independent clients


def test_gear_client_and_worker_with_client_certificates_over_tls_1_2(tls: TlsServer, pki: Pki) -> None:
    thread = gear_worker(tls.tls_port, pki, "gear-worker", b"tls_gear")
    client = gear_client(tls.tls_port, pki, "gear-client")
    try:
        assert gear_run(client, b"tls_gear", b"hello over tls") == b"HELLO OVER TLS"
    finally:
        client.shutdown()
    thread.join(TIMEOUT)
    assert "TLS" in tls.server.log() and "ERROR" not in tls.server.log()


def test_tls_1_2_and_1_3_are_offered_and_older_ones_are_not(tls: TlsServer, pki: Pki) -> None:
    assert handshake(tls.tls_port, context_for(pki, None, ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    assert handshake(tls.tls_port, context_for(pki, None, ssl.TLSVersion.TLSv1_3)) == "TLSv1.3"
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(pki.ca)
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        handshake(tls.tls_port, old)


def test_perl_gearman_client_and_worker_with_use_ssl(tls: TlsServer, pki: Pki) -> None:
    perl = need("perl")
    cert, key = pki.client("perl")
    server = f"{{host => '127.0.0.1', port => {tls.tls_port}, use_ssl => 1, ca_file => '{pki.ca}', "
    server += f"cert_file => '{cert}', key_file => '{key}'}}"
    worker = subprocess.Popen(
        [perl, "-MGearman::Worker", "-e",
         f"my $w = Gearman::Worker->new(job_servers => [{server}]); my $done = 0;"
         "$w->register_function(perl_tls => sub { $done = 1; return uc $_[0]->arg });"
         "$w->work(stop_if => sub { $done });"],
    )  # fmt: skip
    try:
        workers_of(tls.server, "perl_tls", 1)
        result = subprocess.run(
            [perl, "-MGearman::Client", "-e",
             f"my $c = Gearman::Client->new(job_servers => [{server}]);"
             "my $r = $c->do_task('perl_tls', 'from perl') or die 'no result'; print $$r;"],
            capture_output=True, timeout=TIMEOUT, check=True,
        )  # fmt: skip
        assert result.stdout == b"FROM PERL"
        assert worker.wait(TIMEOUT) == 0
    finally:
        worker.kill()
        worker.wait()


def test_curl_over_https_to_the_http_frontend(tls: TlsServer, pki: Pki) -> None:
    curl = need("curl")
    thread = gear_worker(tls.tls_port, pki, "http-worker", b"tls_http")
    url = f"https://127.0.0.1:{tls.http_port}/tls_http"
    result = subprocess.run(
        [curl, "-sS", "--cacert", pki.ca, "--data-binary", "via https", url], capture_output=True, timeout=TIMEOUT
    )
    assert result.stdout == b"VIA HTTPS", result.stderr
    thread.join(TIMEOUT)
    plain = subprocess.run([curl, "-sS", f"http://127.0.0.1:{tls.http_port}/x"], capture_output=True, timeout=TIMEOUT)
    assert plain.returncode != 0  # plaintext HTTP on the TLS port gets no answer


def test_pymemcache_over_tls_to_the_memcached_frontend(tls: TlsServer, pki: Pki) -> None:
    thread = gear_worker(tls.tls_port, pki, "mc-worker", b"tls_mc")
    cert = pki.client("pymemcache")
    mc = MemcacheClient(
        ("127.0.0.1", tls.memcached_port), tls_context=context_for(pki, cert), default_noreply=False, timeout=TIMEOUT
    )
    try:
        assert mc.set("tls_mc/u1", b"over memcached") is True
        thread.join(TIMEOUT)
        assert mc.get("tls_mc/u1/t=400") == b"OVER MEMCACHED"
    finally:
        mc.close()


# ---------------------------------------------------------------------------- this project's clients


def test_our_client_and_worker_with_ssl_options(tls: TlsServer, pki: Pki) -> None:
    cert, key = pki.client("ours")
    worker = Worker(f"127.0.0.1:{tls.tls_port}", ssl_ca=pki.ca, ssl_cert=cert, ssl_key=key)
    worker.add_function("tls_ours", lambda job: job.workload[::-1])
    thread = threading.Thread(target=worker.work_forever, daemon=True)
    thread.start()
    try:
        with Client(f"127.0.0.1:{tls.tls_port}", ssl_ca=pki.ca, timeout=TIMEOUT) as client:
            big = os.urandom(300_000)  # many TLS records: what select() cannot see must still be read
            assert client.do("tls_ours", b"abc") == b"cba"
            assert client.do("tls_ours", big) == big[::-1]
    finally:
        worker.stop()
        thread.join(TIMEOUT)


def test_our_gearman_and_gearadmin_tools_with_s(tls: TlsServer, pki: Pki) -> None:
    cert, key = pki.client("tools")
    tls_args = ["-S", "--ssl-ca-file", pki.ca, "--ssl-certificate", cert, "--ssl-key", key]
    where = ["-h", "127.0.0.1", "-p", str(tls.tls_port)]
    worker = subprocess.Popen(
        [str(BIN / "gearman"), *tls_args, *where, "-w", "-c", "1", "-f", "tls_tool", "--", "tr", "a-z", "A-Z"]
    )
    try:
        workers_of(tls.server, "tls_tool", 1)
        admin = subprocess.run(
            [str(BIN / "gearadmin"), *tls_args[:3], *where, "--status"], capture_output=True, timeout=TIMEOUT
        )
        assert admin.returncode == 0 and b"tls_tool\t0\t0\t1" in admin.stdout, admin
        client = subprocess.run(
            [str(BIN / "gearman"), *tls_args, *where, "-f", "tls_tool", "tools"], capture_output=True, timeout=TIMEOUT
        )
        assert client.stdout == b"TOOLS", client
        assert worker.wait(TIMEOUT) == 0
    finally:
        worker.kill()
        worker.wait()
    wrong_ca = subprocess.run(
        [str(BIN / "gearadmin"), "-S", *where, "--server-version"], capture_output=True, timeout=TIMEOUT
    )  # the system's CAs do not know the test CA
    assert wrong_ca.returncode == 1 and b"CERTIFICATE_VERIFY_FAILED" in wrong_ca.stderr, wrong_ca


# ---------------------------------------------------------------------------- refusals


def test_bad_client_certificates_and_plaintext_are_refused_while_others_keep_working(tls: TlsServer, pki: Pki) -> None:
    kept = context_for(pki, pki.client("kept")).wrap_socket(
        socket.create_connection(("127.0.0.1", tls.tls_port), timeout=TIMEOUT), server_hostname="127.0.0.1"
    )
    with kept:
        kept.sendall(b"version\n")
        assert kept.recv(100).startswith(b"OK ")
        other_ca = make_pki(Path(pki.directory) / "other").authority
        for refused in (pki.client("stranger", by=other_ca), pki.client("late", expired=True)):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                handshake(tls.tls_port, context_for(pki, refused))
        with socket.create_connection(("127.0.0.1", tls.tls_port), timeout=TIMEOUT) as plain:
            plain.sendall(b"version\r\n")  # not a TLS record: the server ends the connection
            try:
                answer = plain.recv(100)
            except ConnectionResetError:
                answer = b""
            assert b"OK" not in answer  # at most a TLS alert, never a reply
        assert handshake(tls.tls_port, context_for(pki, None)) in ("TLSv1.2", "TLSv1.3")  # optional: no cert is fine
        kept.sendall(b"version\n")  # the connection made before the refusals still works
        assert kept.recv(100).startswith(b"OK ")
    assert tls.server.admin("version").startswith("OK ")  # the plaintext port too
    log = tls.server.log()
    for reason in (
        "(not signed by a CA of --ssl-ca-file) (subject CN=stranger",
        "certificate has expired (subject CN=late",
    ):
        assert reason in log
    assert "refused: wrong version number" in log


def test_required_client_certificates_refuse_a_client_without_one(tmp_path: Path, pki: Pki, gearmand) -> None:  # type: ignore[no-untyped-def]
    strict = start_tls_server(gearmand, pki, "--ssl-client-cert", "required")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(strict.tls_port, context_for(pki, None))
    assert handshake(strict.tls_port, context_for(pki, pki.client("strict"))) in ("TLSv1.2", "TLSv1.3")


def test_tls_connections_take_keepalive_socket_options(pki: Pki, gearmand) -> None:  # type: ignore[no-untyped-def]
    """``--keepalive`` sets its options on the TCP socket under TLS (the wrapper's handle has none)."""
    server = start_tls_server(gearmand, pki, "--keepalive", "--keepalive-idle", "30")
    thread = gear_worker(server.tls_port, pki, "ka-worker", b"tls_keepalive")
    client = gear_client(server.tls_port, pki, "ka-client")
    assert gear_run(client, b"tls_keepalive", b"kept alive") == b"KEPT ALIVE"
    thread.join(TIMEOUT)
    client.shutdown()
    assert "Traceback" not in server.server.log()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("key", "is not the key of --ssl-certificate"),
        ("garbage", "no PEM certificate in it"),
    ],
)
def test_unusable_certificate_files_stop_the_start_with_the_reason(
    tmp_path: Path, pki: Pki, change: str, message: str
) -> None:
    cert, key = pki.server_cert, pki.server_key
    if change == "key":
        key = pki.client("someone")[1]
    else:
        cert = str(tmp_path / "garbage.pem")
        Path(cert).write_text("not a certificate\n")
    result = subprocess.run(
        [str(BIN / "gearmand"), "-L", "127.0.0.1", "-p", "0", "--ssl", "-q", "memory", "--config-file=",
         "--ssl-certificate", cert, "--ssl-key", key],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_async_client_over_tls(tls: TlsServer, pki: Pki) -> None:
    import asyncio

    from gearman_gateway.client import AsyncClient

    thread = gear_worker(tls.tls_port, pki, "async-worker", b"tls_async")

    async def submit() -> bytes:
        client = AsyncClient(f"127.0.0.1:{tls.tls_port}", ssl_ca=pki.ca, timeout=TIMEOUT)
        try:
            return await client.do("tls_async", b"from asyncio")
        finally:
            await client.close()

    assert asyncio.run(submit()) == b"FROM ASYNCIO"
    thread.join(TIMEOUT)


def test_yaml_endpoints_take_twisted_ssl_strings(tmp_path: Path, pki: Pki, gearmand) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    config = tmp_path / "tls.yaml"
    config.write_text(
        "endpoints:\n  memcached:\n"
        f"    - 'ssl:{port}:interface=127.0.0.1:privateKey={pki.server_key}:certKey={pki.server_cert}'\n"
    )
    server = gearmand("-q", "memory", "-r", "memcached", "--config", str(config))
    wait_listening(port, server.proc)
    mc = MemcacheClient(("127.0.0.1", port), tls_context=context_for(pki, None), default_noreply=False, timeout=TIMEOUT)
    try:
        assert mc.version()
    finally:
        mc.close()


# ---------------------------------------------------------------------------- identities from certificates


@pytest.fixture
def secured_tls(tmp_path: Path, pki: Pki, gearmand) -> TlsServer:  # type: ignore[no-untyped-def]
    """Anonymous may only work and read; the identity ``billing`` (a certificate with CN billing-client or
    the SAN DNS name billing.example.org) may submit only ``invoice.*``."""
    config = tmp_path / "secured.yaml"
    config.write_text(
        "security:\n"
        "  anonymous: {submit: [], work: ['*'], admin: [read]}\n"
        "  identities:\n"
        "    billing: {certificates: [billing-client, billing.example.org], submit: ['invoice.*']}\n"
    )
    return start_tls_server(gearmand, pki, "--config", str(config))


def test_a_client_certificate_names_an_identity_that_may_submit_only_its_functions(
    secured_tls: TlsServer, pki: Pki
) -> None:
    thread = gear_worker(secured_tls.tls_port, pki, "anon-worker", b"invoice.make")  # anonymous may work
    client = gear_client(secured_tls.tls_port, pki, "billing-client")
    try:
        assert gear_run(client, b"invoice.make", b"march") == b"MARCH"  # gear, TLS 1.2, identity billing
        refused = gear.Job(b"payroll.run", b"x")
        with pytest.raises(gear.GearmanError):  # gear logs the ERROR packet (PERMISSION_DENIED) and gives up
            client.submitJob(refused, timeout=TIMEOUT)
        assert refused.handle is None
    finally:
        client.shutdown()
    thread.join(TIMEOUT)
    billing = pki.client("other-cn", [x509_dns("billing.example.org")])  # the identity by a SAN DNS name
    with Client(f"127.0.0.1:{secured_tls.tls_port}", ssl_ca=pki.ca, ssl_cert=billing[0], ssl_key=billing[1]) as ours:
        with pytest.raises(ServerError, match="PERMISSION_DENIED: identity billing may not submit payroll.run"):
            ours.do_background("payroll.run", b"x")
        assert ours.do_background("invoice.later", b"x")
    with Client(f"127.0.0.1:{secured_tls.tls_port}", ssl_ca=pki.ca) as anonymous:  # TLS without a certificate
        with pytest.raises(ServerError, match="identity anonymous may not submit invoice.make"):
            anonymous.do_background("invoice.make", b"x")
    log = secured_tls.server.log()
    assert "identity billing from 127.0.0.1 (binary) may not submit payroll.run" in log


def test_https_and_memcached_take_the_certificate_identity_too(secured_tls: TlsServer, pki: Pki) -> None:
    curl = need("curl")
    cert, key = pki.client("billing-client")
    url = f"https://127.0.0.1:{secured_tls.http_port}"
    background = ["-H", "X-Gearman-Background: true", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "x"]
    base = [curl, "-sS", "--cacert", pki.ca, *background]
    as_billing = subprocess.run([*base, "--cert", cert, "--key", key, f"{url}/invoice.http"], capture_output=True)
    anonymous = subprocess.run([*base, f"{url}/invoice.http"], capture_output=True)
    assert (as_billing.stdout, anonymous.stdout) == (b"200", b"403"), (as_billing, anonymous)
    mc = MemcacheClient(
        ("127.0.0.1", secured_tls.memcached_port),
        tls_context=context_for(pki, (cert, key)),
        default_noreply=False,
        timeout=TIMEOUT,
    )
    try:
        assert mc.set("invoice.mc", b"x") is True
        with pytest.raises(Exception, match="identity billing may not submit payroll.mc"):  # CLIENT_ERROR
            mc.set("payroll.mc", b"x")
    finally:
        mc.close()


def x509_dns(name: str):  # type: ignore[no-untyped-def]
    from cryptography import x509

    return x509.DNSName(name)
