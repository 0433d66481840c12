"""Twisted adapter for the binary protocol: one ``BinaryConnection`` per socket.

It feeds bytes to the sans-IO ``Decoder``, dispatches each event to a handler named after its packet,
and is itself the connection's ``JobListener`` (client side) and ``Waker`` (worker side). Replies produced
during a reactor turn, for this or any other connection, are gathered and written once per connection at
the end of the turn (a lone foreground acknowledgement may wait for its result: ``WriteBatch``). A reply
that comes later (an acknowledgement after the store's commit, the answer to a held grab) keeps its place
in the connection's output: what follows waits behind it (``_Slot``).
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory
from zope.interface import implementer

from gearman_gateway.scheduler import HELD, MAX_HANDLE_SIZE, Job, JobListener, Priority, SchedulerError, Worker
from gearman_gateway.turns import end_of_next_turn, end_of_turn
from protocols.binary.codec import (
    FATAL,
    NO_JOB,
    NOOP,
    TEXT,
    WRONG_MAGIC,
    Decoder,
    encode,
    error_packet,
    header,
)
from protocols.binary.codec import split_admin_words as _split_words
from protocols.binary.packets import MAX_TYPE, REQ, RES, Packet
from protocols.connection import FrontendConnection

if TYPE_CHECKING:
    from protocols import FrontendContext

log = logging.getLogger("gearman_gateway.binary")

_HANDLE_TOO_LARGE = error_packet(
    b"ARGUMENT_TOO_LARGE", b"Error occurred due to GEARMAND_JOB_HANDLE_SIZE being too small from snprintf"
)
_NOT_EXPECTED = error_packet(b"INVALID_COMMAND", b"Command not expected")
_WRONG_MAGIC = error_packet(b"INVALID_MAGIC", b"Request magic expected")
_UNKNOWN_OPTION = error_packet(b"UNKNOWN_OPTION", b"Server does not recognize given option")

#: SET_CLIENT_ID keeps at most this many bytes, as gearmand does.
MAX_CLIENT_ID = 127
#: Output held behind late replies (store acknowledgements, held grabs) beyond which the connection's
#: requests are not read until they come.
HELD_OUTPUT_LIMIT = 1 << 20
#: A result larger than this is written as header + body pieces instead of one joined copy.
_JOIN_LIMIT = 65536
#: What one read asks for (Twisted's default), and at most while the rest of a large packet is awaited.
READ_SIZE = 65536
LARGE_READ = 1 << 20
#: Reactor turns a connection's output may wait when it holds only foreground acknowledgements. A
#: JOB_CREATED sent alone costs a send (a third of a short fg job's system calls); two turns later the
#: job's WORK_COMPLETE is usually there too. The polls in between do not block, so the wait is a few
#: microseconds on an idle server and a couple of busy turns (~0.1 ms) under load.
ACK_WAIT_TURNS = 2

_NOTHING_OUT: tuple[()] = ()

#: ``BinaryConnection._submitting`` within a submit, and once that submit was acknowledged within it.
_SUBMITTING = 1
_ACKED_NOW = 2


#: Hot-path packet numbers and priority as plain ints (an IntEnum costs a lookup and a conversion per use).
_JOB_CREATED = int(Packet.JOB_CREATED)
_JOB_ASSIGN = int(Packet.JOB_ASSIGN)
_WORK_COMPLETE = int(Packet.WORK_COMPLETE)
_NORMAL = int(Priority.NORMAL)
_pack_header = struct.Struct(">4sII").pack


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


class _Slot:
    """The place of a reply that comes later: an acknowledgement after the store's commit, or the answer
    to a grab the scheduler held until the end of the turn. Output after it waits behind it."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: tuple[bytes, ...] | None = None


class _GrabSlot(_Slot):
    """The place of a held grab's answer, and which assignment packet the grab asked for."""

    __slots__ = ("kind",)

    def __init__(self, kind: int) -> None:
        super().__init__()
        self.kind = kind


