"""The embeddable server: scheduler + store + enabled frontends, as Twisted services on one reactor.

from gearman_gateway.config import make_settings
from gearman_gateway.server import Server
server = Server(make_settings({"port": 0, "listen": ["127.0.0.1"], "queue_type": "memory"}))
                                    # or "data_dir": a directory of your own, to keep background jobs
server.start()                      # binds now; raises if a port is taken
host, port = server.addresses()["binary"][0]
...                                 # run the reactor as your program does
server.stop()                       # a Deferred; or server.shutdown(graceful=True)

The server is a ``MultiService`` whose children start in this order and stop in the reverse one, each after
the one before has stopped: the store (opened and replayed), the connections (closed at the stop), then each
frontend's services (listening, or connecting out). Starting binds first (``privilegedStartService``), then
opens the store (``startService``); stopping is the services stopping, also when the reactor stops.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet import defer

import protocols
from gearman_gateway.admin import Admin, AdminControls
from gearman_gateway.admission import peer_limits
from gearman_gateway.config import LEVEL_ORDER, LEVELS, Settings
from gearman_gateway.connections import ConnectionRegistry
from gearman_gateway.durability import StoreService, build_store, retry_policies
from gearman_gateway.monitoring import Monitoring, observes
from gearman_gateway.results import ResultCache
from gearman_gateway.scheduler import ObservedScheduler, Scheduler
from gearman_gateway.security import Access
from gearman_gateway.turns import end_of_turn
from protocols import MetricFamily, ReportsMetrics, ReportsState, ServiceState
from protocols.listening import ListeningService

if TYPE_CHECKING:
    from gearman_gateway.cluster import SharedQueue

log = logging.getLogger("gearman_gateway.server")
NOTICE = LEVELS["NOTICE"]
#: Longest wait at shutdown for connections to take their last replies.
CLOSE_TIMEOUT = 2.0
#: How often the wait for closing connections looks again (a connection's close has no event to wait on).
CLOSE_POLL = 0.01


class OrderedServices(MultiService):
    """A MultiService that stops its children one after another, last started first, each once the one
    before has stopped (Twisted's stops them all at once): listeners close before the connections are
    dropped, and the store closes only after the connections' last effects (their lost jobs) are in."""

    def stopService(self) -> defer.Deferred:  # noqa: N802
        Service.stopService(self)
        result: defer.Deferred = defer.succeed(None)
        for service in reversed(list(self)):
            result.addCallback(lambda _, service=service: service.stopService())
            result.addErrback(lambda failure: log.error("stopping a service failed: %s", failure.getErrorMessage()))
        return result


class ConnectionsService(Service):
    """Every accepted connection, as one service: stopping closes them all (their queued replies still go
    out) and waits until they are gone, for at most CLOSE_TIMEOUT."""

    name = "connections"

    def __init__(self, connections: ConnectionRegistry, reactor: Any) -> None:
        self.connections = connections
        self.reactor = reactor

    def stopService(self) -> defer.Deferred:  # noqa: N802
        super().stopService()
        for connection in self.connections:
            connection.close()
        done: defer.Deferred = defer.Deferred()
        deadline = self.reactor.seconds() + CLOSE_TIMEOUT

        def wait_closed() -> None:
            if len(self.connections) and self.reactor.seconds() < deadline:
                self.reactor.callLater(CLOSE_POLL, wait_closed)
            else:
                done.callback(None)

        wait_closed()
        return done


class Server:
    def __init__(self, settings: Settings, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.settings = settings
        self.reactor = reactor
        enabled = [protocols.load(name) for name in settings.frontends]
        _check_reactor(enabled, reactor)
        prefix = settings.job_handle_prefix.encode() if settings.job_handle_prefix else None
        self.store = build_store(settings, reactor)
        self.cluster: SharedQueue | None = None
        if settings.shared and self.store is not None:
            from gearman_gateway.cluster import SharedQueue

            self.cluster = SharedQueue(self.store, reactor, settings.shared_dead_after)
        # with job observers the scheduler is made as an ObservedScheduler (made, not swapped: see observing.py)
        scheduler_class = ObservedScheduler if observes(settings.monitoring) else Scheduler
        self.scheduler = scheduler_class(
            reactor,
            handle_prefix=prefix,
            job_retries=settings.job_retries,
            worker_wakeup=settings.worker_wakeup,
            store=self.cluster or self.store,
            retry_policies=retry_policies(settings),
            turn_end=end_of_turn(reactor, first=True),
            max_jobs=settings.max_queued_jobs,
            max_bytes=settings.max_queued_bytes,
        )
        if self.cluster is not None:
            self.cluster.attach(self.scheduler)
        self.monitoring = Monitoring(
            settings.monitoring,
            self.scheduler,
            reactor,
            store=self.store.backend if self.store is not None else None,
            queue_type=settings.queue_type,
        )
        self.results: ResultCache | None = None
        if settings.result_cache_memory > 0:
            self.results = ResultCache(reactor, settings.result_cache_memory, settings.result_ttl)
            self.scheduler.observer = self.results
        self.connections = ConnectionRegistry(settings.max_connections, peer_limits(settings, reactor))
        self.access = Access(settings.security, self.scheduler)
        self.admin = Admin(
            self.scheduler,
            self.connections,
            AdminControls(
                shutdown=lambda graceful: reactor.callLater(0, self.shutdown, graceful),
                verbose_level=self._verbose_level,
                allow_remote_shutdown=settings.allow_remote_shutdown,
                store_status=(self.cluster or self.store).describe if self.store is not None else None,
                frontend_states=self.frontend_states,
                monitoring=self.monitoring,
                frontend_metrics=self.frontend_metrics,
                cluster=self.cluster.cluster_view if self.cluster is not None else None,
            ),
            self.access,
        )
        self.service = OrderedServices()
        if self.store is not None:
            StoreService(self.store, self.scheduler, settings, self.cluster).setServiceParent(self.service)
        if self.monitoring.durable_service is not None:  # stops after the connections: their last jobs are in
            self.monitoring.durable_service.setServiceParent(self.service)
        ConnectionsService(self.connections, reactor).setServiceParent(self.service)
        if self.monitoring.hooks_service is not None:
            self.monitoring.hooks_service.setServiceParent(self.service)
        self.frontends: dict[str, list[IService]] = {}
        context = protocols.FrontendContext(
            settings, self.scheduler, self.admin, self.connections, reactor, results=self.results, access=self.access
        )
        for frontend in enabled:
            own = dataclasses.replace(context, options=settings.options(frontend.name))
            services = frontend.build(own)
            self.frontends[frontend.name] = services
            for service in services:
                service.setServiceParent(self.service)
        self._stopping = False
        self._stopped: defer.Deferred | None = None
        self._stop_waiters: list[defer.Deferred] = []
        self._draining = False

    def _verbose_level(self) -> str:
        level = logging.getLogger("gearman_gateway").getEffectiveLevel()
        for name in reversed(LEVEL_ORDER):
            if LEVELS[name] >= level:
                return name
        return "FATAL"

    def start(self, after_binding: Callable[[], None] | None = None) -> None:
        """Bind every frontend's ports (``privilegedStartService``), call ``after_binding`` (gearmand drops
        root there), then open the store and replay its jobs and start the rest (``startService``). Nothing
        is accepted before the reactor runs, so replay still comes before the first client. Raises
        (StoreError, OSError, ...) when any of it fails: a server never runs half-started. Once started, the
        server stops with the reactor if it has not stopped before."""
        try:
            self.service.privilegedStartService()
            if after_binding is not None:
                after_binding()
            self.service.startService()
        except BaseException:  # never half-started: stop listening, give the queue file up
            self.stop()
            if self.cluster is not None:
                self.cluster.close()
            elif self.store is not None:
                self.store.close()  # now, not after the listeners' close (which needs the reactor to run)
            raise
        self.reactor.addSystemEventTrigger("before", "shutdown", self.stop)

    def addresses(self) -> dict[str, list[tuple[str, int]]]:
        """Bound (host, port) per frontend that listens (none while it is not listening); frontends that only
        connect out are not in it. With port 0 this is how an embedder learns the port."""
        found: dict[str, list[tuple[str, int]]] = {}
        for name, services in self.frontends.items():
            listeners = [service for service in services if isinstance(service, ListeningService)]
            if listeners:
                found[name] = [address for address in (s.address() for s in listeners) if address is not None]
        return found

    def frontend_states(self) -> list[dict[str, Any]]:
        """Every enabled frontend, listening or not: its name, what it is doing (``listening``, ``connected``,
        ``connecting``, ``stopped``...: several words when its services differ), where it listens
        (``host:port`` strings) and any detail its services give (whom they connect to)."""
        found = []
        for name, services in self.frontends.items():
            states = [_state_of(service) for service in services]
            words = list(dict.fromkeys(state.state for state in states)) or ["stopped"]
            found.append(
                {
                    "name": name,
                    "state": ",".join(words),
                    "addresses": [_host_port(state.address) for state in states if state.address is not None],
                    "detail": "; ".join(state.detail for state in states if state.detail and state.address is None),
                }
            )
        return found

    def frontend_metrics(self) -> list[MetricFamily]:
        """The Prometheus families the enabled frontends' services add (``ReportsMetrics``), and the security
        policy's refusals."""
        return self.access.metric_families() + [
            family
            for services in self.frontends.values()
            for service in services
            if isinstance(service, ReportsMetrics)
            for family in service.frontend_metrics()
        ]

    def stop(self) -> defer.Deferred:
        """Stop the services: listeners first, then every connection (at once, as SIGTERM does: queued
        replies still go out), then the store (so that another server may open its queue: the sqlite file's
        lock goes with it). Each caller gets a Deferred that fires once all of it is done."""
        self._stopping = True
        if self._stopped is None:
            self._stopped = defer.maybeDeferred(self.service.stopService)
            self._stopped.addBoth(self._wake_stop_waiters)
        waiter: defer.Deferred = defer.Deferred()
        if self._stop_waiters is None:  # already stopped
            waiter.callback(None)
        else:
            self._stop_waiters.append(waiter)
        return waiter

    def _wake_stop_waiters(self, outcome: Any) -> None:
        waiters, self._stop_waiters = self._stop_waiters, None  # type: ignore[assignment]
        for waiter in waiters:
            waiter.callback(None)

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
        """Stop the services, then the reactor (once)."""
        if self._stopping:
            return
        self.stop().addBoth(lambda _: self.reactor.stop() if self.reactor.running else None)


def _state_of(service: IService) -> ServiceState:
    if isinstance(service, ReportsState):
        return service.frontend_state()
    return ServiceState("running" if service.running else "stopped")


def _host_port(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_reactor(frontends: list[Any], reactor: Any) -> None:
    """A frontend that needs Twisted's asyncio reactor cannot run on another one: say so before anything
    starts (gearmand installs the right one itself; an embedding program chooses its own)."""
    for frontend in frontends:
        if frontend.reactor == "asyncio":
            from twisted.internet.asyncioreactor import AsyncioSelectorReactor

            if not isinstance(reactor, AsyncioSelectorReactor):
                raise RuntimeError(
                    f"the {frontend.name} frontend needs Twisted's asyncio reactor, not {type(reactor).__name__} "
                    "(install it with twisted.internet.asyncioreactor.install() before importing the reactor)"
                )
