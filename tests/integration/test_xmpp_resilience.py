"""The XMPP frontend under load and through an outage: 200 jobs in a burst from 4 users, every reply matched
to its request; prosody stopped and restarted while a binary client keeps completing jobs (the bot reconnects
with back-off and serves again, the rest of the gateway never stops)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import gear
import pytest

from tests import xmppfixture
from tests.integration import xmppbot
from tests.integration.conftest import ServerFactory
from tests.integration.xmppbot import Worker, ask_once, chat
from tests.xmppfixture import ProsodyServer, run

pytestmark = pytest.mark.filterwarnings("ignore:notifyAll\\(\\) is deprecated:DeprecationWarning")

BOT = "bot@localhost"
USERS = ("alice", "bob", "carol", "dave")


@pytest.fixture
def prosody(tmp_path: Path) -> Iterator[ProsodyServer]:
    yield from xmppfixture.serve_prosody(tmp_path)


def test_burst_of_200_jobs_from_4_users(gearmand: ServerFactory, prosody: ProsodyServer, tmp_path: Path) -> None:
    server = gearmand("--config", str(xmppbot.bot_config(tmp_path, prosody, allowed=["localhost"])))
    xmppbot.wait_bot(server)
    worker = Worker(server, ["reverse"])
    per_user = 200 // len(USERS)

    async def one_user(user: str) -> int:
        person = await chat(prosody, user, resource="burst")
        try:
            sent = {}
            for index in range(per_user):
                thread = f"{user}-{index}"
                payload = f"{user} job {index} {uuid.uuid4().hex}"
                sent[thread] = payload
                person.send(BOT, f"reverse {payload}", thread=thread)
            while sent:
                got = await person.receive(30)
                assert got.thread in sent, got
                assert got.body == sent.pop(got.thread)[::-1]
            return per_user
        finally:
            await person.stop()

    async def scenario() -> list[int]:
        return await asyncio.gather(*(one_user(user) for user in USERS))

    try:
        assert run(scenario(), timeout=120) == [per_user] * len(USERS)
    finally:
        worker.stop()


class BinaryClient:
    """A PyPI ``gear`` client submitting foreground jobs one after another until stopped."""

    def __init__(self, port: int) -> None:
        self.client = gear.Client("binary")
        self.client.addServer("127.0.0.1", port)
        self.client.waitForServer()
        self.completed = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            payload = f"binary {self.completed}".encode()
            job = gear.Job(b"reverse", payload)
            self.client.submitJob(job)
            deadline = time.monotonic() + 10
            while not job.complete and time.monotonic() < deadline:
                time.sleep(0.005)
            if job.complete and b"".join(job.data) == payload[::-1]:
                self.completed += 1
            else:
                self.failures.append(f"job {self.completed}: {job.data!r}")

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(15)
        self.client.shutdown()


def test_prosody_restart_mid_test(gearmand: ServerFactory, prosody: ProsodyServer, tmp_path: Path) -> None:
    server = gearmand("--config", str(xmppbot.bot_config(tmp_path, prosody, allowed=["localhost"])), "-v")
    xmppbot.wait_bot(server)
    worker = Worker(server, ["reverse"])
    binary = BinaryClient(server.port)
    try:
        assert ask_once(prosody, "alice", BOT, "reverse before") == "erofeb"
        prosody.stop()
        xmppbot.wait_bot(server, "connecting")
        during = binary.completed
        deadline = time.monotonic() + 10
        while binary.completed < during + 20 and time.monotonic() < deadline:
            time.sleep(0.01)  # a counter on another thread: nothing to await
        assert binary.completed >= during + 20, "the binary frontend stopped serving while prosody was down"
        prosody.start()
        xmppbot.wait_bot(server, "connected", timeout=45)  # back-off: 1, 2, 4... seconds between attempts
        assert ask_once(prosody, "alice", BOT, "reverse after") == "retfa"
        assert "reconnecting in" in server.log()
    finally:
        binary.stop()
        worker.stop()
    assert binary.failures == []
    assert binary.completed > 20


def test_xmpp_server_down_at_start(gearmand: ServerFactory, prosody: ProsodyServer, tmp_path: Path) -> None:
    """gearmand starts and serves the binary protocol while the XMPP server is down; the bot keeps trying
    with back-off, logs it, and serves once the server is up."""
    prosody.stop()
    server = gearmand("--config", str(xmppbot.bot_config(tmp_path, prosody, allowed=["localhost"])))
    xmppbot.wait_bot(server, "connecting", says="cannot connect")
    assert server.admin("version").startswith("OK")
    prosody.start()
    xmppbot.wait_bot(server, "connected", timeout=45)
    worker = Worker(server, ["reverse"])
    try:
        assert ask_once(prosody, "alice", BOT, "reverse late") == "etal"
    finally:
        worker.stop()
    assert "reconnecting in" in server.log()


def test_stream_management_is_on_where_the_server_offers_it(
    gearmand: ServerFactory, prosody: ProsodyServer, tmp_path: Path
) -> None:
    """With prosody's mod_smacks loaded, the bot enables XEP-0198 (acks: a dead stream is noticed) and serves."""
    prosody.stop()
    config = prosody.config_path.read_text()
    assert '"limits" }' in config
    prosody.config_path.write_text(config.replace('"limits" }', '"limits"; "smacks" }'))
    prosody.start()
    server = gearmand("--config", str(xmppbot.bot_config(tmp_path, prosody, allowed=["localhost"])))
    xmppbot.wait_bot(server)
    worker = Worker(server, ["reverse"])
    try:
        assert ask_once(prosody, "alice", BOT, "reverse managed") == "deganam"
    finally:
        worker.stop()
    assert "Enabling stream management" in prosody.prosody_log.read_text(errors="replace")


def test_a_silently_dead_stream_is_noticed_by_keepalive(
    gearmand: ServerFactory, prosody: ProsodyServer, tmp_path: Path
) -> None:
    """prosody frozen (SIGSTOP: the TCP connection stays open, nothing answers): the bot's unanswered ping
    drops the stream within seconds, and it reconnects once prosody runs again."""
    config = xmppbot.bot_config(tmp_path, prosody, allowed=["localhost"], keepalive=1.0)
    server = gearmand("--config", str(config))
    xmppbot.wait_bot(server)
    prosody.pause()
    try:
        xmppbot.wait_bot(server, "connecting", timeout=15)
    finally:
        prosody.resume()
    xmppbot.wait_bot(server, "connected", timeout=45)
    assert "Ping timeout" in server.log() or "reconnecting in" in server.log()
