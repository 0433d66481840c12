"""Identities and permissions on the HTTP frontend (curl with bearer tokens) and the memcached frontend
(pymemcache, ``set _auth``), the Prometheus count of refusals, and the server started with
config/hardened.yaml (docs/security.md)."""

from __future__ import annotations

import json
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError, MemcacheServerError

from gearman_gateway.security import hash_token

from .conftest import RunningServer, ServerFactory, free_port, wait_listening
from .security_setup import TOKENS, write_config
from .test_memcached_frontend import start_memcached

CURL = "/usr/bin/curl"
TIMEOUT = 10.0
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Secured:
    server: RunningServer
    http: int
    memcached: int

    def curl(self, path: str, *args: str, token: str | None = None) -> tuple[int, bytes]:
        auth = ["-H", f"Authorization: Bearer {token}"] if token else []
        out = subprocess.run(
            [CURL, "-s", "-o", "-", "-w", "\n%{http_code}", *auth, *args, f"http://127.0.0.1:{self.http}{path}"],
            capture_output=True, timeout=TIMEOUT, check=True,
        )  # fmt: skip
        body, _, code = out.stdout.rpartition(b"\n")
        return int(code), body

    def memcache(self) -> Client:
        return Client(("127.0.0.1", self.memcached), timeout=TIMEOUT, default_noreply=False)


def start(gearmand: ServerFactory, config: str) -> Secured:
    """The server with the http and memcached frontends; ready once all three ports accept (the fixture's
    own readiness probe, admin `version`, is refused to anonymous peers by the hardened config)."""
    http, memcached = free_port(), free_port()
    server = gearmand("--config", config, "-q", "memory", "-r", "http", "--http-port", str(http),
                      "-r", "memcached", "--memcached-port", str(memcached), wait=False)  # fmt: skip
    wait_listening(server.port, server.proc)
    wait_listening(http, server.proc)
    wait_listening(memcached, server.proc)
    return Secured(server, http, memcached)


@pytest.fixture
def secured(gearmand: ServerFactory, tmp_path: Path) -> Secured:
    return start(gearmand, write_config(tmp_path))


# -- HTTP


def test_http_submit_allowed_and_denied_by_bearer_token(secured: Secured) -> None:
    background = ("-H", "X-Gearman-Background: true", "-d", "x")
    assert secured.curl("/public.echo", *background)[0] == 200  # anonymous may
    code, body = secured.curl("/private", *background)
    assert code == 403 and b"identity anonymous may not submit private" in body
    assert secured.curl("/resize", *background, token=TOKENS["app"])[0] == 200
    code, body = secured.curl("/public.echo", *background, token=TOKENS["app"])
    assert code == 403 and b"identity app may not submit public.echo" in body
    code, body = secured.curl("/resize", *background, token="an-unknown-token-0123456789")
    assert code == 401 and b"unknown token" in body


def test_http_api_needs_the_read_class_and_counts_refusals(secured: Secured) -> None:
    assert secured.curl("/_gearman/status")[0] == 200  # anonymous has read
    code, body = secured.curl("/_gearman/status", token=TOKENS["app"])  # app has no admin class
    assert code == 403 and b"identity app may not run GET /_gearman/status (admin class read)" in body
    code, body = secured.curl("/_gearman/status", token=TOKENS["acme"])  # read, but a tenant
    assert code == 403 and b"tenant acme" in body
    secured.curl("/private", "-d", "x")
    code, metrics = secured.curl("/_gearman/metrics", token=TOKENS["ops"])
    assert code == 200
    lines = metrics.decode().splitlines()
    assert 'gearman_access_denied_total{identity="anonymous",frontend="http",action="submit"} 1.0' in lines
    assert 'gearman_access_denied_total{identity="app",frontend="http",action="admin"} 1.0' in lines


def test_http_tenant_submits_into_its_namespace(secured: Secured) -> None:
    code, _ = secured.curl("/resize", "-H", "X-Gearman-Background: true", "-d", "x", token=TOKENS["acme"])
    assert code == 200
    assert "acme/resize\t1\t0\t0" in secured.server.admin("status")


# -- memcached


def test_memcached_auth_submit_and_work_allowed_and_denied(secured: Secured) -> None:
    anonymous = secured.memcache()
    assert anonymous.set("public.q", b"job") is True
    with pytest.raises(MemcacheClientError, match="identity anonymous may not submit private"):
        anonymous.set("private", b"job")
    with pytest.raises(MemcacheClientError, match="unknown token"):
        anonymous.set("_auth", b"not-a-token-of-anyone-at-all")
    app = secured.memcache()
    assert app.set("_auth", TOKENS["app"].encode()) is True
    assert app.set("resize", b"job") is True
    with pytest.raises(MemcacheClientError, match="identity app may not work resize"):
        app.get("resize")
    worker = secured.memcache()
    assert worker.set("_auth", b"imgworker " + TOKENS["imgworker"].encode()) is True  # memcached's "name secret"
    assert worker.get("resize") == b"job"
    with pytest.raises(MemcacheClientError, match="not that identity's"):
        secured.memcache().set("_auth", b"ops " + TOKENS["app"].encode())


