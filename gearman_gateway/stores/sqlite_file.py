"""The sqlite queue file's life outside its connection: who may open it, the single file of earlier
versions, and an empty file at a clean stop.

* **One server per file.** Two servers on one queue replay and run each other's jobs, and both number new
  jobs from the same maximum, so their rows collide. The first open takes an exclusive ``flock`` on
  ``<file>.lock`` and keeps it until the store is closed at shutdown (the kernel drops it if the process
  dies, so a crash never leaves a stale lock); the lock file holds the holder's pid for the message a
  second server gets. A separate file, because sqlite's own POSIX locks on the database are dropped when
  any descriptor of it closes in the process, and they exclude writers only for one transaction.
* **The file of earlier versions.** Before the default file was named after the port, every instance used
  ``DATA_DIR/queue.sqlite3``. The server on gearmand's port takes it over (renames it) at its first start,
  so the jobs acknowledged before an upgrade are replayed, not abandoned; other servers say it is there.
* **An empty file does not linger.** The default file (the data directory is ours) is deleted at a clean
  stop when it holds our table and no row at all, live or dead; a file named by ``--libsqlite3-db`` is the
  user's and is left in place, as gearmand leaves its own.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3

from gearman_gateway.stores.base import StoreError

log = logging.getLogger("gearman_gateway.store")

LOCK_SUFFIX = ".lock"
#: What sqlite keeps beside a database file (WAL mode: -wal and -shm; rollback mode: -journal).
COMPANIONS = ("-wal", "-shm", "-journal")
#: A path that is no file: nothing to lock or remove.
IN_MEMORY = ":memory:"


class QueueFileBusy(Exception):
    """Another live process holds the lock; ``pid`` is what its lock file says (0 if unreadable)."""

    def __init__(self, pid: int) -> None:
        super().__init__(pid)
        self.pid = pid


class QueueFileLock:
    """An exclusive, non-blocking ``flock`` on ``<db>.lock``, held until ``release``."""

    def __init__(self, db_path: str) -> None:
        self.path = db_path + LOCK_SUFFIX
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise QueueFileBusy (someone holds it) or OSError (cannot create the file)."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = _read_pid(fd)
                os.close(fd)
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise QueueFileBusy(holder) from None
                raise
            # The last holder unlinks the file before it lets go: a lock taken on that unlinked file
            # would exclude nobody, so take it again on the file that is there now.
            try:
                here = os.stat(self.path)
                mine = os.fstat(fd)
                current = (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, b"%d\n" % os.getpid())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.unlink(self.path)  # while still held: see acquire
        except OSError:
            pass
        os.close(fd)


def _read_pid(fd: int) -> int:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else 0
    except OSError:
        return 0


class QueueFile:
    """One sqlite queue file: its lock, and what to do with an earlier version's file and an empty one.

    ``option`` is the command-line option that names this file, for messages. ``ours``: the file is the
    default one in the data directory, so an empty one is removed at a clean stop. ``legacy``: the shared
    file of earlier versions, taken over when ``take_over_legacy`` and this file does not exist yet."""

    def __init__(
        self,
        path: str,
        *,
        option: str = "--libsqlite3-db FILE",
        ours: bool = False,
        legacy: str = "",
        take_over_legacy: bool = False,
    ) -> None:
        self.path = path
        self.option = option
        self.ours = ours
        self.legacy = legacy
        self.take_over_legacy = take_over_legacy
        self.lock = QueueFileLock(path)

    @property
    def claimed(self) -> bool:
        return self.lock.held or self.path == IN_MEMORY

    def files(self) -> list[str]:
        """Every file this queue may use, existing or not: the database, its companions, the lock, and the
        file of earlier versions with its own when this one takes it over (``gearmand -u`` chowns them)."""
        names = [self.path, *(self.path + s for s in COMPANIONS), self.lock.path]
        if self.legacy and self.take_over_legacy:
            names += [self.legacy, *(self.legacy + s for s in COMPANIONS), self.legacy + LOCK_SUFFIX]
        return names

    def claim(self, table: str) -> None:
        """Lock the file for this process, then deal with the earlier versions' file. Before the first
        connection. StoreError if another server holds it or the lock cannot be made (the message does not
        name the file: the store's messages start with it)."""
        if self.claimed:
            return
        try:
            self.lock.acquire()
        except QueueFileBusy as busy:
            if busy.pid == os.getpid():
                holder = "this process (another server object)"
            else:
                holder = f"another server (pid {busy.pid})" if busy.pid else "another server"
            raise StoreError(
                f"in use by {holder}; every server needs a queue file of its own: "
                f"start this one with its own --data-dir DIR or --libsqlite3-db FILE"
            ) from None
        except OSError as error:
            directory = os.path.dirname(os.path.abspath(self.path))
            raise StoreError(
                f"connect failed: cannot create the lock file {self.lock.path} ({error.strerror}): the directory "
                f"{directory} must exist and be writable; choose another with {self.option}"
            ) from None
        if self.legacy and os.path.exists(self.legacy):
            if self.take_over_legacy and not os.path.exists(self.path):
                self._take_over(table)
            elif not os.path.exists(self.legacy + LOCK_SUFFIX):  # else a server was given --libsqlite3-db on it
                log.warning(
                    "%s is the queue file of an earlier version and is not read by this server (queue %s); "
                    "its jobs are replayed by a server started with --libsqlite3-db %s",
                    self.legacy,
                    self.path,
                    self.legacy,
                )

    def _take_over(self, table: str) -> None:
        """Rename the earlier versions' file to ours, after folding its WAL into it (the switch out of WAL
        mode also fails while any other process has the file open: then it is left alone)."""
        legacy_lock = QueueFileLock(self.legacy)
        try:
            legacy_lock.acquire()  # a server of this version given --libsqlite3-db on it
        except (QueueFileBusy, OSError) as error:
            who = f"pid {error.pid}" if isinstance(error, QueueFileBusy) else str(error)
            log.warning("%s of an earlier version is in use (%s): not taken over", self.legacy, who)
            return
        in_use = "%s of an earlier version is still in use by another process: not taken over (stop that one first)"
        try:
            conn = sqlite3.connect(self.legacy, timeout=0, isolation_level=None)
            try:
                mode = str(conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]).lower()
                jobs = _count_rows(conn, table)
            finally:
                conn.close()
            left = [self.legacy + s for s in COMPANIONS if os.path.exists(self.legacy + s)]
            if mode != "delete" or left:
                log.warning(in_use, self.legacy)
                return
            os.rename(self.legacy, self.path)
        except sqlite3.OperationalError as error:
            if "locked" in str(error):
                log.warning(in_use, self.legacy)
            else:
                log.warning("%s of an earlier version could not be taken over (%s): left as it was", self.legacy, error)
            return
        except (sqlite3.Error, OSError) as error:
            log.warning("%s of an earlier version could not be taken over (%s): left as it was", self.legacy, error)
            return
        finally:
            legacy_lock.release()
        log.warning(
            "took over %s, the queue file of an earlier version, as %s (jobs to replay: %d)",
            self.legacy,
            self.path,
            max(jobs, 0),
        )

    def release(self, table: str) -> None:
        """At the store's close: remove the file if it is ours and empty, then give up the lock."""
        if not self.lock.held:
            return
        try:
            if self.ours and remove_if_empty(self.path, table):
                log.info("removed the empty queue file %s", self.path)
        finally:
            self.lock.release()


def _count_rows(conn: sqlite3.Connection, table: str) -> int:
    """Rows in ``table``, or -1 if there is no such table."""
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    if not found:
        return -1
    return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def remove_if_empty(path: str, table: str) -> bool:
    """Delete the database and its companions if it holds ``table`` and nothing else, with no row (a dead
    letter is a row), and no other connection has it open. Whether it did; any doubt keeps the file."""
    if not os.path.exists(path):
        return False
    try:
        conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    except sqlite3.Error:
        return False
    try:
        names = [
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
        ]
        if names != [table] or _count_rows(conn, table) != 0:
            return False
        # Out of WAL mode: fails while another connection has the file open. Then an exclusive
        # transaction keeps every writer out while the files go.
        if str(conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]).lower() != "delete":
            return False
        conn.execute("BEGIN EXCLUSIVE")
        if _count_rows(conn, table) != 0:
            return False
        for name in (path, *(path + s for s in COMPANIONS)):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
        return True
    except (sqlite3.Error, OSError) as error:
        log.warning("kept the queue file %s: %s", path, error)
        return False
    finally:
        conn.close()
