"""The xmpp frontend's Twisted side: the service that runs the command layer on the reactor thread.

``XmppService`` owns a ``ChatCommands`` (what a message means, what to answer) and a ``BotClient`` (slixmpp on
its own thread, ``protocols.xmpp.client``). Every message the client receives arrives here through
``reactor.callFromThread``; the actions it gives are carried out here, against the scheduler (submit, job
snapshots, function snapshots), and the replies go back to the client's thread. A chat job's events reach
its ``ChatJob`` listener, which reports them to the command layer. Nothing here blocks the reactor.

A job submitted by chat outlives its chat: a foreground job whose sender went away (or whose bot lost the
XMPP server) still runs and its result is dropped, as for a vanished binary client; a background job is
queued, durably with a store, like any other.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet import defer

from gearman_gateway.scheduler import Job, JobListener, SchedulerError
from gearman_gateway.security import Denied
from protocols import MetricFamily, ServiceState
from protocols.xmpp.actions import (
    Action,
    ChatMessage,
    FunctionCounts,
    ListFunctions,
    LogEvent,
    QueryStatus,
    Reply,
    Submit,
)
from protocols.xmpp.client import BotClient, ConnectSpec
from protocols.xmpp.commands import ChatCommands, ChatSettings

if TYPE_CHECKING:
    from protocols import FrontendContext

log = logging.getLogger("gearman_gateway.xmpp")
#: Longest wait at stop for the bot's thread to close its stream.
STOP_TIMEOUT = 3.0


class ChatJob(JobListener):
    """The submitter of one chat job: reports its events to the command layer, by request id."""

    __slots__ = ("service", "request_id", "timer")

    def __init__(self, service: XmppService, request_id: int) -> None:
        self.service = service
        self.request_id = request_id
        self.timer: Any = None

    def job_created(self, job: Job) -> None:
        self.service.run(self.service.commands.job_created(self.request_id, job.handle))

    def job_rejected(self, job: Job, error: SchedulerError) -> None:
        self._done()
        self.service.run(self.service.commands.job_refused(self.request_id, str(error)))

    def job_data(self, job: Job, data: bytes) -> None:
        self.service.run(self.service.commands.job_data(self.request_id, data))

    def job_warning(self, job: Job, data: bytes) -> None:
        self.service.run(self.service.commands.job_warning(self.request_id, data))

    def job_status(self, job: Job, numerator: int, denominator: int) -> None:
        self.service.run(self.service.commands.job_status(self.request_id, numerator, denominator))

    def job_complete(self, job: Job, data: bytes) -> None:
        self._done()
        self.service.run(self.service.commands.job_complete(self.request_id, data))

    def job_fail(self, job: Job) -> None:
        self._done()
        self.service.run(self.service.commands.job_fail(self.request_id))

    def job_exception(self, job: Job, data: bytes) -> None:
        self._done()
        self.service.run(self.service.commands.job_exception(self.request_id, data))

    def _done(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()


class XmppStats:
    """The bot's counters, kept on the reactor thread, for ``/_gearman/metrics``."""

    def __init__(self) -> None:
        self.received = 0
        self.replies: Counter[str] = Counter()  # by ReplyKind
        self.events: Counter[str] = Counter()  # LogEvent.event: refused, rate_limited, ignored...
        self.jobs = 0
        self.connects = 0


