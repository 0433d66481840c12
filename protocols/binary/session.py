"""One connection of the binary protocol (and the admin lines sharing its port), sans-IO.

``BinarySession.receive_data`` takes the bytes a peer sent; every complete packet goes to the handler
named after it (``SUBMIT_JOB_BG`` -> ``_submit_job_bg``), which calls the scheduler. The session is itself
the connection's ``JobListener`` (client side) and ``Waker`` (worker side), and its replies go out through
``BatchedOutput`` (``protocols/output.py``): queued during the reactor's turn, written once at its end.

Replies keep the order of the requests they answer, even when one comes later than those after it (an
acknowledgement after the durable store's commit, the answer to a grab the scheduler held until the end
of the turn): such a reply has its place kept in the output (``_Slot``), and what follows waits behind it
until it is filled.

What the host provides (``protocols/binary/frontend.py`` on Twisted, a few lines in the unit tests): the
``BatchedOutput.write_pieces`` of its transport, ``close``, ``pause_reading``/``resume_reading`` (held
output beyond ``HELD_OUTPUT_LIMIT`` stops reading requests), ``set_read_size`` (a large packet is read in
larger pieces), and the attributes ``peer`` (text, for logs) and ``peer_is_local`` plus ``context``
(``protocols.FrontendContext``: its admin runs the admin lines).
"""

from __future__ import annotations

import logging
import types
from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple

from gearman_gateway.scheduler import HELD, MAX_HANDLE_SIZE, Job, JobListener, Priority, SchedulerError, Worker
from gearman_gateway.security import Denied, Grant
from protocols.binary.codec import (
    FATAL,
    NO_JOB,
    NOOP,
    TEXT,
    WRONG_MAGIC,
    Decoder,
    encode,
    error_packet,
    pack_header,
    payload_pieces,
    split_admin_words,
)
from protocols.binary.packets import MAX_TYPE, RES, Packet
from protocols.output import BatchedOutput, WriteBatch

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from gearman_gateway.scheduler import Scheduler
    from protocols import FrontendContext

log = logging.getLogger("gearman_gateway.binary")

#: SET_CLIENT_ID keeps at most this many bytes, as gearmand does.
MAX_CLIENT_ID = 127
#: Output held behind late replies (store acknowledgements, held grabs) beyond which the connection's
#: requests are not read until they come.
HELD_OUTPUT_LIMIT = 1 << 20
#: What one read asks for (Twisted's default), and at most while the rest of a large packet is awaited.
READ_SIZE = 65536
LARGE_READ = 1 << 20

_HANDLE_TOO_LARGE = error_packet(
    b"ARGUMENT_TOO_LARGE", b"Error occurred due to GEARMAND_JOB_HANDLE_SIZE being too small from snprintf"
)
_NOT_EXPECTED = error_packet(b"INVALID_COMMAND", b"Command not expected")
_WRONG_MAGIC = error_packet(b"INVALID_MAGIC", b"Request magic expected")
_UNKNOWN_OPTION = error_packet(b"UNKNOWN_OPTION", b"Server does not recognize given option")
#: The option (``OPTION_REQ auth=<token>``) and admin line (``auth <token>``) that present a token.
AUTH_OPTION = b"auth="
AUTH_COMMAND = b"auth"
_AUTH_TOO_LATE = "a token must come before the connection registers functions (CAN_DO)"

#: Packet type -> handler, of ``BinarySession`` and of ``GuardedSession`` (filled in once they are defined).
_HANDLERS: list[Callable[[BinarySession, list[bytes]], None]] = []
_GUARDED_HANDLERS: list[Callable[[BinarySession, list[bytes]], None]] = []
_TENANT_HANDLERS: list[Callable[[BinarySession, list[bytes]], None]] = []

#: ``BinarySession._submitting`` within a submit, and once that submit was acknowledged within it.
_SUBMITTING = 1
_ACKED_NOW = 2

#: Hot-path packet numbers and priority as plain ints (an IntEnum costs a lookup and a conversion per use).
_JOB_CREATED = int(Packet.JOB_CREATED)
_JOB_ASSIGN = int(Packet.JOB_ASSIGN)
_JOB_ASSIGN_UNIQ = int(Packet.JOB_ASSIGN_UNIQ)
_WORK_COMPLETE = int(Packet.WORK_COMPLETE)
_NORMAL = int(Priority.NORMAL)


