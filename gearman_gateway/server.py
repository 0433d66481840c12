"""The embeddable server: scheduler + enabled frontends on one Twisted reactor.

from gearman_gateway.config import make_settings
from gearman_gateway.server import Server
server = Server(make_settings({"port": 0, "listen": ["127.0.0.1"], "queue_type": "memory"}))
                                    # or "data_dir": a directory of your own, to keep background jobs
server.start()                      # binds now; raises if a port is taken
host, port = server.addresses()["binary"][0]
...                                 # run the reactor as your program does
server.stop()                       # a Deferred; or server.shutdown(graceful=True)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import defer

import protocols
from gearman_gateway.admin import Admin, AdminControls
from gearman_gateway.config import LEVEL_ORDER, LEVELS, Settings
from gearman_gateway.connections import ConnectionRegistry
from gearman_gateway.durability import build_store, import_gearmand_rows, retry_policies
from gearman_gateway.scheduler import Scheduler
from gearman_gateway.turns import end_of_turn
from protocols.listening import ListeningService

log = logging.getLogger("gearman_gateway.server")
NOTICE = LEVELS["NOTICE"]
#: Longest wait at shutdown for connections to take their last replies.
CLOSE_TIMEOUT = 2.0


class Server:
    def __init__(self, settings: Settings, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.settings = settings
        self.reactor = reactor
        prefix = settings.job_handle_prefix.encode() if settings.job_handle_prefix else None
        self.store = build_store(settings, reactor)
        self.scheduler = Scheduler(
            reactor,
            handle_prefix=prefix,
            job_retries=settings.job_retries,
            worker_wakeup=settings.worker_wakeup,
            store=self.store,
            retry_policies=retry_policies(settings),
            turn_end=end_of_turn(reactor, first=True),
        )
        self.connections = ConnectionRegistry(settings.max_connections)
        self.admin = Admin(
            self.scheduler,
            self.connections,
            AdminControls(
                shutdown=lambda graceful: reactor.callLater(0, self.shutdown, graceful),
                verbose_level=self._verbose_level,
                allow_remote_shutdown=settings.allow_remote_shutdown,
                store_status=self.store.describe if self.store is not None else None,
            ),
        )
        self.service = MultiService()
        self.frontends: dict[str, list[ListeningService]] = {}
        context = protocols.FrontendContext(settings, self.scheduler, self.admin, self.connections, reactor)
        for name in settings.frontends:
            frontend = protocols.load(name)
            services = frontend.build(context)
            self.frontends[frontend.name] = services  # type: ignore[assignment]
            for service in services:
                service.setServiceParent(self.service)
        self.on_stopped: list[Callable[[], None]] = []
        self._stopping = False
        self._draining = False

    def _verbose_level(self) -> str:
        level = logging.getLogger("gearman_gateway").getEffectiveLevel()
        for name in reversed(LEVEL_ORDER):
            if LEVELS[name] >= level:
                return name
        return "FATAL"

    def start(self, after_binding: Callable[[], None] | None = None) -> None:
        """Bind every frontend's ports, call ``after_binding`` (gearmand drops root there), then open the
        store and replay its jobs. Nothing is accepted before the reactor runs, so replay still comes
        before the first client. Raises (StoreError, OSError, ...) when any of it fails: a server never
        runs half-started."""
        self.service.startService()
        if after_binding is not None:
            after_binding()
        if self.store is not None:
            try:
                self._replay()
            except BaseException:  # never half-started: stop listening, give the queue file up
                self.service.stopService()
                self.store.close()
                raise
            self.reactor.addSystemEventTrigger("after", "shutdown", self.store.close)

    def _replay(self) -> None:
        store = self.store
        assert store is not None
        store.open()
        rows = store.load()
        if self.settings.import_gearmand_queue:
            rows += import_gearmand_rows(store.backend, self.settings, rows)
        replayed = self.scheduler.replay(rows)
        dead = self.scheduler.totals().dead_letters
        log.log(NOTICE, "%s store: replayed %d jobs (%d in the dead-letter list)", store.name, replayed - dead, dead)

    def addresses(self) -> dict[str, list[tuple[str, int]]]:
        """Bound (host, port) per frontend: with port 0 this is how an embedder learns the port."""
        return {
            name: [a for a in (s.address() for s in services) if a is not None]  # type: ignore[attr-defined]
            for name, services in self.frontends.items()
        }

    def stop(self) -> defer.Deferred:
        """Stop listening, drop every connection at once (SIGTERM) and close the store, so that another
        server may open its queue (the sqlite file's lock goes with it)."""
        self._stopping = True
        result = defer.maybeDeferred(self.service.stopService)
        store = self.store
        if store is not None:

            def close_store(outcome: Any) -> Any:
                store.close()
                return outcome

            result.addBoth(close_store)
        return result

    def shutdown(self, graceful: bool = False) -> None:
        """Stop the process: at once, or after running jobs finish (bounded by graceful_timeout). An
        immediate stop (SIGTERM, admin `shutdown`) also cuts a graceful one short."""
        if self._stopping:
            return
        if not graceful:
            log.log(NOTICE, "shutting down")
            self._stop_reactor()
            return
        if self._draining:
            return
        log.log(NOTICE, "graceful shutdown: no new connections or jobs; waiting for running jobs")
        self._draining = True
        for services in self.frontends.values():
            for service in services:
                service.stopService()
        timer = self.reactor.callLater(self.settings.graceful_timeout, self._graceful_timeout)

        def drained() -> None:
            if timer.active():
                timer.cancel()
            log.log(NOTICE, "running jobs finished; shutting down")
            self._stop_reactor()

        self.scheduler.drain(drained)

    def _graceful_timeout(self) -> None:
        log.warning(
            "graceful shutdown: %d jobs still running after %ss; stopping anyway",
            self.scheduler.totals().running,
            self.settings.graceful_timeout,
        )
        self._stop_reactor()

    def _stop_reactor(self) -> None:
        """Close every connection, letting queued replies go out, then stop the reactor (once)."""
        if self._stopping:
            return
        self._stopping = True
        for services in self.frontends.values():
            for service in services:
                if service.running:
                    service.stopService()
        for connection in self.connections:
            connection.close()
        deadline = self.reactor.seconds() + CLOSE_TIMEOUT

        def wait_closed() -> None:
            if len(self.connections) and self.reactor.seconds() < deadline:
                self.reactor.callLater(0.01, wait_closed)
                return
            for callback in self.on_stopped:
                callback()
            if self.reactor.running:
                self.reactor.stop()

        wait_closed()
