"""What goes into the command layer and what comes out: plain values, so the layer needs no XMPP library.

In: a ``ChatMessage`` (one message stanza, as the adapter read it), or an ad-hoc command's submitted form
values. Out: a list of actions, in order. The adapter sends each ``Reply``, runs each ``Submit``,
``QueryStatus`` and ``ListFunctions`` against the scheduler and reports the outcome back to ``ChatCommands``
with the action's ``request_id`` (which gives more actions), and logs or counts each ``LogEvent``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gearman_gateway.scheduler import Priority

# -- in


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One incoming ``<message/>``.

    ``sender`` is its ``from``: a full JID (``alice@example.org/phone``) or, from a room, the occupant's room
    JID (``ops@conference.example.org/alice``). ``body`` is ``""`` for a stanza without a body (chat states,
    receipts). ``mtype`` is the stanza's type: ``chat``, ``normal``, ``groupchat``, ``headline`` or ``error``.
    ``delayed``: it carries a XEP-0203 delay (offline storage, room history). ``real_jid``: a room
    occupant's real JID, when the room shows it to the bot (None otherwise, and for direct messages).
    """

    sender: str
    body: str
    mtype: str = "chat"
    thread: str | None = None
    delayed: bool = False
    real_jid: str | None = None


@dataclass(frozen=True, slots=True)
class FunctionCounts:
    """One line of the ``functions`` answer, as admin ``status`` counts it."""

    name: bytes
    queued: int  # jobs waiting (all priorities, due or not)
    running: int
    workers: int  # connections that registered the function


# -- out


class ReplyKind:
    """``Reply.kind`` values, for the adapter's message counters."""

    RESULT = "result"  # a job's result, or a background job's handle
    DATA = "data"  # WORK_DATA, relayed while the job runs
    PROGRESS = "progress"  # WORK_STATUS
    WARNING = "warning"  # WORK_WARNING
    FAILED = "failed"  # WORK_FAIL, WORK_EXCEPTION, not queued, no worker, timed out
    ANSWER = "answer"  # help, functions, status
    ERROR = "error"  # a message that is not a command we can run
    SLOW_DOWN = "slow_down"  # over the rate limit
    REFUSED = "refused"  # a sender not in ``allowed``


#: Kinds that come while a job runs; every other reply is the last one for its message.
INTERIM_KINDS = frozenset((ReplyKind.DATA, ReplyKind.PROGRESS, ReplyKind.WARNING))


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``text`` to ``to`` as a message of type ``mtype`` (``chat``, ``normal`` or ``groupchat``) in
    ``thread``. ``text`` is valid XML character data of at most ``max_reply`` UTF-8 bytes.

    ``request_id`` names the request it answers (None: it answers the message or form just handled).
    ``final``: the last reply for that message or request. ``adhoc``: it answers an ad-hoc command, not a
    chat message: the adapter completes that command's session with ``text`` (a final reply) instead of
    sending a message; interim ones it may send as chat messages to ``to`` or drop.
    """

    to: str
    text: str
    mtype: str = "chat"
    thread: str | None = None
    kind: str = ReplyKind.ANSWER
    request_id: int | None = None
    final: bool = True
    adhoc: bool = False


@dataclass(frozen=True, slots=True)
class Submit:
    """Submit a job: ``scheduler.submit(function, payload, priority=priority, background=background,
    listener=...)``, no unique (chat jobs never coalesce). Report with ``job_created`` (or ``job_refused``
    when submit raises or the store rejects it), then, for a foreground job, its events.

    ``require_worker`` (foreground, ``no_worker: reply``): if no worker has registered ``function``, do not
    submit; report ``no_worker`` instead. ``timeout`` (foreground, ``job_timeout``): if the job has not
    finished after this many seconds, stop listening and report ``job_timeout``; None: wait as long as it takes.
    """

    request_id: int
    function: bytes
    payload: bytes
    priority: Priority
    background: bool
    require_worker: bool
    timeout: float | None
    sender: str = ""  # who asked (a bare JID; a room occupant's room JID): its identity's permissions apply


@dataclass(frozen=True, slots=True)
class QueryStatus:
    """Look up a job (``scheduler.job(handle)``) and report with ``status_result``."""

    request_id: int
    handle: bytes


@dataclass(frozen=True, slots=True)
class ListFunctions:
    """Count every function's jobs and workers and report with ``functions_result``."""

    request_id: int
    sender: str = ""  # who asked: a tenant's identity sees only its own functions


@dataclass(frozen=True, slots=True)
class LogEvent:
    """Log ``text`` at ``level`` (a ``logging`` level) and count ``event``: ``refused``, ``rate_limited``,
    ``ignored``, ``bad_command``, ``internal_error``."""

    level: int
    event: str
    text: str


Action = Reply | Submit | QueryStatus | ListFunctions | LogEvent