class XmppService(Service):
    name = "xmpp"

    def __init__(self, context: FrontendContext, settings: ChatSettings, spec: ConnectSpec) -> None:
        self.context = context
        self.scheduler = context.scheduler
        self.reactor = context.reactor
        self.commands = ChatCommands(settings)
        self.spec = spec
        self.stats = XmppStats()
        self.state = ServiceState("stopped", detail=spec.where)
        self.client = BotClient(spec, self, self.reactor.callFromThread)
        self._adhoc: dict[int, int] = {}  # request id -> the ad-hoc session's token

    # -- the service

    def startService(self) -> None:  # noqa: N802
        super().startService()
        if not self.commands.access:
            log.warning("xmpp: allowed is empty: nobody may submit jobs by chat (set xmpp.allowed or --xmpp-allow)")
        log.info("xmpp: connecting as %s", self.spec.where)
        self.client.start()

    def stopService(self) -> defer.Deferred:  # noqa: N802
        super().stopService()
        done: defer.Deferred = defer.Deferred()
        timer = self.reactor.callLater(STOP_TIMEOUT, lambda: done.called or done.callback(None))

        def stopped() -> None:
            self.reactor.callFromThread(lambda: done.called or done.callback(None))

        self.client.stop(stopped)
        done.addCallback(lambda _: timer.cancel() if timer.active() else None)
        return done

    def frontend_state(self) -> ServiceState:
        return self.state

    def frontend_metrics(self) -> list[MetricFamily]:
        stats = self.stats
        return [
            MetricFamily("gearman_xmpp_connected", "gauge", "1 while the chat bot has an XMPP session, else 0.",
                         (({}, int(self.state.state == "connected")),)),
            MetricFamily("gearman_xmpp_sessions_total", "counter", "XMPP sessions the bot has started.",
                         (({}, stats.connects),)),
            MetricFamily("gearman_xmpp_messages_received_total", "counter", "Chat messages the bot received.",
                         (({}, stats.received),)),
            MetricFamily("gearman_xmpp_messages_sent_total", "counter", "Replies the bot sent, per kind.",
                         tuple(({"kind": kind}, count) for kind, count in sorted(stats.replies.items()))),
            MetricFamily("gearman_xmpp_events_total", "counter",
                         "Messages refused, rate limited, ignored or not understood, per event.",
                         tuple(({"event": event}, count) for event, count in sorted(stats.events.items()))),
            MetricFamily("gearman_xmpp_jobs_submitted_total", "counter", "Jobs submitted by chat.",
                         (({}, stats.jobs),)),
        ]  # fmt: skip

    # -- from the client's thread (each call made on the reactor thread)

    def on_message(self, msg: ChatMessage) -> None:
        self.stats.received += 1
        self.run(self.commands.handle_message(msg))

    def on_adhoc(self, token: int, node: str, sender: str, values: dict[str, Any]) -> None:
        self.run(self.commands.adhoc(node, sender, values), adhoc_token=token)

    def on_state(self, state: str, detail: str) -> None:
        if state == "connected" and self.state.state != "connected":
            self.stats.connects += 1
        self.state = ServiceState(state, detail=detail)

    def on_nick(self, room: str, nick: str) -> None:
        self.commands.set_nick(room, nick)

    # -- carrying out the command layer's actions

    def run(self, actions: list[Action], adhoc_token: int | None = None) -> None:
        for action in actions:
            if isinstance(action, Reply):
                self._reply(action, adhoc_token)
            elif isinstance(action, LogEvent):
                self.stats.events[action.event] += 1
                log.log(action.level, "%s", action.text)
            else:
                if adhoc_token is not None:
                    self._adhoc[action.request_id] = adhoc_token
                if isinstance(action, Submit):
                    self._submit(action)
                elif isinstance(action, QueryStatus):
                    self._status(action)
                elif isinstance(action, ListFunctions):
                    self._functions(action)

    def _reply(self, reply: Reply, adhoc_token: int | None) -> None:
        if reply.adhoc:
            if not reply.final:
                return  # progress has no place in a form's answer
            token = adhoc_token if reply.request_id is None else self._adhoc.pop(reply.request_id, None)
            if token is not None:
                self.stats.replies[reply.kind] += 1
                self.client.finish_adhoc(token, reply.text)
            return
        self.stats.replies[reply.kind] += 1
        self.client.send(reply)

    def _submit(self, action: Submit) -> None:
        request_id = action.request_id
        access = self.context.access
        try:
            name = access.submit(access.identity_for_jid(action.sender), action.function, "xmpp", action.sender)
        except Denied as refusal:
            self.run(self.commands.job_refused(request_id, refusal.text))
            return
        if action.require_worker:
            function = self.scheduler.function_snapshot(name)
            if function is None or function.workers == 0:
                self.run(self.commands.no_worker(request_id))
                return
        listener = ChatJob(self, request_id)
        try:
            self.scheduler.submit(
                name,
                action.payload,
                priority=action.priority,
                background=action.background,
                listener=listener,
            )
        except SchedulerError as error:
            self.run(self.commands.job_refused(request_id, str(error)))
            return
        self.stats.jobs += 1
        if action.timeout is not None and not action.background:
            listener.timer = self.reactor.callLater(action.timeout, self._timed_out, listener)

    def _timed_out(self, listener: ChatJob) -> None:
        listener.timer = None
        self.scheduler.detach(listener)  # a queued job nobody else waits for is dropped; a running one goes on
        self.run(self.commands.job_timeout(listener.request_id))

    def _status(self, action: QueryStatus) -> None:
        job = self.scheduler.job_snapshot(action.handle)
        if job is None:
            self.run(self.commands.status_result(action.request_id, False, False))
        else:
            self.run(self.commands.status_result(action.request_id, True, job.running, job.numerator, job.denominator))

    def _functions(self, action: ListFunctions) -> None:
        grant = self.context.access.identity_for_jid(action.sender)
        rows = [
            FunctionCounts(name, sum(function.queued), function.running, function.workers)
            for function in self.scheduler.function_snapshots()
            if (name := grant.outside(function.name)) is not None
        ]
        self.run(self.commands.functions_result(action.request_id, rows))
