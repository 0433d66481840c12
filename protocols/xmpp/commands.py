"""The chat bot's brain, sans-IO: messages in, actions out; job outcomes in, replies out.

``ChatCommands.handle_message`` decides what one incoming message means (who sent it, whether it is for us,
whether they may, which command) and returns actions (``protocols.xmpp.actions``). The adapter carries
them out and reports each request's outcome back (``job_created``, ``job_complete``, ``status_result``...),
which gives the replies. Nothing here does I/O or reads the time except through the clock it is given, and
no method raises: a bug becomes an ``internal_error`` log event, never a dead bot.

Rules, in the order they apply to a message:

1. Not commands, ignored without a reply: error stanzas, headlines, messages without a body, messages from
   the bot's own JID (another session of its account, its own words reflected by a room), delayed messages
   (XEP-0203: offline storage, room history replayed on join), messages from a server or component (no
   localpart), group chat from rooms the bot was not told to join.
2. In a room (``groupchat``) only messages addressed to the bot count: its nick then ``:`` or ``,``
   (``gearbot: reverse hi``, ``Gearbot, help``); the reply goes to the room, starting with the sender's nick.
   A private message through a room (``chat`` from ``room@service/nick``) needs no address and is answered
   privately.
3. The sender must be allowed: its bare JID or domain in ``allowed``; in a room (and for private messages
   through one) the occupant's real JID when the room shows it, else the room itself. Anyone else gets one
   ``[refused]`` reply, then silence; every refused message is a ``refused`` log event.
4. At most ``rate_limit`` messages a minute per sender (a token bucket: bursts up to the limit); over it,
   ``[slow down]`` and nothing runs.
5. The text is a command (``grammar``): help and malformed commands are answered at once; a job, a status
   query or the function list become a request the adapter carries out.

Each message gets at most one reply of its own, and exactly one when it is an allowed command: either at once,
or as the final reply of its request (a job's result, failure or handle; a status; the function list). A
foreground job may add interim replies before that (``[data]``, ``[progress]`` at most once per
``progress_interval`` seconds, ``[warning]``).
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gearman_gateway.scheduler import Priority
from protocols.xmpp import adhoc, grammar, jids, replies
from protocols.xmpp.access import AccessList, RateLimiter, SeenOnce
from protocols.xmpp.actions import (
    Action,
    ChatMessage,
    FunctionCounts,
    ListFunctions,
    LogEvent,
    QueryStatus,
    Reply,
    ReplyKind,
    Submit,
)
from protocols.xmpp.limits import DEFAULT_MAX_REPLY, DEFAULT_RATE_LIMIT, MIN_MAX_REPLY, NO_WORKER_CHOICES

#: Message types that may carry a command; ``headline`` is for notifications, ``error`` for bounces.
COMMAND_TYPES = frozenset(("chat", "normal", "groupchat"))

_F = TypeVar("_F", bound=Callable[..., list[Action]])


@dataclass(frozen=True)
class ChatSettings:
    """What the command layer needs from the ``xmpp:`` configuration block.

    ``jid``: the bot's account (bare or full). ``allowed``: bare JIDs and domains (empty: nobody).
    ``rooms``: room bare JID -> the bot's nick there. ``rate_limit``: messages a minute per sender (0: no
    limit). ``max_reply``: bytes of a reply's text. ``job_timeout``: seconds a foreground job may take before
    the bot stops waiting (None: no limit). ``no_worker``: ``reply`` (a foreground job nobody serves is
    answered at once and not run) or ``wait`` (it is queued until a worker comes). ``progress_interval``:
    least seconds between two ``[progress]`` replies of one job.
    """

    jid: str
    allowed: Sequence[str] = ()
    rooms: Mapping[str, str] = field(default_factory=dict)
    rate_limit: int = DEFAULT_RATE_LIMIT
    max_reply: int = DEFAULT_MAX_REPLY
    job_timeout: float | None = None
    no_worker: str = "reply"
    progress_interval: float = 1.0

    def __post_init__(self) -> None:
        if not jids.parse(self.jid).local:
            raise ValueError(f"xmpp jid must be user@domain, not {self.jid!r}")
        if self.max_reply < MIN_MAX_REPLY:
            raise ValueError(f"xmpp max_reply must be at least {MIN_MAX_REPLY} bytes, not {self.max_reply}")
        if self.rate_limit < 0:
            raise ValueError(f"xmpp rate_limit must be 0 (no limit) or more, not {self.rate_limit}")
        if self.job_timeout is not None and self.job_timeout <= 0:
            raise ValueError(f"xmpp job_timeout must be more than 0 seconds, not {self.job_timeout}")
        if self.no_worker not in NO_WORKER_CHOICES:
            raise ValueError(f"xmpp no_worker must be reply or wait, not {self.no_worker!r}")


@dataclass(frozen=True, slots=True)
class _Target:
    """Where the replies to one message go."""

    to: str
    mtype: str
    thread: str | None
    prefix: str  # "nick: " in a room
    adhoc: bool = False


@dataclass(slots=True)
class _Request:
    """A request the adapter is carrying out: a job, a status query or the function list."""

    kind: str  # "job", "status", "functions"
    target: _Target
    function: bytes = b""
    priority: Priority = Priority.NORMAL
    background: bool = False
    handle: bytes | None = None
    last_progress: float | None = None


def _never_raises(method: _F) -> _F:
    """A bug in here must cost one message, not the bot: it becomes an ``internal_error`` log event."""

    @functools.wraps(method)
    def safe(self: ChatCommands, *args: Any, **kwargs: Any) -> list[Action]:
        try:
            return method(self, *args, **kwargs)
        except Exception:  # noqa: BLE001 - the whole point
            return [LogEvent(logging.ERROR, "internal_error", f"xmpp {method.__name__}: {traceback.format_exc()}")]

    return safe  # type: ignore[return-value]


class ChatCommands:
    def __init__(self, settings: ChatSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.own = jids.bare(settings.jid)
        self.access = AccessList(settings.allowed)
        self.rate = RateLimiter(settings.rate_limit, clock)
        self.refused = SeenOnce()
        self.rooms: dict[str, str] = {jids.bare(room): nick for room, nick in settings.rooms.items()}
        self._requests: dict[int, _Request] = {}
        self._next_id = 1

    # -- rooms

    def set_nick(self, room: str, nick: str) -> None:
        """The bot's nick in ``room`` is now ``nick`` (joined under another one, or a room added)."""
        self.rooms[jids.bare(room)] = nick

    def leave(self, room: str) -> None:
        self.rooms.pop(jids.bare(room), None)

    @property
    def pending(self) -> int:
        """Requests waiting for their outcome."""
        return len(self._requests)

    def forget(self, request_id: int) -> None:
        """Drop a request without a reply (the adapter is shutting down, or gave up on it)."""
        self._requests.pop(request_id, None)

    # -- messages in

    @_never_raises
    def handle_message(self, msg: ChatMessage) -> list[Action]:
        if msg.mtype == "error":
            return _ignored("error stanza", msg)
        if msg.mtype not in COMMAND_TYPES:
            return _ignored(f"{msg.mtype or 'untyped'} message", msg)
        sender = jids.parse(msg.sender)
        if not sender.domain:
            return _ignored("no sender", msg)
        real = jids.parse(msg.real_jid) if msg.real_jid else None
        if sender.bare == self.own or (real is not None and real.bare == self.own):
            return _ignored("the bot's own message", msg)
        nick = self.rooms.get(sender.bare)
        if nick is None:
            if msg.mtype == "groupchat":
                return _ignored("group chat from a room the bot is not in", msg)
            if not sender.local:
                return _ignored("message from a server or component", msg)
        elif not sender.resource or sender.resource == nick:
            return _ignored("the room's own message, or the bot's own reflected by the room", msg)
        if msg.delayed:
            return _ignored("delayed message (offline storage or room history)", msg)
        if not msg.body:
            return []  # chat states, receipts: not even worth a log line
        text = msg.body
        if msg.mtype == "groupchat":
            addressed = _addressed(text, nick or "")
            if addressed is None:
                return []  # room talk among people
            text = addressed
            target = _Target(sender.bare, "groupchat", msg.thread, f"{sender.resource}: ")
        else:
            target = _Target(msg.sender, msg.mtype, msg.thread, "")
        subject, identity = self._who(sender, real)
        gate = self._gate(subject, identity, target)
        if gate is not None:
            return gate
        return self._dispatch(grammar.parse(text), target, identity)

    @_never_raises
    def adhoc(self, node: str, sender: str, values: Mapping[str, object], real_jid: str | None = None) -> list[Action]:
        """An ad-hoc command (``adhoc.COMMANDS``) executed by ``sender`` with these form values. Every reply
        has ``adhoc=True``; a refused sender is answered every time (the command must complete)."""
        parsed = jids.parse(sender)
        real = jids.parse(real_jid) if real_jid else None
        target = _Target(sender, "chat", None, "", adhoc=True)
        if not parsed.domain:
            return [self._reply(target, replies.error("no sender"), ReplyKind.ERROR)]
        subject, identity = self._who(parsed, real)
        gate = self._gate(subject, identity, target)
        if gate is not None:
            return gate
        return self._dispatch(adhoc.parse_values(node, values), target, identity)

    def _who(self, sender: jids.Jid, real: jids.Jid | None) -> tuple[str, str]:
        """(the JID ``allowed`` must match, the sender's key for rate limits and refusals). Through a room:
        the occupant's real bare JID when the room shows it, else the room (matched) and the occupant's room
        JID (the key: one refusal and one bucket per nick). Anyone else: their bare JID, for both."""
        if sender.bare not in self.rooms:
            return sender.bare, sender.bare
        if real is not None and real.local:
            return real.bare, real.bare
        return sender.bare, sender.full

    def _gate(self, subject: str, identity: str, target: _Target) -> list[Action] | None:
        """Access control and rate limit: None lets the message through, else what to do instead."""
        if not self.access.allows(subject):
            first = self.refused.first(identity)
            event = LogEvent(
                logging.WARNING if first else logging.DEBUG,
                "refused",
                f"xmpp: refused {identity}" + (f" (checked as {subject})" if subject != identity else "")
                + ": not in allowed",
            )  # fmt: skip
            if first or target.adhoc:
                return [self._reply(target, replies.REFUSED, ReplyKind.REFUSED), event]
            return [event]
        if not self.rate.allow(identity):
            event = LogEvent(logging.INFO, "rate_limited", f"xmpp: {identity} is over {self.rate.per_minute}/min")
            return [self._reply(target, replies.slow_down(self.rate.per_minute), ReplyKind.SLOW_DOWN), event]
        return None

    def _dispatch(self, command: grammar.Command, target: _Target, identity: str) -> list[Action]:
        if isinstance(command, grammar.HelpCommand):
            return [self._reply(target, replies.HELP, ReplyKind.ANSWER)]
        if isinstance(command, grammar.ListCommand):
            return [ListFunctions(self._open(_Request("functions", target)), identity)]
        if isinstance(command, grammar.StatusCommand):
            return [QueryStatus(self._open(_Request("status", target, handle=command.handle)), command.handle)]
        if isinstance(command, grammar.JobCommand):
            request = _Request("job", target, command.function, command.priority, command.background)
            return [
                Submit(
                    request_id=self._open(request),
                    function=command.function,
                    payload=command.payload,
                    priority=command.priority,
                    background=command.background,
                    require_worker=not command.background and self.settings.no_worker == "reply",
                    timeout=None if command.background else self.settings.job_timeout,
                    sender=identity,
                )
            ]
        event = LogEvent(logging.DEBUG, "bad_command", f"xmpp: {identity}: {command.reason}")
        return [self._reply(target, replies.error(command.reason), ReplyKind.ERROR), event]

    def _open(self, request: _Request) -> int:
        request_id = self._next_id
        self._next_id += 1
        self._requests[request_id] = request
        return request_id

    # -- outcomes in (each returns the replies it gives; an unknown or finished request gives none)

    @_never_raises
    def job_created(self, request_id: int, handle: bytes) -> list[Action]:
        """The job was acknowledged: a background job's reply is its handle; a foreground one waits on."""
        request = self._job(request_id)
        if request is None:
            return []
        request.handle = handle
        if not request.background:
            return []
        del self._requests[request_id]
        text = replies.queued(request.function, handle, request.priority)
        return [self._reply(request.target, text, ReplyKind.RESULT, request_id)]

    @_never_raises
    def job_data(self, request_id: int, data: bytes) -> list[Action]:
        return self._interim(request_id, "[data] ", data, ReplyKind.DATA)

    @_never_raises
    def job_warning(self, request_id: int, data: bytes) -> list[Action]:
        return self._interim(request_id, "[warning] ", data, ReplyKind.WARNING)

    @_never_raises
    def job_status(self, request_id: int, numerator: int, denominator: int) -> list[Action]:
        request = self._job(request_id)
        if request is None:
            return []
        now = self.clock()
        if request.last_progress is not None and now - request.last_progress < self.settings.progress_interval:
            return []
        request.last_progress = now
        text = replies.progress(numerator, denominator)
        return [self._reply(request.target, text, ReplyKind.PROGRESS, request_id, final=False)]

    @_never_raises
    def job_complete(self, request_id: int, data: bytes) -> list[Action]:
        request = self._finish(request_id)
        if request is None:
            return []
        text = replies.output(data, self._budget(request.target, ""))
        return [self._reply(request.target, text, ReplyKind.RESULT, request_id)]

    @_never_raises
    def job_fail(self, request_id: int) -> list[Action]:
        request = self._finish(request_id)
        if request is None:
            return []
        return [self._reply(request.target, replies.failed(request.function), ReplyKind.FAILED, request_id)]

    @_never_raises
    def job_exception(self, request_id: int, data: bytes) -> list[Action]:
        request = self._finish(request_id)
        if request is None:
            return []
        head = replies.exception(request.function, "")
        text = replies.exception(request.function, replies.output(data, self._budget(request.target, head)))
        return [self._reply(request.target, text, ReplyKind.FAILED, request_id)]

    @_never_raises
    def job_refused(self, request_id: int, reason: str) -> list[Action]:
        """Submit raised (``QueueFull``, ``ShuttingDown``...) or the store rejected the job: not queued."""
        request = self._finish(request_id)
        if request is None:
            return []
        text = replies.not_queued(request.function, reason)
        return [self._reply(request.target, text, ReplyKind.FAILED, request_id)]

    @_never_raises
    def no_worker(self, request_id: int) -> list[Action]:
        """A ``require_worker`` job whose function nobody serves: it was not submitted."""
        request = self._finish(request_id)
        if request is None:
            return []
        return [self._reply(request.target, replies.no_worker(request.function), ReplyKind.FAILED, request_id)]

    @_never_raises
    def job_timeout(self, request_id: int) -> list[Action]:
        """``Submit.timeout`` passed before the job finished; the adapter stopped listening to it."""
        request = self._finish(request_id)
        if request is None:
            return []
        seconds = self.settings.job_timeout or 0.0
        text = replies.timed_out(request.function, seconds, request.handle)
        return [self._reply(request.target, text, ReplyKind.FAILED, request_id)]

    @_never_raises
    def status_result(
        self, request_id: int, known: bool, running: bool, numerator: int = 0, denominator: int = 0
    ) -> list[Action]:
        request = self._requests.get(request_id)
        if request is None or request.kind != "status":
            return []
        del self._requests[request_id]
        text = replies.status(request.handle or b"", known, running, numerator, denominator)
        return [self._reply(request.target, text, ReplyKind.ANSWER, request_id)]

    @_never_raises
    def functions_result(self, request_id: int, rows: Iterable[FunctionCounts]) -> list[Action]:
        request = self._requests.get(request_id)
        if request is None or request.kind != "functions":
            return []
        del self._requests[request_id]
        text = replies.functions(rows, self._budget(request.target, ""))
        return [self._reply(request.target, text, ReplyKind.ANSWER, request_id)]

    # -- helpers

    def _job(self, request_id: int) -> _Request | None:
        request = self._requests.get(request_id)
        return request if request is not None and request.kind == "job" else None

    def _finish(self, request_id: int) -> _Request | None:
        request = self._job(request_id)
        if request is not None:
            del self._requests[request_id]
        return request

    def _interim(self, request_id: int, head: str, data: bytes, kind: str) -> list[Action]:
        request = self._job(request_id)
        if request is None or request.background:
            return []
        text = head + replies.output(data, self._budget(request.target, head))
        return [self._reply(request.target, text, kind, request_id, final=False)]

    def _budget(self, target: _Target, head: str) -> int:
        """Bytes left for a job's output once the nick prefix and ``head`` are in the reply."""
        return self.settings.max_reply - len(target.prefix.encode()) - len(head.encode())

    def _reply(self, target: _Target, text: str, kind: str, request_id: int | None = None, final: bool = True) -> Reply:
        body = replies.clip(replies.xml_safe(target.prefix + text), self.settings.max_reply)
        return Reply(target.to, body, target.mtype, target.thread, kind, request_id, final, target.adhoc)


def _addressed(text: str, nick: str) -> str | None:
    """What follows ``nick:`` or ``nick,`` at the start of a room message (nick in any case), else None."""
    stripped = text.lstrip()
    if not nick or len(stripped) <= len(nick):
        return None
    if stripped[: len(nick)].lower() != nick.lower() or stripped[len(nick)] not in ":,":
        return None
    return stripped[len(nick) + 1 :]


def _ignored(why: str, msg: ChatMessage) -> list[Action]:
    return [LogEvent(logging.DEBUG, "ignored", f"xmpp: ignored {why} from {msg.sender!r}")]