def test_memcached_tenants_and_their_queue_limit(secured: Secured) -> None:
    acme, globex = secured.memcache(), secured.memcache()
    acme.set("_auth", TOKENS["acme"].encode())
    globex.set("_auth", TOKENS["globex"].encode())
    for n in range(3):
        assert acme.set("resize", b"acme %d" % n) is True
    with pytest.raises(MemcacheServerError, match="tenant acme has 3 jobs queued"):
        acme.set("resize", b"one too many")
    assert globex.get("resize") is None  # the same name, another namespace: nothing there
    assert globex.set("resize", b"globex's") is True
    assert globex.get("resize") == b"globex's"
    acme.set("_auth", TOKENS["acme"].encode())  # pymemcache reconnected after the error: a new connection
    assert acme.get("resize") == b"acme 0"


def test_memcached_stats_gearman_is_an_admin_read_and_a_tenant_sees_its_own(secured: Secured) -> None:
    acme, globex, app, ops = (secured.memcache() for _ in range(4))
    for client, name in ((acme, "acme"), (globex, "globex"), (app, "app"), (ops, "ops")):
        assert client.set("_auth", TOKENS[name].encode()) is True
    assert acme.set("resize", b"acme's") is True
    assert globex.set("resize", b"globex's") is True
    assert acme.stats("gearman") == {b"resize:queued": 1, b"resize:running": 0, b"resize:workers": 0}
    operator = ops.stats("gearman")
    assert operator[b"acme/resize:queued"] == 1 and operator[b"globex/resize:queued"] == 1
    with pytest.raises(MemcacheClientError, match=r"identity app may not run stats gearman \(admin class read\)"):
        app.stats("gearman")
    assert app.stats()[b"gearman_jobs"] == 2  # the general stats name no function: anyone may read them


def test_memcached_queue_delete_is_an_admin_cancel(gearmand: ServerFactory, tmp_path: Path) -> None:
    """``delete <function>`` cancels other submitters' jobs too: the ``cancel`` class, not ``submit``."""
    mc = start_memcached(gearmand, "--config", write_config(tmp_path), "-q", "memory", "--memcached-allow-queue-delete")
    server = mc.server
    app, acme = (Client(("127.0.0.1", mc.port), timeout=TIMEOUT, default_noreply=False) for _ in range(2))
    app.set("_auth", TOKENS["app"].encode())
    acme.set("_auth", TOKENS["acme"].encode())
    assert app.set("resize", b"queued") is True
    with pytest.raises(MemcacheClientError, match=r"identity app may not run delete resize \(admin class cancel\)"):
        app.delete("resize", noreply=False)
    assert acme.set("resize", b"acme's") is True
    assert acme.delete("resize", noreply=False) is True  # acme may cancel: its own queue only
    assert acme.get("resize") is None
    status = server.admin("status").splitlines()
    assert "resize\t1\t0\t0" in status  # app's job is still queued
    assert not any(line.startswith("acme/resize\t1") for line in status)  # acme's is gone


# -- the hardened example config


def test_the_hardened_config_starts_and_refuses_anonymous(gearmand: ServerFactory, tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "config" / "hardened.yaml").read_text())
    ops = "operator-token-for-the-hardened-test-0123"
    config["security"]["identities"]["operator"]["token"] = hash_token(ops)
    path = tmp_path / "hardened.yaml"
    path.write_text(yaml.safe_dump(config))
    server = start(gearmand, str(path))
    assert server.server.admin("status").startswith("ERR PERMISSION_DENIED identity+anonymous")
    assert server.curl("/anything", "-d", "x")[0] == 403
    assert server.curl("/_gearman/status")[0] == 403
    with pytest.raises(MemcacheClientError, match="may not submit"):
        server.memcache().set("anything", b"x")
    with socket.create_connection(("127.0.0.1", server.server.port), timeout=TIMEOUT) as conn:
        conn.sendall(f"auth {ops}\r\nstatus\r\n".encode())
        reply = b""
        while not reply.endswith(b".\n"):
            reply += conn.recv(4096)
    assert reply == b"OK operator\n.\n"
    code, body = server.curl("/_gearman/status", token=ops)
    assert code == 200 and json.loads(body)["functions"] == []