def atoi(text: bytes) -> int:
    """C's atoi: optional sign and leading digits, anything else ignored; unparsable is 0."""
    text = text.strip()
    end = 1 if text[:1] in (b"-", b"+") else 0
    while end < len(text) and 48 <= text[end] <= 57:
        end += 1
    try:
        return int(text[:end])
    except ValueError:
        return 0


def _error(error: SchedulerError) -> bytes:
    return error_packet(error.code, error.text)


class _Slot:
    """The place of a reply that comes later: an acknowledgement after the store's commit, or the answer
    to a grab the scheduler held until the end of the turn. Output after it waits behind it."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: Sequence[bytes] | None = None


class _GrabSlot(_Slot):
    """The place of a held grab's answer, and which assignment packet the grab asked for."""

    __slots__ = ("kind",)

    def __init__(self, kind: int) -> None:
        super().__init__()
        self.kind = kind


class BinarySession(BatchedOutput, JobListener):
    """A client, a worker, an admin session, or all three: gearmand allows any mix on one socket.

    One object per connection, kept small (an idle worker's is most of what the server holds per idle
    connection): its state is in ``__slots__``, what only some connections need is made on demand."""

    __slots__ = (
        "scheduler",
        "decoder",
        "worker",
        "client_id",
        "exceptions",
        "_held",
        "_held_bytes",
        "_held_paused",
        "_deferred",
        "_submitting",
        "_large_reads",
        "_grab_slot",
        "grant",
    )

    # provided by the host (see the module's docstring)
    peer: str
    peer_is_local: bool
    context: FrontendContext

    def __init__(
        self, batch: WriteBatch, scheduler: Scheduler, decoder: Decoder, exceptions: bool, grant: Grant | None = None
    ) -> None:
        """``decoder``: the session's own, or one shared by sessions while they send whole packets (its
        ``shared`` set): a session that leaves part of a packet behind then takes a decoder of its own.
        ``grant``: what the connection may do (``gearman_gateway.security``); None: everything, unchecked
        (the anonymous identity of a server without a policy). A session with a grant is a ``GuardedSession``."""
        BatchedOutput.__init__(self, batch)
        self.scheduler = scheduler
        self.decoder = decoder
        self.worker: Worker | None = None
        self.client_id = b"-"
        self.exceptions = exceptions  # WORK_EXCEPTION is passed on (OPTION_REQ exceptions, or --exceptions)
        self._held: list[bytes | _Slot] | None = None  # output waiting behind a late reply (made on demand)
        self._held_bytes = 0
        self._held_paused = False
        self._deferred: dict[Job, deque[_Slot]] | None = None  # per job, its late acknowledgements, oldest first
        self._submitting = 0  # _SUBMITTING within a submit, _ACKED_NOW once it was acknowledged within it
        self._large_reads = False  # reads were made larger for a large packet
        self._grab_slot: _GrabSlot | None = None  # the place of a held grab's answer
        self.grant = grant

    # -- the host's side

    def close(self) -> None:
        """Write out what is queued, then close the connection."""
        raise NotImplementedError

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        """Reading may go on, as far as the session is concerned (``wants_reading``)."""
        raise NotImplementedError

    def set_read_size(self, size: int) -> None:
        """How many bytes to ask for in one read (a large packet is read in larger pieces)."""
        raise NotImplementedError

    def wants_reading(self) -> bool:
        """Whether the session lets requests be read (not while too much output waits behind a late reply)."""
        return not self._held_paused

    # -- lifecycle

    def connection_lost(self) -> None:
        """The connection is gone: nothing more is written, the worker's jobs go back to their queues, the
        jobs only this connection waited for are dropped."""
        self.close_output()
        if self.worker is not None:
            self.scheduler.remove_worker(self.worker)
            self.worker = None
        self.scheduler.detach(self)
        if self.grant is not None:
            self.context.access.detach(self.grant)

    def drop_worker(self) -> None:
        """No more jobs for a connection that is closing: its held grab hears NO_JOB (in its place, before
        anything sent later), its running jobs go back to their queues."""
        worker, self.worker = self.worker, None
        if worker is not None:
            self.scheduler.end_hold(worker)
            self.scheduler.remove_worker(worker)

    def registered_functions(self) -> Sequence[bytes]:
        """What admin `workers` lists: its registrations, newest first."""
        worker = self.worker
        return () if worker is None else self.scheduler.worker_snapshot(worker).functions

    # -- input

    def receive_data(
        self, data: bytes, handlers: list[Callable[[BinarySession, list[bytes]], None]] = _HANDLERS
    ) -> None:
        """Handle every complete packet and admin line in ``data`` (and what earlier reads left over), each
        by its handler in ``handlers`` (a ``GuardedSession`` passes its own)."""
        decoder = self.decoder
        events = decoder.receive_data(data)
        if decoder.shared and decoder.pending:
            # part of a packet (or the stream's death) was left behind: it stays with this connection, and
            # the shared decoder is as new for the next one (nothing else reads in between)
            decoder = self.decoder = decoder.detach()
        for ptype, args in events:
            if ptype >= 0:
                handlers[ptype](self, args)
            elif ptype == WRONG_MAGIC:
                self.send(_WRONG_MAGIC)
            elif ptype == FATAL:
                self._fatal(args[0], args[1])
                break
        if decoder.wanted:  # the rest of a large packet: read it in fewer, larger pieces
            self.set_read_size(min(decoder.wanted, LARGE_READ))
            self._large_reads = True
        elif self._large_reads:
            self.set_read_size(READ_SIZE)
            self._large_reads = False

    def _fatal(self, code: bytes, text: bytes) -> None:
        log.info("closing connection from %s: %s %s", self.peer, code.decode(), text.decode(errors="replace"))
        self.drop_worker()
        if code == b"LINE_TOO_LONG":  # the peer speaks text: answer in text
            self.queue(b"ERR LINE_TOO_LONG " + text.replace(b" ", b"+") + b"\r\n")
        else:
            self.queue(error_packet(code, text))  # not held behind acknowledgements: we are closing
        self.close()

    def _admin(self, args: list[bytes]) -> None:
        words = split_admin_words(args[0])
        if words and words[0].lower() == AUTH_COMMAND:
            refusal = self.authenticate(words[1] if len(words) == 2 else b"")
            if refusal is None:
                self.send(b"OK %s\n" % self.grant.name.encode())  # type: ignore[union-attr]
            else:
                self.send(b"ERR %s %s\r\n" % (refusal.code, refusal.text.replace(" ", "+").encode()))
            return
        self.send(self.context.admin.execute(words, self.peer_is_local, self.grant, "binary", self.peer))

    def authenticate(self, token: bytes) -> Denied | None:
        """The identity of ``token`` for this connection, before it registers any function (its
        registrations would be under the old identity's names); a refusal leaves the identity as it was."""
        if self.worker is not None:
            return Denied(b"INVALID_COMMAND", _AUTH_TOO_LATE)
        try:
            self._become(self.context.access.authenticate(self.grant, token, "binary", self.peer))
        except Denied as refusal:
            return refusal
        return None

    def take_identity(self, grant: Grant) -> Denied | None:
        """Become ``grant`` (a client certificate's identity, found by ``Access.identity_for_certificate``
        when the TLS handshake completes); a refusal (a cap reached) leaves the identity as it was."""
        try:
            self._become(self.context.access.switch(self.grant, grant, "binary", self.peer))
        except Denied as refusal:
            return refusal
        return None

    def _become(self, grant: Grant) -> None:
        """From now on, every request is checked against ``grant``: the session becomes its class's
        ``guarded`` counterpart (same slots; ``tenanted`` for a tenant's identity), so that unchecked
        sessions pay nothing for the checks."""
        self.grant = grant
        self.__class__ = type(self).tenanted if grant.prefix else type(self).guarded

    #: What a session with a grant becomes (``GuardedSession``, ``TenantSession``; a host's subclass names
    #: its own).
    guarded: type[BinarySession]
    tenanted: type[BinarySession]

    def _denied(self, refusal: Denied) -> None:
        self.send(error_packet(refusal.code, refusal.text.encode()))

    def _not_expected(self, args: list[bytes]) -> None:
        self.send(_NOT_EXPECTED)

    # -- output: in request order, bounded when late replies hold it back

    def send(self, data: bytes) -> None:
        """A reply, after every reply queued or placed before it."""
        if self._held:
            self._hold(data)
            return
        out = self._out  # BatchedOutput.queue, inlined: this runs for nearly every reply
        if not out:
            if out is None:
                return  # the connection is gone
            out = self._out = []
            self._batch.mark(self)
        self.urgent = True
        out.append(data)

    def send_pieces(self, pieces: Sequence[bytes]) -> None:
        """A reply as ``payload_pieces`` gives it (one joined packet, or a header and a large payload)."""
        if self._held:
            for piece in pieces:
                self._hold(piece)
            return
        out = self._out  # as in send
        if not out:
            if out is None:
                return
            out = self._out = []
            self._batch.mark(self)
        self.urgent = True
        out += pieces

    def _hold(self, data: bytes) -> None:
        """Behind a late reply (a store acknowledgement, a held grab); bounded: beyond the limit, requests
        are not read until the late reply comes."""
        assert self._held is not None
        self._held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes > HELD_OUTPUT_LIMIT and not self._held_paused:
            self._held_paused = True
            self.pause_reading()

    def _keep_place(self, slot: _Slot | None = None) -> _Slot:
        """A place in the output for a reply that comes later; what is sent meanwhile waits behind it."""
        if slot is None:
            slot = _Slot()
        if self._held:
            self._held.append(slot)
        else:
            self._held = [slot]
        return slot

    def _fill(self, slot: _Slot, pieces: Sequence[bytes]) -> None:
        """A late reply takes its place; everything up to the next unfilled place goes out."""
        slot.data = pieces
        held = self._held
        assert held is not None  # the slot is in it
        index = 0
        while index < len(held):
            item = held[index]
            if isinstance(item, _Slot):
                if item.data is None:
                    break
                for piece in item.data:
                    self.queue(piece)
            else:
                self._held_bytes -= len(item)
                self.queue(item)
            index += 1
        del held[:index]
        if not held:
            self._held = None  # an idle worker's answered grab leaves nothing behind
            self._held_bytes = 0
        if self._held_paused and self._held_bytes <= HELD_OUTPUT_LIMIT:
            self._held_paused = False
            if self._out is not None:
                self.resume_reading()

    # -- client packets

    def _submit(
        self,
        function: bytes,
        unique: bytes,
        data: bytes,
        priority: int,
        background: bool,
        when: int = 0,
        reducer: bytes | None = None,
    ) -> None:
        self._submitting = _SUBMITTING
        try:
            job = self.scheduler.submit(function, data, unique, priority, background, when, reducer, self)
            if self._submitting != _ACKED_NOW:
                # acknowledged after the store commits: keep its place, so every reply and result
                # after it (this job's and others') still reaches the client in request order
                slot = self._keep_place()
                if self._deferred is None:
                    self._deferred = {}
                self._deferred.setdefault(job, deque()).append(slot)
        except SchedulerError as error:
            self.send(_error(error))
        finally:
            self._submitting = 0

    def _submit_job(self, args: list[bytes]) -> None:
        self._submit(args[0], args[1], args[2], _NORMAL, False)

    def _submit_job_bg(self, args: list[bytes]) -> None:
        self._submit(args[0], args[1], args[2], _NORMAL, True)

    def _submit_job_high(self, args: list[bytes]) -> None:
        self._submit(args[0], args[1], args[2], Priority.HIGH, False)

    def _submit_job_high_bg(self, args: list[bytes]) -> None:
        self._submit(args[0], args[1], args[2], Priority.HIGH, True)

    def _submit_job_low(self, args: list[bytes]) -> None:
        self._submit(args[0], args[1], args[2], Priority.LOW, False)

    def _submit_job_low_bg(self, args: list[bytes]) -> None:
        self._submit(args[0], args[1], args[2], Priority.LOW, True)

    def _submit_job_epoch(self, args: list[bytes]) -> None:
        when = atoi(args[2])
        if not 0 <= when < 2**63:
            self.send(error_packet(b"INVALID_ARGUMENT", b"Epoch time out of range"))
            return
        self._submit(args[0], args[1], args[3], Priority.NORMAL, True, when=when)

    def _submit_reduce_job(self, args: list[bytes]) -> None:
        self._submit(args[0], args[1], args[4], Priority.NORMAL, False, reducer=args[2])

    def _submit_reduce_job_background(self, args: list[bytes]) -> None:
        self._submit(args[0], args[1], args[4], Priority.NORMAL, True, reducer=args[2])

    def _get_status(self, args: list[bytes]) -> None:
        handle = args[0]
        if len(handle) > MAX_HANDLE_SIZE:
            self.send(_HANDLE_TOO_LARGE)
            return
        job = self.scheduler.job_snapshot(handle)
        if job is None:
            slot = _Slot()
            if self.scheduler.status_elsewhere(
                handle, lambda known, running: self._status_later(slot, handle, known, running)
            ):
                self._keep_place(slot)  # a job handed to the cluster: its row says (shared mode)
                return
            self.send(encode(Packet.STATUS_RES, handle, b"0", b"0", b"0", b"0"))
            return
        numbers = b"%d" % job.running, b"%d" % job.numerator, b"%d" % job.denominator
        self.send(encode(Packet.STATUS_RES, handle, b"1", *numbers))

    def _status_later(self, slot: _Slot, handle: bytes, known: bool, running: bool) -> None:
        """GET_STATUS of a job another gateway holds: known and running (held there), no progress figures."""
        self._fill(slot, [encode(Packet.STATUS_RES, handle, b"%d" % known, b"%d" % running, b"0", b"0")])

    def _get_status_unique(self, args: list[bytes]) -> None:
        unique = args[0]
        job = self.scheduler.job_snapshot_by_unique(unique)
        if job is None:
            self.send(encode(Packet.STATUS_RES_UNIQUE, unique, b"0", b"0", b"0", b"0", b"0"))
            return
        numbers = b"%d" % job.running, b"%d" % job.numerator, b"%d" % job.denominator, b"%d" % job.waiting_clients
        self.send(encode(Packet.STATUS_RES_UNIQUE, unique, b"1", *numbers))

    def _echo_req(self, args: list[bytes]) -> None:
        self.send(encode(Packet.ECHO_RES, args[0]))

    def _option_req(self, args: list[bytes]) -> None:
        if args[0].lower() == b"exceptions":
            self.exceptions = True
            self.send(encode(Packet.OPTION_RES, args[0]))
        elif args[0][:5].lower() == AUTH_OPTION:
            refusal = self.authenticate(args[0][5:])
            if refusal is None:
                # echoed as gearmand echoes options (gear's setOption checks it): to the peer that sent it
                self.send(encode(Packet.OPTION_RES, args[0]))
            else:
                self._denied(refusal)
        else:
            self.send(_UNKNOWN_OPTION)

    def _set_client_id(self, args: list[bytes]) -> None:
        self.client_id = args[0][:MAX_CLIENT_ID] or b"-"

    # -- JobListener: results for the jobs this connection submitted

    def job_created(self, job: Job) -> None:
        handle = job.handle
        packet = pack_header(RES, _JOB_CREATED, len(handle)) + handle  # encode(JOB_CREATED, handle), unrolled
        if self._submitting and not self._held:
            # answered within its own submit, the usual case (_acknowledge and queue, inlined)
            self._submitting = _ACKED_NOW
            out = self._out
            if not out:
                if out is None:
                    return
                out = self._out = []
                self._batch.mark(self)
            if job.background:
                self.urgent = True
            # else a foreground job's result follows: its acknowledgement may wait for it (WriteBatch)
            out.append(packet)
            return
        self._acknowledge(job, packet, urgent=job.background)

    def _acknowledge(self, job: Job, packet: bytes, urgent: bool = True) -> None:
        if self._submitting:
            self._submitting = _ACKED_NOW
            if self._held:
                self._hold(packet)
            else:
                self.queue(packet, urgent)
            return
        # a deferred acknowledgement fills the place its submit was given (the oldest one of this job's:
        # a submit that joined an earlier, still uncommitted job is answered when that job commits)
        slots = self._deferred.get(job) if self._deferred else None
        if not slots:
            return  # the connection was reset meanwhile
        slot = slots.popleft()
        if not slots:
            del self._deferred[job]  # type: ignore[union-attr]
        self._fill(slot, (packet,))

    def job_rejected(self, job: Job, error: SchedulerError) -> None:
        self._acknowledge(job, _error(error))

    def job_data(self, job: Job, data: bytes) -> None:
        self.send_pieces(payload_pieces(Packet.WORK_DATA, (job.handle, data)))

    def job_warning(self, job: Job, data: bytes) -> None:
        self.send_pieces(payload_pieces(Packet.WORK_WARNING, (job.handle, data)))

    def job_status(self, job: Job, numerator: int, denominator: int) -> None:
        self.send(encode(Packet.WORK_STATUS, job.handle, b"%d" % numerator, b"%d" % denominator))

    def job_complete(self, job: Job, data: bytes) -> None:
        self.send_pieces(payload_pieces(_WORK_COMPLETE, (job.handle, data)))

    def job_fail(self, job: Job) -> None:
        self.send(encode(Packet.WORK_FAIL, job.handle))

    def job_exception(self, job: Job, data: bytes) -> None:
        if self.exceptions:
            self.send_pieces(payload_pieces(Packet.WORK_EXCEPTION, (job.handle, data)))
        else:
            # gearmand appends a NUL to this handle, which hangs libgearman's own client; we do not
            self.send(encode(Packet.WORK_FAIL, job.handle))

    # -- Waker, and the worker packets

    def _worker(self) -> Worker:
        worker = self.worker
        if worker is None:
            worker = self.worker = self.scheduler.add_worker(self)
        return worker

    def wake(self) -> None:
        self.send(NOOP)

    def grabbed(self, job: Job | None) -> None:
        """The answer to the grab the scheduler held (see ``_grab_with``)."""
        slot, self._grab_slot = self._grab_slot, None
        if slot is None:  # never expected; but a job handed over must reach its worker
            slot = _GrabSlot(_JOB_ASSIGN)
            self._keep_place(slot)
        if job is None:
            self._fill(slot, (NO_JOB,))
        else:
            self._fill(slot, _assignment(slot.kind, job))

    def _can_do(self, args: list[bytes]) -> None:
        self.scheduler.can_do(self._worker(), args[0])

    def _can_do_timeout(self, args: list[bytes]) -> None:
        self.scheduler.can_do(self._worker(), args[0], atoi(args[1]))

    def _cant_do(self, args: list[bytes]) -> None:
        self.scheduler.cant_do(self._worker(), args[0])

    def _reset_abilities(self, args: list[bytes]) -> None:
        self.scheduler.reset_abilities(self._worker())

    def _pre_sleep(self, args: list[bytes]) -> None:
        self.scheduler.pre_sleep(self._worker())

    def _grab_with(self, args: list[bytes], kind: int = _JOB_ASSIGN) -> None:
        """GRAB_JOB and its variants. When nothing is queued the scheduler may hold the grab until the end
        of the reactor turn: a job submitted meanwhile goes straight to this worker. Its place in the
        output is kept, so replies to later requests still follow it."""
        job = self.scheduler.grab(self.worker or self._worker(), True)
        if job is None:
            self.send(NO_JOB)
        elif job is HELD:
            self._grab_slot = _GrabSlot(kind)
            self._keep_place(self._grab_slot)
        elif kind == _JOB_ASSIGN:  # _assignment's usual case, without the call
            self.send_pieces(payload_pieces(_JOB_ASSIGN, (job.handle, job.function.name, job.data)))  # type: ignore[union-attr]
        else:
            self.send_pieces(_assignment(kind, job))  # type: ignore[arg-type]

    _grab_job = _grab_with  # GRAB_JOB's handler, without a call in between

    def _grab_job_uniq(self, args: list[bytes]) -> None:
        self._grab_with(args, _JOB_ASSIGN_UNIQ)

    def _grab_job_all(self, args: list[bytes]) -> None:
        self._grab_with(args, Packet.JOB_ASSIGN_ALL)

    def _work_result(self, call: Callable[..., None], handle: bytes, *rest: object) -> None:
        if len(handle) > MAX_HANDLE_SIZE:
            self.send(_HANDLE_TOO_LARGE)
            return
        try:
            call(self.worker or self._worker(), handle, *rest)
        except SchedulerError as error:
            self.send(_error(error))

    def _work_data(self, args: list[bytes]) -> None:
        self._work_result(self.scheduler.work_data, args[0], args[1])

    def _work_warning(self, args: list[bytes]) -> None:
        self._work_result(self.scheduler.work_warning, args[0], args[1])

    def _work_status(self, args: list[bytes]) -> None:
        numerator = atoi(args[1]) & 0xFFFFFFFF
        denominator = atoi(args[2]) & 0xFFFFFFFF
        self._work_result(self.scheduler.work_status, args[0], numerator, denominator)

    def _work_complete(self, args: list[bytes]) -> None:
        handle = args[0]  # _work_result, unrolled for the most frequent result
        if len(handle) > MAX_HANDLE_SIZE:
            self.send(_HANDLE_TOO_LARGE)
            return
        try:
            self.scheduler.work_complete(self.worker or self._worker(), handle, args[1])
        except SchedulerError as error:
            self.send(_error(error))

    def _work_fail(self, args: list[bytes]) -> None:
        self._work_result(self.scheduler.work_fail, args[0])

    def _work_exception(self, args: list[bytes]) -> None:
        self._work_result(self.scheduler.work_exception, args[0], args[1])


