"""The result cache: fed by the scheduler's observer seam, bounded by TTL (an injected clock) and memory (LRU)."""

from __future__ import annotations

from twisted.internet.task import Clock

from gearman_gateway.results import ENTRY_OVERHEAD, RELATIVE_LIMIT, ResultCache, expiry
from gearman_gateway.scheduler import Scheduler


class Waker:
    def wake(self) -> None:
        pass

    def grabbed(self, job) -> None:
        pass


def scheduler_with_cache(**cache_options) -> tuple[Scheduler, ResultCache, Clock]:
    clock = Clock()
    scheduler = Scheduler(clock, handle_prefix=b"H:test")
    cache = ResultCache(clock, **cache_options)
    scheduler.observer = cache
    return scheduler, cache, clock


def run_one(scheduler: Scheduler, function: bytes, result: bytes | None, exception: bytes | None = None) -> None:
    worker = scheduler.add_worker(Waker())
    scheduler.can_do(worker, function)
    job = scheduler.grab(worker)
    assert job is not None
    if result is not None:
        scheduler.work_complete(worker, job.handle, result)
    elif exception is not None:
        scheduler.work_exception(worker, job.handle, exception)
    else:
        scheduler.work_fail(worker, job.handle)
    scheduler.remove_worker(worker)


def test_background_jobs_with_a_unique_leave_their_result() -> None:
    scheduler, cache, _ = scheduler_with_cache()
    scheduler.submit(b"reverse", b"abc", unique=b"u1", background=True)
    assert cache.get((b"reverse", b"u1")) is None
    run_one(scheduler, b"reverse", b"cba")
    result = cache.get((b"reverse", b"u1"))
    assert result is not None and result.data == b"cba" and not result.failed and result.flags == 0


def test_jobs_without_a_unique_or_in_the_foreground_are_not_kept() -> None:
    scheduler, cache, _ = scheduler_with_cache()
    scheduler.submit(b"f", b"x", background=True)
    run_one(scheduler, b"f", b"1")
    scheduler.submit(b"f", b"x", unique=b"fg")
    run_one(scheduler, b"f", b"2")
    assert len(cache) == 0


def test_a_foreground_job_joined_in_the_background_is_kept() -> None:
    scheduler, cache, _ = scheduler_with_cache()
    scheduler.submit(b"f", b"x", unique=b"u")
    scheduler.submit(b"f", b"x", unique=b"u", background=True)
    run_one(scheduler, b"f", b"done")
    assert cache.get((b"f", b"u")).data == b"done"


def test_failures_are_kept_as_failures() -> None:
    scheduler, cache, _ = scheduler_with_cache()
    scheduler.submit(b"f", b"x", unique=b"a", background=True)
    run_one(scheduler, b"f", None)
    scheduler.submit(b"f", b"x", unique=b"b", background=True)
    run_one(scheduler, b"f", None, exception=b"boom")
    a, b = cache.get((b"f", b"a")), cache.get((b"f", b"b"))
    assert a.failed and a.data == b""
    assert b.failed and b.data == b"boom"


def test_the_submitters_flags_and_ttl_are_used() -> None:
    scheduler, cache, clock = scheduler_with_cache(ttl=100)
    cache.expect((b"f", b"u"), 16, 5)
    scheduler.submit(b"f", b"x", unique=b"u", background=True)
    run_one(scheduler, b"f", b"r")
    assert cache.get((b"f", b"u")).flags == 16
    clock.advance(4.9)
    assert cache.get((b"f", b"u")) is not None
    clock.advance(0.2)
    assert cache.get((b"f", b"u")) is None


def test_the_default_ttl_counts_from_completion() -> None:
    scheduler, cache, clock = scheduler_with_cache(ttl=10)
    scheduler.submit(b"f", b"x", unique=b"u", background=True)
    clock.advance(50)  # queued a long time: the TTL has not started
    run_one(scheduler, b"f", b"r")
    clock.advance(9)
    assert cache.get((b"f", b"u")) is not None
    assert cache.ttl_left(cache.get((b"f", b"u"))) == 1
    clock.advance(1)
    assert cache.get((b"f", b"u")) is None
    assert cache.stats["expired"] == 1


def test_memcached_reads_exptime() -> None:
    assert expiry(1000.0, 0) == 0.0
    assert expiry(1000.0, 10) == 1010.0
    assert expiry(1000.0, -1) is None
    now = RELATIVE_LIMIT * 3.0
    assert expiry(now, RELATIVE_LIMIT + 1) is None  # absolute and long past (memcexist's)
    assert expiry(now, now + 5) == now + 5


