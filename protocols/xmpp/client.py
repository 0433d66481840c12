"""The slixmpp side of the bot: one XMPP session at a time, on a thread of its own with its own asyncio loop.

Why a thread and not Twisted's asyncio reactor on slixmpp's loop: gearmand's own epoll reactor serves the
binary protocol at 1.4-1.7x the jobs per second of the asyncio reactor (docs/performance.md, "Which reactor"),
and ``-r xmpp`` must not cost the binary frontend that (docs/performance.md, "XMPP frontend", measures both).
So slixmpp runs here, beside the reactor, and the two threads only hand each other plain values:

- what the XMPP server sends (a ``ChatMessage``, an ad-hoc command's form values, the connection's state) goes
  to the reactor thread through ``post`` (``reactor.callFromThread``), where the command layer and the
  scheduler live;
- what the reactor thread wants sent (``send``, ``finish_adhoc``) comes here with ``loop.call_soon_threadsafe``.

Nothing here touches the scheduler or the command layer's state. The session: STARTTLS, direct TLS or plain
as configured, XEP-0199 keepalive pings and XEP-0198 stream management on (a silently dead stream is noticed in
seconds), presence and roster, the configured rooms joined without history, the ad-hoc commands registered.
When the session cannot start or ends, a new client connects after a back-off (1 s doubling to 30 s; slixmpp
itself does not reconnect after a lost session).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from protocols.xmpp import adhoc, jids
from protocols.xmpp.actions import ChatMessage, Reply

log = logging.getLogger("gearman_gateway.xmpp")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
#: Seconds from connecting to a session (TLS, login, bind, roster); past it the attempt is abandoned (an
#: untrusted certificate makes slixmpp log an error and wait forever).
SESSION_TIMEOUT = 30.0
#: How long a stop waits for the stream to close cleanly.
DISCONNECT_WAIT = 1.0
#: An ad-hoc command waits this long for its job before answering that it is still running.
ADHOC_WAIT = 120.0
_DELAY_TAGS = ("{urn:xmpp:delay}delay", "{jabber:x:delay}x")


@dataclass(frozen=True)
class ConnectSpec:
    """Whom to log in as and where (``host`` None: the JID's domain through DNS)."""

    jid: str
    password: str
    host: str | None
    port: int
    tls: str  # starttls | direct | plain
    ca_file: str | None = None
    rooms: Mapping[str, str] = field(default_factory=dict)  # room bare JID -> nick
    keepalive_interval: float = 30.0
    keepalive_timeout: float = 10.0

    @property
    def where(self) -> str:
        return f"{self.jid} via {self.host or jids.parse(self.jid).domain}:{self.port} ({self.tls})"


class Events(Protocol):
    """What the client reports, each call made on the reactor thread (through ``post``)."""

    def on_message(self, msg: ChatMessage) -> None: ...
    def on_adhoc(self, token: int, node: str, sender: str, values: dict[str, Any]) -> None: ...
    def on_state(self, state: str, detail: str) -> None: ...
    def on_nick(self, room: str, nick: str) -> None: ...


#: slixmpp's plugins the bot registers (disco, forms, ad-hoc, rooms, delays, ping, stream management).
PLUGINS = ("xep_0030", "xep_0004", "xep_0050", "xep_0045", "xep_0203", "xep_0199", "xep_0198")


def preload() -> None:
    """Import slixmpp and the plugins now, on the reactor thread at start-up: gearmand then freezes what
    start-up made out of the collector's reach (``allocator.settle_collector``), so slixmpp's thousands of
    module objects do not lengthen every full collection while the binary frontend serves."""
    import importlib

    import slixmpp  # noqa: F401

    for name in PLUGINS:
        importlib.import_module(f"slixmpp.plugins.{name}")


class BotClient:
    """The thread, its loop and the current slixmpp client."""

    def __init__(self, spec: ConnectSpec, events: Events, post: Callable[..., None]) -> None:
        self.spec = spec
        self.events = events
        self.post = post
        self.loop: asyncio.AbstractEventLoop | None = None  # made by start(), run by the thread
        self.thread: threading.Thread | None = None
        self.client: Any = None  # the slixmpp ClientXMPP of the current attempt
        self.session_up = False
        self._stop: asyncio.Event | None = None
        self._stopped_callbacks: list[Callable[[], None]] = []
        self._adhoc_waiting: dict[int, asyncio.Future[str]] = {}
        self._tokens = itertools.count(1)

    # -- called from the reactor thread

    def start(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="gearman-xmpp", daemon=True)
        self.thread.start()

    def stop(self, done: Callable[[], None]) -> None:
        """Close the stream and end the thread; ``done`` is called on this thread's side once it has ended."""
        if self.loop is None or self.thread is None or not self.thread.is_alive():
            done()
            return
        self._stopped_callbacks.append(done)
        self._call(self._request_stop)

    def send(self, reply: Reply) -> None:
        self._call(self._send, reply)

    def finish_adhoc(self, token: int, text: str) -> None:
        self._call(self._finish_adhoc, token, text)

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        """Run ``function`` on the bot's thread; dropped once that thread has ended (the bot stopped)."""
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self.loop.call_soon_threadsafe(function, *args)

    # -- the thread

    def _run(self) -> None:
        assert self.loop is not None
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._supervise())
        except Exception:  # never silently: the bot is gone, the gateway keeps serving
            log.exception("xmpp: the bot's thread failed")
            self.post(self.events.on_state, "stopped", "failed (see the log)")
        finally:
            close_loop(self.loop)
            for done in self._stopped_callbacks:
                done()

    def _request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def _supervise(self) -> None:
        self._stop = asyncio.Event()
        delay = BACKOFF_FIRST
        while not self._stop.is_set():
            self.post(self.events.on_state, "connecting", self.spec.where)
            why, had_session = await self._one_session()
            if self._stop.is_set():
                break
            if had_session:
                delay = BACKOFF_FIRST
            log.warning("xmpp: %s: %s; reconnecting in %.0fs", self.spec.where, why, delay)
            self.post(self.events.on_state, "connecting", f"{self.spec.where}: {why}; retry in {delay:.0f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, BACKOFF_MAX)
        self.post(self.events.on_state, "stopped", self.spec.where)

    async def _one_session(self) -> tuple[str, bool]:
        """Connect, serve until the stream ends or a stop; (why it ended, whether a session started)."""
        assert self._stop is not None
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[str] = loop.create_future()
        started = loop.create_future()

        def end(why: str) -> None:
            if not ended.done():
                ended.set_result(why)

        client = self.client = self._make_client()
        client.add_event_handler("session_start", functools.partial(self._session_start, client, started))
        client.add_event_handler("connection_failed", lambda error: end(f"cannot connect: {error}"))
        client.add_event_handler("failed_all_auth", lambda _: end("authentication failed"))
        client.add_event_handler("disconnected", lambda reason: end(f"disconnected ({reason or 'stream closed'})"))
        client.add_event_handler("message", self._message)
        if self.spec.host:
            client.connect(self.spec.host, self.spec.port)
        else:
            client.connect()
        stop = asyncio.ensure_future(self._stop.wait())
        timeout = loop.call_later(SESSION_TIMEOUT, lambda: started.done() or end("no session in time"))
        try:
            await asyncio.wait([ended, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            timeout.cancel()
            stop.cancel()
        had_session = started.done()
        self.session_up = False
        if self._stop.is_set() and had_session and not ended.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(wait=DISCONNECT_WAIT), DISCONNECT_WAIT * 2)
        client.cancel_connection_attempt()  # slixmpp's own retry after a failed connect
        client.abort()
        for waiting in self._adhoc_waiting.values():
            if not waiting.done():
                waiting.cancel()
        return (ended.result() if ended.done() else "stopped"), had_session

    def _make_client(self) -> Any:
        import slixmpp

        spec = self.spec
        client = slixmpp.ClientXMPP(spec.jid, spec.password)
        client.enable_direct_tls = spec.tls == "direct"
        client.enable_starttls = spec.tls == "starttls"
        client.enable_plaintext = spec.tls == "plain"
        if spec.tls == "plain":
            client.plugin["feature_mechanisms"].unencrypted_scram = True
        if spec.ca_file:
            client.ca_certs = spec.ca_file
        client.register_plugin("xep_0030")  # disco: clients find the ad-hoc commands
        client.register_plugin("xep_0004")  # forms
        client.register_plugin("xep_0050")  # ad-hoc commands
        client.register_plugin("xep_0045")  # rooms
        client.register_plugin("xep_0203")  # delayed delivery
        client.register_plugin(
            "xep_0199", {"keepalive": True, "interval": spec.keepalive_interval, "timeout": spec.keepalive_timeout}
        )
        client.register_plugin("xep_0198", {"allow_resume": False})  # stream management, acks

        def drop(wait: float = 2.0, reason: str = "reconnecting") -> None:
            # slixmpp's own reconnect (a keepalive ping unanswered) would bring this client back beside the
            # next one: end the stream instead; the supervisor reconnects with a fresh client, with back-off
            log.info("xmpp: %s: %s", spec.where, reason)
            client.abort()

        client.reconnect = drop
        return client

    async def _session_start(self, client: Any, started: asyncio.Future[None], _event: Any) -> None:
        # A message to our bare JID is dropped until the server has our presence: the roster round trip
        # makes sure it is in before we say we are connected.
        client.send_presence()
        await client.get_roster()
        for command in adhoc.COMMANDS:
            client.plugin["xep_0050"].add_command(
                node=command.node, name=command.name, handler=functools.partial(self._adhoc_start, command)
            )
        if not started.done():
            started.set_result(None)
        self.session_up = True
        log.info("xmpp: connected as %s", client.boundjid.full)
        self.post(self.events.on_state, "connected", self.spec.where)
        for room, nick in self.spec.rooms.items():
            await self._join(client, room, nick)

    async def _join(self, client: Any, room: str, nick: str) -> None:
        try:
            await client.plugin["xep_0045"].join_muc_wait(room, nick, maxstanzas=0, timeout=10)
        except Exception as error:  # a room we cannot join must not cost the session
            log.warning("xmpp: cannot join %s as %s: %s", room, nick, error or type(error).__name__)
            return
        log.info("xmpp: joined %s as %s", room, nick)
        self.post(self.events.on_nick, room, nick)

    def _message(self, msg: Any) -> None:
        sender = str(msg["from"])
        parsed = jids.parse(sender)
        real = None
        if parsed.bare in self.spec.rooms and parsed.resource:
            with contextlib.suppress(Exception):
                real = self.client.plugin["xep_0045"].get_jid_property(parsed.bare, parsed.resource, "jid")
        chat = ChatMessage(
            sender=sender,
            body=msg["body"],
            mtype=msg["type"],
            thread=msg["thread"] or None,
            delayed=any(msg.xml.find(tag) is not None for tag in _DELAY_TAGS),
            real_jid=str(real) if real else None,
        )
        self.post(self.events.on_message, chat)

    def _send(self, reply: Reply) -> None:
        client = self.client
        if client is None or not self.session_up:
            log.info("xmpp: not connected; a reply to %s is dropped", reply.to)
            return
        msg = client.make_message(mto=reply.to, mbody=reply.text, mtype=reply.mtype)
        if reply.thread:
            msg["thread"] = reply.thread
        msg.send()

    # -- ad-hoc commands (XEP-0050): the form, then the values to the reactor thread, then its answer

    async def _adhoc_start(self, command: adhoc.CommandForm, iq: Any, session: dict[str, Any]) -> dict[str, Any]:
        if not command.fields:
            return await self._adhoc_run(command.node, {}, session)
        form = self.client.plugin["xep_0004"].make_form("form", command.title)
        form["instructions"] = command.instructions
        for item in command.fields:
            options = [{"label": option.label, "value": option.value} for option in item.options]
            form.add_field(
                var=item.var, ftype=item.ftype, label=item.label, desc=item.desc, required=item.required,
                value=item.value, options=options or None,
            )  # fmt: skip
        session["payload"] = form
        session["next"] = functools.partial(self._adhoc_submitted, command.node)
        session["has_next"] = False
        return session

    async def _adhoc_submitted(self, node: str, payload: Any, session: dict[str, Any]) -> dict[str, Any]:
        values = payload.get_values() if payload is not None and hasattr(payload, "get_values") else {}
        return await self._adhoc_run(node, dict(values), session)

    async def _adhoc_run(self, node: str, values: dict[str, Any], session: dict[str, Any]) -> dict[str, Any]:
        token = next(self._tokens)
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._adhoc_waiting[token] = answer
        self.post(self.events.on_adhoc, token, node, str(session["from"]), values)
        try:
            text = await asyncio.wait_for(answer, ADHOC_WAIT)
        except (TimeoutError, asyncio.CancelledError):
            text = f"[still running] no answer within {ADHOC_WAIT:.0f}s; the job carries on unheard"
        finally:
            self._adhoc_waiting.pop(token, None)
        session["payload"] = None
        session["next"] = None
        session["has_next"] = False
        session["notes"] = [("info", text)]
        return session

    def _finish_adhoc(self, token: int, text: str) -> None:
        answer = self._adhoc_waiting.get(token)
        if answer is not None and not answer.done():
            answer.set_result(text)


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close a loop that ran slixmpp clients: first end the tasks they leave behind (their output filters),
    so nothing is left to run, or to complain, once the loop is gone."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
