"""The memcached session's per-read core: ``receive_data``, ``_serve`` and ``_finish``, with the state they
touch on every read.

``MemcachedSession`` (session.py) is built on one of two twins of this: ``Core`` from
protocols/memcached/_core.c, the same three methods with that state in a C struct (a sequential client's
read costs a tenth fewer instructions: docs/performance.md), or ``PyCore`` here, the pure-Python reference it
follows, used when the C module is not built or ``GEARMAN_GATEWAY_PURE_PYTHON`` is set. Everything else the
session does (the handlers these call) is Python on both; tests/unit/test_memcached_session.py runs on both.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any

from protocols.memcached.events import MetaSet, Store

#: Events parsed but not yet answered (behind a waiting request) past which reading pauses.
MAX_QUEUED_EVENTS = 1024


class _Pending:
    """An answer that comes later (a ``/t=`` wait, a submit's acknowledgement)."""


PENDING = _Pending()

#: The core's attributes: ``PyCore``'s slots, ``Core``'s C fields (the session's own slots are the rest).
CORE_ATTRIBUTES = (
    "transport",
    "_write",
    "decoder",
    "_max_value",
    "_events",
    "_out",
    "_ahead",
    "_partial_input",
    "_handlers",
    "closed",
    "_busy",
    "_running",
    "_paused",
    "_input_ended",
    "_held",
)


class PyCore:
    """The pure-Python core (the reference ``_core.Core`` follows). The subclass provides ``_get_plain``,
    ``_set_plain``, ``_answer``, ``_run`` and ``_after_serving``, and sets every attribute in its
    ``__init__``."""

    __slots__ = CORE_ATTRIBUTES

    transport: Any
    _write: Callable[[bytes], None]
    decoder: Any
    _max_value: int
    _events: deque[Any]
    _out: list[bytes] | None
    _ahead: bytes | None
    _partial_input: Callable[[bool], None] | None
    _handlers: dict[type, Callable[[Any], Any]]
    closed: bool
    _busy: bool
    _running: bool
    _paused: bool
    _input_ended: bool
    _held: bool

    def receive_data(self, data: bytes) -> bool:
        """Returns whether part of a request is held; the transport's ``partial_input`` hears of it too (the
        adapter calls this method directly as its ``dataReceived``)."""
        if self.closed:
            return False
        decoder = self.decoder
        scan = decoder.whole_scan
        held = False
        if scan is not None and type(data) is bytes:
            # the usual read: plain gets and sets only, all whole, read in C without the decoder's Python
            requests, used = scan(data, self._max_value)
            if used != len(data):  # anything else: the decoder's way (it reads the plain ones again)
                requests = decoder.receive_data(data)
                held = decoder.holding
        else:
            requests = decoder.receive_data(data)
            held = decoder.holding
        if requests:
            if self._events or self._busy or self._running:
                self._events.extend(requests)
                self._run()
            else:  # the usual case: nothing waits, serve them where they lie
                self._serve(requests)
        if self._events and len(self._events) > MAX_QUEUED_EVENTS and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        if (held or self._held) and self._partial_input is not None and not self.closed:
            self._held = held
            self._partial_input(held)
        return held

    def _serve(self, requests: list[Any]) -> None:
        """Answer ``requests`` in order, their replies gathered into one write; from one that waits on, the
        rest queue behind it (``_events``) until its answer comes (``_finish``)."""
        self._running = True
        out: list[bytes] = []
        self._out = out
        served = 0
        answered = False  # an answer other than a storage command's acknowledgement is in ``out``
        try:
            for request in requests:
                served += 1
                kind = type(request)
                if kind is bytes:  # a plain one-key get (the decoder is ``plain``)
                    reply = self._get_plain(request)
                elif kind is tuple:  # a plain set
                    reply = self._set_plain(request)
                else:
                    handler = self._handlers.get(kind)  # (``_answer``'s first look, without its call)
                    reply = handler(request) if handler is not None else self._answer(request)
                if reply is PENDING:
                    self._busy = True
                    if served < len(requests) and not self.closed:
                        rest = deque(requests[served:])
                        rest.extend(self._events)
                        self._events = rest
                    break
                if reply:
                    out.append(reply)
                    if kind is not tuple and kind is not Store and kind is not MetaSet:
                        answered = True
                if self.closed:
                    break
        finally:
            self._running = False
            self._out = None
        if out:
            if self._busy and not answered:
                # storage acknowledgements ahead of a wait (a pipelined ``set`` before the ``get`` of its
                # result, a worker's ``set .../close`` before its next ``get .../t=``) leave with its answer,
                # in one send: the wait is short (``max_wait_ms``), and a pipelining client reads them in that
                # order anyway. Anything else (a job taken, a value) goes now.
                self._ahead = out[0] if len(out) == 1 else b"".join(out)
            else:
                self._write(out[0] if len(out) == 1 else b"".join(out))
        if self._paused or self._input_ended:
            self._after_serving()

    def _finish(self, reply: bytes) -> None:
        """The waiting request's answer came: send it, and go on with the requests behind it."""
        if self.closed:
            return
        self._busy = False
        ahead = self._ahead
        if ahead is not None:
            self._ahead = None
            reply = ahead + reply
        if reply:
            out = self._out
            if out is not None:
                out.append(reply)
            else:
                self._write(reply)
        if self._events or self._paused or self._input_ended:  # else ``_run`` would have nothing to do
            self._run()


Core: type | None
try:
    from protocols.memcached._core import Core as _CCore
    from protocols.memcached._core import setup as _setup
except ImportError:  # pragma: no cover - depends on the build
    Core = None
else:
    _setup(PENDING, Store, MetaSet, deque, MAX_QUEUED_EVENTS)
    Core = _CCore
if os.environ.get("GEARMAN_GATEWAY_PURE_PYTHON"):
    Core = None
