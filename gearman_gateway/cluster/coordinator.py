"""The scheduler's durable store in shared mode, and this server's life in the cluster (docs/scale.md).

``SharedQueue`` stands where the store runner stands for one server (DESIGN.md seam 3: ``add``, ``remove``,
``bury``, ``revive``), so the scheduler knows no SQL and no cluster: it numbers jobs with its own sequence, and
this class turns those numbers into cluster-unique ids (``cluster_id``) before the runner group-commits them.
A new job is inserted as this server's when one of its workers can do the function, else as the cluster's
(``HandedOff``: the scheduler acknowledges it and forgets it). A batch that inserts jobs this server keeps also
claims the older unowned jobs of their functions, which are queued ahead of them (``Ahead``: FIFO across
servers). Foreground jobs with a unique are coalesced across servers: one that runs here registers its unique
(``share_unique``), and a client of another server with that unique watches it (``_watch``).

On a thread of its own, with a connection of its own (``ClusterLink``), it:
* claims unowned jobs of the functions its workers can do, up to PREFETCH held and not yet finished, when a
  notification names one of them, after every (re)LISTEN, and on every poll (the fallback for a lost
  notification, or no LISTEN at all behind a transaction-mode pooler); claimed rows join the scheduler's queues
  (``Scheduler.adopt``);
* writes a heartbeat every ``dead_after / 3`` seconds, and renews the lease of every row it holds every
  ``lease / 3`` seconds;
* on every poll, makes claimable the rows of servers whose heartbeat is ``dead_after`` old (or whose lease
  lapsed), and notifies.
Failures of any of these are logged and retried at their next tick: the scheduler goes on with what it holds.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from gearman_gateway.cluster.relay import FINAL, Event, RelayBack, RelayWorker
from gearman_gateway.scheduler.job import Job, JobState
from gearman_gateway.stores.base import HandedOff, StoredJob
from gearman_gateway.stores.runner import AddCallback, StoreRunner
from gearman_gateway.stores.shared_postgres import (
    LOCAL_BITS,
    Ahead,
    ClusterLink,
    Notifications,
    Peer,
    SharedPostgresStore,
    SharedRow,
    Watcher,
    cluster_id,
)

if TYPE_CHECKING:
    from gearman_gateway.scheduler import Scheduler

log = logging.getLogger("gearman_gateway.cluster")

#: Claimed jobs a server holds at most before its workers have finished some: enough to keep its workers busy
#: between two claims (one claim per PREFETCH / 2 jobs under load), few enough that a server that dies leaves
#: little for the others to wait for.
PREFETCH = 256
#: Longest time between two polls; shorter when ``dead_after`` is short (a dead server is found by a poll).
POLL_MAX = 1.0
#: Relay rows' ids: this bit set in the server's own part, so they never meet its background jobs' ids.
RELAY_BIT = 1 << (LOCAL_BITS - 1)
#: With LISTEN up, watchers come with a NOTIFY (or a claim): the poll reads them only every this many polls, in
#: case a notification was lost (each read is a transaction on the cluster thread, which heartbeats share).
WATCHER_POLLS = 5
#: Seconds between two readings of the cluster's queues for admin `status cluster` (a count over the table).
STATUS_INTERVAL = 2.0
#: Jobs handed to the cluster whose status (GET_STATUS, /jobs/<handle>) this gateway answers from the table: the
#: most recent ones (an entry is a handle and a row id or a unique: about 200 bytes).
REMEMBERED = 65536


class HandedJobs:
    """Jobs this gateway acknowledged and handed to the cluster (it keeps no copy), by handle, the most recent
    REMEMBERED: their row (its id; 0 when the job coalesced with another gateway's: its function and unique)."""

    def __init__(self, limit: int = REMEMBERED) -> None:
        self.limit = limit
        self._rows: OrderedDict[bytes, tuple[int, bytes, bytes]] = OrderedDict()

    def remember(self, handle: bytes, job_id: int, function: bytes, unique: bytes) -> None:
        rows = self._rows
        rows[handle] = (job_id, function, unique)
        rows.move_to_end(handle)
        if len(rows) > self.limit:
            rows.popitem(last=False)

    def get(self, handle: bytes) -> tuple[int, bytes, bytes] | None:
        return self._rows.get(handle)


class SharedQueue:
    """The DurableStore of a scheduler in shared mode (see the module's docstring)."""

    shares_uniques = True  # foreground jobs with a unique are told (share_unique)

    def __init__(self, runner: StoreRunner, reactor: Any, dead_after: float = 3.0) -> None:
        self.runner = runner
        self.backend: SharedPostgresStore = runner.backend  # type: ignore[assignment]
        self.reactor = reactor
        self.dead_after = dead_after
        self.poll_interval = min(POLL_MAX, dead_after / 3)
        #: Seconds after an outage (this gateway's, or the database's restart) before any takeover: every live
        #: gateway has written a heartbeat and renewed its leases by then.
        self.takeover_grace = dead_after + runner.backend.lease / 3  # type: ignore[attr-defined]
        self.link = ClusterLink(self.backend, dead_after, self.takeover_grace)
        self.notifications = Notifications(self.backend, self._heard_elsewhere)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cluster")
        self.scheduler: Scheduler | None = None
        self.relay: RelayWorker | None = None
        self._relay_rows = 0  # relay rows inserted so far (their ids)
        self._relaying: dict[int, None] = {}  # relay rows this server claimed and runs: renewed like its own
        #: Clients of other servers attached to jobs here (coalesced by unique): (server, handle there), until the
        #: transaction of their final event has deleted their watcher rows.
        self._watching: set[tuple[int, bytes]] = set()
        self._watched: set[bytes] = set()  # jobs of this server's clients that watch a job elsewhere: handles
        #: Foreground jobs run here whose unique is in the table: handle -> (job, row id); deleted once ended.
        self._registered: dict[bytes, tuple[Job, int]] = {}
        #: Foreground jobs waiting for their unique's registration (``share_unique``), written at the end of the
        #: turn; and those whose registration is under way, by handle (a promotion to background waits for it).
        self._registering: list[tuple[Job, int]] = []
        self._in_flight: dict[bytes, list[tuple[StoredJob, AddCallback]]] = {}
        self._promoted: dict[int, int] = {}  # the scheduler's job id -> its registration row, now a background job
        #: FIFO across servers: commits of jobs this server keeps, held while a claim of their function is under
        #: way (its rows are older: they are queued ahead, then these become runnable).
        self._claim_functions: set[bytes] = set()
        self._after_claim: list[tuple[AddCallback, Exception | None]] = []
        self._for_peer = False
        self._polls = 0  # a submit for another server's client is under way (``_submit_for_peer``)
        self._outbox: list[Event] = []  # events of relayed jobs, written at the end of the turn
        self._adopted: dict[int, int] = {}  # the scheduler's job id -> the cluster's, for claimed jobs
        self._claiming = False
        self._claim_again = False
        self._more = False  # the last claim was full: more may be waiting
        self._timers: dict[str, Any] = {}
        self._stopped = False
        self._failing: dict[str, str] = {}  # what -> its last error, while it fails
        self._busy: set[str] = set()  # periodic work under way (``_run``'s ``once``)
        self._last_status = 0.0
        #: When this gateway's cluster work last came back from a failure: for a while after that it takes over
        #: no other gateway's jobs (the others were probably cut off too, and have not written a heartbeat yet).
        self._recovered_at = 0.0
        # figures for admin and the JSON status
        self.claims = 0
        self.claimed = 0
        self.notifications_heard = 0
        self.peers: list[Peer] = []
        self.handed = HandedJobs()
        self.cluster_queues: dict[bytes, tuple[int, int]] = {}

    @property
    def name(self) -> str:
        return self.runner.name

    @property
    def server(self) -> int:
        return self.backend.server

    def attach(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.relay = RelayWorker(scheduler, self.reactor, self._relay_out)
        self.backend.claim_room = lambda: PREFETCH - len(self._adopted)

    def _own_workers(self, name: bytes) -> int:
        assert self.relay is not None
        return self.relay.own_workers(name)

    # -- the DurableStore protocol (the scheduler's calls)

    def add(self, row: StoredJob, callback: AddCallback) -> None:
        waiting = self._in_flight.get(row.handle)
        if waiting is not None:  # a promotion to background of a job whose registration is under way
            waiting.append((row, callback))
            return
        registered = self._registered.get(row.handle)
        if registered is not None:
            self._promote(row, registered[1], callback)
            return
        local = self._own_workers(row.function) > 0
        shared = SharedRow(
            cluster_id(self.server, row.job_id),
            row.handle,
            row.function,
            row.unique,
            row.priority,
            row.data,
            row.when,
            local=local,
        )
        if local:
            self.runner.add(shared, lambda error: self._committed_here(error, callback, row.function))
        else:
            self.runner.add(shared, lambda error: self._handed(error, row, shared.job_id, callback))

    def _handed(self, error: Exception | None, row: StoredJob, job_id: int, callback: AddCallback) -> None:
        """A job committed as the cluster's: GET_STATUS by its handle is answered from its row from now on."""
        if isinstance(error, HandedOff):
            if error.handle:  # coalesced with the cluster's job of its unique
                self.handed.remember(error.handle, 0, row.function, row.unique)
            else:
                self.handed.remember(row.handle, job_id, b"", b"")
        callback(error)

    def status_elsewhere(self, handle: bytes, answer: Callable[[bool, bool], None]) -> bool:
        """A job this gateway handed to the cluster: True, and ``answer(known, held)`` comes later, read from its
        row (known: it is live; held: a gateway holds it, running it or about to). False: not one of those."""
        entry = self.handed.get(handle)
        if entry is None or self._stopped:
            return False
        self._run(
            "job status",
            lambda: self.link.job_state(*entry),
            lambda held: answer(held is not None, bool(held)),
            failed=lambda: answer(False, False),
        )
        return True

    def _committed_here(self, error: Exception | None, callback: AddCallback, function: bytes = b"") -> None:
        """A job inserted as this server's: the older jobs its batch claimed (Ahead) are queued ahead of it
        before it becomes runnable (FIFO across servers, docs/scale.md). While a claim of its function is under
        way (its rows were locked, so the batch's own claim passed over them), it becomes runnable only after
        that claim's rows are queued, ahead of it."""
        if isinstance(error, Ahead):
            self._adopt(error.rows, ahead=True)
            self._take_watchers()
            error = None
        if self._claiming and function in self._claim_functions and not self._stopped:
            self._after_claim.append((callback, error))
            return
        callback(error)

    def _claim_ended(self) -> None:
        """The commits held for the claim (``_committed_here``) go on."""
        self._claiming = False
        self._claim_functions = set()
        held, self._after_claim = self._after_claim, []
        for callback, error in held:
            callback(error)

    def _promote(self, row: StoredJob, row_id: int, callback: AddCallback) -> None:
        """A foreground job run here whose unique is registered became background (a background submit with its
        unique): its registration row becomes its background row (durably, by the store's own commit), which
        keeps the unique: no second row that could run it a second time elsewhere."""
        self._registered.pop(row.handle, None)
        self._promoted[row.job_id] = row_id
        shared = SharedRow(row_id, row.handle, row.function, row.unique, row.priority, row.data, row.when, local=True)
        shared.promotes = True
        self.runner.add(shared, callback)

    def _adopt(self, rows: list[StoredJob], ahead: bool = False) -> None:
        assert self.scheduler is not None
        self.claims += 1
        self.claimed += len(rows)
        if not ahead:  # a claim's rows still go ahead of this server's jobs whose commit is under way
            functions = self.scheduler.functions
            ahead = any((fn := functions.get(row.function)) is not None and fn.pending for row in rows)
        if ahead:
            for seq, row in zip(self.scheduler.adopt_ahead(rows), rows, strict=True):
                self._adopted[seq] = row.job_id
        else:
            for row in rows:
                self._adopted[self.scheduler.adopt(row)] = row.job_id

    def share_unique(self, job: Job) -> bool:
        """A foreground job with a unique, new here, that a worker here can run: True, it waits (PENDING) for
        its unique's registration in the table (a row this server owns, as a relay row for itself), written on
        the cluster's connection in one transaction per reactor turn (``_register``), so that one job runs per
        unique across the cluster (docs/scale.md). When a live job elsewhere holds the unique, this one watches
        it instead of running. Its row is deleted once the job has ended (``_unregister_ended``). A job no
        worker here can do is relayed with its unique; one submitted for a peer has its unique held already."""
        name = job.function.name
        if self._for_peer or job.unique == b"-" or self._stopped or not self._own_workers(name):
            return False
        self._in_flight[job.handle] = []
        self._queue_registration(job)
        return True

    def _queue_registration(self, job: Job) -> None:
        if not self._registering:
            self.reactor.callLater(0, self._register)
        self._relay_rows += 1
        self._registering.append((job, cluster_id(self.server, RELAY_BIT | self._relay_rows)))

    def _register(self) -> None:
        batch, self._registering = self._registering, []
        if not batch:
            return
        rows = [StoredJob(row_id, job.handle, job.function.name, job.unique, job.priority, job.data)
                for job, row_id in batch]  # fmt: skip
        self._run(
            "registration",
            lambda: self.link.register(rows),
            lambda owners: self._registered_now(batch, owners),
            failed=lambda: self._registered_now(batch, [None] * len(batch)),
        )

    def _registered_now(self, batch: list[tuple[Job, int]], owners: list[int | None]) -> None:
        """Each job runs here (None: registered, or the registration failed: it runs unregistered rather than
        not at all) or watches the job that holds its unique elsewhere (the number of its holder)."""
        assert self.scheduler is not None and self.relay is not None
        for (job, row_id), owner in zip(batch, owners, strict=True):
            if owner is None:
                self._registered[job.handle] = (job, row_id)
                if job.state is JobState.RUNNING:  # it watched a job that ended unseen: back from the relay
                    self.relay.running.pop(job.handle, None)
                self.scheduler.registered(job)
            elif job.state is JobState.PENDING:
                self._watched.add(job.handle)
                self.relay.running[job.handle] = job
                self.scheduler.run_elsewhere(job, self.relay.worker)
            elif job.handle in self.relay.running:  # registered again after an orphaned watch: watching again
                self._watched.add(job.handle)
            for row, callback in self._in_flight.pop(job.handle, ()):
                if owner is None:
                    self.add(row, callback)
                else:  # the job it would promote is another gateway's
                    callback(HandedOff())

    def _unregister_ended(self) -> list[int]:
        """Delete the rows of registered foreground jobs that ended; the row ids of the live ones (renewed)."""
        live = []
        for handle, (job, row_id) in list(self._registered.items()):
            if job.state is JobState.DONE:
                del self._registered[handle]
                self.runner.remove(row_id)
            else:
                live.append(row_id)
        return live

    def remove(self, job_id: int) -> None:
        adopted = self._adopted.pop(job_id, None)
        if adopted is None and self._promoted:
            adopted = self._promoted.pop(job_id, None)
        self.runner.remove(adopted if adopted is not None else cluster_id(self.server, job_id))
        if self._more and not self._claiming and len(self._adopted) <= PREFETCH // 2:
            self.claim()

    def bury(self, job_id: int, reason: str) -> None:
        self.runner.bury(self._cluster_id(job_id), reason)

    def revive(self, job_id: int) -> None:
        self.runner.revive(self._cluster_id(job_id))

    def _cluster_id(self, job_id: int) -> int:
        adopted = self._adopted.get(job_id)
        if adopted is None and self._promoted:
            adopted = self._promoted.get(job_id)
        return adopted if adopted is not None else cluster_id(self.server, job_id)

    # -- life

    def start(self) -> None:
        """After the store opened (this server has its number): cluster-unique handles, then the threads and
        timers. The handle prefix gains the server's number: three servers on one host never hand out one
        handle, nor does one server before and after a restart."""
        assert self.scheduler is not None
        prefix = self.scheduler.handle_prefix
        self.scheduler.handle_prefix = prefix[:-1] + b"-%d:" % self.server
        log.log(25, "%s: this is server %d of the cluster", self.backend.where, self.server)
        if self.backend.listen:
            self.notifications.start()
        else:
            log.log(
                25, "%s: no LISTEN (--shared-listen off): polling every %.2fs", self.backend.where, self.poll_interval
            )
        self._every("heartbeat", self.dead_after / 3, self._heartbeat)
        self._every("renew", self.backend.lease / 3, self._renew)
        self._every("poll", self.poll_interval, self._poll)

    def stop(self) -> None:
        """Before the runner closes (which gives this server's rows back to the cluster)."""
        self._stopped = True
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()
        self.notifications.stop()
        self._thread.submit(self.link.close)
        self._thread.shutdown(wait=True)
        self._claim_ended()  # the commits a claim held are acknowledged: its answer will not come now

    def _every(self, what: str, interval: float, action: Callable[[], None]) -> None:
        def tick() -> None:
            if self._stopped:
                return
            action()
            self._timers[what] = self.reactor.callLater(interval, tick)

        tick()

    def _run(
        self,
        what: str,
        work: Callable[[], Any],
        then: Callable[[Any], None] | None = None,
        once: bool = False,
        failed: Callable[[], None] | None = None,
    ) -> None:
        """``work`` on the cluster thread; ``then(result)`` back on the reactor's; a failure is logged once
        until that kind of work succeeds again, and ``failed()`` is called. ``once``: skipped while the same
        kind is still under way (the periodic work: a database that hangs must not pile up a heartbeat per tick
        behind it)."""
        if self._stopped or (once and what in self._busy):
            if failed is not None:
                failed()
            return
        if once:
            self._busy.add(what)
        future = self._thread.submit(work)
        future.add_done_callback(lambda f: self.reactor.callFromThread(self._ran, what, f, then, failed))

    def _ran(
        self, what: str, future: Future, then: Callable[[Any], None] | None, failed: Callable[[], None] | None
    ) -> None:
        self._busy.discard(what)
        error = future.exception()
        if error is not None:
            if what not in self._failing:
                log.error("cluster: %s failing: %s", what, error)
            self._failing[what] = str(error)
            if what == "claim":
                self._claim_ended()
            if failed is not None:
                failed()
            return
        if what in self._failing:
            del self._failing[what]
            self._recovered_at = time.monotonic()
            log.warning("cluster: %s works again", what)
            self.runner.retry_now()  # the database is back (perhaps a promoted standby): so is the store
            # a heartbeat and this gateway's leases at once, not at their next ticks: the other gateways take over
            # what looks dead or lapsed once their own grace after the outage is over
            if not self._stopped:
                self._heartbeat()
                self._renew()
        if then is not None and not self._stopped:
            then(future.result())

    # -- heartbeats, takeover, status

    def _heartbeat(self) -> None:
        info = self._summary()
        status = time.monotonic() - self._last_status >= STATUS_INTERVAL
        if status:
            self._last_status = time.monotonic()

        def work() -> tuple[list[Peer], dict[bytes, tuple[int, int]] | None]:
            self.link.heartbeat(info)
            return self.link.peers(), (self.link.queued() if status else None)

        self._run("heartbeat", work, self._heartbeat_done, once=True)

    def _heartbeat_done(self, result: tuple[list[Peer], dict[bytes, tuple[int, int]] | None]) -> None:
        self.peers, queues = result
        if queues is not None:
            self.cluster_queues = queues
        elsewhere = {
            name.encode("utf-8", "surrogateescape")
            for peer in self.peers
            if peer.alive and peer.server != self.server
            for name, counts in (peer.info.get("functions") or {}).items()
            if isinstance(counts, list) and len(counts) == 3 and counts[2]
        }
        assert self.relay is not None
        self.relay.serve(elsewhere)

    def _summary(self) -> dict[str, Any]:
        """This server's queues as its peers' `status cluster` shows them."""
        assert self.scheduler is not None
        functions = {
            fn.name.decode("utf-8", "replace"): [fn.total - fn.running, fn.running, self._own_workers(fn.name)]
            for fn in self.scheduler.functions.values()
            if fn.total or fn.registrations
        }
        return {"functions": functions, "held": len(self._adopted)}

    def _renew(self) -> None:
        """The leases of the rows of every background job this server holds: claimed, submitted here, or being
        written (a row committed after this list was made is fresh: its lease is whole); and of finished jobs
        whose delete is not committed yet (after an outage longer than the lease, until the store reconnects:
        else another server would take the row over and run the job again)."""
        assert self.scheduler is not None
        held = [self._cluster_id(job_id) for job_id in self.scheduler.background_job_ids()]
        held += self._relaying
        held += self.runner.unwritten()
        held += self._unregister_ended()
        self._run("lease renewal", lambda: self.link.renew(held), once=True)

    def _poll(self) -> None:
        if self._registered:
            self._unregister_ended()  # an ended job's unique is free again within a poll, not a renewal
        if time.monotonic() - self._recovered_at < self.takeover_grace:
            self.claim()  # just back from an outage: no takeover yet (see _recovered_at)
        else:
            self._run("takeover", self.link.take_over, lambda _: self.claim(), once=True)
        if self.relay is not None and self.relay.running:
            self._take_events()
        if self._watched:
            self._run("watchers", self.link.orphans, self._orphaned, once=True)
        self._polls += 1
        if not self.notifications.listening or self._polls % WATCHER_POLLS == 0:
            self._take_watchers(once=True)  # no LISTEN, or a lost notification

    # -- claims

    def _heard_elsewhere(self, channel: str, payload: str | None) -> None:
        """On the LISTEN thread."""
        self.reactor.callFromThread(self._heard, channel, payload)

    def _heard(self, channel: str, payload: str | None) -> None:
        self.notifications_heard += payload is not None
        if channel == self.backend.tables.server_channel(self.server):
            if payload == "w":
                self._take_watchers()
            else:
                self._take_events()
            return
        if payload:
            try:
                function = bytes.fromhex(payload)
            except ValueError:
                function = b""
            fn = self.scheduler.functions.get(function) if self.scheduler is not None and function else None
            if function and (fn is None or not self._own_workers(function)):
                return  # not a job for this server's workers
        self.claim()

    def _capable(self) -> list[bytes]:
        assert self.scheduler is not None
        return [fn.name for fn in self.scheduler.functions.values() if fn.registrations and self._own_workers(fn.name)]

    def claim(self) -> None:
        """Claim what this server's workers can do, up to PREFETCH held; one claim at a time."""
        if self._stopped or self.scheduler is None:
            return
        if self._claiming:
            self._claim_again = True
            return
        functions = self._capable()
        room = PREFETCH - len(self._adopted)
        if not functions:
            return
        if room <= 0:
            self._more = True
            return
        self._claiming = True
        self._claim_functions = set(functions)
        self._claim_again = False
        now = int(time.time())
        self._run("claim", lambda: (room, self.link.claim(functions, room, now)), self._claimed)

    def _claimed(self, result: tuple[int, tuple[list[tuple[StoredJob, int]], list[Watcher]]]) -> None:
        room, (rows, watchers) = result
        for row, reply_to in rows:
            if reply_to:
                self._run_relayed(row, reply_to)
        self._adopt([row for row, reply_to in rows if not reply_to])
        self._claim_ended()  # the commits it held become runnable behind its rows
        if watchers:
            self._watch(watchers)
        self._more = len(rows) >= room
        if self._claim_again or (self._more and len(self._adopted) <= PREFETCH // 2):
            self.claim()

    # -- relay (cluster/relay.py)

    def _relay_out(self, jobs: list[Job]) -> None:
        """Relay rows for jobs the RelayWorker grabbed here."""
        rows = []
        for job in jobs:
            self._relay_rows += 1
            row_id = cluster_id(self.server, RELAY_BIT | self._relay_rows)
            # a foreground job's unique coalesces it with the cluster's live jobs; a background job's is held by
            # its own row already
            unique = b"" if job.background else job.unique
            rows.append(StoredJob(row_id, job.handle, job.function.name, unique, job.priority, job.data))
        self._run("relay", lambda: self.link.relay_out(rows), self._watched.update)

    def _run_relayed(self, row: StoredJob, reply_to: int) -> None:
        """A relay row this server claimed: a foreground job here, its events going back to ``reply_to``."""
        assert self.scheduler is not None
        self._relaying[row.job_id] = None
        back = RelayBack(self._emit, reply_to, row.handle, row.job_id)
        # a relay row of this server's own (its worker connected after the relay took the job): without its
        # unique, which would join the very job its relay stands for here and wait for itself for ever
        unique = b"" if reply_to == self.server else row.unique
        self._submit_for_peer(back, row.function, row.data, unique, row.priority)

    def _submit_for_peer(self, back: RelayBack, function: bytes, data: bytes, unique: bytes, priority: int) -> None:
        """A foreground submit here for a client of another server (a relayed job, a watcher). Its unique is held
        in the table already (its relay row, the watched row): it registers none (``share_unique``)."""
        assert self.scheduler is not None
        self._for_peer = True
        try:
            self.scheduler.submit(function, data, unique, priority, listener=back)
        except Exception as error:  # noqa: BLE001 - a full queue, a shutdown: the client hears a failure
            log.warning("cluster: a job for server %d refused here: %s", back.reply_to, error)
            back.job_fail(None)  # type: ignore[arg-type]
        finally:
            self._for_peer = False

    def _emit(self, event: Event) -> None:
        if event[4]:
            self._relaying.pop(event[4], None)
        if not self._outbox:
            self.reactor.callLater(0, self._flush_events)
        self._outbox.append(event)

    def _flush_events(self) -> None:
        events, self._outbox = self._outbox, []
        if events:
            ended = {(server, handle) for server, handle, kind, _, row in events if kind in FINAL and not row}
            self._run("relay events", lambda: self.link.emit(events), lambda _: self._watching.difference_update(ended))

    def _take_events(self) -> None:
        self._run("relay events", self.link.take_events, self._deliver)

    def _deliver(self, events: list[tuple[bytes, int, bytes]]) -> None:
        assert self.relay is not None
        for handle, kind, data in events:
            if kind in FINAL:
                self._watched.discard(handle)
            self.relay.deliver(handle, kind, data)

    # -- coalescing across servers: watchers

    def _take_watchers(self, once: bool = False) -> None:
        self._run("watchers", self.link.watchers, self._watch, once=once)

    def _watch(self, watchers: list[Watcher]) -> None:
        """Clients of other servers watching jobs this server holds: each joins the job here by its unique (as a
        local client would), with a listener that sends its events back (RelayBack, no relay row). A job that
        finished meanwhile runs again for it (as for a client that came after it ended)."""
        assert self.scheduler is not None
        for server, handle, function, unique, data, priority in watchers:
            if (server, handle) in self._watching:
                continue
            self._watching.add((server, handle))
            self._submit_for_peer(RelayBack(self._emit, server, handle, 0), function, data, unique, priority)

    def _orphaned(self, handles: list[bytes]) -> None:
        """Jobs of this server's clients whose watched job ended before its holder read their watchers: relayed
        again, or registered again when a worker here can run them (they run as new jobs)."""
        assert self.relay is not None
        jobs = [self.relay.running[handle] for handle in handles if handle in self.relay.running]
        self._watched.difference_update(handles)
        if jobs:
            log.info("cluster: %d watched jobs ended unseen; relayed or registered again", len(jobs))
            relayed = []
            for job in jobs:
                if job.unique not in (b"", b"-") and self._own_workers(job.function.name):
                    self._queue_registration(job)  # run here once registered (a relay row would come back here)
                else:
                    relayed.append(job)
            if relayed:
                self._relay_out(relayed)

    # -- admin

    def describe(self) -> dict[str, Any]:
        """The runner's figures and the cluster's: `show store`, the JSON status."""
        return {
            **self.runner.describe(),
            "cluster_server": self.server,
            "cluster_listening": self.notifications.listening,
            "cluster_claims": self.claims,
            "cluster_claimed": self.claimed,
            "cluster_held": len(self._adopted),
            "cluster_failing": "; ".join(f"{what}: {error}" for what, error in self._failing.items()),
        }

    def cluster_view(self) -> dict[str, Any]:
        """Admin `peers` and `status cluster`, and the JSON status's ``cluster``: the servers and the whole
        cluster's queues, from the last heartbeats (at most ``dead_after / 3`` seconds old) and the last count of
        the jobs no server holds (at most STATUS_INTERVAL old)."""
        peers = []
        totals: dict[str, list[int]] = {}
        for peer in self.peers:
            functions = (peer.info.get("functions") or {}) if peer.alive else {}
            peers.append(
                {
                    "server": peer.server,
                    "name": peer.name,
                    "alive": peer.alive,
                    "heartbeat_age": round(peer.heartbeat_age, 3),
                    "held": int(peer.info.get("held", 0)),
                    "this": peer.server == self.server,
                }
            )
            for name, counts in functions.items():
                if isinstance(counts, list) and len(counts) == 3:
                    entry = totals.setdefault(name, [0, 0, 0])
                    entry[0] += counts[0] + counts[1]
                    entry[1] += counts[1]
                    entry[2] += counts[2]
        for name, (unowned, _) in self.cluster_queues.items():
            totals.setdefault(name.decode("utf-8", "replace"), [0, 0, 0])[0] += unowned
        functions = [
            {"name": name, "total": total, "running": running, "workers": workers}
            for name, (total, running, workers) in sorted(totals.items())
        ]
        return {"server": self.server, "peers": peers, "functions": functions}

    def close(self, timeout: float = 10.0) -> None:
        """Stop, then close the runner: its pending deletes go out, then this server's rows go back."""
        if not self._stopped:
            self.stop()
        self.runner.close(timeout)
