"""The Redis store (gearmand's ``redis``), on redis-py.

Layout: one hash per job, ``<prefix>job:<job_id>``, with the fields handle, function, unique, priority, data,
when, dead and reason; and one sorted set, ``<prefix>order``, of job ids scored by job id, which gives the
insertion order and the "is it stored?" test. Unlike gearmand's queue, epoch jobs are kept, and two jobs with
the same (function, unique) never share a key.

Every write is one MULTI/EXEC transaction, so a batch is applied whole or not at all. Before a write we WATCH the
sorted set and read which ids it holds (ZMSCORE), to refuse duplicate ids and to leave unknown ids alone.

One server per prefix (ownership.py): ``<prefix>owner`` holds ``PID@HOST TOKEN SCOPE`` of the store that owns
the queue, with a time to live (``owner_ttl``). ``open`` sets it where there is none (or where it names a
process of this machine that is gone); ``keep_alive`` and every write renew it, and a write WATCHes it too, so
a store whose key another server has taken meanwhile writes nothing more; a clean close deletes it.

Durability is the server's: EXEC is answered after Redis has written the transaction to its append-only file
(it writes before it replies), so with ``appendonly yes`` an acknowledged batch survives a crash of Redis, and
with ``appendfsync always`` also a crash of its machine. Without the AOF, Redis keeps only its last snapshot:
the store logs a warning when it finds the AOF off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gearman_gateway.stores.base import StoreConflict, StoredJob, StoreError
from gearman_gateway.stores.ownership import OWNER_TTL, RENEWALS_PER_TTL, Claim, Owner, holder_of, in_use, taken_over
from gearman_gateway.stores.sql import DEFAULT_TABLE, as_bytes, one_line

log = logging.getLogger(__name__)

DEFAULT_PREFIX = f"{DEFAULT_TABLE}:"
#: Commands per pipeline round trip when reading many hashes.
READ_CHUNK = 1000
DRIVER_ERRORS = (redis.RedisError, OSError)
#: Attempts at a claim whose WATCHed key keeps changing under it (another server claiming at the same time).
CLAIM_ATTEMPTS = 5


def glob_escape(text: str) -> str:
    """``text`` as a literal in a SCAN MATCH pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _priority(value: bytes | None) -> int:
    """gearmand's priority digit (0 high, 1 normal, 2 low); normal when missing or not a digit."""
    return int(value) if value in (b"0", b"1", b"2") else 1


