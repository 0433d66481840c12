"""One server per queue on the network stores (issue 13), as the sqlite file's lock (sqlite_file.py) is for sqlite.

Two servers on one queue each replay and run the other's jobs at start, and both number new jobs from the
same maximum, so the second one's inserts collide with the first one's rows. So a store claims its queue
when it opens and keeps the claim for as long as it runs:

* PostgreSQL, MySQL/MariaDB: a lock of the database server's own (an advisory lock, ``GET_LOCK``) held by
  the store's session. The database drops it when the session ends, so a server that crashed never leaves
  it behind. Those live in postgres.py and mysql.py.
* Redis, memcached: no sessions, so an owner key, ``<prefix>owner``, written only where there is none (SET NX,
  memcached's ``add``) with a time to live that the store renews (``keep_alive``, a few times per TTL) and
  deletes at a clean close. A server that vanished without a word keeps others out until its key expires,
  unless it ran on this machine: then its pid says whether it still lives, as a flock would.

This module holds what they share: this process's identity, the owner key's value, whether a holder is
known to be gone, and the words of the refusal.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from functools import cache

from gearman_gateway.stores.base import QueueHeld

#: Seconds an owner key outlives its last renewal (redis, memcached; the ``owner_ttl`` option): how long a
#: server that vanished from another machine keeps the queue from the next one.
OWNER_TTL = 15.0
#: Renewals per time to live: one that comes a whole interval late still finds the key there.
RENEWALS_PER_TTL = 3
#: Our ``application_name`` on PostgreSQL starts with this, so a second server can name the holder.
APPLICATION = "gearman-gateway"

HOST = socket.gethostname()
#: Tokens of this process's stores that hold their queue: a holder in this process is alive exactly then.
_HELD: set[str] = set()


@cache
def process_scope() -> str:
    """Where a pid means one process: this boot of this kernel and this pid namespace (containers on one
    machine share the first, not the second). Empty when either cannot be read."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot_file:
            boot = boot_file.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return f"{boot}/{namespace}".replace(" ", "")


def this_process() -> str:
    """``pid@host``: how messages and the holder's identity name a server."""
    return f"{os.getpid()}@{HOST}"


@dataclass(frozen=True)
class Owner:
    """What an owner key holds: who (pid@host), which store of that process (token), and where its pid means
    something (scope)."""

    pid: int
    host: str
    token: str
    scope: str

    @property
    def who(self) -> str:
        return f"{self.pid}@{self.host}"

    def value(self) -> bytes:
        return f"{self.who} {self.token} {self.scope}".encode()

    @classmethod
    def parse(cls, value: bytes | None) -> Owner | None:
        """The owner in a key's value; None for no value or one that is not ours."""
        parts = (value or b"").decode("utf-8", "replace").split(" ")
        if len(parts) != 3:
            return None
        pid, at, host = parts[0].partition("@")
        if not (pid.isdigit() and at and host):
            return None
        return cls(int(pid), host, parts[1], parts[2])

    def in_this_process(self) -> bool:
        return self.pid == os.getpid() and self.host == HOST and bool(self.scope) and self.scope == process_scope()

    def gone(self) -> bool:
        """Known to have ended: a store of this process that no longer holds its queue, or a process of this
        machine and pid namespace that no longer exists. Anything else may be alive (another machine, a
        reused pid): it is waited for, until its key expires."""
        if self.host != HOST or not self.scope or self.scope != process_scope():
            return False
        if self.pid == os.getpid():
            return self.token not in _HELD
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # EPERM: it exists, under another user
            return False
        return False

    def describe(self) -> str:
        return "this process: another store object" if self.in_this_process() else self.who


class Claim:
    """One store's owner key value. A token per store object: two stores of one process are two owners."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(8)

    def value(self) -> bytes:
        return Owner(os.getpid(), HOST, self.token, process_scope()).value()

    def mine(self, value: bytes | None) -> bool:
        owner = Owner.parse(value)
        return owner is not None and owner.token == self.token

    def taken(self) -> None:
        _HELD.add(self.token)

    def given_up(self) -> None:
        _HELD.discard(self.token)


def holder_of(value: bytes | None) -> str:
    """The holder as a message names it, from an owner key's value."""
    owner = Owner.parse(value)
    if owner is not None:
        return owner.describe()
    return f"its owner key holds {(value or b'').decode('utf-8', 'replace')[:80]}"


def in_use(where: str, holder: str, remedy: str) -> QueueHeld:
    """The refusal a second server gets (at start: gearmand prints it and exits 1)."""
    return QueueHeld(f"{where}: in use by another server ({holder}); every server needs a queue of its own: {remedy}")


def taken_over(where: str, holder: str) -> QueueHeld:
    """The error of a server whose claim another server took while this one was cut off from the store."""
    return QueueHeld(f"{where}: another server ({holder}) took this queue over while this one was cut off from it")