class WriteBatch:
    """Replies for every connection, gathered during a reactor turn and written once per connection at
    its end. A connection whose output is only foreground acknowledgements (JOB_CREATED) waits up to
    ``ACK_WAIT_TURNS`` more turns: its job's result usually comes by then and leaves in the same write."""

    __slots__ = ("dirty", "_at_end_of_turn", "_at_end_of_next_turn")

    def __init__(self, reactor: object) -> None:
        self.dirty: list[BinaryConnection] = []
        self._at_end_of_turn = end_of_turn(reactor)
        self._at_end_of_next_turn = end_of_next_turn(reactor)

    def mark(self, connection: BinaryConnection) -> None:
        if not self.dirty:
            self._at_end_of_turn(self.flush)
        self.dirty.append(connection)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        for connection in dirty:
            if not connection._out:
                continue  # flushed meanwhile (closing)
            if not connection.urgent and connection.waited < ACK_WAIT_TURNS and connection.open:
                connection.waited += 1
                if not self.dirty:
                    self._at_end_of_next_turn(self.flush)
                self.dirty.append(connection)
                continue
            try:
                connection.flush()
            except Exception:  # one broken connection must not strand the others' replies
                log.exception("writing to %s failed", connection.peer)
                connection._out = _NOTHING_OUT


