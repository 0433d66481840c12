"""The memcached store (gearmand's ``libmemcached``), on pymemcache.

memcached keeps items in memory only: it evicts them when it needs room and loses them all when it restarts.
So this store survives a crash of gearmand, not of memcached, and an acknowledged job can be lost. gearmand's
libmemcached queue has the same limits; the store says so in a warning when it first opens.

Layout: one item per job, key ``<prefix>job:<job_id>``, never expiring; the value is a header (magic, priority,
dead flag, run time, field lengths) followed by handle, function, unique, reason and data. A key holds only the
job id, so every function name and unique fits (memcached keys are printable ASCII without spaces, at most 250
bytes; gearmand's ``<prefix><function>-<unique>`` keys are not always, and its jobs without a unique overwrite
each other), and epoch jobs are kept (gearmand refuses them).

Replay needs the keys, which memcached cannot list reliably: ``lru_crawler metadump all`` walks its LRUs while
memcached moves items between them, and misses some (seen here: a job written a moment before the dump). So the
store keeps an index of the ids it holds (memcached_index.py: bitmap items per 4,096 ids and a head item, written
to every server), and replays the union of the index and the dump (memcached 1.4.31 and newer, crawler on): the
dump finds jobs whose index item memcached evicted, the index those the dump missed, and load() rewrites the
index to what it found. Without the crawler (or behind a proxy) the index alone is used. docs/persistence.md
weighs this against the alternatives.

memcached has no transactions. ``add`` stores each job with memcached's ``add``, which refuses a key that
exists, so a duplicate job id is refused exactly, then the index; when one job of a batch (or the index write)
fails, the items this batch stored are deleted, and no other. A crash of gearmand in the middle of a batch
can leave part of it, unacknowledged, to be replayed (at-least-once). With several servers a job's item goes to
one, chosen by rendezvous hashing of its key; reads, deletes and marks go to every server, so a job still found
on another after the list changed is handled all the same.

One server per prefix (ownership.py): the item ``<prefix>owner`` holds ``PID@HOST TOKEN SCOPE`` of the store that
owns the queue, on every memcached of the list, with an expiry (``owner_ttl``). ``open`` writes it with ``add``
(or, where it names a process of this machine that is gone, with ``cas``), taking the servers in the order of
their names so that two servers claiming at once meet on the first; ``keep_alive`` renews it with ``gets`` and
``cas`` and finds it taken when another server's is there; a clean close deletes it. memcached has no
transactions, so unlike redis a write does not check the key itself: a store finds out at its next renewal.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
import struct
import time
from collections.abc import Iterable, Iterator
from urllib.parse import unquote_to_bytes

from pymemcache.client.base import Client
from pymemcache.client.rendezvous import RendezvousHash
from pymemcache.exceptions import MemcacheError

from gearman_gateway.stores.base import QueueHeld, StoreConflict, StoredJob, StoreError
from gearman_gateway.stores.memcached_index import JobIndex
from gearman_gateway.stores.ownership import OWNER_TTL, RENEWALS_PER_TTL, Claim, Owner, holder_of, in_use, taken_over
from gearman_gateway.stores.sql import DEFAULT_TABLE, one_line

log = logging.getLogger(__name__)

DEFAULT_SERVERS = "127.0.0.1:11211"
DEFAULT_PORT = 11211
DEFAULT_PREFIX = f"{DEFAULT_TABLE}:"
#: Keys per multi-key get or delete: well under memcached's limits on a command line.
KEYS_PER_COMMAND = 200
#: memcached's longest key; our keys add "job:" and up to 20 digits to the prefix.
MAX_KEY = 250
MAX_PREFIX = MAX_KEY - 24
#: Start of every value we write: a value without it under our prefix is not ours and is skipped.
MAGIC = b"ggq1"
#: magic, priority, dead, when, then the lengths of handle, function, unique, reason (data is the rest).
HEADER = struct.Struct(">4sBBqIIII")
#: Attempts at a metadump while another crawl keeps memcached's crawler busy, and the pause between them.
DUMP_ATTEMPTS = 50
DUMP_PAUSE = 0.1
DRIVER_ERRORS = (MemcacheError, OSError)
#: Attempts at claiming the owner item on one server while its value keeps changing under us.
CLAIM_ATTEMPTS = 5


class _ValueAndFlags:
    """pymemcache serde that hands back the item's flags with its bytes: gearmand keeps the priority there."""

    def serialize(self, key: bytes, value: bytes) -> tuple[bytes, int]:
        return value, 0

    def deserialize(self, key: bytes, value: bytes, flags: int) -> tuple[bytes, int]:
        return value, flags


