"""A private prosody XMPP server for tests, and a slixmpp client that plays a person at a chat client.

The server is Debian's prosody 0.12, run in the foreground (``-F``) as a process we start, on a free loopback
port, with its config, certificate, accounts and data in its own temp dir (the recipe in ../shared/TESTING.md).
It never touches the system prosody (``/etc/prosody``, port 5222). ``ProsodyServer`` is a ``DbServer``, so a
test controls it as it controls the database servers: ``stop()``, ``kill()``, ``pause()``/``resume()`` and
``restart()`` on the same port and data (what the bot's reconnect tests need), ``cleanup()`` at the end.

``start_prosody(root)`` raises ``DbUnavailable`` when prosody cannot run here; ``serve_prosody(root)`` is the
body of a pytest fixture, which turns that into a skip, or a failure under CI=true (``dbfixtures.unavailable``).

The server has two accounts per ``ACCOUNTS`` (bot, alice, bob, carol, dave), a multi-user chat service
``conference.localhost`` that shows occupants' real JIDs to everyone and one ``anon.localhost`` that hides them,
and new rooms are unlocked at once (no configuration form to submit before others may join).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocols.xmpp.client import close_loop
from tests.dbfixtures import (
    HOST,
    START_ATTEMPTS,
    DbServer,
    DbUnavailable,
    _find,
    _run,
    free_port,
    unavailable,
)

DOMAIN = "localhost"
#: The room service that shows every occupant's real JID (what a bot needs to check senders in a room).
MUC_DOMAIN = "conference.localhost"
#: The room service that hides real JIDs from occupants (a "semi-anonymous" room: only the room is known).
ANON_MUC_DOMAIN = "anon.localhost"
#: Accounts made at start (user -> password). Tests add more with ``register``.
ACCOUNTS: Mapping[str, str] = {
    "bot": "botpass",
    "alice": "alicepass",
    "bob": "bobpass",
    "carol": "carolpass",
    "dave": "davepass",
}
#: Per-connection read rate. prosody's own default (and Debian's config) is 10 KiB/s, which makes a burst of
#: a few hundred chat messages take seconds; tests that measure throughput need it out of the way.
TEST_C2S_RATE = "100mb/s"
#: Seconds to wait for a stream header to be answered by ``<stream:features>``.
PING_TIMEOUT = 5.0

_STREAM_HEADER = (
    f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
).encode()


def _lua(value: str) -> str:
    """A Lua string literal (paths under /tmp hold no quotes, but be exact)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ProsodyServer(DbServer):
    """One private prosody. ``host``/``port`` is its client port; ``ca_file`` the certificate clients verify
    (STARTTLS with it works, as in production); ``jid(user)`` and ``password(user)`` name its accounts."""

    kind = "prosody"
    stop_signal = signal.SIGTERM  # prosody's clean shutdown: closes every stream with </stream:stream>

    def __init__(self, directory: Path, port: int, c2s_rate: str = TEST_C2S_RATE, extra_config: str = "") -> None:
        super().__init__(directory, port)
        self.domain = DOMAIN
        self.muc_domain = MUC_DOMAIN
        self.anon_muc_domain = ANON_MUC_DOMAIN
        self.config_path = directory / "prosody.cfg.lua"
        self.cert_dir = directory / "certs"
        self.ca_file = self.cert_dir / f"{DOMAIN}.crt"
        self.prosody_log = directory / "prosody.log"
        self.accounts: dict[str, str] = {}
        self.c2s_rate = c2s_rate
        self.extra_config = extra_config

    # -- set-up

    def prepare(self, cert_template: Path | None = None) -> None:
        """Write the config, put a self-signed certificate for ``localhost`` in place (a copy of
        ``cert_template``'s, else a new one), make the data dir."""
        self.data_dir.mkdir(exist_ok=True)
        if cert_template is not None:
            shutil.copytree(cert_template, self.cert_dir, dirs_exist_ok=True)
        else:
            make_certificate(self.cert_dir)
        self.config_path.write_text(self.config())

    def config(self) -> str:
        d = self.dir
        return f"""-- written by tests/xmppfixture.py for one test server
run_as_root = true
daemonize = false
pidfile = {_lua(str(d / "prosody.pid"))}
data_path = {_lua(str(self.data_dir))}
log = {{ debug = {_lua(str(self.prosody_log))} }}
interfaces = {{ "{HOST}" }}
c2s_ports = {{ {self.port} }}
c2s_direct_tls_ports = {{}}
s2s_ports = {{}}
component_ports = {{}}
http_ports = {{}}
https_ports = {{}}
admin_socket = {_lua(str(d / "prosody.sock"))}
certificates = {_lua(str(self.cert_dir))}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix"; "limits" }}
modules_disabled = {{ "s2s"; "offline" }}
authentication = "internal_hashed"
c2s_require_encryption = false
limits = {{ c2s = {{ rate = "{self.c2s_rate}" }} }}
{self.extra_config}
VirtualHost "{DOMAIN}"

Component "{MUC_DOMAIN}" "muc"
    muc_room_locking = false
    muc_room_default_public_jids = true

Component "{ANON_MUC_DOMAIN}" "muc"
    muc_room_locking = false
    muc_room_default_public_jids = false
"""

    def prosodyctl(self, *args: str) -> None:
        _run([_find("prosodyctl"), "--config", str(self.config_path), *args], f"prosodyctl {args[0]}")

    def register(self, user: str, password: str) -> str:
        """Make an account (the server may be running or not); its bare JID."""
        self.prosodyctl("register", user, self.domain, password)
        self.accounts[user] = password
        return self.jid(user)

    def jid(self, user: str) -> str:
        return f"{user}@{self.domain}"

    def password(self, user: str) -> str:
        return self.accounts[user]

    def room(self, name: str, anonymous: bool = False) -> str:
        """The bare JID of a room (made when its first occupant joins)."""
        return f"{name}@{self.anon_muc_domain if anonymous else self.muc_domain}"

    # -- what DbServer needs

    def command(self) -> list[str]:
        return [_find("prosody", "/usr/bin/prosody"), "--config", str(self.config_path), "-F"]

    def ping(self) -> None:
        """Ready when a client's stream header is answered with ``<stream:features>`` (it binds first,
        then loads modules: an accepted connection alone does not mean it serves)."""
        with socket.create_connection((self.host, self.port), timeout=PING_TIMEOUT) as conn:
            conn.sendall(_STREAM_HEADER)
            received = b""
            deadline = time.monotonic() + PING_TIMEOUT
            while b"<stream:features" not in received:
                if time.monotonic() > deadline:
                    raise DbUnavailable(f"prosody answered {received[:200]!r} without <stream:features>")
                chunk = conn.recv(4096)
                if not chunk:
                    raise DbUnavailable(f"prosody closed the stream after {received[:200]!r}")
                received += chunk

    def log_tail(self, lines: int = 30) -> str:
        """The end of prosody's own log (debug level), for a failing test's message."""
        try:
            return "\n".join(self.prosody_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no prosody log)"


