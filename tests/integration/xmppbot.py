"""Helpers for the XMPP frontend's tests: our gearmand with ``-r xmpp`` logged in to a private prosody
(tests/xmppfixture.py), a PyPI ``gear`` worker with functions that exercise every kind of job outcome, and a
way to run one chat scenario on a fresh asyncio loop.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gear
import yaml

from tests.integration.conftest import RunningServer
from tests.xmppfixture import ChatUser, ProsodyServer, run

#: Seconds for the bot to log in (TLS, auth, roster) once gearmand runs.
CONNECT_TIMEOUT = 20.0
BOT_NICK = "gearbot"
#: Released by a test to let a ``hold`` job finish.
RELEASE = threading.Event()


def bot_config(
    directory: Path,
    prosody: ProsodyServer,
    user: str = "bot",
    allowed: Iterable[str] = (),
    rooms: Iterable[tuple[str, str]] = (),
    **more: Any,
) -> Path:
    """A YAML config whose ``xmpp:`` block logs ``user`` in to ``prosody`` over STARTTLS with its certificate;
    the password in a file that ends in a newline, as ``echo pass > file`` writes it."""
    password_file = directory / f"{user}.password"
    password_file.write_text(prosody.password(user) + "\n")
    block = {
        "jid": f"{prosody.jid(user)}/gateway",
        "password_file": str(password_file),
        "host": prosody.host,
        "port": prosody.port,
        "tls": "starttls",
        "ca_file": str(prosody.ca_file),
        "allowed": list(allowed),
        "rooms": [{"room": room, "nick": nick} for room, nick in rooms],
        **more,
    }
    path = directory / f"gearmand-{user}.yaml"
    path.write_text(yaml.safe_dump({"frontends": ["binary", "xmpp"], "queue": {"type": "memory"}, "xmpp": block}))
    return path


def frontend_line(server: RunningServer) -> str:
    """The xmpp line of admin ``show frontends``: ``xmpp TAB state TAB detail``."""
    for line in server.admin("show frontends").splitlines():
        if line.startswith("xmpp\t"):
            return line
    return ""


def wait_bot(server: RunningServer, state: str = "connected", timeout: float = CONNECT_TIMEOUT, says: str = "") -> None:
    """Until admin ``show frontends`` says the bot is in ``state`` (and its detail holds ``says``): it changes on
    the bot's own events."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"gearmand exited:\n{server.log()}")
        line = frontend_line(server)
        if line.split("\t")[1:2] == [state] and says in line:
            return
        time.sleep(0.05)
    raise TimeoutError(f"bot not {state} after {timeout}s: {frontend_line(server)!r}\n{server.log()[-3000:]}")


class Worker:
    """A PyPI ``gear`` worker on a thread of its own, serving the functions below until ``stop``."""

    FUNCTIONS: dict[str, Callable[[gear.WorkerJob], None]] = {}

    def __init__(self, server: RunningServer, functions: Iterable[str] | None = None, name: str = "w") -> None:
        self.worker = gear.Worker(name)
        self.worker.addServer(server.host, server.port)
        self.worker.waitForServer()
        for connection in self.worker.active_connections:  # gear writes packet by packet: no Nagle delays
            connection.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for function in functions if functions is not None else self.FUNCTIONS:
            self.worker.registerFunction(function)
        self.done = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                job = self.worker.getJob()
            except gear.InterruptedError:
                return
            self.FUNCTIONS[job.name.decode() if isinstance(job.name, bytes) else job.name](job)
            self.done += 1

    def stop(self) -> None:
        self.worker.stopWaitingForJobs()
        self.worker.shutdown()
        self.thread.join(5)


def _function(name: str) -> Callable[[Callable[[gear.WorkerJob], None]], Callable[[gear.WorkerJob], None]]:
    def register(body: Callable[[gear.WorkerJob], None]) -> Callable[[gear.WorkerJob], None]:
        Worker.FUNCTIONS[name] = body
        return body

    return register


@_function("reverse")
def _reverse(job: gear.WorkerJob) -> None:
    job.sendWorkComplete(bytes(job.arguments)[::-1])


@_function("steps")
def _steps(job: gear.WorkerJob) -> None:
    job.sendWorkData(b"part one")
    job.sendWorkStatus(1, 2)
    job.sendWorkWarning(b"half way")
    job.sendWorkStatus(2, 2)  # within a second of the first: not relayed
    job.sendWorkComplete(b"all done")


@_function("fails")
def _fails(job: gear.WorkerJob) -> None:
    job.sendWorkFail()


@_function("raises")
def _raises(job: gear.WorkerJob) -> None:
    job.sendWorkException(b"division by zero")


@_function("binary")
def _binary(job: gear.WorkerJob) -> None:
    job.sendWorkComplete(b"\xff\xfe\x00\x01")


@_function("big")
def _big(job: gear.WorkerJob) -> None:
    job.sendWorkComplete(b"0123456789" * 10_000)  # 100 kB: over max_reply


@_function("hold")
def _hold(job: gear.WorkerJob) -> None:
    job.sendWorkStatus(3, 10)
    RELEASE.wait(30)
    job.sendWorkComplete(b"released")


async def chat(prosody: ProsodyServer, user: str, resource: str = "test") -> ChatUser:
    return await ChatUser(prosody, user, resource=resource).start()


async def ask(user: ChatUser, to: str, text: str, thread: str | None = None, timeout: float = 15.0) -> str:
    """Send ``text`` and return the body of the next message received."""
    user.send(to, text, thread=thread)
    return (await user.receive(timeout)).body


def ask_once(prosody: ProsodyServer, user: str, to: str, text: str) -> str:
    """Log ``user`` in, send ``text``, return the answer, log out: one chat, from start to end."""

    async def scenario() -> str:
        person = await chat(prosody, user)
        try:
            return await ask(person, to, text)
        finally:
            await person.stop()

    return run(scenario())
