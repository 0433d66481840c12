"""Random interleavings of submit / grab / complete / fail / sleep / disconnect against the scheduler.

After every step: each job sits in exactly one place, jobs that never failed wait in submission order
(a background job whose store commit is under way included), jobs whose worker died wait behind all of them
in the order they died, a grab takes the job the rule names (or waits for its commit) and no runnable job
waits while a capable worker sleeps without a NOOP on its way. At the end every background job, and every
foreground job whose client stayed, has finished exactly once; nothing is left in memory.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.task import Clock

from gearman_gateway.scheduler import HELD, Job, JobState, Scheduler, WorkerState
from gearman_gateway.scheduler.core import POISON_DEATHS
from gearman_gateway.stores.base import StoreError
from tests.unit.test_scheduler import Listener, Waker, assert_clean
from tests.unit.test_scheduler_store import FakeStore
from tests.unit.test_scheduler_turns import HoldingWaker, Turns

FUNCTIONS = [b"a", b"b", b"c"]


class SchedulerMachine(RuleBasedStateMachine):
    waker_class: type = Waker

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.clock.advance(1000)
        self.sched = self.make_scheduler()
        self.clients = [Listener() for _ in range(3)]
        self.connected = [True, True, True]
        self.workers: list = []  # (worker, waker) still connected
        self.sequences: dict = {}  # worker -> every registration of it, oldest first (gearmand's entries)
        self.finished: dict[bytes, int] = {}  # handle -> times completed or failed by a worker
        self.submits: list[tuple[int, bytes, bool]] = []  # (client, handle, background)
        self.delayed: set[bytes] = set()  # epoch jobs: they join their queue when due, not in submission order
        self.died_in: dict[Job, int] = {}  # job -> the disconnect that last requeued it as lost (1, 2, ...)
        self.disconnects = 0

    def make_scheduler(self) -> Scheduler:
        return Scheduler(self.clock, handle_prefix=b"H:m")

    # -- clients

    @rule(
        client=st.integers(0, 2),
        function=st.sampled_from(FUNCTIONS),
        unique=st.sampled_from([b"", b"u1", b"u2", b"-"]),
        data=st.sampled_from([b"", b"x", b"y"]),
        priority=st.integers(0, 2),
        background=st.booleans(),
        delay=st.sampled_from([0, 0, 0, 5]),
    )
    def submit(self, client, function, unique, data, priority, background, delay):
        if not self.connected[client]:
            return
        when = int(self.clock.seconds()) + delay if (background and delay) else 0
        job = self.sched.submit(function, data, unique, priority, background, when, None, self.clients[client])
        self.submits.append((client, job.handle, background))
        if when:
            self.delayed.add(job.handle)

    @rule(client=st.integers(0, 2))
    def client_leaves(self, client):
        if self.connected[client]:
            self.connected[client] = False
            self.sched.detach(self.clients[client])

    # -- workers

    @rule(functions=st.sets(st.sampled_from(FUNCTIONS), min_size=1))
    def worker_connects(self, functions):
        waker = self.waker_class()
        worker = self.sched.add_worker(waker)
        for name in sorted(functions):
            self.sched.can_do(worker, name)
        self.workers.append((worker, waker))
        self.sequences[worker] = sorted(functions)

    @precondition(lambda self: self.workers)
    @rule(index=st.integers(0, 100))
    def worker_disconnects(self, index):
        worker, _ = self.workers.pop(index % len(self.workers))
        self.disconnects += 1
        for job in worker.jobs.values():
            self.died_in[job] = self.disconnects
        self.sched.remove_worker(worker)
        del self.sequences[worker]

    @precondition(lambda self: self.workers)
    @rule(index=st.integers(0, 100))
    def worker_dies_on_its_next_job(self, index):
        """A poison job: the worker grabs and its process dies (it may die with other jobs too)."""
        worker, _ = self.workers[index % len(self.workers)]
        self.grab(index)
        if worker.jobs:
            self.worker_disconnects(index)

    @precondition(lambda self: self.workers)
    @rule(index=st.integers(0, 100), name=st.sampled_from(FUNCTIONS), register=st.booleans())
    def worker_changes_registration(self, index, name, register):
        worker, _ = self.workers[index % len(self.workers)]
        if register:
            self.sched.can_do(worker, name)
            self.sequences[worker].append(name)
        else:
            self.sched.cant_do(worker, name)
            self.sequences[worker] = [other for other in self.sequences[worker] if other != name]

    @precondition(lambda self: self.workers)
    @rule(index=st.integers(0, 100))
    def grab(self, index):
        worker, _ = self.workers[index % len(self.workers)]
        expected = self.expected_grab(worker, committed_only=True)  # it cannot wait: PENDING jobs passed over
        job = self.sched.grab(worker)
        assert job is expected, (job, expected)
        if job is not None:
            assert job.worker is worker and job.state == JobState.RUNNING

    @precondition(lambda self: self.workers)
    @rule(index=st.integers(0, 100), fail=st.booleans())
    def finish(self, index, fail):
        worker, _ = self.workers[index % len(self.workers)]
        if not worker.jobs:
            return
        handle = next(iter(worker.jobs))
        self.finished[handle] = self.finished.get(handle, 0) + 1
        if fail:
            self.sched.work_fail(worker, handle)
        else:
            self.sched.work_complete(worker, handle, b"r")

    @precondition(lambda self: self.workers)
    @rule(index=st.integers(0, 100))
    def pre_sleep(self, index):
        worker, _ = self.workers[index % len(self.workers)]
        if worker.state == WorkerState.AWAKE:
            self.sched.pre_sleep(worker)

    @rule(seconds=st.sampled_from([1, 5]))
    def time_passes(self, seconds):
        self.clock.advance(seconds)

    # -- invariants

    @invariant()
    def registrations_agree(self):
        """Each worker's (possibly shared) table says what the functions' own records say, and what the
        worker registered."""
        counts = {name: 0 for name in FUNCTIONS}
        for worker, _ in self.workers:
            assert {fn.name for fn in worker.abilities} == set(self.sequences[worker])
            for fn in worker.abilities:
                assert self.sched.functions.get(fn.name) is fn  # never a function record that was dropped
            for fn, ability in worker.abilities.items():
                counts[fn.name] += ability.count
            assert worker.function_names() == self.sequences[worker][::-1]  # `workers`, as gearmand lists it
        for name, count in counts.items():
            fn = self.sched.functions.get(name)
            assert (fn.registrations if fn is not None else 0) == count, name

    def expected_grab(self, worker, committed_only: bool = False) -> Job | None:
        """The grab rule, independently: of the jobs that never died, the highest priority across the
        worker's functions, then the oldest of the queues' heads (a PENDING head included: the grab waits
        for it; ``committed_only``: passed over, as a grab that cannot wait does). Only when there is none:
        the runnable job whose worker died first (by this machine's count of disconnects; jobs lost in one
        disconnect, in the scheduler's order)."""
        for priority in (0, 1, 2):
            heads = [
                next(job for job in fn.queues[priority] if not (committed_only and job.state == JobState.PENDING))
                for fn in worker.abilities
                if any(not (committed_only and job.state == JobState.PENDING) for job in fn.queues[priority])
            ]
            if heads:
                return min(heads, key=lambda job: job.seq)
        died = [
            job
            for job in self.sched.jobs_by_handle.values()
            if job.function in worker.abilities
            and job.deaths
            and job.state == JobState.QUEUED
            and not any(entry[2] is job for entry in self.sched._future)
        ]
        return min(died, key=lambda job: (self.died_in[job], self.sched._died.at[job]), default=None)

    @invariant()
    def each_job_in_exactly_one_place(self):
        for job in self.sched.jobs_by_handle.values():
            fn = job.function
            places = sum(job in q for q in fn.queues) + (job in fn.died)
            places += sum(entry[2] is job for entry in self.sched._future)
            places += sum(job.handle in w.jobs for w, _ in self.workers)
            places += job in self.sched._claims  # a held grab waits for its commit
            if job.state == JobState.PENDING and job.when and not places:
                places = 1  # a future epoch job waits for its commit outside any queue
            assert places == 1, (job, places)

    @invariant()
    def pending_jobs_are_counted(self):
        for fn in self.sched.functions.values():
            assert fn.pending == sum(job.state == JobState.PENDING for q in fn.queues for job in q), fn

    @invariant()
    def fresh_jobs_wait_in_submission_order(self):
        """Jobs never requeued or retried stand in their queue in the order they were submitted, whether
        their store commit came or not (it used to put a background job behind later foreground ones)."""
        for fn in self.sched.functions.values():
            for queue in fn.queues:
                seqs = [
                    job.seq
                    for job in queue
                    if job.retries == 0 and job.failures == 0 and job.handle not in self.delayed
                ]
                assert seqs == sorted(seqs), (fn, list(queue))

    @invariant()
    def died_jobs_wait_behind_the_others(self):
        """A queued job whose worker died is in its function's ``died`` queue, never in a priority queue;
        each ``died`` queue goes in the order of the deaths; the counts per priority agree."""
        sched = self.sched
        for fn in sched.functions.values():
            assert not any(job.deaths for queue in fn.queues for job in queue), fn
            assert all(job.deaths and job.state == JobState.QUEUED for job in fn.died), fn
            order = [(self.died_in[job], sched._died.at[job]) for job in fn.died]
            assert order == sorted(order), (fn, list(fn.died))
            assert fn.died_counts == [sum(job.priority == p for job in fn.died) for p in (0, 1, 2)], fn
        assert sched._died.queued == sum(len(fn.died) for fn in sched.functions.values())
        assert set(sched._died.at) == {job for job in sched.jobs_by_handle.values() if job.deaths}

    @invariant()
    def poison_jobs_are_listed(self):
        poison = {job for job in self.sched.jobs_by_handle.values() if job.deaths >= POISON_DEATHS}
        assert set(self.sched.poison_jobs) == poison

    @invariant()
    def no_runnable_job_waits_for_an_unwoken_sleeper(self):
        for fn in self.sched.functions.values():
            if fn.runnable() and fn.sleepers:
                assert fn.noop_pending, fn

    @invariant()
    def listeners_know_whether_their_job_runs(self):
        """A client waiting on a job heard ``job_started`` last (after any ``job_requeued``) exactly while a
        worker runs it: no frontend has to look at the job's state to know."""
        for job in self.sched.jobs_by_handle.values():
            for listener in job.listeners:
                runs = [kind for kind, handle in listener.runs if handle == job.handle]
                assert (runs[-1:] == ["started"]) == (job.state == JobState.RUNNING), (job, runs)

    @invariant()
    def nothing_finished_twice(self):
        assert all(count == 1 for count in self.finished.values())

    def must_finish(self) -> set[bytes]:
        """Acknowledged background jobs, and acknowledged foreground ones whose client stayed. A background
        submit that was refused (its promotion of a foreground job failed to commit) promised nothing, even
        when the same client's foreground submit of that job was acknowledged."""
        handles = set()
        for client, handle, background in self.submits:
            events = self.clients[client].events
            acknowledged = ("created", handle) in events
            refused = any(event[0] == "rejected" and event[1] == handle for event in events)
            if acknowledged and ((background and not refused) or self.connected[client]):
                handles.add(handle)
        return handles

    def teardown(self):
        self.before_teardown()
        for worker, _ in self.workers:
            self.sched.remove_worker(worker)
        self.clock.advance(10)
        worker = self.sched.add_worker(self.waker_class())
        for name in FUNCTIONS:
            self.sched.can_do(worker, name)
        while (job := self.sched.grab(worker)) is not None:
            self.finished[job.handle] = self.finished.get(job.handle, 0) + 1
            self.sched.work_complete(worker, job.handle, b"r")
        self.sched.remove_worker(worker)
        missing = self.must_finish() - set(self.finished)
        assert not missing, missing
        self.nothing_finished_twice()
        for listener in self.clients:
            self.sched.detach(listener)
        assert_clean(self.sched)

    def before_teardown(self) -> None:
        pass


class SchedulerWithStoreMachine(SchedulerMachine):
    """The same, with background jobs going through a store whose commits come late or fail. A grab that
    may wait and whose best job is PENDING claims it and is answered at its commit."""

    waker_class = HoldingWaker

    def __init__(self) -> None:
        super().__init__()
        self.store = FakeStore()
        self.sched.store = self.store

    @rule(fail=st.booleans())
    def commit(self, fail):
        self.store.commit(StoreError("down") if fail else None)

    @precondition(lambda self: self.workers)
    @rule(index=st.integers(0, 100))
    def grab_held(self, index):
        """A grab that may be held takes the job the rule names now, or claims it while it is PENDING, or
        (with reactor turns, nothing queued) waits for the end of the turn."""
        worker, waker = self.workers[index % len(self.workers)]
        self.sched.end_hold(worker)  # what a grab does first: a claimed job goes back to its place
        answers = len(waker.answers)
        expected = self.expected_grab(worker)
        job = self.sched.grab(worker, hold=True)
        assert len(waker.answers) == answers  # never answered by its own grab
        if expected is None:  # NO_JOB now, or (with reactor turns) held until a job comes or the turn ends
            assert (job is None and worker.holding is False) or (job is HELD and worker.holding is True)
        elif expected.state == JobState.PENDING:
            assert job is HELD and worker.holding is expected and self.sched._claims[expected] is worker
        else:
            assert job is expected and job.worker is worker and not worker.holding

    @invariant()
    def claims_belong_to_their_holders(self):
        claimers = {worker: worker.holding for worker, _ in self.workers if isinstance(worker.holding, Job)}
        assert {job: worker for worker, job in claimers.items()} == self.sched._claims
        assert all(job.state == JobState.PENDING for job in self.sched._claims)

    @invariant()
    def rows_match_live_background_jobs(self):
        stored = {job.job_id for job in self.sched.jobs_by_handle.values() if job.stored}
        assert stored <= set(self.store.rows)

    def before_teardown(self) -> None:
        self.store.commit()


class SchedulerWithTurnsMachine(SchedulerMachine):
    """The same with reactor turns, as the server runs it: wake-ups at the end of a turn, and grabs held
    until then. The invariants about sleepers hold at the end of every turn."""

    waker_class = HoldingWaker

    def make_scheduler(self) -> Scheduler:
        self.turns = Turns()
        return Scheduler(self.clock, handle_prefix=b"H:m", turn_end=self.turns)

    @precondition(lambda self: self.workers)
    @rule(index=st.integers(0, 100))
    def grab_held(self, index):
        worker, waker = self.workers[index % len(self.workers)]
        before = len(waker.answers) + bool(worker.holding)  # a pending hold is answered first (NO_JOB)
        job = self.sched.grab(worker, hold=True)
        if job is HELD:
            assert worker.holding
        elif job is not None:
            assert job.worker is worker and not worker.holding
        assert len(waker.answers) == before  # and the new one is not answered by its own grab

    @rule()
    def end_turn(self):
        self.turns.end()
        assert not self.sched._holding

    @precondition(lambda self: self.workers)
    @rule(index=st.integers(0, 100))
    def pre_sleep(self, index):
        worker, _ = self.workers[index % len(self.workers)]
        if worker.state == WorkerState.AWAKE and not worker.holding:
            self.sched.pre_sleep(worker)

    @invariant()
    def no_runnable_job_waits_for_an_unwoken_sleeper(self):
        if not self.turns.pending:
            super().no_runnable_job_waits_for_an_unwoken_sleeper()

    @invariant()
    def a_holder_never_waits_beside_a_runnable_job(self):
        """A grab held until the end of the turn has nothing queued for it, not even a PENDING job (that one
        it would have claimed)."""
        for worker, _ in self.workers:
            if worker.holding is True:
                assert not any(any(fn.queues) for fn in worker.abilities), worker
                assert all(worker in fn.holders for fn in worker.abilities)
            else:
                assert not any(worker in fn.holders for fn in self.sched.functions.values())

    @invariant()
    def every_hold_is_answered_once(self):
        for worker, waker in self.workers:
            assert (worker.holding is True) == (worker in self.sched._holding)
            # the job answered went to this worker (a CANT_DO or a timeout may move it on afterwards)
            assert all(job is None or owner is worker for job, owner in zip(waker.answers, waker.owners, strict=True))

    def before_teardown(self) -> None:
        self.turns.end()


class SchedulerWithStoreAndTurnsMachine(SchedulerWithTurnsMachine):
    """Turns and late or failing store commits together: a commit can hand its job to a held grab."""

    def __init__(self) -> None:
        super().__init__()
        self.store = FakeStore()
        self.sched.store = self.store

    commit = SchedulerWithStoreMachine.commit
    rows_match_live_background_jobs = SchedulerWithStoreMachine.rows_match_live_background_jobs
    grab_claiming = SchedulerWithStoreMachine.grab_held
    claims_belong_to_their_holders = SchedulerWithStoreMachine.claims_belong_to_their_holders

    def before_teardown(self) -> None:
        self.store.commit()
        self.turns.end()


TestSchedulerInterleavings = SchedulerMachine.TestCase
TestSchedulerInterleavings.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)

TestSchedulerWithStoreInterleavings = SchedulerWithStoreMachine.TestCase
TestSchedulerWithStoreInterleavings.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)

TestSchedulerWithTurnsInterleavings = SchedulerWithTurnsMachine.TestCase
TestSchedulerWithTurnsInterleavings.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)

TestSchedulerWithStoreAndTurnsInterleavings = SchedulerWithStoreAndTurnsMachine.TestCase
TestSchedulerWithStoreAndTurnsInterleavings.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
