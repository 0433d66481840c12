"""Output gathered per reactor turn and written once per connection at its end, for every frontend.

A connection's replies during a turn (its own requests' answers, and results that other connections'
events produce for it) leave in one write when the turn's events are handled: one system call per
connection per turn, however many packets. ``BatchedOutput`` is the connection's side (its queue and the
``flush`` that hands it to ``write_pieces``), ``WriteBatch`` the reactor's side (which connections have
output this turn). Both are sans-IO: the end of the turn is a callback scheduler handed in
(``gearman_gateway.turns`` in the server, a list in unit tests), the write is the connection's.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

from gearman_gateway.turns import end_of_next_turn, end_of_turn

log = logging.getLogger("gearman_gateway.output")

#: Reactor turns a connection's output may wait when none of it is urgent (the binary protocol's
#: foreground acknowledgements). A JOB_CREATED sent alone costs a send (a third of a short fg job's system
#: calls); two turns later the job's WORK_COMPLETE is usually there too. The polls in between do not
#: block, so the wait is a few microseconds on an idle server and a couple of busy turns (~0.1 ms) under
#: load.
ACK_WAIT_TURNS = 2

#: ``BatchedOutput._out`` between turns: the shared empty tuple (a list is made when there is output).
NOTHING_OUT: tuple[()] = ()

#: Schedules a callback for the end of the current turn (``gearman_gateway.turns.end_of_turn``).
TurnHook = Callable[[Callable[[], None]], None]


class BatchedOutput:
    """A connection's output of the current turn. ``queue`` adds to it; the ``WriteBatch`` calls ``flush``
    at the end of the turn, which hands it to ``write_pieces`` (the subclass's: its socket). Output
    queued after ``close_output`` is dropped."""

    __slots__ = ("_batch", "_out", "urgent", "waited")

    def __init__(self, batch: WriteBatch) -> None:
        self._batch = batch
        # the turn's pieces; NOTHING_OUT between turns, None once the connection is gone
        self._out: list[bytes] | tuple[()] | None = NOTHING_OUT
        self.urgent = False  # queued output must leave at the end of this turn
        self.waited = 0  # turns the queued output has waited (only while none of it is urgent)

    def queue(self, data: bytes, urgent: bool = True) -> None:
        """Add ``data`` to this turn's output. Not ``urgent``: it may wait up to ``ACK_WAIT_TURNS`` turns
        for more (as long as nothing urgent joins it)."""
        out = self._out
        if not out:
            if out is None:
                return
            out = self._out = []
            self._batch.mark(self)
        if urgent:
            self.urgent = True
        out.append(data)

    def flush(self) -> None:
        """Write out what is queued, now."""
        out = self._out
        self.urgent = False
        self.waited = 0
        if out:
            self._out = NOTHING_OUT
            self.write_pieces(out)

    def close_output(self) -> None:
        """The connection is gone: what is queued and anything queued later is dropped."""
        self._out = None

    @property
    def output_queued(self) -> bool:
        return bool(self._out)

    def write_pieces(self, pieces: list[bytes]) -> None:
        """Write ``pieces`` in order (the subclass's transport)."""
        raise NotImplementedError


class WriteBatch:
    """The connections with output this turn, flushed at its end. A connection whose output is not urgent
    waits up to ``ACK_WAIT_TURNS`` more turns: a foreground job's result usually comes by then and leaves in
    the same write as its acknowledgement."""

    __slots__ = ("dirty", "_at_end_of_turn", "_at_end_of_next_turn")

    def __init__(self, at_end_of_turn: TurnHook, at_end_of_next_turn: TurnHook | None = None) -> None:
        self.dirty: list[BatchedOutput] = []
        self._at_end_of_turn = at_end_of_turn
        self._at_end_of_next_turn = at_end_of_next_turn or at_end_of_turn

    def mark(self, connection: BatchedOutput) -> None:
        if not self.dirty:
            self._at_end_of_turn(self.flush)
        self.dirty.append(connection)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        for connection in dirty:
            if not connection._out:
                continue  # flushed meanwhile (closing), or gone
            if not connection.urgent and connection.waited < ACK_WAIT_TURNS:
                connection.waited += 1
                if not self.dirty:
                    self._at_end_of_next_turn(self.flush)
                self.dirty.append(connection)
                continue
            try:
                connection.flush()
            except Exception:  # one broken connection must not strand the others' replies
                log.exception("writing to %s failed", getattr(connection, "peer", connection))
                connection._out = NOTHING_OUT


_batches: weakref.WeakKeyDictionary[Any, WriteBatch] = weakref.WeakKeyDictionary()


def write_batch(reactor: Any) -> WriteBatch:
    """The reactor's one ``WriteBatch``, shared by every frontend on it: one end-of-turn callback for all
    connections, whatever their protocol."""
    batch = _batches.get(reactor)
    if batch is None:
        batch = _batches[reactor] = WriteBatch(end_of_turn(reactor), end_of_next_turn(reactor))
    return batch
