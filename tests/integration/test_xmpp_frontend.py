"""The XMPP frontend end to end: our gearmand (``-r xmpp``) logs in to a private prosody as ``bot``; people
are independent slixmpp clients (tests/xmppfixture.ChatUser) and the worker is PyPI ``gear``.

One prosody, gearmand and worker serve the whole module (each test talks as its own users or threads); tests
that need other settings (a low rate limit, ``no_worker: wait``) start a second gearmand with another bot
account on the same prosody.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import xmppfixture
from tests.integration import xmppbot
from tests.integration.conftest import OUR_GEARMAND, RunningServer, ServerFactory, _factory, free_port
from tests.integration.xmppbot import BOT_NICK, RELEASE, Worker, ask, chat
from tests.xmppfixture import ProsodyServer, run

pytestmark = pytest.mark.filterwarnings("ignore:notifyAll\\(\\) is deprecated:DeprecationWarning")

ACCOUNTS = {**xmppfixture.ACCOUNTS, "eve": "evepass", "bot2": "bot2pass", "bot3": "bot3pass"}
ALLOWED = ["alice@localhost", "bob@localhost", "carol@localhost", "dave@localhost"]


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xmpp-frontend")


@pytest.fixture(scope="module")
def prosody(module_dir: Path) -> Iterator[ProsodyServer]:
    yield from xmppfixture.serve_prosody(module_dir, accounts=ACCOUNTS)


@pytest.fixture(scope="module")
def factory(module_dir: Path) -> Iterator[ServerFactory]:
    start, started = _factory(module_dir, OUR_GEARMAND)
    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def room(prosody: ProsodyServer) -> str:
    return prosody.room("ops")


@pytest.fixture(scope="module")
def bot(factory: ServerFactory, prosody: ProsodyServer, module_dir: Path, room: str) -> RunningServer:
    http_port = free_port()
    config = xmppbot.bot_config(
        module_dir, prosody, allowed=ALLOWED, rooms=[(room, BOT_NICK)], rate_limit=1000, max_reply=4096
    )
    server = factory("--config", str(config), "-r", "http", "--http-port", str(http_port))
    server.http_port = http_port  # type: ignore[attr-defined]
    xmppbot.wait_bot(server)
    return server


@pytest.fixture(scope="module")
def worker(bot: RunningServer) -> Iterator[Worker]:
    worker = Worker(bot)
    yield worker
    RELEASE.set()
    worker.stop()


@pytest.fixture
def served(bot: RunningServer, worker: Worker, prosody: ProsodyServer) -> tuple[RunningServer, ProsodyServer]:
    return bot, prosody


BOT = "bot@localhost"


def test_foreground_job_answers_in_the_same_thread(served: Any) -> None:
    _, prosody = served

    async def scenario() -> None:
        alice = await chat(prosody, "alice")
        try:
            alice.send(BOT, "reverse Hello", thread="t-42")
            got = await alice.receive()
            assert (got.body, got.thread, got.mtype) == ("olleH", "t-42", "chat")
            assert got.sender.startswith(BOT + "/")
            # the payload is the rest verbatim, less one trailing newline (command-line clients add one)
            assert await ask(alice, BOT, "reverse  two spaces\n") == "secaps owt "
        finally:
            await alice.stop()

    run(scenario())


def test_background_job_then_status(served: Any) -> None:
    bot, prosody = served
    RELEASE.clear()

    async def scenario() -> None:
        bob = await chat(prosody, "bob")
        try:
            reply = await ask(bob, BOT, "bg hold x")
            handle = re.search(r"H:\S+", reply)
            assert handle, reply
            status = ""
            for _ in range(100):  # until the worker has taken it and sent its 3/10
                status = await ask(bob, BOT, f"status {handle.group(0)}")
                if "3/10" in status:
                    break
            assert "running" in status and "3/10" in status, status
            RELEASE.set()
            for _ in range(100):
                status = await ask(bob, BOT, f"status {handle.group(0)}")
                if "unknown" in status or "not known" in status:
                    break
            assert "known" in status, status
        finally:
            RELEASE.set()
            await bob.stop()

    run(scenario())


def test_priorities_combine_with_bg(served: Any) -> None:
    bot, prosody = served

    async def scenario() -> None:
        carol = await chat(prosody, "carol")
        try:
            assert await ask(carol, BOT, "high reverse abc") == "cba"
            assert await ask(carol, BOT, "LOW reverse abc") == "cba"
            reply = await ask(carol, BOT, "low bg reverse abc")
            assert "H:" in reply and "low" in reply, reply
            reply = await ask(carol, BOT, "bg high reverse abc")
            assert "H:" in reply and "high" in reply, reply
            assert "high and low" in await ask(carol, BOT, "high low reverse abc")
        finally:
            await carol.stop()

    run(scenario())


def test_help_and_functions(served: Any) -> None:
    bot, prosody = served

    async def scenario() -> None:
        dave = await chat(prosody, "dave")
        try:
            text = await ask(dave, BOT, "help")
            for word in ("bg", "high", "low", "status", "functions"):
                assert word in text
            listing = await ask(dave, BOT, "functions")
            line = next(line for line in listing.splitlines() if line.lstrip().startswith("reverse"))
            assert re.search(r"\b1\b", line), listing  # one worker
        finally:
            await dave.stop()

    run(scenario())


def test_work_data_status_and_warning_are_relayed(served: Any) -> None:
    bot, prosody = served

    async def scenario() -> None:
        alice = await chat(prosody, "alice", resource="steps")
        try:
            alice.send(BOT, "steps go")
            bodies = [(await alice.receive()).body for _ in range(4)]
            assert bodies[0] == "[data] part one"
            assert bodies[1].startswith("[progress]") and "1/2" in bodies[1]
            assert bodies[2] == "[warning] half way"
            assert bodies[3] == "all done"  # the 2/2 came within a second of 1/2: not relayed
            with pytest.raises(TimeoutError):
                await alice.receive(0.3)
        finally:
            await alice.stop()

    run(scenario())


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("fails x", r"fail"),
        ("raises x", r"division by zero"),
        ("nosuchfunction x", r"no worker"),
    ],
)
def test_failures_are_clear(served: Any, command: str, expected: str) -> None:
    bot, prosody = served

    async def scenario() -> None:
        bob = await chat(prosody, "bob", resource="fail")
        try:
            reply = await ask(bob, BOT, command)
            assert re.search(expected, reply, re.IGNORECASE), reply
        finally:
            await bob.stop()

    run(scenario())


def test_non_utf8_and_overlong_results(served: Any) -> None:
    bot, prosody = served

    async def scenario() -> None:
        carol = await chat(prosody, "carol", resource="odd")
        try:
            reply = await ask(carol, BOT, "binary x")
            assert "4 bytes" in reply and base64.b64encode(b"\xff\xfe\x00\x01").decode() in reply, reply
            reply = await ask(carol, BOT, "big x")
            assert "100000 bytes" in reply and len(reply.encode()) <= 4096, reply[-200:]
            assert reply.startswith("0123456789")
        finally:
            await carol.stop()

    run(scenario())


def test_stranger_is_refused_once_and_logged(served: Any) -> None:
    bot, prosody = served

    async def scenario() -> None:
        eve = await chat(prosody, "eve")
        try:
            assert "refused" in (await ask(eve, BOT, "reverse hi")).lower()
            eve.send(BOT, "reverse again")
            eve.send(BOT, "help")
            with pytest.raises(TimeoutError):
                await eve.receive(1.0)  # one refusal, then silence
        finally:
            await eve.stop()

    run(scenario())
    assert "refused eve@localhost" in bot.log()


def test_room_mention_is_answered_in_the_room(served: Any, room: str) -> None:
    bot, prosody = served

    async def scenario() -> None:
        alice = await chat(prosody, "alice", resource="room")
        try:
            await alice.join(room, "alice")
            alice.send(room, "just talking", mtype="groupchat")
            alice.send(room, f"{BOT_NICK}: reverse hi", mtype="groupchat")
            while True:  # the room reflects our own messages too
                got = await alice.receive()
                if got.sender != f"{room}/alice":
                    break
            assert (got.sender, got.mtype, got.body) == (f"{room}/{BOT_NICK}", "groupchat", "alice: ih")
        finally:
            await alice.stop()

    run(scenario())


def test_adhoc_commands_submit_list_and_status(served: Any) -> None:
    bot, prosody = served

    async def scenario() -> None:
        dave = await chat(prosody, "dave", resource="forms")
        dave.client.register_plugin("xep_0004")
        dave.client.register_plugin("xep_0050")
        try:
            adhoc = dave.client.plugin["xep_0050"]
            disco = dave.client.plugin["xep_0030"]
            items = await disco.get_items(jid=f"{BOT}/gateway", node="http://jabber.org/protocol/commands")
            nodes = {item[1] for item in items["disco_items"]["items"]}
            assert {"functions", "submit", "status"} <= nodes
            first = await adhoc.send_command(f"{BOT}/gateway", "submit")
            form = first["command"]["form"]
            assert {"function", "payload", "priority", "background"} <= set(form.get_fields())
            answer = dave.client.plugin["xep_0004"].make_form("submit")
            answer.add_field(var="function", value="reverse")
            answer.add_field(var="payload", ftype="text-multi", value="ad hoc")
            answer.add_field(var="priority", value="high")
            answer.add_field(var="background", ftype="boolean", value=False)
            done = await adhoc.send_command(
                f"{BOT}/gateway", "submit", action="complete", payload=answer,
                sessionid=first["command"]["sessionid"],
            )  # fmt: skip
            assert done["command"]["status"] == "completed"
            assert [note[1] for note in done["command"]["notes"]] == ["coh da"]
            listing = await adhoc.send_command(f"{BOT}/gateway", "functions")  # no form: answered at once
            assert listing["command"]["status"] == "completed"
            assert "reverse: " in listing["command"]["notes"][0][1]
            first = await adhoc.send_command(f"{BOT}/gateway", "status")
            answer = dave.client.plugin["xep_0004"].make_form("submit")
            answer.add_field(var="handle", value="H:nowhere:1")
            done = await adhoc.send_command(
                f"{BOT}/gateway", "status", action="complete", payload=answer,
                sessionid=first["command"]["sessionid"],
            )  # fmt: skip
            assert done["command"]["notes"][0][1] == "H:nowhere:1: unknown (finished, failed, or never queued)"
        finally:
            await dave.stop()

    run(scenario())


def test_go_sendxmpp_from_the_shell_runs_a_job(served: Any) -> None:
    bot, prosody = served
    jobs_before = _metric(bot, "gearman_jobs_completed_total", 'function="reverse"')
    xmppfixture.go_sendxmpp(prosody, "alice", BOT, "reverse hi\n")

    async def completed() -> None:
        while _metric(bot, "gearman_jobs_completed_total", 'function="reverse"') <= jobs_before:
            await asyncio.sleep(0.05)

    run(completed(), timeout=15)


def test_state_and_metrics(served: Any) -> None:
    bot, _ = served
    assert xmppbot.frontend_line(bot).startswith("xmpp\tconnected\tbot@localhost/gateway via 127.0.0.1:")
    with urllib.request.urlopen(f"http://127.0.0.1:{bot.http_port}/_gearman/status", timeout=5) as response:
        import json

        status = json.load(response)
    (xmpp,) = [f for f in status["frontends"] if f["name"] == "xmpp"]
    assert xmpp["state"] == "connected"
    assert _metric(bot, "gearman_xmpp_connected", "") == 1
    assert _metric(bot, "gearman_xmpp_messages_received_total", "") >= 1
    assert _metric(bot, "gearman_xmpp_messages_sent_total", 'kind="result"') >= 1


def _metric(bot: RunningServer, name: str, labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{bot.http_port}/_gearman/metrics", timeout=5) as response:
        text = response.read().decode()
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


def test_delayed_and_own_messages_are_not_commands(served: Any) -> None:
    """A message stamped with a XEP-0203 delay (offline storage, room history) and one from the bot's own
    account (another of its sessions) run nothing; an ordinary one right after is answered."""
    bot, prosody = served

    async def scenario() -> None:
        alice = await chat(prosody, "alice", resource="delay")
        twin = await chat(prosody, "bot", resource="twin")
        try:
            delayed = alice.client.make_message(mto=BOT, mbody="reverse late", mtype="chat")
            delayed["delay"]["stamp"] = "2020-01-01T00:00:00Z"
            delayed.send()
            twin.send(f"{BOT}/gateway", "reverse mine")
            assert await ask(alice, BOT, "reverse now") == "won"
            # the twin also gets what is sent to the bare JID (prosody delivers to every session); the bot's
            # own session must not have answered it
            deadline = asyncio.get_running_loop().time() + 0.5
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                with contextlib.suppress(TimeoutError):
                    got = await twin.receive(left)
                    assert not got.sender.startswith(BOT), got
        finally:
            await twin.stop()
            await alice.stop()

    run(scenario())


def test_a_job_whose_chat_went_away_still_runs(served: Any) -> None:
    bot, prosody = served
    RELEASE.clear()
    before = _metric(bot, "gearman_jobs_completed_total", 'function="hold"')

    async def scenario() -> None:
        carol = await chat(prosody, "carol", resource="gone")
        carol.send(BOT, "hold it")
        assert (await carol.receive()).body.startswith("[progress] 3/10")  # the worker has it
        await carol.stop()

    run(scenario())
    RELEASE.set()

    async def completed() -> None:
        while _metric(bot, "gearman_jobs_completed_total", 'function="hold"') <= before:
            await asyncio.sleep(0.05)

    run(completed(), timeout=15)


# -- a second bot with other settings, on the same prosody


@pytest.fixture(scope="module")
def bot2(factory: ServerFactory, prosody: ProsodyServer, module_dir: Path) -> RunningServer:
    """rate_limit 3, no_worker: wait, the whole domain allowed (written as ``@localhost``)."""
    config = xmppbot.bot_config(
        module_dir, prosody, user="bot2", allowed=["@localhost"], rate_limit=3, no_worker="wait"
    )
    server = factory("--config", str(config))
    xmppbot.wait_bot(server)
    return server


def test_rate_limit_says_slow_down(bot2: RunningServer, prosody: ProsodyServer) -> None:
    async def scenario() -> None:
        bob = await chat(prosody, "bob", resource="rate")
        try:
            for _ in range(3):
                assert "Commands" in (await ask(bob, "bot2@localhost", "help"))
            assert "slow down" in (await ask(bob, "bot2@localhost", "reverse hi")).lower()
        finally:
            await bob.stop()

    run(scenario())
    assert bot2.admin("status") in (".\n", "")  # the message over the limit queued no job


def test_no_worker_wait_queues_until_a_worker_comes(bot2: RunningServer, prosody: ProsodyServer) -> None:
    async def scenario() -> None:
        dave = await chat(prosody, "dave", resource="wait")
        worker = None
        try:
            dave.send("bot2@localhost", "reverse patience")
            loop = asyncio.get_running_loop()
            while "reverse\t1\t0\t0" not in bot2.admin("status"):  # queued, nobody serves it yet
                await asyncio.sleep(0.02)
            worker = await loop.run_in_executor(None, Worker, bot2, ["reverse"])
            assert (await dave.receive()).body == "ecneitap"
        finally:
            if worker is not None:
                worker.stop()
            await dave.stop()

    run(scenario())


def test_a_room_that_hides_real_jids_is_checked_as_the_room(
    gearmand: ServerFactory, prosody: ProsodyServer, tmp_path: Path
) -> None:
    """In a room where the bot cannot see who is who, the room itself must be in ``allowed``: alice (not
    allowed herself) is answered there, through the room."""
    prosody.register("bot3", "bot3pass")
    lobby = prosody.room("lobby", anonymous=True)

    async def scenario() -> None:
        alice = await chat(prosody, "alice", resource="lobby")
        try:
            await alice.join(lobby, "alice")  # first in: she owns the room, the bot will be a mere participant
            config = xmppbot.bot_config(tmp_path, prosody, user="bot3", allowed=[lobby], rooms=[(lobby, BOT_NICK)])
            loop = asyncio.get_running_loop()
            server = await loop.run_in_executor(None, gearmand, "--config", str(config))
            await loop.run_in_executor(None, xmppbot.wait_bot, server)
            workers.append(await loop.run_in_executor(None, Worker, server, ["reverse"]))
            muc = alice.client.plugin["xep_0045"]
            while BOT_NICK not in muc.get_roster(lobby):  # the bot's presence in the room
                await asyncio.sleep(0.02)
            alice.send(lobby, f"{BOT_NICK}: reverse hidden", mtype="groupchat")
            while True:
                got = await alice.receive()
                if got.sender != f"{lobby}/alice":
                    break
            assert (got.sender, got.body) == (f"{lobby}/{BOT_NICK}", "alice: neddih")
        finally:
            await alice.stop()

    workers: list[Worker] = []
    try:
        run(scenario())
    finally:
        for worker in workers:
            worker.stop()


# -- a bot whose server has a security policy: a sender's JID names its identity (docs/security.md)


@pytest.fixture(scope="module")
def bot3(factory: ServerFactory, prosody: ProsodyServer, module_dir: Path) -> RunningServer:
    """Anyone at localhost may talk to it; only bob's identity may submit, and only ``reverse``."""
    config = xmppbot.bot_config(module_dir, prosody, user="bot3", allowed=["@localhost"], no_worker="wait")
    data = yaml.safe_load(config.read_text())
    data["security"] = {
        "anonymous": {"admin": ["read"]},
        "identities": {"bob": {"jids": ["bob@localhost"], "submit": ["reverse"]}},
    }
    config.write_text(yaml.safe_dump(data))
    server = factory("--config", str(config))
    xmppbot.wait_bot(server)
    return server


def test_a_senders_jid_identity_decides_what_it_may_submit(bot3: RunningServer, prosody: ProsodyServer) -> None:
    async def scenario() -> None:
        bob, carol = await chat(prosody, "bob", resource="id"), await chat(prosody, "carol", resource="id")
        try:
            reply = await ask(bob, "bot3@localhost", "bg reverse hi")
            assert reply.startswith("queued reverse"), reply
            reply = await ask(bob, "bot3@localhost", "bg upper hi")
            assert reply == "[failed] upper not queued: identity bob may not submit upper", reply
            reply = await ask(carol, "bot3@localhost", "bg reverse hi")
            assert reply == "[failed] reverse not queued: identity anonymous may not submit reverse", reply
        finally:
            await bob.stop()
            await carol.stop()

    run(scenario())
    assert "reverse\t1\t0\t0" in bot3.admin("status")
    assert "identity anonymous from carol@localhost (xmpp) may not submit reverse" in bot3.log()