class RedisStore:
    name = "redis"
    gearmand_table = "_gear_"  # gearmand's default key prefix
    own_queue = (
        "give this one its own key prefix (queue.redis.prefix in a YAML --config file) or database (queue.redis.db)"
    )

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        password: str | None = None,
        db: int = 0,
        prefix: str = DEFAULT_PREFIX,
        username: str | None = None,
        socket_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        owner_ttl: float = OWNER_TTL,
    ) -> None:
        if not owner_ttl > 0:
            raise ValueError(f"redis store: owner_ttl must be a number of seconds above 0, not {owner_ttl}")
        self.host, self.port, self.db, self.prefix = host, int(port), int(db), prefix
        self.password, self.username = password or None, username or None
        self.socket_timeout, self.connect_timeout = socket_timeout, connect_timeout
        self.where = f"redis store {host}:{self.port}/{self.db} prefix {prefix!r}"
        self._order = f"{prefix}order".encode()
        self._owner = f"{prefix}owner".encode()
        self._owner_ms = max(1, int(owner_ttl * 1000))
        #: The runner calls keep_alive this often (writes renew the key too).
        self.keep_alive_interval = owner_ttl / RENEWALS_PER_TTL
        self._claim = Claim()
        self._client: redis.Redis | None = None

    def _key(self, job_id: int | bytes) -> bytes:
        return f"{self.prefix}job:".encode() + (job_id if isinstance(job_id, bytes) else str(job_id).encode())

    # -- the Store protocol

    def open(self) -> None:
        """(Re)connect, check the server answers and claim the prefix; warn when Redis cannot keep jobs."""
        self._drop_client()  # not close(): a reconnect keeps the claim
        client = redis.Redis(
            host=self.host,
            port=self.port,
            db=self.db,
            username=self.username,
            password=self.password,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.connect_timeout,
            # One immediate retry on a fresh connection: it gets past a pooled connection that a Redis restart
            # closed (every write here is idempotent); redis-py's default backs off for seconds, but a
            # longer outage is the caller's to handle (it calls open() again with its own back-off).
            retry=Retry(NoBackoff(), 1),
        )
        try:
            client.ping()
            aof = client.info("persistence").get("aof_enabled")
            self._take(client)
        except (StoreError, *DRIVER_ERRORS) as exc:
            client.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{self.where}: connect failed: {one_line(exc)}") from exc
        if aof is not None and int(aof) == 0:
            log.warning("%s: the server runs without appendonly; a restart of Redis loses recent jobs", self.where)
        self._client = client

    def close(self) -> None:
        """Give the prefix up (delete the owner key if it is still ours) and disconnect."""
        client = self._client
        if client is not None:
            try:
                with client.pipeline(transaction=True) as pipe:
                    pipe.watch(self._owner)
                    if self._claim.mine(pipe.get(self._owner)):
                        pipe.multi()
                        pipe.delete(self._owner)
                        pipe.execute()
            except DRIVER_ERRORS as exc:
                log.warning(
                    "%s: could not delete the owner key %s (%s): another server can open this queue once it "
                    "expires, %d s after its last renewal",
                    self.where,
                    self._owner.decode(),
                    one_line(exc),
                    self._owner_ms // 1000,
                )
        self._claim.given_up()
        self._drop_client()

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is gone either way
                pass

    def keep_alive(self) -> None:
        """Renew the owner key; QueueHeld if another server has taken it (the runner calls this)."""
        client = self._require("renewal of the owner key")
        try:
            self._take(client, renewal=True)
        except DRIVER_ERRORS as exc:
            raise StoreError(f"{self.where}: renewal of the owner key failed: {one_line(exc)}") from exc

    def _take(self, client: redis.Redis, renewal: bool = False) -> None:
        """Set the owner key to ours (for owner_ttl) unless another live server's is there: QueueHeld then
        (at open: in use; at a renewal: taken over)."""
        for _ in range(CLAIM_ATTEMPTS):
            with client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(self._owner)
                    current = pipe.get(self._owner)
                    self._check_owner(pipe, current, renewal)
                    pipe.multi()
                    pipe.set(self._owner, self._claim.value(), px=self._owner_ms)
                    pipe.execute()
                except redis.WatchError:
                    continue  # someone wrote the key between our read and our write: read it again
            self._claim.taken()
            return
        raise StoreError(
            f"{self.where}: could not claim the queue: its owner key {self._owner.decode()} keeps changing"
        )

    def _check_owner(self, pipe: Any, current: bytes | None, renewal: bool) -> None:
        """Raise QueueHeld unless the owner key (read under WATCH) may be set to ours."""
        if current is None:
            if renewal:
                log.warning("%s: the owner key had expired (was this server stalled?); claimed again", self.where)
            return
        if self._claim.mine(current):
            return
        owner = Owner.parse(current)
        if renewal:
            raise taken_over(self.where, holder_of(current))
        if owner is not None and owner.gone():
            log.warning("%s: taking the queue over from %s, which is gone", self.where, owner.who)
            return
        if owner is not None and owner.in_this_process():
            raise in_use(self.where, owner.describe(), self.own_queue)
        left = pipe.pttl(self._owner)
        expiry = (
            f"if that server is gone, its owner key {self._owner.decode()} expires in {max(left, 0) / 1000:.0f} s"
            if left >= 0
            else f"its owner key {self._owner.decode()} never expires: delete it once no server uses this queue"
        )
        raise in_use(self.where, f"{holder_of(current)}; {expiry}", self.own_queue)

    def add(self, jobs: list[StoredJob]) -> None:
        if not jobs:
            return
        ids = [job.job_id for job in jobs]
        what = f"add of {len(jobs)} jobs"
        if len(set(ids)) != len(ids):
            raise StoreError(f"{self.where}: {what} failed: the batch repeats a job id")

        def write(pipe: Any, stored: list[int]) -> None:
            if stored:
                raise StoreConflict(f"{self.where}: {what} failed: duplicate job id {stored[0]}")
            for job in jobs:
                pipe.hset(self._key(job.job_id), mapping=self._fields(job))
            pipe.zadd(self._order, {str(i): i for i in ids})

        self._watched(what, ids, write)

    def remove(self, job_ids: list[int]) -> None:
        if not job_ids:
            return

        def write(pipe: Any, stored: list[int]) -> None:
            pipe.delete(*[self._key(i) for i in job_ids])
            pipe.zrem(self._order, *[str(i) for i in job_ids])

        self._watched(f"remove of {len(job_ids)} jobs", job_ids, write)

    def bury(self, job_ids: list[int], reason: str) -> None:
        self._mark(f"bury of {len(job_ids)} jobs", job_ids, b"1", reason)

    def revive(self, job_ids: list[int]) -> None:
        self._mark(f"revive of {len(job_ids)} jobs", job_ids, b"0", "")

    def load(self) -> list[StoredJob]:
        client = self._require("load")
        try:
            members = client.zrange(self._order, 0, -1)
            hashes = self._read(client, [self._key(m) for m in members], lambda pipe, key: pipe.hgetall(key))
        except DRIVER_ERRORS as exc:
            raise StoreError(f"{self.where}: load failed: {one_line(exc)}") from exc
        # a hash gone missing is a row someone deleted by hand
        return [self._job(int(m), h) for m, h in zip(members, hashes, strict=True) if h]

    def import_gearmand(self, table: str) -> list[StoredJob]:
        """Keys ``<table>-<function>-<unique>`` as gearmand writes them: a hash with data and priority (1.1.16 on;
        newer versions add function and unique), or a plain string of data (1.1.15 and older). Key order."""
        client = self._require(f"import of gearmand prefix {table}")
        try:
            found = sorted(client.scan_iter(match=glob_escape(table) + "-*", count=1000))
            kinds = self._read(client, found, lambda pipe, key: pipe.type(key))
            hashes = {key for key, kind in zip(found, kinds, strict=True) if kind == b"hash"}
            keys = [key for key, kind in zip(found, kinds, strict=True) if kind in (b"hash", b"string")]
            values = self._read(client, keys, lambda pipe, key: pipe.hgetall(key) if key in hashes else pipe.get(key))
        except DRIVER_ERRORS as exc:
            raise StoreError(f"{self.where}: import of gearmand prefix {table} failed: {one_line(exc)}") from exc
        jobs: list[StoredJob] = []
        for key, value in zip(keys, values, strict=True):
            fields = value if isinstance(value, dict) else {b"data": value or b""}
            function, _, unique = key[len(table.encode()) + 1 :].partition(b"-")  # gearmand parses its key the same way
            jobs.append(
                StoredJob(
                    job_id=0,
                    handle=b"",
                    function=fields.get(b"function", function),
                    unique=fields.get(b"unique", unique),
                    priority=_priority(fields.get(b"priority")),
                    data=as_bytes(fields.get(b"data")),
                )
            )
        return jobs

    # -- machinery

    def _require(self, what: str) -> redis.Redis:
        if self._client is None:
            raise StoreError(f"{self.where}: {what} failed: the store is not open")
        return self._client

    def _watched(self, what: str, job_ids: list[int], queue: Callable[[Any, list[int]], None]) -> None:
        """One MULTI/EXEC that ``queue`` fills, knowing which of ``job_ids`` are stored; all or nothing. It
        renews the owner key, and writes nothing if another server has taken it (QueueHeld)."""
        client = self._require(what)
        try:
            with client.pipeline(transaction=True) as pipe:
                pipe.watch(self._order, self._owner)
                self._check_owner(pipe, pipe.get(self._owner), renewal=True)
                scores = pipe.zmscore(self._order, [str(i) for i in job_ids])
                pipe.multi()
                pipe.set(self._owner, self._claim.value(), px=self._owner_ms)
                queue(pipe, [i for i, score in zip(job_ids, scores, strict=True) if score is not None])
                pipe.execute()
        except DRIVER_ERRORS as exc:
            raise StoreError(f"{self.where}: {what} failed: {one_line(exc)}") from exc

    def _mark(self, what: str, job_ids: list[int], dead: bytes, reason: str) -> None:
        if not job_ids:
            return

        def write(pipe: Any, stored: list[int]) -> None:
            for job_id in stored:  # HSET on an unknown id would create a half row
                pipe.hset(self._key(job_id), mapping={"dead": dead, "reason": reason.encode()})

        self._watched(what, job_ids, write)

    @staticmethod
    def _read(client: redis.Redis, keys: Sequence[bytes], command: Callable[[Any, bytes], Any]) -> list[Any]:
        """``command`` for every key, READ_CHUNK per round trip (no transaction: reads only)."""
        out: list[Any] = []
        for start in range(0, len(keys), READ_CHUNK):
            with client.pipeline(transaction=False) as pipe:
                for key in keys[start : start + READ_CHUNK]:
                    command(pipe, key)
                out.extend(pipe.execute())
        return out

    @staticmethod
    def _fields(job: StoredJob) -> dict[str, bytes]:
        return {
            "handle": job.handle,
            "function": job.function,
            "unique": job.unique,
            "priority": b"%d" % job.priority,
            "data": job.data,
            "when": b"%d" % job.when,
            "dead": b"1" if job.dead else b"0",
            "reason": job.reason.encode(),
        }

    @staticmethod
    def _job(job_id: int, h: dict[bytes, bytes]) -> StoredJob:
        return StoredJob(
            job_id=job_id,
            handle=h.get(b"handle", b""),
            function=h.get(b"function", b""),
            unique=h.get(b"unique", b""),
            priority=int(h.get(b"priority", b"1")),
            data=h.get(b"data", b""),
            when=int(h.get(b"when", b"0")),
            dead=h.get(b"dead") == b"1",
            reason=h.get(b"reason", b"").decode("utf-8", "replace"),
        )
