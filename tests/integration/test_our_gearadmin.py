"""Our `gearadmin` (the Python one installed with the package) against our server."""

from __future__ import annotations

import os
import subprocess

import pytest

from protocols.binary.packets import Packet
from tests.integration.conftest import BIN_DIR
from tests.integration.rawclient import Raw, submit

pytestmark = pytest.mark.skipif("GG_TEST_SERVER" in os.environ, reason="our gearadmin's extra commands")
GEARADMIN = str(BIN_DIR / "gearadmin")


def run(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [GEARADMIN, "-h", "127.0.0.1", "-p", str(server.port), *args], capture_output=True, text=True, timeout=20
    )


def test_gearadmin_reads_whole_lists_and_one_line_replies(server) -> None:
    with Raw(server.port) as client:
        handle = submit(client, b"ga", b"x", unique=b"gu", ptype=Packet.SUBMIT_JOB_BG)
        result = run(server, "--status", "--show-jobs", "--show-unique-jobs", "--getpid", "--server-version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "ga\t1\t0\t0" in lines
    assert f"{handle.decode()}\t0\t0\t1" in lines
    assert "gu" in lines
    assert str(server.pid) in lines
    assert any(line.startswith("1.1.20+gearman-gateway") for line in lines)


def test_gearadmin_errors_exit_one(server) -> None:
    result = run(server, "--drop-function", "nosuch")
    assert result.returncode == 1 and "Error: function not found" in result.stderr
    result = run(server)
    assert result.returncode == 1 and "No option execution operation given." in result.stderr


def test_gearadmin_store_and_dead_letters(gearmand) -> None:
    server = gearmand("--dead-letter")
    result = run(server, "--show-store", "--show-dead-jobs")
    assert result.returncode == 0 and "backend\tsqlite" in result.stdout and "state\tup" in result.stdout
    with Raw(server.port) as client, Raw(server.port) as w:
        handle = submit(client, b"dl", b"x", ptype=Packet.SUBMIT_JOB_BG)
        w.send(Packet.CAN_DO, b"dl")
        w.send(Packet.GRAB_JOB)
        w.expect(Packet.JOB_ASSIGN)
        w.send(Packet.WORK_FAIL, handle)
        assert w.call(Packet.ECHO_REQ, b"sync") == (Packet.ECHO_RES, [b"sync"])
    assert f"{handle.decode()}\tdl\t1\tWORK_FAIL" in run(server, "--show-dead-jobs").stdout  # failed once
    assert run(server, "--requeue-dead-job", handle.decode()).stdout.strip() == "1"
    assert run(server, "--delete-dead-job", "all").stdout.strip() == "0"
    assert "dl\t1\t0\t0" in run(server, "--status").stdout
