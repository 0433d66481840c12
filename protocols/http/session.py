"""One HTTP connection, sans-IO: an h11 ``Connection`` plus the job each request waits for.

Bytes come in through ``receive_data``; bytes go out through the ``Transport`` the owner hands in (the
Twisted adapter in ``frontend.py``, a list in the unit tests). Time comes from the reactor in
``context.reactor`` (``twisted.internet.task.Clock`` in tests). Nothing here reads a socket.

Requests on a keep-alive connection are answered one at a time, in order: h11 holds pipelined requests
back (``PAUSED``) until the current response is complete. Every buffer is bounded: request heads by
``MAX_HEAD_SIZE``, bodies by ``http_max_body_size`` (413), unread pipelined bytes by ``MAX_PIPELINED``
(the socket stops being read), non-streamed results by ``max_output_buffer`` (502).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

import h11

from gearman_gateway.scheduler import ArgumentTooLarge, Job, JobListener, SchedulerError
from gearman_gateway.security import PERMISSION_DENIED, Denied, Grant
from protocols.deadlines import Deadlines, deadlines
from protocols.http import mapping, plain
from protocols.http.api import bearer_token, forbidden, unauthorized
from protocols.http.mapping import Answer, ApiRequest, JobRequest, Later

if TYPE_CHECKING:
    from protocols import FrontendContext
    from protocols.http.api import HttpApi
    from protocols.http.options import HttpOptions

log = logging.getLogger("gearman_gateway.http")

#: Largest request line plus headers. h11's own default; browsers and curl stay far below it.
MAX_HEAD_SIZE = plain.MAX_HEAD_SIZE
#: Unparsed bytes kept while a response is pending (pipelined requests); beyond it we stop reading the
#: socket until the response is done, so a client cannot make us buffer without bound.
MAX_PIPELINED = 256 * 1024


class Transport(Protocol):
    """What a session needs from the connection it runs on."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...  # after what was written has gone out
    def write_last(self, data: bytes) -> None: ...  # write, then close
    def abort(self) -> None: ...  # at once: the response cannot be finished correctly
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class HttpSession:
    """Plain requests (``plain.py``: one whole request in one read, the usual case) take the fast path: parsed
    and answered without h11, whose ``Connection`` is made only for the first request that needs it."""

    #: False: every request through h11 (the tests compare both paths' bytes).
    fast_path = True

    # The exchange's state, at its starting values here (a new connection per request is the usual case
    # of gearmand's users: a connection sets only what it changes).
    conn: h11.Connection | None = None  # made for the first request that is not plain
    _plain: bool | None = None  # the current exchange is plain: whether it keeps the connection
    closed = False
    _route: mapping.Routed | None = None  # the request being read
    _method = b""
    _version = b"1.1"
    _headers: Any = ()
    _body: Any = ()  # a list while h11 reads a body
    _body_size = 0
    waiting: HttpJob | None = None  # the job whose outcome the current response waits for
    _busy = False  # a request is complete and its response not yet finished
    _processing = False
    _reading_paused = False

    def __init__(self, context: FrontendContext, api: HttpApi, transport: Transport) -> None:
        self.context = context
        self.settings = context.settings
        self.options: HttpOptions = context.options
        self.scheduler = context.scheduler
        self.clock: Any = context.reactor
        self.api = api
        self.transport = transport
        timeout = self.options.keepalive_timeout
        self._idle_deadlines: Deadlines | None = deadlines(self.clock, timeout) if timeout else None
        self._arm_idle()

    # -- input

    def receive_data(self, data: bytes) -> None:
        if self.closed:
            return
        conn = self.conn
        if not self._busy and self.fast_path and (conn is None or _h11_idle(conn)):
            request = plain.parse(data)
            if request is not None and self._plain_request(request):
                return
        if conn is None:
            conn = self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
        try:
            conn.receive_data(data)
        except RuntimeError:  # data after the peer's EOF: nothing to do with it
            return
        if not self._busy:
            self._arm_idle()
            self._process()
        if self._busy and not self._reading_paused and len(conn.trailing_data[0]) > MAX_PIPELINED:
            self._reading_paused = True
            self.transport.pause_reading()

    def connection_lost(self) -> None:
        """The peer went away: a job nobody else waits for is dropped (if no worker has it yet)."""
        if not self.closed:  # else the idle timer went when it closed
            self.closed = True
            self._cancel_idle()
        listener = self.waiting
        if listener is not None:
            self.waiting = None
            listener.cancel_timer()
            self.scheduler.detach(listener)

    def _plain_request(self, request: plain.PlainRequest) -> bool:
        """Handle a plain request; False to leave it to h11 (a streamed response, or a body over the
        limit: h11's path answers those)."""
        routed = mapping.route(request.method, request.target, request.http_version, request.headers, self.api.prefix)
        body = request.body
        if len(body) > self.options.max_body_size:
            return False
        if type(routed) is JobRequest:
            if routed.stream:
                return False
            if not routed.with_body:
                body = b""
        self._method = request.method
        self._version = request.http_version
        self._headers = request.headers
        self._plain = request.keep_alive
        self._busy = True
        self._answer(routed, body)
        return True

    def _process(self) -> None:
        """Handle every complete event h11 has, until a response is pending or more bytes are needed."""
        conn = self.conn
        if self._processing or conn is None:
            return
        self._processing = True
        try:
            while not self.closed and not self._busy:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as problem:
                    self._bad_request(problem)
                    return
                kind = type(event)
                if kind is h11.Data:
                    self._request_body(event.data)  # type: ignore[union-attr]
                elif kind is h11.Request:
                    self._request_head(event)  # type: ignore[arg-type]
                elif kind is h11.EndOfMessage:
                    self._request_complete()
                elif kind is h11.ConnectionClosed:
                    self._close()
                else:  # NEED_DATA, PAUSED
                    return
        finally:
            self._processing = False

    def _request_head(self, request: h11.Request) -> None:
        self._method = request.method
        self._version = request.http_version
        self._headers = request.headers
        self._body = []
        self._body_size = 0
        self._route = mapping.route(
            request.method, request.target, request.http_version, request.headers, self.api.prefix
        )
        length = _content_length(request.headers)
        if length is not None and length > self.options.max_body_size:
            self._too_large()
            return
        if self.conn.they_are_waiting_for_100_continue:
            self._send(h11.InformationalResponse(status_code=100, headers=[]))

    def _request_body(self, data: bytes) -> None:
        self._body_size += len(data)
        if self._body_size > self.options.max_body_size:
            self._too_large()
            return
        if type(self._route) is JobRequest and self._route.with_body:
            self._body.append(bytes(data))

    def _request_complete(self) -> None:
        self._busy = True
        routed, self._route = self._route, None
        body = b"".join(self._body) if len(self._body) != 1 else self._body[0]
        self._body = []
        assert routed is not None
        self._answer(routed, body)

    def _answer(self, routed: mapping.Routed, body: bytes) -> None:
        if type(routed) is JobRequest:
            self._submit(routed, body)
        elif type(routed) is ApiRequest:
            answer = self.api.handle(self._method, routed, self._headers, self.peer, self.identity)
            if type(answer) is Later:
                answer.then(self._respond_later)
            else:
                self.respond(answer)
        else:
            assert type(routed) is Answer
            self.respond(routed)

    def _bad_request(self, problem: h11.RemoteProtocolError) -> None:
        text = mapping.problem_text(str(problem))
        log.info("bad HTTP request: %s", text)
        if self.conn.our_state is h11.IDLE:  # a request h11 could not read has no method of its own: the
            self._method = b""  # previous one's would be wrong (after a HEAD, h11 wants this 400's body)
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            status = problem.error_status_hint
            self._busy = True
            self.respond(mapping.error(status, text, [(b"Connection", b"close")]))
        self._close()

    def _too_large(self) -> None:
        limit = self.options.max_body_size
        self._busy = True
        self._route = None
        self._body = []
        answer = mapping.error(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {limit} bytes", [(b"Connection", b"close")]
        )
        self.respond(answer)
        self._close()

    # -- jobs

    #: The connection's identity when its TLS client certificate names one (``take_identity``); a bearer
    #: token in a request wins over it; None: anonymous.
    identity: Grant | None = None

    def take_identity(self, grant: Grant) -> None:
        self.identity = grant

    @property
    def peer(self) -> str:
        return getattr(self.transport, "peer", "?")

    def _scheduler_name(self, request: JobRequest) -> bytes | None:
        """The scheduler's name for the request's function, as its caller's identity (a bearer token, or
        anonymous) may submit it; None when refused (answered: 401 for an unknown token, 403 for a refused
        function, 503 for a tenant's full queue)."""
        access = self.context.access
        offered = bearer_token(self._headers)
        grant = self.identity or access.anonymous
        if offered:
            found = access.identity_for_token(offered)
            if found is None:
                access.auth_failed("http", self.peer)
                self.respond(unauthorized("unknown token"))
                return None
            grant = found
        try:
            return access.submit(grant, request.function, "http", self.peer)
        except Denied as refusal:
            if refusal.code == PERMISSION_DENIED:
                self.respond(forbidden(refusal.text))
            else:
                self.respond(mapping.error(HTTPStatus.SERVICE_UNAVAILABLE, f"{refusal.code.decode()} {refusal.text}"))
            return None

    def _submit(self, request: JobRequest, workload: bytes) -> None:
        function = self._scheduler_name(request)
        if function is None:
            return
        listener = self.waiting = HttpJob(self, request)
        try:
            self.scheduler.submit(
                function, workload, request.unique, request.priority, request.background, 0, None, listener
            )
        except SchedulerError as problem:
            self.refuse(listener, problem)

    def refuse(self, listener: HttpJob, problem: SchedulerError) -> None:
        """The scheduler (or the durable store, later) would not take the job: 400 for a unique that is too
        long, 503 for a full queue or an unavailable store; the body is gearmand's error code and text."""
        if listener is not self.waiting:
            return
        status = HTTPStatus.BAD_REQUEST if isinstance(problem, ArgumentTooLarge) else HTTPStatus.SERVICE_UNAVAILABLE
        self.respond(mapping.error(status, f"{problem.code} {problem.text}", [(b"X-Gearman-Command", b"ERROR")]))

    def job_timed_out(self, listener: HttpJob) -> None:
        """No worker took the job in time: 504, and the job is dropped unless someone else waits for it."""
        if listener is not self.waiting:
            return
        self.waiting = None
        self.scheduler.detach(listener)
        if listener.streaming:  # the stream is under way; cutting it short is the only honest ending
            log.info("closing a streamed response: its job was requeued and no worker took it again")
            self.closed = True
            self.transport.abort()
            return
        timeout = self.options.request_timeout
        headers = [(b"X-Gearman-Job-Handle", listener.handle)]
        self.respond(mapping.error(HTTPStatus.GATEWAY_TIMEOUT, f"no worker took the job within {timeout:g} s", headers))

    # -- output

    def _respond_later(self, answer: Answer) -> None:
        if not self.closed:
            self.respond(answer)

    def respond(self, answer: Answer) -> None:
        """Send a whole response and finish the exchange."""
        headers = answer.headers
        names = {name for name, _ in headers}
        if b"Content-Length" not in names:
            headers = [*headers, (b"Content-Length", b"%d" % len(answer.body))]
        if b"Server" not in names:
            headers.append((b"Server", mapping.SERVER))
        self.api.stats.count(answer.status)
        if self._plain is not None:
            self._respond_plain(answer.status, headers, answer.body if self._method != b"HEAD" else b"")
            return
        events: list[Any] = [
            h11.Response(status_code=answer.status, headers=headers, reason=mapping.reason(answer.status))
        ]
        if answer.body and self._method != b"HEAD":
            events.append(h11.Data(data=answer.body))
        events.append(h11.EndOfMessage())
        self._send(*events)
        self._finish()

    def start_stream(self, headers: mapping.Headers) -> None:
        self.api.stats.count(HTTPStatus.OK)
        self._send(h11.Response(status_code=200, headers=headers, reason=b"OK"))

    def stream_data(self, data: bytes) -> None:
        if data:
            self._send(h11.Data(data=data))

    def end_stream(self, data: bytes, trailers: mapping.Headers) -> None:
        events: list[Any] = []
        if data:
            events.append(h11.Data(data=data))
        events.append(h11.EndOfMessage(headers=trailers if self.chunked else []))
        self._send(*events)
        self._finish()

    @property
    def chunked(self) -> bool:
        return self._version == b"1.1"

    def respond_job(self, handle: bytes, command: bytes, data: bytes) -> None:
        """A job's outcome (or a background job's JOB_CREATED) as gearmand answers it: 200, the job's
        headers and its data. On the fast path without the general ``respond``'s header lists."""
        keep_alive = self._plain
        if keep_alive is None:
            self.respond(Answer(200, mapping.job_headers(handle, command, len(data)), data))
            return
        self.api.stats.count(200)
        body = data if self._method != b"HEAD" else b""
        self._plain_sent(plain.job_response(handle, command, body, len(data), keep_alive, mapping.SERVER), keep_alive)

    def _respond_plain(self, status: int, headers: mapping.Headers, body: bytes) -> None:
        data, close = plain.response(status, mapping.reason(status), headers, body, bool(self._plain))
        self._plain_sent(data, not close)

    def _plain_sent(self, data: bytes, keep_alive: bool) -> None:
        """A plain exchange's response ``data`` is complete: out, and the next exchange or the close."""
        self._plain = None
        self.waiting = None
        self._busy = False
        if self.closed:
            return
        if not keep_alive:  # out and closed in this turn
            self.closed = True
            self._cancel_idle()
            self.transport.write_last(data)
            return
        self.transport.write(data)
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
        self._arm_idle()
        conn = self.conn
        if conn is not None and conn.trailing_data[0] and not self._processing:
            self.clock.callLater(0, self._process)  # what came while the response was pending (see _finish)

    def _send(self, *events: Any) -> None:
        if self.closed:
            return
        conn = self.conn
        assert conn is not None
        out = []
        for event in events:
            data = conn.send(event)
            if data:
                out.append(data)
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def _finish(self) -> None:
        """The response is complete: start the next cycle, or close when HTTP says so."""
        self.waiting = None
        self._busy = False
        if self.closed:
            return
        conn = self.conn
        assert conn is not None
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            if self._reading_paused:
                self._reading_paused = False
                self.transport.resume_reading()
            self._arm_idle()
            if conn.trailing_data[0] and not self._processing:
                # never parse the next request inside a scheduler callback (a coalesced submit could join
                # the job that is finishing right now): wait for the reactor's next turn
                self.clock.callLater(0, self._process)
        else:  # HTTP/1.0, Connection: close, or an error answered before the request's end
            self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._cancel_idle()
            self.transport.close()

    # -- idle keep-alive connections

    def _arm_idle(self) -> None:
        if self._idle_deadlines is not None:
            self._idle_deadlines.arm(self, self._idle)

    def _cancel_idle(self) -> None:
        if self._idle_deadlines is not None:
            self._idle_deadlines.cancel(self)

    def _idle(self) -> None:
        """Nothing came for a whole period. While a response is pending this is not idleness: the
        timer is armed again when the response is done."""
        if not self._busy:
            log.debug("closing an idle HTTP connection")
            self._close()


