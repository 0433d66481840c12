"""Delivering hook events: a bounded outbox, HTTP POSTs through Twisted's own client, background jobs.

At-least-once: an event is retried (back-off doubling from the hook's ``backoff`` up to ``max_backoff``)
until its receiver answers 2xx (or the job is accepted) or the hook's ``retries`` are used up; a receiver
may see an event twice (a timeout after it answered), so each carries an ``id`` to deduplicate on. Events
live only in memory: a restart loses those not yet delivered.

A circuit breaker per URL: after ``BREAKER_FAILURES`` failed attempts in a row to one URL, attempts to it
pause (the hook's ``backoff``, doubling per failed probe up to ``max_backoff``); its events wait, parked, in
the outbox, then one probe goes; a success closes the circuit and sends the parked events, a failure pauses
again. So a dead receiver costs the server one attempt per pause, not one (and a log line) per event: once
the outbox is full, each new event is dropped and counted before it is even built.

Bounded: at most ``size`` events are queued, in flight or waiting for a retry; a new event past that is
dropped, counted (``HookStats.dropped``) and logged (at most once per ``DROP_LOG_INTERVAL``). Nothing here
runs on the job path: the observer only appends to the outbox; sending starts from a reactor call.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from gearman_gateway.hooks.config import Hook

log = logging.getLogger("gearman_gateway.hooks")

#: Requests in flight at once, over all hooks (a slow receiver holds its share, not the reactor).
MAX_IN_FLIGHT = 16
#: A dropped event is logged at most this often (seconds); the count is in the metrics.
DROP_LOG_INTERVAL = 10.0
#: Failed attempts in a row to one URL that open its circuit (attempts to it pause).
BREAKER_FAILURES = 5
#: The header that carries the body's HMAC-SHA256 with the hook's secret: ``sha256=<hex>``.
SIGNATURE_HEADER = b"X-Gearman-Signature"


def signature(secret: bytes, body: bytes) -> bytes:
    """``sha256=`` and the hex HMAC-SHA256 of the body (what a receiver recomputes and compares)."""
    return b"sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest().encode()


@dataclass
class HookStats:
    """Per hook: events delivered, attempts that failed (each retry counts), events given up on after their
    retries, events dropped because the outbox was full."""

    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    dropped: int = 0
    circuit_opened: int = 0  # times its URL's circuit opened (attempts paused)


@dataclass(eq=False)
class Delivery:
    hook: Hook
    event: str
    event_id: str
    body: bytes
    attempts: int = 0
    timer: Any = field(default=None, repr=False)


class Circuit:
    """One URL's breaker: failed attempts in a row, the pause timer while open, a probe in flight, the events
    parked meanwhile (held by the outbox) and the next pause."""

    __slots__ = ("failures", "timer", "probing", "parked", "pause")

    def __init__(self) -> None:
        self.failures = 0
        self.timer: Any = None
        self.probing = False
        self.parked: deque[Delivery] = deque()
        self.pause = 0.0  # 0.0: the hook's backoff


class Outbox:
    """The events waiting for delivery (module docstring). ``submit_job(function, data, unique)`` makes a
    background job (the scheduler's submit); HTTP goes through ``twisted.web.client.Agent``."""

    def __init__(self, reactor: Any, size: int, submit_job: Callable[[bytes, bytes, bytes], None]) -> None:
        self.reactor = reactor
        self.size = size
        self.submit_job = submit_job
        self.stats: dict[int, HookStats] = {}
        self._queue: deque[Delivery] = deque()
        self._held = 0  # in flight or waiting for a retry
        self._in_flight = 0
        self._waiting: set[Delivery] = set()  # waiting for a retry
        self._pump_due = False
        self._last_drop_log = -DROP_LOG_INTERVAL
        self._running = True
        self._agent: Any = None
        self._pool: Any = None
        self._circuits: dict[str, Circuit] = {}  # per URL

    def __len__(self) -> int:
        """Events not yet delivered nor given up on."""
        return len(self._queue) + self._held

    def stats_for(self, hook: Hook) -> HookStats:
        stats = self.stats.get(hook.index)
        if stats is None:
            stats = self.stats[hook.index] = HookStats()
        return stats

    def full(self) -> bool:
        """No room for another event (or stopped): ``put`` would drop it."""
        return len(self._queue) + self._held >= self.size or not self._running

    def put(self, hook: Hook, event: str, event_id: str, body: bytes) -> None:
        if self.full():
            self.drop(hook, event)
            return
        self._queue.append(Delivery(hook, event, event_id, body))
        if not self._pump_due:
            self._pump_due = True
            self.reactor.callLater(0, self._pump)

    def drop(self, hook: Hook, event: str, count: int = 1) -> None:
        """Count (and now and then log) ``count`` events dropped for want of room."""
        self.stats_for(hook).dropped += count
        now = self.reactor.seconds()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL:
            self._last_drop_log = now
            log.warning(
                "%s: outbox full (%d events); dropping %s events (counted in gearman_hook_events_dropped_total)",
                hook.label,
                self.size,
                event,
            )

    def _pump(self) -> None:
        self._pump_due = False
        while self._queue and self._in_flight < MAX_IN_FLIGHT and self._running:
            delivery = self._queue.popleft()
            self._held += 1
            url = delivery.hook.url
            circuit = self._circuits.get(url) if url is not None else None
            if circuit is not None and circuit.failures >= BREAKER_FAILURES:
                if circuit.timer is not None or circuit.probing:
                    circuit.parked.append(delivery)  # open, or a probe is out: wait for its answer
                    continue
                circuit.probing = True  # half open: this one is the probe
            self._send(delivery)

    def _send(self, delivery: Delivery) -> None:
        delivery.attempts += 1
        hook = delivery.hook
        if hook.job is not None:
            try:
                self.submit_job(hook.job, delivery.body, delivery.event_id.encode())
            except Exception as error:  # the queue is full, the server is draining...
                self._failed(delivery, str(error))
            else:
                self._delivered(delivery)
            return
        self._in_flight += 1
        d = self._post(delivery)
        d.addCallbacks(lambda _: self._delivered(delivery), lambda failure: self._failed(delivery, _why(failure)))
        d.addBoth(self._done_one)

    def _done_one(self, _: Any) -> None:
        self._in_flight -= 1
        if self._queue and not self._pump_due:
            self._pump_due = True
            self.reactor.callLater(0, self._pump)

    def prepare_http(self) -> None:
        """Import Twisted's HTTP client and make the agent now, at start-up: done at the first event, the
        import alone took ~40 ms of the reactor's time between jobs (and its objects escaped the start-up
        ``gc.freeze``)."""
        from twisted.web.client import Agent, HTTPConnectionPool

        if self._agent is None:
            self._pool = HTTPConnectionPool(self.reactor, persistent=True)
            self._pool.maxPersistentPerHost = 4
            self._agent = Agent(self.reactor, pool=self._pool)

    def _post(self, delivery: Delivery) -> Any:
        from twisted.web.client import FileBodyProducer, readBody
        from twisted.web.http_headers import Headers

        self.prepare_http()
        hook = delivery.hook
        headers = Headers(
            {
                b"Content-Type": [b"application/json"],
                b"User-Agent": [b"gearman-gateway-hooks"],
                b"X-Gearman-Event": [delivery.event.encode()],
                b"X-Gearman-Delivery": [delivery.event_id.encode()],
            }
        )
        if hook.secret:
            headers.addRawHeader(SIGNATURE_HEADER, signature(hook.secret, delivery.body))
        assert hook.url is not None
        d = self._agent.request(b"POST", hook.url.encode(), headers, FileBodyProducer(BytesIO(delivery.body)))

        def answered(response: Any) -> Any:
            body = readBody(response)
            if 200 <= response.code < 300:
                return body
            body.addBoth(lambda _: None)
            raise ReceiverError(f"HTTP {response.code}")

        d.addCallback(answered)
        d.addTimeout(hook.timeout, self.reactor)
        return d

    def _delivered(self, delivery: Delivery) -> None:
        self._held -= 1
        self.stats_for(delivery.hook).delivered += 1
        url = delivery.hook.url
        circuit = self._circuits.get(url) if url is not None else None
        if circuit is not None:
            del self._circuits[url]  # closed: no state kept for a healthy URL
            if circuit.timer is not None:
                circuit.timer.cancel()
            if circuit.failures >= BREAKER_FAILURES:
                log.warning("%s: %s answers again; sending %d waiting events", delivery.hook.label, url,
                            len(circuit.parked))  # fmt: skip
            self._unpark(circuit, len(circuit.parked))

    def _unpark(self, circuit: Circuit, count: int) -> None:
        """Put ``count`` parked events back at the head of the queue, in their order."""
        moved = [circuit.parked.popleft() for _ in range(min(count, len(circuit.parked)))]
        self._queue.extendleft(reversed(moved))
        self._held -= len(moved)
        if self._queue and not self._pump_due:
            self._pump_due = True
            self.reactor.callLater(0, self._pump)

    def _tripped(self, delivery: Delivery) -> Circuit | None:
        """Count a failed attempt against its URL; the circuit if it is open now (attempts paused)."""
        hook = delivery.hook
        if hook.url is None:
            return None
        circuit = self._circuits.get(hook.url)
        if circuit is None:
            circuit = self._circuits[hook.url] = Circuit()
        circuit.failures += 1
        if circuit.failures < BREAKER_FAILURES:
            return None
        circuit.probing = False
        if circuit.timer is None and self._running:
            pause = circuit.pause or hook.backoff
            circuit.pause = min(pause * 2, hook.max_backoff)
            circuit.timer = self.reactor.callLater(pause, self._half_open, circuit)
            self.stats_for(hook).circuit_opened += 1
            log.warning("%s: %d failed attempts in a row to %s; pausing its deliveries %.1fs", hook.label,
                        circuit.failures, hook.url, pause)  # fmt: skip
        return circuit

    def _half_open(self, circuit: Circuit) -> None:
        """The pause is over: the first parked event goes as the probe (``_pump``)."""
        circuit.timer = None
        if circuit.parked:
            self._unpark(circuit, 1)

    def _failed(self, delivery: Delivery, why: str) -> None:
        hook = delivery.hook
        stats = self.stats_for(hook)
        stats.failed_attempts += 1
        circuit = self._tripped(delivery)
        if delivery.attempts > hook.retries or not self._running:
            self._held -= 1
            stats.given_up += 1
            if circuit is None:  # an open circuit logged once for all its events
                log.warning("%s: %s event %s not delivered after %d attempts: %s", hook.label, delivery.event,
                            delivery.event_id, delivery.attempts, why)  # fmt: skip
            return
        if circuit is not None:
            circuit.parked.append(delivery)  # retried as (or after) the next probe
            return
        delay = min(hook.backoff * 2 ** (delivery.attempts - 1), hook.max_backoff)
        log.info("%s: %s event %s failed (%s); retry in %.1fs", hook.label, delivery.event, delivery.event_id,
                 why, delay)  # fmt: skip
        delivery.timer = self.reactor.callLater(delay, self._retry, delivery)
        self._waiting.add(delivery)

    def _retry(self, delivery: Delivery) -> None:
        delivery.timer = None
        self._waiting.discard(delivery)
        self._held -= 1
        self._queue.appendleft(delivery)
        self._pump()

    def stop(self) -> Any:
        """Stop sending (retries waiting are given up); close the HTTP connections. A Deferred."""
        from twisted.internet import defer

        self._running = False
        for delivery in list(self._queue):
            self.stats_for(delivery.hook).given_up += 1
        self._queue.clear()
        for delivery in self._waiting:
            delivery.timer.cancel()
            self.stats_for(delivery.hook).given_up += 1
        self._waiting.clear()
        for circuit in self._circuits.values():
            if circuit.timer is not None:
                circuit.timer.cancel()
            for delivery in circuit.parked:
                self.stats_for(delivery.hook).given_up += 1
            self._held -= len(circuit.parked)
            circuit.parked.clear()
        self._circuits.clear()
        if self._pool is not None:
            return self._pool.closeCachedConnections()
        return defer.succeed(None)


class ReceiverError(Exception):
    """The receiver answered, but not with 2xx."""


def _why(failure: Any) -> str:
    from twisted.internet.defer import CancelledError
    from twisted.internet.defer import TimeoutError as DeferredTimeout

    if failure.check(DeferredTimeout, CancelledError):
        return "timed out"
    reasons = getattr(failure.value, "reasons", None)  # the Agent's ResponseNeverReceived and friends
    if reasons:
        if any(reason.check(CancelledError) for reason in reasons):
            return "timed out"  # cancelled by addTimeout while the request was on its way
        return "; ".join(reason.getErrorMessage() or reason.type.__name__ for reason in reasons)
    return failure.getErrorMessage() or failure.type.__name__
