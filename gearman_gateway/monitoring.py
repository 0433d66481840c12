"""What watches the server's jobs: latency histograms, the job history and the event hooks, built from the
YAML ``monitoring:`` block (docs/monitoring.md) and attached to the scheduler as ``JobObserver`` s.

Frontends only present these (admin `latency` and `show history`, the JSON API, the metrics, the
dashboard): they read ``Monitoring.latency`` and ``Monitoring.history``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gearman_gateway import history, history_table, latency
from gearman_gateway.hooks.config import HookError, parse_hooks
from gearman_gateway.hooks.events import HookObserver, HooksService, submitter
from gearman_gateway.hooks.outbox import Outbox

if TYPE_CHECKING:
    from gearman_gateway.durable_history import DurableHistory, DurableHistoryService
    from gearman_gateway.scheduler import Scheduler

#: ``monitoring:`` keys and what each holds.
_SECTIONS = {
    "latency": {"enabled": bool, "max_functions": int},
    "history": {
        "enabled": bool,
        "size": int,
        "exception_bytes": int,
        "durable": bool,
        "retention": "retention",
        "buffer": int,
    },
}


#: Hook events kept at most (queued, in flight, waiting for a retry) by default.
HOOK_OUTBOX = 1000


class MonitoringError(ValueError):
    """A ``monitoring:`` value is wrong; the message names it as written in the YAML."""


def validate(block: dict[str, Any]) -> None:
    """Check the ``monitoring:`` block (types and ranges); raise MonitoringError naming the key."""
    unknown = sorted(set(block) - {*_SECTIONS, "hooks", "hook_outbox"})
    if unknown:
        raise MonitoringError(f"monitoring: unknown key {unknown[0]!r} (known: latency, history, hooks, hook_outbox)")
    for section, fields in _SECTIONS.items():
        values = block.get(section) or {}
        if not isinstance(values, dict):
            raise MonitoringError(f"monitoring.{section} must be a mapping")
        for key, value in values.items():
            if key not in fields:
                raise MonitoringError(f"monitoring.{section}: unknown key {key!r} (known: {', '.join(fields)})")
            if fields[key] == "retention":
                try:
                    history_table.parse_retention(value)
                except ValueError:
                    raise MonitoringError(
                        f"monitoring.{section}.{key} must be a time like 7d, 12h, 30m or seconds > 0, not {value!r}"
                    ) from None
            elif fields[key] is bool:
                if not isinstance(value, bool):
                    raise MonitoringError(f"monitoring.{section}.{key} must be true or false, not {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise MonitoringError(f"monitoring.{section}.{key} must be a whole number >= 0, not {value!r}")
    hist = block.get("history") or {}
    if hist.get("durable", False) and not (hist.get("enabled", False) and hist.get("size", history.SIZE)):
        raise MonitoringError("monitoring.history.durable needs monitoring.history.enabled: true and a size > 0")
    if hist.get("buffer", 1) < 1:
        raise MonitoringError("monitoring.history.buffer must be a whole number >= 1")
    outbox = block.get("hook_outbox", HOOK_OUTBOX)
    if isinstance(outbox, bool) or not isinstance(outbox, int) or outbox < 1:
        raise MonitoringError(f"monitoring.hook_outbox must be a whole number >= 1, not {outbox!r}")
    try:
        parse_hooks(block.get("hooks") or [])
    except HookError as error:
        raise MonitoringError(str(error)) from None


def check_durable_store(block: dict[str, Any] | None, queue_type: str) -> None:
    """``monitoring.history.durable`` needs a store that can hold the history table; MonitoringError if not."""
    hist = (block or {}).get("history") or {}
    if hist.get("durable", False) and queue_type not in history_table.SUPPORTED:
        raise MonitoringError(
            f"monitoring.history.durable needs the {', '.join(history_table.SUPPORTED[:-1])} or "
            f"{history_table.SUPPORTED[-1]} queue, not {queue_type} "
            "(choose one with -q / queue.type, or set durable: false)"
        )


def observes(block: dict[str, Any] | None) -> bool:
    """Whether this ``monitoring:`` block attaches job observers: the server then makes its scheduler an
    ``ObservedScheduler`` from the start (the cheap way to observe, scheduler/observing.py)."""
    block = block or {}
    lat = block.get("latency") or {}
    hist = block.get("history") or {}
    return bool(
        lat.get("enabled", False)
        or (hist.get("enabled", False) and hist.get("size", history.SIZE))
        or block.get("hooks")
    )


class Monitoring:
    """The observers of one server, from its settings' ``monitoring`` block (validated)."""

    def __init__(
        self, block: dict[str, Any], scheduler: Scheduler, reactor: Any, store: Any = None, queue_type: str = "memory"
    ) -> None:
        """``store``: the queue's store backend (stores/), for a durable history; ``queue_type`` its name."""
        block = block or {}
        lat = block.get("latency") or {}
        hist = block.get("history") or {}
        # latency and history are opt-in (``enabled: true``): recording every job in Python costs the job path
        # more than the issue's +3 % (docs/performance.md, issue 19); off, the scheduler has no observer
        self.latency: latency.Latency | None = None
        if lat.get("enabled", False):
            self.latency = latency.Latency(reactor, lat.get("max_functions", latency.MAX_FUNCTIONS))
            scheduler.add_observer(self.latency)
        size = hist.get("size", history.SIZE)
        self.history: history.History | None = None
        if hist.get("enabled", False) and size:
            self.history = history.History(size, hist.get("exception_bytes", history.EXCEPTION_BYTES))
            scheduler.add_observer(self.history)
        self.durable: DurableHistory | None = None
        self.durable_service: DurableHistoryService | None = None
        if self.history is not None and hist.get("durable", False):
            check_durable_store(block, queue_type)
            from gearman_gateway import durable_history

            retention = history_table.parse_retention(hist.get("retention", history_table.RETENTION))
            self.durable = durable_history.build(
                self.history, store, queue_type, retention, hist.get("buffer", durable_history.BUFFER)
            )
            scheduler.add_observer(self.durable)
            self.durable_service = durable_history.DurableHistoryService(self.durable, reactor)
        self.hooks = parse_hooks(block.get("hooks") or [])
        self.outbox: Outbox | None = None
        self.hooks_service: HooksService | None = None
        if self.hooks:
            self.outbox = Outbox(reactor, block.get("hook_outbox", HOOK_OUTBOX), submitter(scheduler))
            if any(hook.url is not None for hook in self.hooks):
                self.outbox.prepare_http()
            observer = HookObserver(self.hooks, self.outbox, reactor)
            scheduler.add_observer(observer)
            self.hooks_service = HooksService(self.hooks, self.outbox, scheduler, reactor, observer)
