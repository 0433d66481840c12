"""Identities, permissions and tenants on the binary port (docs/security.md), with real clients: Debian's C
`gearman`/`gearadmin` (anonymous: they cannot send a token), PyPI `gear` (OPTION_REQ auth=TOKEN through
its own ``setOption``), and a raw socket for the exact packets."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import gear
import pytest

from protocols.binary.packets import Packet

from .conftest import RunningServer, ServerFactory
from .rawclient import Raw
from .security_setup import TOKENS, write_config

GEARMAN = "/usr/bin/gearman"
GEARADMIN = "/usr/bin/gearadmin"
TIMEOUT = 10.0

pytestmark = pytest.mark.filterwarnings("ignore:notifyAll\\(\\) is deprecated:DeprecationWarning")


@pytest.fixture
def secured(gearmand: ServerFactory, tmp_path: Path) -> RunningServer:
    return gearmand("--config", write_config(tmp_path), "-q", "memory")


def c_tool(path: str) -> str:
    if shutil.which(path) is None:
        pytest.fail(f"{path} is missing: scripts/setup --test installs gearman-tools")
    return path


def run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT, check=False)


def authed(server: RunningServer, identity: str) -> Raw:
    raw = Raw(server.port)
    raw.send(Packet.OPTION_REQ, b"auth=" + TOKENS[identity].encode())
    assert raw.expect(Packet.OPTION_RES) == [b"auth=" + TOKENS[identity].encode()]  # echoed, as gearmand does
    return raw


def denied(raw: Raw) -> bytes:
    code, text = raw.expect(Packet.ERROR)
    assert code == b"PERMISSION_DENIED", (code, text)
    return text


# -- anonymous: what the config's anonymous block grants, with the C tools


def test_anonymous_submit_allowed_and_denied_with_the_c_tool(secured: RunningServer) -> None:
    ok = run([c_tool(GEARMAN), "-p", str(secured.port), "-f", "public.echo", "-b", "-s"])
    assert ok.returncode == 0, ok.stderr
    refused = run([GEARMAN, "-p", str(secured.port), "-f", "private", "-b", "-s"])
    # the C tool prints gearmand's ERROR (and still exits 0, as it does for gearmand's errors)
    assert b"PERMISSION_DENIED:identity anonymous may not submit private" in refused.stderr
    status = secured.admin("status")
    assert "public.echo\t1\t0\t0" in status and "private" not in status
    assert "identity anonymous from 127.0.0.1 (binary) may not submit private" in secured.log()


def test_anonymous_admin_read_allowed_and_write_denied_with_gearadmin(secured: RunningServer) -> None:
    status = run([c_tool(GEARADMIN), "-p", str(secured.port), "--status"])
    assert status.returncode == 0 and status.stdout.endswith(b".\n")
    drop = run([GEARADMIN, "-p", str(secured.port), "--drop-function", "public.echo"])
    assert b"PERMISSION_DENIED" in drop.stdout + drop.stderr
    assert secured.admin("shutdown").startswith(
        "ERR PERMISSION_DENIED identity+anonymous+may+not+run+shutdown+(admin+class+shutdown)"
    )
    assert secured.proc.poll() is None


def test_a_denied_can_do_is_refused_with_an_error_and_registers_nothing(secured: RunningServer) -> None:
    raw = Raw(secured.port)
    raw.send(Packet.CAN_DO, b"private")
    assert b"may not work private" in denied(raw)
    raw.send(Packet.CAN_DO, b"public.work")
    raw.send(Packet.ECHO_REQ, b"after")
    assert raw.expect(Packet.ECHO_RES) == [b"after"]  # CAN_DO allowed: no answer, as in gearmand
    workers = secured.admin("workers")
    assert "public.work" in workers and "private" not in workers


def test_c_worker_can_do_allowed_and_denied(secured: RunningServer) -> None:
    """Debian's C worker: an allowed function runs a C client's job; a refused CAN_DO reaches libgearman as
    an ERROR packet, which it reports (and keeps trying) instead of waiting in silence."""
    port = str(secured.port)
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL}
    allowed = subprocess.Popen([c_tool(GEARMAN), "-p", port, "-w", "-f", "public.cat", "--", "cat"], **quiet)
    refused = subprocess.Popen(
        [GEARMAN, "-p", port, "-w", "-f", "private", "--", "cat"], stderr=subprocess.PIPE, **quiet
    )
    try:
        job = run([GEARMAN, "-p", port, "-f", "public.cat", "meow"])
        assert job.stdout == b"meow", job
        assert refused.stderr is not None
        assert b"unexpected packet:GEARMAN_ERROR" in refused.stderr.readline()
    finally:
        for proc in (allowed, refused):
            proc.kill()
            proc.wait()
    assert "identity anonymous from 127.0.0.1 (binary) may not work private" in secured.log()


# -- tokens


def test_admin_line_auth_gives_the_identity_its_admin_rights(secured: RunningServer) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", secured.port), timeout=TIMEOUT) as s:
        s.sendall(b"drop function nothing\r\n")
        assert s.recv(200).startswith(b"ERR PERMISSION_DENIED")
        s.sendall(b"auth wrong-token-wrong-token-wrong\r\n")
        assert s.recv(200) == b"ERR PERMISSION_DENIED unknown+token\r\n"
        s.sendall(f"auth {TOKENS['ops']}\r\n".encode())
        assert s.recv(200) == b"OK ops\n"
        s.sendall(b"create function made.by.ops\r\n")
        assert s.recv(200) == b"OK\r\n"
    assert "made.by.ops" in secured.admin("status")
    assert "authentication failed: an unknown token from 127.0.0.1 (binary)" in secured.log()


def test_option_req_auth_submit_allowed_and_denied(secured: RunningServer) -> None:
    raw = authed(secured, "app")
    raw.send(Packet.SUBMIT_JOB_BG, b"resize", b"", b"x")
    assert raw.expect(Packet.JOB_CREATED)
    raw.send(Packet.SUBMIT_JOB_BG, b"public.echo", b"", b"x")  # anonymous may; app may not
    assert denied(raw) == b"identity app may not submit public.echo"
    raw.send(Packet.SUBMIT_JOB, b"thumb.small", b"", b"x")
    assert raw.expect(Packet.JOB_CREATED)
    bad = Raw(secured.port)
    bad.send(Packet.OPTION_REQ, b"auth=not-a-known-token-at-all")
    assert denied(bad) == b"unknown token"


def test_gear_client_and_worker_present_tokens_and_run_a_job(secured: RunningServer) -> None:
    """gear's Client sends ``auth=TOKEN`` with its own setOption (again after every reconnect); its Worker
    has no setOption, so a two-line subclass sends the same packet before its CAN_DOs."""

    class TokenWorker(gear.Worker):
        def _onConnect(self, conn: gear.Connection) -> None:  # noqa: N802
            conn.sendPacket(gear.Packet(gear.constants.REQ, gear.constants.OPTION_REQ, b"auth=" + self.token))
            super()._onConnect(conn)

        def handleOptionRes(self, packet: gear.Packet) -> None:  # noqa: N802
            pass

    worker = TokenWorker("resizer")
    worker.token = TOKENS["imgworker"].encode()
    worker.addServer("127.0.0.1", secured.port)
    worker.registerFunction("resize")
    client = gear.Client("app")
    client.addServer("127.0.0.1", secured.port)
    try:
        client.waitForServer(TIMEOUT)
        worker.waitForServer(TIMEOUT)
        assert client.setOption("auth=" + TOKENS["app"], TIMEOUT)
        done = threading.Event()

        def serve() -> None:
            job = worker.getJob()
            job.sendWorkComplete(job.arguments[::-1])
            done.set()

        threading.Thread(target=serve, daemon=True).start()
        job = gear.Job(b"resize", b"abc")
        client.submitJob(job, timeout=TIMEOUT)
        assert done.wait(TIMEOUT)
        while not job.complete:
            threading.Event().wait(0.01)
        assert b"".join(job.data) == b"cba"
    finally:
        client.shutdown()
        worker.shutdown()


def test_identity_connection_cap(secured: RunningServer) -> None:
    first, second = authed(secured, "imgworker"), authed(secured, "imgworker")
    third = Raw(secured.port)
    third.send(Packet.OPTION_REQ, b"auth=" + TOKENS["imgworker"].encode())
    assert denied(third) == b"identity imgworker has 2 connections open (its limit)"
    first.sock.close()
    fourth = Raw(secured.port)
    for _ in range(100):  # the server counts the close when it reads it
        fourth.send(Packet.OPTION_REQ, b"auth=" + TOKENS["imgworker"].encode())
        ptype, args = fourth.recv()
        if ptype == Packet.OPTION_RES:
            break
    else:
        pytest.fail("the closed connection was never uncounted")
    assert second.nothing_within(0.01)


# -- tenants


def test_tenants_same_function_never_meet(secured: RunningServer) -> None:
    acme_worker, globex_worker = authed(secured, "acme"), authed(secured, "globex")
    for worker in (acme_worker, globex_worker):
        worker.send(Packet.CAN_DO, b"resize")
    acme, globex = authed(secured, "acme"), authed(secured, "globex")
    acme.send(Packet.SUBMIT_JOB_BG, b"resize", b"same-unique", b"acme's")
    acme_handle = acme.expect(Packet.JOB_CREATED)[0]
    globex.send(Packet.SUBMIT_JOB_BG, b"resize", b"same-unique", b"globex's")
    globex_handle = globex.expect(Packet.JOB_CREATED)[0]
    assert acme_handle != globex_handle  # same function, same unique: two jobs
    acme_worker.send(Packet.GRAB_JOB_UNIQ)
    assert acme_worker.expect(Packet.JOB_ASSIGN_UNIQ) == [acme_handle, b"resize", b"same-unique", b"acme's"]
    acme_worker.send(Packet.GRAB_JOB)
    assert acme_worker.expect(Packet.NO_JOB) == []
    globex_worker.send(Packet.GRAB_JOB)
    assert globex_worker.expect(Packet.JOB_ASSIGN) == [globex_handle, b"resize", b"globex's"]
    # status shows each tenant only its own functions, unprefixed; anonymous sees them qualified
    for raw, other in ((acme, b"globex"), (globex, b"acme")):
        raw.send_raw(b"status\n")
        reply = raw.sock.recv(4096)
        assert reply == b"resize\t1\t1\t1\n.\n", reply
        raw.send_raw(b"workers\n")
        workers = raw.sock.recv(4096)
        assert b" resize" in workers and other not in workers
    assert "acme/resize\t1\t1\t1" in secured.admin("status")
    # a tenant cannot see or cancel the other's job by handle
    acme.send(Packet.GET_STATUS, globex_handle)
    assert acme.expect(Packet.STATUS_RES) == [globex_handle, b"0", b"0", b"0", b"0"]
    acme.send(Packet.GET_STATUS, acme_handle)
    assert acme.expect(Packet.STATUS_RES)[:3] == [acme_handle, b"1", b"1"]  # its own: known, running
    acme.send_raw(b"cancel job " + globex_handle + b"\n")
    assert acme.sock.recv(100) == b"ERR UNKNOWN_JOB\r\n"


def test_tenant_queue_limit_and_connection_limit(secured: RunningServer) -> None:
    acme = authed(secured, "acme")
    for n in range(3):
        acme.send(Packet.SUBMIT_JOB_BG, b"thumbs", b"", b"%d" % n)
        acme.expect(Packet.JOB_CREATED)
    acme.send(Packet.SUBMIT_JOB_BG, b"other", b"", b"x")
    code, text = acme.expect(Packet.ERROR)
    assert (code, text) == (b"QUEUE_ERROR", b"tenant acme has 3 jobs queued (its limit)")
    anonymous = Raw(secured.port)
    anonymous.send(Packet.SUBMIT_JOB_BG, b"public.x", b"", b"x")  # others are not held back
    anonymous.expect(Packet.JOB_CREATED)
    kept = [authed(secured, "globex"), authed(secured, "globex")]
    third = Raw(secured.port)
    third.send(Packet.OPTION_REQ, b"auth=" + TOKENS["globex"].encode())
    assert denied(third) == b"tenant globex has 2 connections open (its limit)"
    assert "tenant acme has 3 jobs queued (its limit): refused a job for other" in secured.log()
    assert all(raw.nothing_within(0.01) for raw in kept)


# -- this project's client library and tools


def test_our_client_worker_and_tools_present_tokens(secured: RunningServer) -> None:
    import os
    import sys
    from pathlib import Path

    from gearman_gateway import Client, Worker

    worker = Worker([secured.address], token=TOKENS["imgworker"])
    worker.add_function("resize", lambda job: job.workload[::-1])
    served = threading.Thread(target=worker.work, args=(TIMEOUT,), daemon=True)
    served.start()
    with Client([secured.address], timeout=TIMEOUT, token=TOKENS["app"]) as client:
        assert client.do("resize", b"abc") == b"cba"
    served.join(TIMEOUT)
    worker.close()
    tools = Path(sys.executable).parent
    env = {**os.environ, "GEARMAN_TOKEN": TOKENS["ops"]}
    drop = subprocess.run([tools / "gearadmin", "-p", str(secured.port), "--create-function", "by.ops"],
                          capture_output=True, env=env, timeout=TIMEOUT, check=False)  # fmt: skip
    assert drop.returncode == 0 and drop.stdout == b"OK\n", drop
    bad = subprocess.run([tools / "gearadmin", "-p", str(secured.port), "--status"], capture_output=True,
                         env={**env, "GEARMAN_TOKEN": "wrong-token-0123456789-abcdef"}, timeout=TIMEOUT)  # fmt: skip
    assert bad.returncode == 1 and b"GEARMAN_TOKEN refused: PERMISSION_DENIED unknown+token" in bad.stderr
    app = {**env, "GEARMAN_TOKEN": TOKENS["app"]}
    submit = subprocess.run([tools / "gearman", "-p", str(secured.port), "-f", "thumb.x", "-b", "-s"],
                            capture_output=True, env=app, timeout=TIMEOUT)  # fmt: skip
    assert submit.returncode == 0, submit
    assert "thumb.x\t1\t0\t0" in secured.admin("status")


def test_perl_gearman_client_presents_a_token(secured: RunningServer) -> None:
    """Debian's libgearman-client-perl, with the subclass docs/security.md shows."""
    if shutil.which("perl") is None or run(["perl", "-MGearman::Client", "-e", "1"]).returncode != 0:
        pytest.fail("perl with Gearman::Client is missing: scripts/setup --test installs libgearman-client-perl")
    script = str(Path(__file__).parent / "security" / "token_client.pl")
    out = subprocess.run(["perl", script, secured.address, "resize", "private"], capture_output=True,
                         env={"GEARMAN_TOKEN": TOKENS["app"], "PATH": "/usr/bin:/bin"}, timeout=TIMEOUT)  # fmt: skip
    lines = out.stdout.decode().splitlines()
    assert lines[0] == "resize: queued", out
    assert "[PERMISSION_DENIED\x00identity app may not submit private]" in lines[1]  # Perl dies on ERROR