class GuardedSession(BinarySession):
    """A session whose identity is checked (``gearman_gateway.security``): every submit, CAN_DO and admin
    command through ``Access``, and a tenant's function names prefixed on the way in and stripped on the
    way out. A separate class, so that a server without a policy runs ``BinarySession``'s job path as is."""

    __slots__ = ()
    grant: Grant

    def _submit(self, function: bytes, unique: bytes, data: bytes, priority: int, background: bool,
                when: int = 0, reducer: bytes | None = None) -> None:  # fmt: skip
        # BinarySession._submit's parameters, passed on one by one (*args and **kwargs cost ~3x the call)
        grant = self.grant
        if grant.tenant is not None or not grant.submit_memo.get(function):  # else allowed before: as is
            try:
                function = self.context.access.submit(grant, function, "binary", self.peer)
            except Denied as refusal:
                self._denied(refusal)
                return
            if reducer is not None:
                reducer = grant.inside(reducer)
        BinarySession._submit(self, function, unique, data, priority, background, when, reducer)

    def _can_do(self, args: list[bytes]) -> None:
        self._register(args[0], 0)

    def _can_do_timeout(self, args: list[bytes]) -> None:
        self._register(args[0], atoi(args[1]))

    def _register(self, function: bytes, timeout: int) -> None:
        """CAN_DO: a refused one is answered with an ERROR packet (gearmand never answers CAN_DO, so a
        refused worker would otherwise wait, unaware, for jobs that never come)."""
        try:
            function = self.context.access.register(self.grant, function, "binary", self.peer)
        except Denied as refusal:
            self._denied(refusal)
            return
        self.scheduler.can_do(self._worker(), function, timeout)

    def _cant_do(self, args: list[bytes]) -> None:
        self.scheduler.cant_do(self._worker(), self.grant.inside(args[0]))

    def _get_status(self, args: list[bytes]) -> None:
        handle = args[0]
        if len(handle) <= MAX_HANDLE_SIZE and self.scheduler.job_snapshot(handle) is None:
            # a job handed to the cluster is not asked after (its function, hence its tenant, is not known here)
            self.send(encode(Packet.STATUS_RES, handle, b"0", b"0", b"0", b"0"))
        elif self._own_handle(handle):
            BinarySession._get_status(self, args)
        else:  # another tenant's job: as unknown
            self.send(encode(Packet.STATUS_RES, handle, b"0", b"0", b"0", b"0"))

    def _get_status_unique(self, args: list[bytes]) -> None:
        job = self.scheduler.job_snapshot_by_unique(args[0])
        if job is not None and self.grant.outside(job.function) is None:
            self.send(encode(Packet.STATUS_RES_UNIQUE, args[0], b"0", b"0", b"0", b"0", b"0"))  # not its own
            return
        BinarySession._get_status_unique(self, args)

    def _own_handle(self, handle: bytes) -> bool:
        """Whether ``handle`` is not another tenant's job (unknown handles are anyone's: they say nothing)."""
        job = self.scheduler.job_snapshot(handle) if len(handle) <= MAX_HANDLE_SIZE else None
        return job is None or self.grant.outside(job.function) is not None