def parse_servers(text: str) -> list[tuple[str, int]]:
    """gearmand's --libmemcached-servers: ``host[:port]`` separated by commas or spaces (``[::1]:11211``)."""
    servers = []
    for item in text.replace(",", " ").split():
        host, port = item, str(DEFAULT_PORT)
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest:
                port = rest.removeprefix(":")
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        elif ":" in item and not _is_ipv6(item):  # host:port:weight (libmemcached's weights are not kept)
            host = ""
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"memcached store: server {item!r} is not host[:port]")
        servers.append((host, int(port)))
    if not servers:
        raise ValueError("memcached store: no servers given (servers: host[:port],...)")
    return servers


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _text(exc: BaseException) -> str:
    """pymemcache puts the server's reply in its exceptions as bytes: show it as the text it is."""
    if exc.args and isinstance(exc.args[0], bytes):
        return exc.args[0].decode("utf-8", "replace").strip() or type(exc).__name__
    return one_line(exc)


class _DumpUnavailable(StoreError):
    """This memcached cannot list its keys (crawler off, too old, busy): replay falls back on the index."""


class MemcachedStore:
    name = "memcached"
    gearmand_table = "gear_"  # gearmand's default key prefix (--libmemcached-prefix)
    own_queue = (
        "give this one its own key prefix (queue.memcached.prefix in a YAML --config file) or its own memcached "
        "(--libmemcached-servers)"
    )

    def __init__(
        self,
        servers: str = DEFAULT_SERVERS,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout: float = 5.0,
        socket_timeout: float = 10.0,
        owner_ttl: float = OWNER_TTL,
    ) -> None:
        if not (prefix.isascii() and prefix.isprintable() and " " not in prefix and len(prefix) <= MAX_PREFIX):
            limit = f"at most {MAX_PREFIX} characters"
            raise ValueError(f"memcached store: prefix {prefix!r} must be printable ASCII without spaces, {limit}")
        if not owner_ttl > 0:
            raise ValueError(f"memcached store: owner_ttl must be a number of seconds above 0, not {owner_ttl}")
        self.servers = parse_servers(servers)
        self.prefix = prefix
        self.connect_timeout, self.socket_timeout = float(connect_timeout), float(socket_timeout)
        self._names = [f"{host}:{port}" for host, port in self.servers]
        self.where = f"memcached store {','.join(self._names)} prefix {prefix!r}"
        self._job_prefix = f"{prefix}job:".encode()
        self._head_key = f"{prefix}index".encode()
        self._bucket_prefix = f"{prefix}index:".encode()
        self._ring = RendezvousHash(nodes=list(self._names))  # by name: the order of the list does not matter
        self._home_of = {name: i for i, name in enumerate(self._names)}
        self._clients: list[Client] = []
        self._index = JobIndex()
        self._warned = False
        self._owner = f"{prefix}owner".encode()
        # memcached counts expiry in whole seconds of a clock that ticks once a second: one more keeps the item
        # for at least owner_ttl
        self._owner_expire = math.ceil(owner_ttl) + 1
        #: The runner calls keep_alive this often.
        self.keep_alive_interval = owner_ttl / RENEWALS_PER_TTL
        self._claim = Claim()
        #: Servers in the order of their names: every store claims them in the same order.
        self._claim_order = sorted(range(len(self.servers)), key=lambda i: self._names[i])

    def _key(self, job_id: int) -> bytes:
        return self._job_prefix + b"%d" % job_id

    def _bucket_key(self, number: int) -> bytes:
        return self._bucket_prefix + b"%d" % number

    def _home(self, key: bytes) -> int:
        """Index of the server a new item goes to."""
        return self._home_of[self._ring.get_node(key.decode())] if len(self.servers) > 1 else 0

    # -- the Store protocol

    def open(self) -> None:
        """(Re)connect to every server, claim the prefix and read the index; the first time, warn that memcached
        can lose jobs."""
        self._drop_clients()  # not close(): a reconnect keeps the claim
        clients = [
            Client(
                server,
                serde=_ValueAndFlags(),
                connect_timeout=self.connect_timeout,
                timeout=self.socket_timeout,
                no_delay=True,
                default_noreply=False,  # every write waits for memcached's answer: errors are seen
            )
            for server in self.servers
        ]
        try:
            settings = [client.stats("settings") for client in clients]
            self._take(clients)
            self._index = self._read_index(clients)
        except (StoreError, *DRIVER_ERRORS) as exc:
            for client in clients:
                client.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{self.where}: connect failed: {_text(exc)}") from exc
        self._clients = clients
        if not self._warned:
            self._warned = True
            evicting = any(stats.get(b"evictions", b"on") != b"off" for stats in settings)  # off: memcached -M
            log.warning(
                "%s: memcached keeps jobs in memory only: %sa restart of memcached loses them all, so "
                "acknowledged background jobs can be lost; use sqlite, postgres, mysql or redis for a durable queue",
                self.where,
                "it evicts them when it runs out of room (start it with -M to refuse new items instead), and "
                if evicting
                else "",
            )

    def close(self) -> None:
        """Give the prefix up (delete the owner items that are still ours) and disconnect."""
        for client in self._clients:
            try:
                value, _ = client.gets(self._owner)
                if value is not None and self._claim.mine(value[0]):
                    client.delete(self._owner, noreply=False)
            except DRIVER_ERRORS as exc:
                log.warning(
                    "%s: could not delete the owner item %s (%s): another server can open this queue once it "
                    "expires, %d s after its last renewal",
                    self.where,
                    self._owner.decode(),
                    _text(exc),
                    self._owner_expire,
                )
        self._claim.given_up()
        self._drop_clients()

    def _drop_clients(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is gone either way
                pass

    def keep_alive(self) -> None:
        """Renew the owner item on every server; QueueHeld if another server has taken it (the runner calls this)."""
        clients = self._require("renewal of the owner item")
        try:
            self._take(clients, renewal=True)
        except DRIVER_ERRORS as exc:
            raise StoreError(f"{self.where}: renewal of the owner item failed: {_text(exc)}") from exc

    def _take(self, clients: list[Client], renewal: bool = False) -> None:
        """Write our owner item on every server, in the order of their names, unless another live server's is
        there: QueueHeld then (at open: in use, and the items this call wrote are deleted; at a renewal:
        taken over)."""
        written: list[Client] = []
        for index in self._claim_order:
            try:
                if self._take_one(clients[index], renewal):
                    written.append(clients[index])
            except QueueHeld:
                for client in written:
                    try:
                        client.delete(self._owner, noreply=False)
                    except DRIVER_ERRORS:  # it expires; the refusal is the news
                        pass
                raise
        self._claim.taken()

    def _take_one(self, client: Client, renewal: bool) -> bool:
        """Our owner item on one server: added (True: it was not there), or renewed; QueueHeld if held."""
        mine = self._claim.value()
        for _ in range(CLAIM_ATTEMPTS):
            value, cas = client.gets(self._owner)
            if value is None:
                if renewal:
                    log.warning("%s: the owner item had expired (was this server stalled?); claimed again", self.where)
                if client.add(self._owner, mine, expire=self._owner_expire, noreply=False):
                    return True
                continue  # another server added it meanwhile: read it
            current = value[0]
            if not self._claim.mine(current):
                owner = Owner.parse(current)
                if renewal:
                    raise taken_over(self.where, holder_of(current))
                if owner is not None and owner.in_this_process() and not owner.gone():
                    raise in_use(self.where, owner.describe(), self.own_queue)
                if owner is None or not owner.gone():
                    expiry = (
                        f"if that server is gone, its owner item {self._owner.decode()} expires within its "
                        f"owner_ttl (default {OWNER_TTL:.0f} s)"
                    )
                    raise in_use(self.where, f"{holder_of(current)}; {expiry}", self.own_queue)
                log.warning("%s: taking the queue over from %s, which is gone", self.where, owner.who)
            if client.cas(self._owner, mine, cas, expire=self._owner_expire, noreply=False):
                return False
        raise StoreError(
            f"{self.where}: could not claim the queue: its owner item {self._owner.decode()} keeps changing"
        )

    def add(self, jobs: list[StoredJob]) -> None:
        if not jobs:
            return
        what = f"add of {len(jobs)} jobs"
        clients = self._require(what)
        ids = [job.job_id for job in jobs]
        if len(set(ids)) != len(ids):
            raise StoreError(f"{self.where}: {what} failed: the batch repeats a job id")
        stored: list[tuple[Client, bytes]] = []
        try:
            for job in jobs:
                key = self._key(job.job_id)
                client = clients[self._home(key)]
                if not client.add(key, self._pack(job), expire=0, noreply=False):
                    raise StoreConflict(f"{self.where}: {what} failed: duplicate job id {job.job_id}")
                stored.append((client, key))
            self._write_index(clients, add=ids)
        except (StoreError, *DRIVER_ERRORS) as exc:
            self._undo(stored)
            if isinstance(exc, StoreError):
                raise
            reason = _text(exc)
            if "too large" in reason:
                reason += " (a job larger than memcached's item size limit, its -I option, default 1 MB)"
            raise StoreError(f"{self.where}: {what} failed: {reason}") from exc

    def remove(self, job_ids: list[int]) -> None:
        if not job_ids:
            return
        what = f"remove of {len(job_ids)} jobs"
        clients = self._require(what)
        try:
            for client in clients:
                for keys in _chunks([self._key(i) for i in job_ids]):
                    client.delete_many(keys, noreply=False)
            self._write_index(clients, remove=job_ids)
        except DRIVER_ERRORS as exc:
            raise StoreError(f"{self.where}: {what} failed: {_text(exc)}") from exc

    def bury(self, job_ids: list[int], reason: str) -> None:
        self._mark(f"bury of {len(job_ids)} jobs", job_ids, True, reason)

    def revive(self, job_ids: list[int]) -> None:
        self._mark(f"revive of {len(job_ids)} jobs", job_ids, False, "")

    def load(self) -> list[StoredJob]:
        """The jobs of the index and of the key dump, in id order; the index is then rewritten to match."""
        clients = self._require("load")
        indexed = set(self._index.ids())
        try:
            listed = self._listed_ids()
            rows: dict[int, StoredJob] = {}
            for client in clients:
                for key, (value, _) in self._get(client, [self._key(i) for i in sorted(indexed | listed)]):
                    job = self._unpack(int(key[len(self._job_prefix) :]), value)
                    if job is None:
                        log.warning("%s: skipped item %s: not a job this store wrote", self.where, key.decode())
                        continue
                    rows[job.job_id] = job
            found = set(rows)
            if found - indexed:
                log.warning(
                    "%s: %d jobs found only by the key dump (index item evicted?)", self.where, len(found - indexed)
                )
            if indexed - found:
                log.warning("%s: %d indexed jobs are gone (evicted by memcached?)", self.where, len(indexed - found))
            self._write_index(clients, add=found - indexed, remove=indexed - found)
        except DRIVER_ERRORS as exc:
            raise StoreError(f"{self.where}: load failed: {_text(exc)}") from exc
        return [rows[job_id] for job_id in sorted(rows)]

    def import_gearmand(self, table: str) -> list[StoredJob]:
        """Items ``<table><function>-<unique>`` as gearmand's libmemcached queue writes them: the value is the
        data, the flags the priority. They are found by the key dump, as gearmand finds them. The function is
        the text before the first ``-``, as gearmand reads it back (so a function name with a ``-`` comes back
        cut, in gearmand too). Key order."""
        what = f"import of gearmand prefix {table}"
        clients = self._require(what)
        prefix = table.encode()
        jobs: list[tuple[bytes, StoredJob]] = []
        try:
            for client, server in zip(clients, self.servers, strict=True):
                keys = sorted(key for key in self._dump(server) if key.startswith(prefix))
                for key, (data, flags) in self._get(client, keys):
                    function, dash, unique = key[len(prefix) :].partition(b"-")
                    if not dash or not function:
                        continue  # gearmand skips these too
                    priority = flags if flags in (0, 1, 2) else 1
                    jobs.append((key, StoredJob(0, b"", function, unique, priority, data)))
        except DRIVER_ERRORS as exc:
            raise StoreError(f"{self.where}: {what} failed: {_text(exc)}") from exc
        return [job for _, job in sorted(jobs, key=lambda pair: pair[0])]

    # -- the index

    def _read_index(self, clients: list[Client]) -> JobIndex:
        """The union of every server's index (a superset is harmless: an id without its item is skipped)."""
        index = JobIndex()
        numbers: set[int] = set()
        for client in clients:
            for _, (value, _) in self._get(client, [self._head_key]):
                numbers.update(JobIndex.head_numbers(value))
        keys = [self._bucket_key(number) for number in sorted(numbers)]
        for client in clients:
            for key, (value, _) in self._get(client, keys):
                number = int(key[len(self._bucket_prefix) :])
                index.buckets[number] = index.buckets.get(number, 0) | JobIndex.bucket_bits(value)
        index.buckets = {number: bits for number, bits in index.buckets.items() if bits}
        return index

    def _write_index(self, clients: list[Client], add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        """Write the buckets these ids change (and the head if the buckets in use change) to every server; the
        index in memory changes only once all writes are done."""
        changed = self._index.changed(add, remove)
        if not changed:
            return
        after = JobIndex()
        after.buckets = dict(self._index.buckets)
        items = {self._bucket_key(number): JobIndex.bucket(bits) for number, bits in changed.items() if bits}
        if after.apply(changed):
            items[self._head_key] = after.head()  # after the buckets it lists: one connection keeps the order
        emptied = [self._bucket_key(number) for number, bits in changed.items() if not bits]
        for client in clients:
            failed = client.set_many(items, expire=0, noreply=False)
            if failed:
                raise StoreError(f"{self.where}: index items not stored: {b', '.join(failed).decode()}")
            if emptied:
                client.delete_many(emptied, noreply=False)
        self._index = after

    # -- machinery

    def _require(self, what: str) -> list[Client]:
        if not self._clients:
            raise StoreError(f"{self.where}: {what} failed: the store is not open")
        return self._clients

    def _undo(self, stored: list[tuple[Client, bytes]]) -> None:
        """Delete the items a failed batch stored (only those: an existing item is someone else's job)."""
        for client, key in stored:
            try:
                client.delete(key, noreply=False)
            except DRIVER_ERRORS as exc:  # memcached is gone: the items left are not deleted by anyone later
                log.warning(
                    "%s: could not delete %s of a refused batch (%s): that job and any other of the batch left "
                    "behind were refused to their clients, yet may run after a restart of this server",
                    self.where,
                    key.decode(),
                    _text(exc),
                )
                return

    def _mark(self, what: str, job_ids: list[int], dead: bool, reason: str) -> None:
        """Read, change and write back each stored job; ``replace`` never creates an item deleted meanwhile."""
        if not job_ids:
            return
        try:
            for client in self._require(what):
                for key, (value, _) in self._get(client, [self._key(i) for i in job_ids]):
                    job = self._unpack(int(key[len(self._job_prefix) :]), value)
                    if job is not None:
                        job.dead, job.reason = dead, reason
                        client.replace(key, self._pack(job), expire=0, noreply=False)
        except DRIVER_ERRORS as exc:
            raise StoreError(f"{self.where}: {what} failed: {_text(exc)}") from exc

    @staticmethod
    def _get(client: Client, keys: list[bytes]) -> Iterator[tuple[bytes, tuple[bytes, int]]]:
        """(key, (value, flags)) of the keys that exist, KEYS_PER_COMMAND per round trip."""
        for chunk in _chunks(keys):
            yield from client.get_many(chunk).items()

    def _listed_ids(self) -> set[int]:
        """Job ids of our items that the servers' key dumps list; none from a server that cannot list them."""
        ids: set[int] = set()
        for server in self.servers:
            try:
                keys = self._dump(server)
            except _DumpUnavailable as exc:
                log.warning("%s; replaying the jobs of the index alone", exc)
                continue
            for key in keys:
                job_id = key[len(self._job_prefix) :]
                if key.startswith(self._job_prefix) and job_id.isdigit():
                    ids.add(int(job_id))
                elif key.startswith(self._job_prefix):
                    log.warning("%s: skipped item %s: not a job this store wrote", self.where, key.decode())
        return ids

    def _dump(self, server: tuple[str, int]) -> list[bytes]:
        """Every key on one server, from ``lru_crawler metadump all`` (its own connection: the dump is long and
        line-oriented, unlike pymemcache's commands). Retried while another crawl keeps the crawler busy."""
        name = f"{self.where}: {server[0]}:{server[1]}"
        for _ in range(DUMP_ATTEMPTS):
            with socket.create_connection(server, timeout=self.connect_timeout) as conn:
                conn.settimeout(self.socket_timeout)
                conn.sendall(b"lru_crawler metadump all\r\n")
                keys: list[bytes] = []
                with conn.makefile("rb") as reply:
                    for line in reply:
                        if line.startswith(b"key="):
                            keys.append(unquote_to_bytes(line[4:].split(b" ", 1)[0].strip()))
                        elif line == b"END\r\n":
                            return keys
                        elif line.startswith(b"BUSY"):
                            break
                        else:
                            answer = line.decode("utf-8", "replace").strip()
                            raise _DumpUnavailable(
                                f"{name} cannot list its keys (lru_crawler metadump answered {answer!r}; it needs "
                                "memcached 1.4.31 or newer with its LRU crawler on)"
                            )
                    else:
                        raise StoreError(f"{name} closed the connection during a key dump")
            time.sleep(DUMP_PAUSE)
        raise _DumpUnavailable(f"{name} cannot list its keys: its LRU crawler stayed busy with another request")

    @staticmethod
    def _pack(job: StoredJob) -> bytes:
        reason = job.reason.encode()
        header = HEADER.pack(
            MAGIC, job.priority, job.dead, job.when, len(job.handle), len(job.function), len(job.unique), len(reason)
        )
        return b"".join((header, job.handle, job.function, job.unique, reason, job.data))

    @staticmethod
    def _unpack(job_id: int, value: bytes) -> StoredJob | None:
        if len(value) < HEADER.size or not value.startswith(MAGIC):
            return None
        _, priority, dead, when, *lengths = HEADER.unpack_from(value)
        fields: list[bytes] = []
        at = HEADER.size
        for length in lengths:
            fields.append(value[at : at + length])
            at += length
        if at > len(value):
            return None
        handle, function, unique, reason = fields
        return StoredJob(
            job_id, handle, function, unique, priority, value[at:], when, bool(dead), reason.decode(errors="replace")
        )


def _chunks(keys: list[bytes]) -> Iterable[list[bytes]]:
    for start in range(0, len(keys), KEYS_PER_COMMAND):
        yield keys[start : start + KEYS_PER_COMMAND]