@implementer(IHalfCloseableProtocol)
class BinaryConnection(FrontendConnection, JobListener):
    """A client, a worker, an admin session, or all three: gearmand allows any mix on one socket."""

    __slots__ = (
        "scheduler",
        "decoder",
        "worker",
        "client_id",
        "exceptions",
        "_batch",
        "_out",
        "_held",
        "_held_bytes",
        "_held_paused",
        "_deferred",
        "_submitting",
        "_large_reads",
        "urgent",
        "waited",
        "_grab_slot",
    )

    def __init__(self, factory: BinaryFactory) -> None:
        super().__init__(factory.context)
        context = factory.context
        settings = context.settings
        self.scheduler = context.scheduler
        # the factory's, shared while this connection sends whole packets; its own from the first partial one
        self.decoder: Decoder = factory.decoder
        self.worker: Worker | None = None
        self.client_id = b"-"
        self.exceptions = settings.exceptions
        self._batch = factory.batch
        # replies of this turn; between turns the shared empty tuple (a list is made when there is output)
        self._out: list[bytes] | tuple[()] = _NOTHING_OUT
        self._held: list[bytes | _Slot] | None = None  # output waiting behind a late reply (made on demand)
        self._held_bytes = 0
        self._held_paused = False
        self._deferred: dict[Job, deque[_Slot]] | None = None  # per job, its late acknowledgements, oldest first
        self._submitting = 0  # _SUBMITTING within a submit, _ACKED_NOW once it was acknowledged within it
        self._large_reads = False  # the transport reads more than READ_SIZE at once
        self.urgent = False  # output is queued that must leave at the end of this turn
        self.waited = 0  # turns the queued output has waited (WriteBatch)
        self._grab_slot: _GrabSlot | None = None  # the place of a held grab's answer

    # -- connection lifecycle

    def ended(self) -> None:
        self._out = _NOTHING_OUT
        if self.worker is not None:
            self.scheduler.remove_worker(self.worker)
            self.worker = None
        self.scheduler.detach(self)

    def close(self) -> None:
        if self.open:
            self.flush()
            self.transport.loseConnection()

    def readConnectionLost(self) -> None:  # noqa: N802
        """The peer sent its last byte (a half-close): it can run no more jobs, and gets what is queued for
        it (an acknowledgement may be waiting for its result) before the connection closes, as gearmand
        closes it."""
        self._drop_worker()
        self.close()

    def writeConnectionLost(self) -> None:  # noqa: N802
        self.transport.loseConnection()

    def _drop_worker(self) -> None:
        """No more jobs for a connection that is closing: its held grab hears NO_JOB (in its place, before
        anything sent later), its running jobs go back to their queues."""
        worker, self.worker = self.worker, None
        if worker is not None:
            self.scheduler.end_hold(worker)
            self.scheduler.remove_worker(worker)

    def describe(self) -> tuple[int, str, bytes, list[bytes]]:
        names = self.scheduler.worker_snapshot(self.worker).functions if self.worker is not None else ()
        return self.fd, self.peer, self.client_id, names

    # -- output, batched per read, bounded when the peer stops reading

    def send(self, data: bytes) -> None:
        if self._held:
            self._held.append(data)  # behind a late reply (a store acknowledgement, a held grab)
            self._held_bytes += len(data)
            if self._held_bytes > HELD_OUTPUT_LIMIT and not self._held_paused:
                self._held_paused = True
                self.transport.stopReading()  # until the store catches up: bounded, not buffered
            return
        # _output(data), inlined: this runs for nearly every reply
        if not self.open or (self._paused_bytes >= 0 and not self.count_output(len(data))):
            return
        self.urgent = True
        out = self._out
        if not out:
            out = self._out = []
            self._batch.mark(self)
        out.append(data)

    def wants_reading(self) -> bool:
        return not self._held_paused

    def _output(self, data: bytes, urgent: bool = True) -> None:
        if not self.open or (self._paused_bytes >= 0 and not self.count_output(len(data))):
            return
        if urgent:
            self.urgent = True
        out = self._out
        if not out:
            out = self._out = []
            self._batch.mark(self)
        out.append(data)

    def flush(self) -> None:
        out = self._out
        self.urgent = False
        self.waited = 0
        if out:
            self._out = _NOTHING_OUT
            if self.open and not self.transport.disconnecting:  # nothing after a close's last write
                self.send_pieces(out)

    # -- input

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        handlers = _HANDLERS
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
            self.transport.bufferSize = min(decoder.wanted, LARGE_READ)
            self._large_reads = True
        elif self._large_reads:
            self.transport.bufferSize = READ_SIZE
            self._large_reads = False

    def _fatal(self, code: bytes, text: bytes) -> None:
        log.info("closing connection from %s: %s %s", self.peer, code.decode(), text.decode(errors="replace"))
        self._drop_worker()
        if code == b"LINE_TOO_LONG":  # the peer speaks text: answer in text
            self._output(b"ERR LINE_TOO_LONG " + text.replace(b" ", b"+") + b"\r\n")
        else:
            self._output(error_packet(code, text))  # not held behind acknowledgements: we are closing
        self.flush()
        self.transport.loseConnection()

    def _admin(self, args: list[bytes]) -> None:
        self.send(self.context.admin.execute(_split_words(args[0]), self.peer_is_local))

    def _not_expected(self, args: list[bytes]) -> None:
        self.send(_NOT_EXPECTED)

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
            self.send(error_packet(error.code.encode(), error.text.encode()))
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
            self.send(encode(Packet.STATUS_RES, handle, b"0", b"0", b"0", b"0"))
        else:
            self.send(
                encode(
                    Packet.STATUS_RES,
                    handle,
                    b"1",
                    b"1" if job.running else b"0",
                    b"%d" % job.numerator,
                    b"%d" % job.denominator,
                )
            )

    def _get_status_unique(self, args: list[bytes]) -> None:
        unique = args[0]
        job = self.scheduler.job_snapshot_by_unique(unique)
        if job is None:
            self.send(encode(Packet.STATUS_RES_UNIQUE, unique, b"0", b"0", b"0", b"0", b"0"))
        else:
            self.send(
                encode(
                    Packet.STATUS_RES_UNIQUE,
                    unique,
                    b"1",
                    b"1" if job.running else b"0",
                    b"%d" % job.numerator,
                    b"%d" % job.denominator,
                    b"%d" % job.waiting_clients,
                )
            )

    def _echo_req(self, args: list[bytes]) -> None:
        self.send(encode(Packet.ECHO_RES, args[0]))

    def _option_req(self, args: list[bytes]) -> None:
        if args[0].lower() == b"exceptions":
            self.exceptions = True
            self.send(encode(Packet.OPTION_RES, args[0]))
        else:
            self.send(_UNKNOWN_OPTION)

    def _set_client_id(self, args: list[bytes]) -> None:
        self.client_id = args[0][:MAX_CLIENT_ID] or b"-"

    # -- JobListener: results for the jobs this connection submitted

    def job_created(self, job: Job) -> None:
        handle = job.handle
        packet = _pack_header(RES, _JOB_CREATED, len(handle)) + handle
        if self._submitting and not self._held and self.open and self._paused_bytes < 0:
            # _acknowledge and _output, inlined for the usual case: answered within its own submit
            self._submitting = _ACKED_NOW
            if job.background:
                self.urgent = True
            # else a foreground job's result follows: its acknowledgement may wait for it (WriteBatch)
            out = self._out
            if not out:
                out = self._out = []
                self._batch.mark(self)
            out.append(packet)
            return
        self._acknowledge(job, packet, urgent=job.background)

    def _acknowledge(self, job: Job, packet: bytes, urgent: bool = True) -> None:
        if self._submitting:
            self._submitting = _ACKED_NOW
            if self._held:
                self.send(packet)
            else:
                self._output(packet, urgent)
            return
        # a deferred acknowledgement fills the place its submit was given (the oldest one of this job's:
        # a submit that joined an earlier, still uncommitted job is answered when that job commits)
        slots = self._deferred.get(job) if self._deferred else None
        if not slots:
            return  # the connection was reset meanwhile
        slot = slots.popleft()
        if not slots:
            del self._deferred[job]
        self._fill(slot, (packet,))

    def _keep_place(self, slot: _Slot | None = None) -> _Slot:
        """A place in the output for a reply that comes later; what is sent meanwhile waits behind it."""
        if slot is None:
            slot = _Slot()
        if self._held:
            self._held.append(slot)
        else:
            self._held = [slot]
        return slot

    def _fill(self, slot: _Slot, pieces: tuple[bytes, ...]) -> None:
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
                    self._output(piece)
            else:
                self._held_bytes -= len(item)
                self._output(item)
            index += 1
        del held[:index]
        if not held:
            self._held = None  # an idle worker's answered grab leaves nothing behind
            self._held_bytes = 0
        if self._held_paused and self._held_bytes <= HELD_OUTPUT_LIMIT:
            self._held_paused = False
            if self.open and not self.output_paused:
                self.transport.startReading()

    def _send_with_payload(self, ptype: int, handle: bytes, data: bytes) -> None:
        if len(data) < _JOIN_LIMIT:
            self.send(_pack_header(RES, ptype, len(handle) + 1 + len(data)) + handle + b"\x00" + data)
        else:
            self.send(header(ptype, len(handle) + 1 + len(data)) + handle + b"\x00")
            self.send(data)

    def job_rejected(self, job: Job, error: SchedulerError) -> None:
        self._acknowledge(job, error_packet(error.code.encode(), error.text.encode()))

    def job_data(self, job: Job, data: bytes) -> None:
        self._send_with_payload(Packet.WORK_DATA, job.handle, data)

    def job_warning(self, job: Job, data: bytes) -> None:
        self._send_with_payload(Packet.WORK_WARNING, job.handle, data)

    def job_status(self, job: Job, numerator: int, denominator: int) -> None:
        self.send(encode(Packet.WORK_STATUS, job.handle, b"%d" % numerator, b"%d" % denominator))

    def job_complete(self, job: Job, data: bytes) -> None:
        self._send_with_payload(_WORK_COMPLETE, job.handle, data)

    def job_fail(self, job: Job) -> None:
        self.send(encode(Packet.WORK_FAIL, job.handle))

    def job_exception(self, job: Job, data: bytes) -> None:
        if self.exceptions:
            self._send_with_payload(Packet.WORK_EXCEPTION, job.handle, data)
        else:
            # gearmand appends a NUL to this handle, which hangs libgearman's own client; we do not
            self.send(encode(Packet.WORK_FAIL, job.handle))

    # -- worker packets

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
            self._fill(slot, self._assignment(slot.kind, job))

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
        worker = self.worker or self._worker()
        job = self.scheduler.grab(worker, True)
        if job is None:
            self.send(NO_JOB)
        elif job is HELD:
            self._grab_slot = _GrabSlot(kind)
            self._keep_place(self._grab_slot)
        else:
            for piece in self._assignment(kind, job):
                self.send(piece)

    _grab_job = _grab_with  # GRAB_JOB's handler, without a call in between

    def _grab_job_uniq(self, args: list[bytes]) -> None:
        self._grab_with(args, Packet.JOB_ASSIGN_UNIQ)

    def _grab_job_all(self, args: list[bytes]) -> None:
        self._grab_with(args, Packet.JOB_ASSIGN_ALL)

    @staticmethod
    def _assignment(kind: int, job: Job) -> tuple[bytes, ...]:
        """JOB_ASSIGN, JOB_ASSIGN_UNIQ or (for a reduce job) JOB_ASSIGN_ALL; a large payload as its own
        piece, not copied into the packet."""
        data = job.data
        if kind == _JOB_ASSIGN:
            if len(data) < _JOIN_LIMIT:  # the usual assignment: one packet, without encode's *args
                body = b"\x00".join((job.handle, job.function.name, data))
                return (_pack_header(RES, _JOB_ASSIGN, len(body)) + body,)
            fields: tuple[bytes, ...] = (job.handle, job.function.name)
        elif kind == Packet.JOB_ASSIGN_UNIQ or job.reducer is None:
            kind = Packet.JOB_ASSIGN_UNIQ
            fields = (job.handle, job.function.name, job.unique)
        else:
            fields = (job.handle, job.function.name, job.unique, job.reducer)
        if len(data) < _JOIN_LIMIT:
            return (encode(kind, *fields, data),)
        prefix = b"\x00".join(fields) + b"\x00"
        return (header(kind, len(prefix) + len(data)) + prefix, data)

    def _work_result(self, call: Callable[..., None], handle: bytes, *rest: object) -> None:
        if len(handle) > MAX_HANDLE_SIZE:
            self.send(_HANDLE_TOO_LARGE)
            return
        try:
            call(self.worker or self._worker(), handle, *rest)
        except SchedulerError as error:
            self.send(error_packet(error.code.encode(), error.text.encode()))

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
            self.send(error_packet(error.code.encode(), error.text.encode()))

    def _work_fail(self, args: list[bytes]) -> None:
        self._work_result(self.scheduler.work_fail, args[0])

    def _work_exception(self, args: list[bytes]) -> None:
        self._work_result(self.scheduler.work_exception, args[0], args[1])


def _handler_table() -> list[Callable[[BinaryConnection, list[bytes]], None]]:
    """Packet type -> handler method, found by name (`SUBMIT_JOB_BG` -> `_submit_job_bg`)."""
    table = []
    for ptype in range(MAX_TYPE):
        if ptype == TEXT:
            table.append(BinaryConnection._admin)
            continue
        try:
            name = "_" + Packet(ptype).name.lower()
        except ValueError:
            name = ""
        table.append(getattr(BinaryConnection, name, BinaryConnection._not_expected))
    return table


_HANDLERS = _handler_table()


class BinaryFactory(Factory):
    protocol = BinaryConnection

    def __init__(self, context: FrontendContext) -> None:
        self.context = context
        self.batch = WriteBatch(context.reactor)
        settings = context.settings
        # every connection's while it sends whole packets: an idle worker's then keeps none of its own (80 B),
        # and the decoder stays one type (CPython's attribute caches in the hot path see only one)
        self.decoder = Decoder(REQ, settings.max_packet_size, settings.max_admin_line)
        self.decoder.shared = True

    def buildProtocol(self, addr: object) -> BinaryConnection:  # noqa: N802
        return BinaryConnection(self)