def make_certificate(directory: Path) -> None:
    """A self-signed key and certificate for ``localhost`` in ``directory``, where prosody looks for them."""
    directory.mkdir(parents=True, exist_ok=True)
    _run(
        [
            _find("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(directory / f"{DOMAIN}.key"), "-out", str(directory / f"{DOMAIN}.crt"),
            "-days", "2", "-subj", f"/CN={DOMAIN}", "-addext", f"subjectAltName=DNS:{DOMAIN}",
        ],
        "openssl req (self-signed certificate)",
    )  # fmt: skip


def _cert_template(root: Path) -> Path:
    """One certificate per session root, copied into each server (an RSA key takes up to a second to make)."""
    path = root / "certs-template"
    if not path.exists():
        staging = root / "certs-template.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        make_certificate(staging)
        staging.rename(path)
    return path


def start_prosody(
    root: Path,
    accounts: Mapping[str, str] = ACCOUNTS,
    c2s_rate: str = TEST_C2S_RATE,
    extra_config: str = "",
) -> ProsodyServer:
    """A running prosody on a free loopback port with these accounts; DbUnavailable if it cannot run here.

    ``extra_config``: Lua lines for the global section (e.g. ``'modules_enabled = {...}'`` replaces the list).
    """
    for attempt in range(START_ATTEMPTS):
        directory = Path(tempfile.mkdtemp(prefix="prosody-", dir=root))
        server = ProsodyServer(directory, free_port(), c2s_rate=c2s_rate, extra_config=extra_config)
        try:
            server.prepare(_cert_template(root))
            for user, password in accounts.items():
                server.register(user, password)
            return server.start()  # type: ignore[return-value]
        except DbUnavailable as exc:
            detail = server.log_tail()
            server.cleanup()
            if attempt == START_ATTEMPTS - 1:
                raise DbUnavailable(f"prosody cannot start: {exc}\n{detail}") from exc
    raise AssertionError("unreachable")


def serve_prosody(root: Path, **options: Any) -> Iterator[ProsodyServer]:
    """The body of a pytest fixture: a prosody for the test, stopped and deleted after it. A prosody that
    cannot start skips the test, or fails it under CI=true."""
    try:
        server = start_prosody(root, **options)
    except DbUnavailable as exc:
        unavailable(str(exc))
    try:
        yield server
    finally:
        server.cleanup()


def make_root() -> Path:
    """A temp dir for prosody servers (their dirs go under it)."""
    return Path(tempfile.mkdtemp(prefix="gg-xmpp-"))


def remove_root(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


# -- a person at a chat client


@dataclass(frozen=True)
class Received:
    """One message a ``ChatUser`` received (error stanzas included, with ``mtype == "error"``)."""

    sender: str  # full JID: user@host/resource, or room@service/nick
    body: str
    mtype: str
    thread: str | None
    delayed: bool


class ChatUser:
    """A slixmpp client logged in to a ``ProsodyServer``, on the running asyncio loop, for tests.

    It verifies the server's certificate over STARTTLS (``ca_file``), as a real client does. Every message
    with a body it receives (chat, normal, groupchat, error) lands in a queue that ``receive`` reads.
    """

    def __init__(self, server: ProsodyServer, user: str, resource: str = "test", password: str | None = None) -> None:
        import slixmpp

        self.server = server
        self.jid = f"{server.jid(user)}/{resource}"
        self.client = slixmpp.ClientXMPP(self.jid, password if password is not None else server.password(user))
        self.client.enable_direct_tls = False
        self.client.ca_certs = server.ca_file
        self.client.register_plugin("xep_0045")  # rooms
        self.client.register_plugin("xep_0203")  # delayed delivery (``Received.delayed``)
        self.inbox: asyncio.Queue[Received] = asyncio.Queue()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.client.add_event_handler("session_start", self._session_start)
        self.client.add_event_handler("message", self._message)
        self.client.add_event_handler("message_error", self._message)
        self.client.add_event_handler("failed_auth", self._failed)

    async def _session_start(self, _event: Any) -> None:
        # A message to a bare JID is dropped until the server has our presence; the roster fetch is the
        # round trip that proves the presence went in first.
        self.client.send_presence()
        await self.client.get_roster()
        if not self._ready.done():
            self._ready.set_result(None)

    def _failed(self, _event: Any) -> None:
        if not self._ready.done():
            self._ready.set_exception(RuntimeError(f"{self.jid}: authentication failed"))

    def _message(self, msg: Any) -> None:
        if not msg["body"]:
            return  # chat states, receipts: not a message a person reads
        self.inbox.put_nowait(
            Received(
                sender=str(msg["from"]),
                body=msg["body"],
                mtype=msg["type"],
                thread=msg["thread"] or None,
                delayed=bool(msg.xml.find("{urn:xmpp:delay}delay") is not None),
            )
        )

    async def start(self, timeout: float = 15.0) -> ChatUser:
        """Connect and log in; returns when the session is up and our presence is known to the server."""
        self.client.connect(self.server.host, self.server.port)
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            self.client.abort()
            raise TimeoutError(f"{self.jid}: no session after {timeout}s\n{self.server.log_tail()}") from None
        return self

    def send(self, to: str, body: str, mtype: str = "chat", thread: str | None = None) -> None:
        msg = self.client.make_message(mto=to, mbody=body, mtype=mtype)
        if thread is not None:
            msg["thread"] = thread
        msg.send()

    async def receive(self, timeout: float = 10.0) -> Received:
        """The next message received, or TimeoutError."""
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def join(self, room: str, nick: str, timeout: float = 10.0) -> None:
        """Join a room (no history replayed) and wait until the room has confirmed it."""
        await self.client.plugin["xep_0045"].join_muc_wait(room, nick, maxstanzas=0, timeout=timeout)

    async def stop(self, timeout: float = 5.0) -> None:
        """Close the stream cleanly; abort the connection if that does not finish in time."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.disconnect(), timeout)
        self.client.abort()


def run(coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
    """Run one scenario on a fresh asyncio loop (slixmpp's own), with an overall time limit."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))
    finally:
        close_loop(loop)


def go_sendxmpp(server: ProsodyServer, user: str, to: str, body: str, timeout: float = 20.0) -> None:
    """Send one chat message with Debian's go-sendxmpp, as a shell script would (the body on its stdin);
    it verifies the server's certificate like any client. Raises with go-sendxmpp's output if it fails."""
    exe = shutil.which("go-sendxmpp")
    if exe is None:
        raise DbUnavailable("go-sendxmpp not installed (apt-get install go-sendxmpp; scripts/setup --test)")
    result = subprocess.run(
        [exe, "-u", server.jid(user), "-p", server.password(user), "-j", f"{server.host}:{server.port}", to],
        input=body.encode(),
        capture_output=True,
        timeout=timeout,
        check=False,
        env={"PATH": "/usr/bin:/bin", "SSL_CERT_FILE": str(server.ca_file), "HOME": str(server.dir)},
    )
    if result.returncode != 0:
        raise RuntimeError(f"go-sendxmpp exited with {result.returncode}: {(result.stderr or result.stdout)!r}")
