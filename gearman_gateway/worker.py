"""Gearman workers with the classic API of the C, PHP and Perl libraries: ``Worker`` and ``AsyncWorker``.

    worker = Worker()                                  # localhost:4730; or Worker("h1,h2:4731")
    worker.add_function("reverse", lambda job: job.workload[::-1])
    worker.work_forever()

A worker holds a connection to every server, takes jobs from each (one at a time), sleeps with PRE_SLEEP
until a server's NOOP wakes it, and reconnects with back-off to a server that went away. The callback gets
the ``Job``; what it returns (bytes or str) is the result; it fails the job by raising (WORK_EXCEPTION;
``WorkFail`` for a plain WORK_FAIL) or by returning ``WORK_FAIL``. Both classes share one sans-IO
session (``clientlib.worker_session``); ``AsyncWorker`` also accepts ``async def`` callbacks.
"""

from __future__ import annotations

import inspect
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

from gearman_gateway.clientlib.api import AsyncEndpoint, BlockingEndpoint, Endpoint
from gearman_gateway.clientlib.errors import WORK_FAIL, GearmanError, WorkFail
from gearman_gateway.clientlib.fields import to_bytes
from gearman_gateway.clientlib.links import Backoff
from gearman_gateway.clientlib.tls import client_context
from gearman_gateway.clientlib.transport import CONNECT_TIMEOUT, Steps, Wait
from gearman_gateway.clientlib.worker_session import Job, WorkerSession

__all__ = ["WORK_FAIL", "AsyncWorker", "Job", "WorkFail", "Worker"]

B = TypeVar("B")  # what work() gives back: bool, or an awaitable of it
N = TypeVar("N")  # what work_forever() gives back: None, or an awaitable of it


class _WorkerAPI(Endpoint, Generic[B, N]):
    """The classic worker API; the waiting methods are steps run by the subclass's transport."""

    #: Whether a callback may return an awaitable (only an event loop can wait for it).
    awaits_callbacks = False

    def __init__(
        self,
        servers: str | Iterable[str] | None = None,
        *,
        client_id: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        backoff: Backoff | None = None,
        ssl_ca: str | None = None,
        ssl_cert: str | None = None,
        ssl_key: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        token: str | None = None,
    ) -> None:
        """``client_id`` is what the server's ``workers`` list shows; ``backoff`` paces reconnects;
        ``ssl_ca``/``ssl_cert``/``ssl_key``: TLS, as for ``Client``;
        ``token``: a gearman-gateway identity's token, presented first on every connection."""
        session = WorkerSession(client_id=to_bytes(client_id) if client_id else None, backoff=backoff)
        session.token = to_bytes(token) if token else None
        self._session: WorkerSession = session
        self._stopping = False
        super().__init__(session, servers, connect_timeout, ssl_context or client_context(ssl_ca, ssl_cert, ssl_key))

    def add_function(self, name: str | bytes, callback: Callable[[Job], Any], timeout: float | None = None) -> None:
        """Serve ``name`` with ``callback(job)``. ``timeout``: seconds the server lets one job run before
        giving it to another worker (CAN_DO_TIMEOUT); None for no limit."""
        self._session.add_function(name, callback, timeout)

    def unregister_function(self, name: str | bytes) -> None:
        self._session.remove_function(name)

    def set_client_id(self, client_id: str) -> None:
        self._session.set_client_id(to_bytes(client_id))

    def work(self, timeout: float | None = None) -> B:
        """Wait for one job and run it. True when a job ran; False when ``timeout`` seconds passed
        or stop() was called first."""
        return self._drive(self._work_steps(timeout))

    def stop(self) -> None:
        """Make a running work_forever() (or work()) return soon; callable from another thread."""
        self._stopping = True
        self._transport.interrupt()

    def _work_steps(self, timeout: float | None) -> Steps[bool]:
        session = self._session
        if not session.links:
            self.add_server()
        if not session.functions:
            raise GearmanError("no functions registered: call add_function() first")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if not (yield Wait(session.has_job, deadline)):
                return False
            job = session.take_job()
            if job is None:
                continue
            if job.connection_lost:
                session.abandon(job)  # its server is gone and has re-queued it
                continue
            function = session.functions.get(job._function)
            try:
                if function is None:
                    raise WorkFail(f"{job.function_name} is no longer registered")
                outcome = function.callback(job)
                if inspect.isawaitable(outcome):
                    if not self.awaits_callbacks:
                        _close(outcome)
                        raise TypeError("an async callback needs AsyncWorker")
                    outcome = yield outcome
            except Exception as error:  # the job fails; the worker goes on
                session.fail(job, error)
            else:
                session.finish(job, outcome)
            finally:
                if not job.finished:  # interrupted (Ctrl-C, a cancelled task): fail it rather than hold it
                    session.fail(job, WorkFail("interrupted"))
            return True

    def _forever_steps(self) -> Steps[None]:
        try:
            while not self._stopping:
                yield from self._work_steps(None)
        finally:
            self._stopping = False
            self._transport.interrupted = False  # a stop() that came during the last job is used up


def _close(awaitable: Awaitable[Any]) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


class Worker(_WorkerAPI[bool, None], BlockingEndpoint):
    """Blocking worker: one job at a time, in the calling thread."""

    def work_forever(self) -> None:
        """Run jobs until stop() is called."""
        self._drive(self._forever_steps())


class AsyncWorker(_WorkerAPI[Awaitable[bool], Awaitable[None]], AsyncEndpoint):
    """asyncio worker: ``await worker.work()``; callbacks may be plain functions or coroutines."""

    awaits_callbacks = True

    async def work_forever(self) -> None:
        """Run jobs until stop() is called or the task is cancelled."""
        await self._drive(self._forever_steps())