class TenantSession(GuardedSession):
    """A guarded session of a tenant's identity: its worker gets its function names unprefixed in every
    assignment (a class of its own, so that a guarded session without a tenant pays nothing for it)."""

    __slots__ = ()

    def grabbed(self, job: Job | None) -> None:
        BinarySession.grabbed(self, job if job is None else self._seen(job))

    def _grab_with(self, args: list[bytes], kind: int = _JOB_ASSIGN) -> None:
        job = self.scheduler.grab(self.worker or self._worker(), True)
        if job is None:
            self.send(NO_JOB)
        elif job is HELD:  # its answer comes through grabbed()
            self._grab_slot = _GrabSlot(kind)
            self._keep_place(self._grab_slot)
        else:
            self.send_pieces(_assignment(kind, self._seen(job)))  # type: ignore[arg-type]

    _grab_job = _grab_with

    def _seen(self, job: Job) -> Any:
        """The job as the worker names it (its function and reducer without the tenant's prefix)."""
        prefix = self.grant.prefix
        cut = len(prefix)
        reducer = job.reducer
        return _Assigned(job.handle, _Named(job.function.name[cut:]), job.unique, job.data,
                         reducer[cut:] if reducer is not None and reducer.startswith(prefix) else reducer)  # fmt: skip


class _Named(NamedTuple):
    name: bytes