def _h11_idle(conn: h11.Connection) -> bool:
    """h11 is between requests with nothing buffered: a plain request may skip it."""
    return conn.their_state is h11.IDLE and conn.our_state is h11.IDLE and not conn.trailing_data[0]


def _content_length(headers: Any) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is a number
    return None


class HttpJob(JobListener):
    """The ``JobListener`` of one request: turns the job's events into the response."""

    __slots__ = ("session", "request", "handle", "parts", "size", "streaming", "timer", "formatter")

    def __init__(self, session: HttpSession, request: JobRequest) -> None:
        self.session = session
        self.request = request
        self.handle = b""
        self.parts: list[bytes] = []
        self.size = 0
        self.streaming = False  # the response's head is sent; its body follows the job's events
        self.timer: Deadlines | None = None  # where its request timeout is armed, while it is
        self.formatter = mapping.FORMATTERS.get(request.stream)

    def job_created(self, job: Job) -> None:
        self.handle = job.handle
        if self.request.background:
            if self.session.waiting is self:
                self.session.respond_job(job.handle, b"JOB_CREATED", b"")
            return
        self._arm_timer()

    def job_rejected(self, job: Job, problem: SchedulerError) -> None:
        """A durable store refused the job after all: answered like a refused submit."""
        self.cancel_timer()
        self.session.refuse(self, problem)

    # -- the request timeout: only while no worker holds the job

    def job_started(self, job: Job) -> None:
        """A worker runs the job: it is waited for however long it takes."""
        self.cancel_timer()

    def job_requeued(self, job: Job) -> None:
        """Its worker let go of it (died, timed out): it waits for a worker again, a whole period at most."""
        self.cancel_timer()
        self._arm_timer()

    def _arm_timer(self) -> None:
        timeout = self.session.options.request_timeout
        if timeout:
            self.timer = deadlines(self.session.clock, timeout)
            self.timer.arm(self, self._timed_out)

    def _timed_out(self) -> None:
        self.timer = None
        self.session.job_timed_out(self)

    def cancel_timer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel(self)

    # -- the job's events

    def _start_stream(self) -> None:
        self.streaming = True
        formatter = self.formatter
        assert formatter is not None
        headers = [(b"X-Gearman-Job-Handle", self.handle)]
        if formatter.content_type is not None:
            headers += [(b"Content-Type", formatter.content_type), (b"Cache-Control", b"no-cache")]
        if formatter.trailers and self.session.chunked:
            headers.append((b"Trailer", b"X-Gearman-Command"))
        headers.append((b"Server", mapping.SERVER))
        self.session.start_stream(headers)

    def job_data(self, job: Job, data: bytes) -> None:
        if self.formatter is not None:
            if not self.streaming:
                self._start_stream()
            self.session.stream_data(self.formatter.data(data))
            return
        self.size += len(data)
        if self.size > self.session.settings.max_output_buffer:
            self._result_too_large()
            return
        self.parts.append(data)

    def job_warning(self, job: Job, data: bytes) -> None:
        """Not part of the result: only an event stream shows warnings (gearmand 1.1.20 sent the first
        warning as the whole response and dropped the result)."""
        if self.formatter is not None:
            if not self.streaming:
                self._start_stream()
            self.session.stream_data(self.formatter.warning(data))

    def job_status(self, job: Job, numerator: int, denominator: int) -> None:
        """Progress: streamed when asked for; otherwise ignored (gearmand 1.1.20 ended the response)."""
        if self.formatter is not None:
            if not self.streaming:
                self._start_stream()
            self.session.stream_data(self.formatter.status(numerator, denominator))

    def job_complete(self, job: Job, data: bytes) -> None:
        if self.parts:
            data = b"".join([*self.parts, data])
            self.parts = []
        self._end(b"WORK_COMPLETE", data)

    def job_fail(self, job: Job) -> None:
        self._end(b"WORK_FAIL", b"")

    def job_exception(self, job: Job, data: bytes) -> None:
        """Clients without the exceptions option get WORK_FAIL (gearmand: HTTP connections never have it,
        unless ``--exceptions`` turns it on for everyone)."""
        if self.session.settings.exceptions:
            self._end(b"WORK_EXCEPTION", data)
        else:
            self._end(b"WORK_FAIL", b"")

    def _end(self, command: bytes, data: bytes) -> None:
        self.cancel_timer()
        session = self.session
        if session.waiting is not self:
            return
        if self.formatter is None:
            session.respond_job(self.handle, command, data)
            return
        if not self.streaming:
            self._start_stream()
        trailers = [(b"X-Gearman-Command", command)] if self.formatter.trailers else []
        session.end_stream(self.formatter.end(command, data), trailers)

    def _result_too_large(self) -> None:
        self.parts = []
        session = self.session
        session.scheduler.detach(self)
        self.cancel_timer()
        limit = session.settings.max_output_buffer
        session.respond(mapping.error(HTTPStatus.BAD_GATEWAY, f"the job's result is over {limit} bytes"))
