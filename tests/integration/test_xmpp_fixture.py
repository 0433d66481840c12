"""The private prosody of tests/xmppfixture.py works: real clients log in over STARTTLS with its certificate,
exchange messages directly and in a room (real JIDs visible), go-sendxmpp sends from the shell, and a stop and
restart on the same port keeps the accounts. Plain slixmpp on an asyncio loop: no Twisted here."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import xmppfixture
from tests.dbfixtures import DbUnavailable
from tests.xmppfixture import ChatUser, ProsodyServer, run

# the lead will move this fixture into tests/conftest.py beside the database servers


@pytest.fixture(scope="module")
def xmpp_root() -> Iterator[Path]:
    root = xmppfixture.make_root()
    yield root
    xmppfixture.remove_root(root)


@pytest.fixture
def prosody(xmpp_root: Path) -> Iterator[ProsodyServer]:
    yield from xmppfixture.serve_prosody(xmpp_root)


def test_prosody_serves_on_a_private_loopback_port(prosody: ProsodyServer) -> None:
    assert prosody.running and prosody.host == "127.0.0.1"
    prosody.ping()  # a stream header is answered with <stream:features>
    with socket.socket() as s:  # the port is taken on loopback: nothing else could have it
        with pytest.raises(OSError):
            s.bind(("127.0.0.1", prosody.port))


def test_two_clients_exchange_a_message(prosody: ProsodyServer) -> None:
    async def scenario() -> None:
        alice = await ChatUser(prosody, "alice").start()
        bob = await ChatUser(prosody, "bob").start()
        try:
            alice.send(prosody.jid("bob"), "reverse hi", thread="t-1")  # to the bare JID, as a person does
            got = await bob.receive()
            assert (got.sender, got.body, got.mtype, got.thread, got.delayed) == (
                alice.jid, "reverse hi", "chat", "t-1", False,
            )  # fmt: skip
            bob.send(got.sender, "ih")  # replies go to the full JID
            back = await alice.receive()
            assert (back.sender, back.body) == (bob.jid, "ih")
        finally:
            await alice.stop()
            await bob.stop()

    run(scenario())


def test_go_sendxmpp_message_reaches_a_slixmpp_client(prosody: ProsodyServer) -> None:
    async def scenario() -> None:
        bot = await ChatUser(prosody, "bot", resource="gateway").start()
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                None, xmppfixture.go_sendxmpp, prosody, "alice", prosody.jid("bot"), "reverse hi\n"
            )
            got = await bot.receive()
            assert got.sender.startswith(prosody.jid("alice") + "/")
            assert got.body.rstrip("\n") == "reverse hi"  # command-line clients may add one newline
            assert got.mtype in ("chat", "normal")
        finally:
            await bot.stop()

    run(scenario())


def test_room_shows_real_jids_and_relays_mentions(prosody: ProsodyServer) -> None:
    room = prosody.room("ops")

    async def scenario() -> None:
        bot = await ChatUser(prosody, "bot").start()
        alice = await ChatUser(prosody, "alice").start()
        try:
            await bot.join(room, "gearbot")
            await alice.join(room, "alice")
            muc = bot.client.plugin["xep_0045"]
            assert str(muc.get_jid_property(room, "alice", "jid")).startswith(prosody.jid("alice") + "/")
            alice.send(room, "gearbot: reverse hi", mtype="groupchat")
            while True:  # the room reflects every message to every occupant, its sender included
                got = await bot.receive()
                if got.sender == f"{room}/alice":
                    break
            assert (got.body, got.mtype, got.delayed) == ("gearbot: reverse hi", "groupchat", False)
        finally:
            await alice.stop()
            await bot.stop()

    run(scenario())


def test_anonymous_room_hides_real_jids(prosody: ProsodyServer) -> None:
    room = prosody.room("lobby", anonymous=True)

    async def scenario() -> None:
        bot = await ChatUser(prosody, "bot").start()
        alice = await ChatUser(prosody, "alice").start()
        try:
            await alice.join(room, "alice")  # the first occupant owns the room: owners see JIDs anyway
            await bot.join(room, "gearbot")
            muc = bot.client.plugin["xep_0045"]
            assert muc.get_jid_property(room, "alice", "jid") in (None, "")
        finally:
            await alice.stop()
            await bot.stop()

    run(scenario())


def test_restart_on_same_port_keeps_accounts_and_clients_log_in_again(prosody: ProsodyServer) -> None:
    port = prosody.port

    async def scenario() -> None:
        bob = await ChatUser(prosody, "bob").start()
        lost = asyncio.get_running_loop().create_future()
        bob.client.add_event_handler("disconnected", lambda _e: lost.done() or lost.set_result(None))
        await asyncio.get_running_loop().run_in_executor(None, prosody.stop)
        await asyncio.wait_for(lost, 10)  # a stopped server ends the client's stream at once
        bob.client.abort()
        await asyncio.get_running_loop().run_in_executor(None, prosody.start)
        assert prosody.port == port
        alice = await ChatUser(prosody, "alice").start()
        bob = await ChatUser(prosody, "bob").start()
        try:
            alice.send(prosody.jid("bob"), "after restart")
            assert (await bob.receive()).body == "after restart"
        finally:
            await alice.stop()
            await bob.stop()

    run(scenario())


def test_a_prosody_that_cannot_start_says_why(xmpp_root: Path) -> None:
    """A config prosody rejects makes start_prosody raise DbUnavailable with prosody's own words, which the
    fixture turns into a skip, or a failure under CI=true."""
    with pytest.raises(DbUnavailable, match="prosody cannot start"):
        xmppfixture.start_prosody(xmpp_root, accounts={}, extra_config="this is not lua (")


def test_bot_replies_of_the_largest_size_pass_through_prosody_intact(prosody: ProsodyServer) -> None:
    """What the command layer sends for awkward results (base64 of binary, cut text, a control character
    made safe) arrives as sent, at the default reply limit: no broken stanza, no stream lost."""
    from protocols.xmpp import replies
    from protocols.xmpp.commands import DEFAULT_MAX_REPLY

    texts = [
        replies.output(bytes(range(256)) * 40, DEFAULT_MAX_REPLY),  # base64, 13.7 KB
        replies.output(("é" * 20000).encode(), DEFAULT_MAX_REPLY),  # cut at the limit, with its note
        replies.xml_safe("a\x00b\x1bc"),
    ]
    assert all(len(text.encode()) <= DEFAULT_MAX_REPLY for text in texts)

    async def scenario() -> None:
        bot = await ChatUser(prosody, "bot").start()
        alice = await ChatUser(prosody, "alice").start()
        try:
            for text in texts:
                bot.send(alice.jid, text)
                assert (await alice.receive()).body == text
            bot.send(alice.jid, "still connected")
            assert (await alice.receive()).body == "still connected"
        finally:
            await alice.stop()
            await bot.stop()

    run(scenario())