class _Assigned(NamedTuple):
    """What ``_assignment`` reads of a job, with the names a tenant's worker knows."""

    handle: bytes
    function: _Named
    unique: bytes
    data: bytes
    reducer: bytes | None


def _assignment(kind: int, job: Job) -> tuple[bytes, ...]:
    """JOB_ASSIGN, JOB_ASSIGN_UNIQ or (for a reduce job) JOB_ASSIGN_ALL, as ``payload_pieces``."""
    if kind == _JOB_ASSIGN:
        return payload_pieces(_JOB_ASSIGN, (job.handle, job.function.name, job.data))
    if kind == _JOB_ASSIGN_UNIQ or job.reducer is None:
        return payload_pieces(_JOB_ASSIGN_UNIQ, (job.handle, job.function.name, job.unique, job.data))
    return payload_pieces(Packet.JOB_ASSIGN_ALL, (job.handle, job.function.name, job.unique, job.reducer, job.data))


def _handler_table(session: type[BinarySession]) -> list[Callable[[BinarySession, list[bytes]], None]]:
    """Packet type -> handler method, found by name (`SUBMIT_JOB_BG` -> `_submit_job_bg`)."""
    table = []
    for ptype in range(MAX_TYPE):
        if ptype == TEXT:
            table.append(session._admin)
            continue
        try:
            name = "_" + Packet(ptype).name.lower()
        except ValueError:
            name = ""
        table.append(getattr(session, name, session._not_expected))
    return table


_HANDLERS[:] = _handler_table(BinarySession)
_GUARDED_HANDLERS[:] = _handler_table(GuardedSession)
_TENANT_HANDLERS[:] = _handler_table(TenantSession)


def _reading_with(handlers: list[Callable[[BinarySession, list[bytes]], None]]) -> Any:
    """``BinarySession.receive_data`` itself, with another handler table as its default: no call in between
    (Twisted calls ``dataReceived(data)``)."""
    code = BinarySession.receive_data
    return types.FunctionType(code.__code__, code.__globals__, code.__name__, (handlers,), code.__closure__)


GuardedSession.receive_data = _reading_with(_GUARDED_HANDLERS)  # type: ignore[method-assign]
TenantSession.receive_data = _reading_with(_TENANT_HANDLERS)  # type: ignore[method-assign]

BinarySession.guarded = TenantSession.guarded = GuardedSession
BinarySession.tenanted = GuardedSession.tenanted = TenantSession