def test_touch_extends_and_a_past_time_forgets() -> None:
    clock = Clock()
    cache = ResultCache(clock, ttl=10)
    cache.put((b"f", b"u"), b"r")
    clock.advance(8)
    assert cache.touch((b"f", b"u"), 100) is not None
    clock.advance(50)
    assert cache.get((b"f", b"u")) is not None
    assert cache.touch((b"f", b"u"), -1) is not None
    assert cache.get((b"f", b"u")) is None
    assert cache.touch((b"f", b"missing"), 5) is None


def test_lru_eviction_under_the_memory_bound() -> None:
    clock = Clock()
    entry = 100 + 2 + ENTRY_OVERHEAD
    cache = ResultCache(clock, max_memory=3 * entry)
    for name in (b"a", b"b", b"c"):
        cache.put((b"f", name), b"x" * 100)
    assert cache.get((b"f", b"a")) is not None  # a is now the most recently used
    cache.put((b"f", b"d"), b"x" * 100)
    assert cache.get((b"f", b"b")) is None  # the least recently used went
    assert all(cache.get((b"f", name)) is not None for name in (b"a", b"c", b"d"))
    assert cache.memory == 3 * entry and cache.stats["evictions"] == 1


def test_a_result_larger_than_the_cache_is_not_kept() -> None:
    cache = ResultCache(Clock(), max_memory=1000)
    cache.put((b"f", b"a"), b"small")
    cache.put((b"f", b"b"), b"x" * 2000)
    assert cache.get((b"f", b"b")) is None
    assert cache.get((b"f", b"a")) is not None


def test_forget_clear_and_replace_keep_the_count_right() -> None:
    cache = ResultCache(Clock())
    cache.put((b"f", b"a"), b"1")
    cache.put((b"f", b"a"), b"22")
    cache.put((b"f", b"b"), b"3")
    assert len(cache) == 2 and cache.get((b"f", b"a")).data == b"22"
    assert cache.forget((b"f", b"a")) and not cache.forget((b"f", b"a"))
    cache.clear()
    assert len(cache) == 0 and cache.memory == 0


def test_waiters_hear_the_result_once() -> None:
    cache = ResultCache(Clock())
    heard: list[bytes] = []
    cache.wait((b"f", b"u"), lambda result: heard.append(result.data))
    never = lambda result: heard.append(b"never")  # noqa: E731
    cache.wait((b"f", b"u"), never)
    cache.unwait((b"f", b"u"), never)
    cache.unwait((b"f", b"v"), never)  # not waiting: nothing happens
    cache.put((b"f", b"u"), b"r")
    cache.put((b"f", b"u"), b"again")
    assert heard == [b"r"]


def test_expected_wishes_are_bounded(monkeypatch) -> None:
    import gearman_gateway.results as results

    monkeypatch.setattr(results, "MAX_EXPECTED", 3)
    cache = ResultCache(Clock())
    for index in range(10):
        cache.expect((b"f", b"%d" % index), index, None)
    assert len(cache._expected) == 3


def test_the_observer_is_no_waiting_client() -> None:
    scheduler, _, _ = scheduler_with_cache()
    job = scheduler.submit(b"f", b"x", unique=b"u", background=True)
    assert scheduler.job_snapshot(job.handle).waiting_clients == 0
    assert scheduler.job_snapshot_by_unique(b"u", b"f").waiting_clients == 0


def test_get_or_wait_gets_a_kept_result_or_waits_for_the_next() -> None:
    _scheduler, cache, clock = scheduler_with_cache(ttl=10)
    heard = []
    cache.put((b"f", b"u"), b"r1")
    found = cache.get_or_wait((b"f", b"u"), heard.append)
    assert found is not None and found.data == b"r1" and heard == []
    assert cache.get_or_wait((b"f", b"v"), heard.append) is None  # not there: waits
    clock.advance(11)
    assert cache.get_or_wait((b"f", b"u"), heard.append) is None  # expired: forgotten, and waits
    cache.put((b"f", b"u"), b"r2")
    cache.put((b"f", b"v"), b"r3")
    assert [result.data for result in heard] == [b"r2", b"r3"]
    assert (cache.stats["hits"], cache.stats["misses"], cache.stats["expired"]) == (1, 2, 1)
