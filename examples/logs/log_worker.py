"""Log collection worker: parse each Apache log line (the "common" format) and add it to the totals.

    python examples/logs/log_worker.py logs.sqlite3 &       # start as many as you like, on one file

Each job of the function "logger" is one line, as `gearman -n -f logger` sends it. The totals live in a
SQLite file that every worker adds to (a row per host, path and status: requests and bytes), so any number
of workers, each taking whichever line comes next, build one summary; summary.py reads it. A line that is
not in the common format is kept in the table "rejected".
"""

import os
import re
import sqlite3
import sys
import time

from gearman_gateway import Worker

# host ident user [time] "request" status bytes
COMMON = re.compile(rb'^(\S+) \S+ \S+ \[[^\]]*\] "(?:\S+) (\S+)[^"]*" (\d{3}) (\d+|-)')
SCHEMA = """
CREATE TABLE IF NOT EXISTS hits (
    host TEXT, path TEXT, status INTEGER, requests INTEGER, bytes INTEGER, PRIMARY KEY (host, path, status)
);
CREATE TABLE IF NOT EXISTS rejected (line TEXT);
"""
ADD = """
INSERT INTO hits VALUES (?, ?, ?, 1, ?)
ON CONFLICT (host, path, status) DO UPDATE SET requests = requests + 1, bytes = bytes + excluded.bytes
"""


def open_totals(path):
    db = sqlite3.connect(path, timeout=30, isolation_level=None)  # autocommit: one line, one transaction
    # WAL, so workers add while summary.py reads. Switching to it needs a moment alone with the file, and SQLite
    # answers "database is locked" at once rather than wait when workers start together: so try again.
    for attempt in range(200):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError:
            if attempt == 199:
                raise
            time.sleep(0.05)
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    return db


def logger(db):
    def parse(job):
        line = job.workload.rstrip(b"\r\n")
        match = COMMON.match(line)
        if match is None:
            db.execute("INSERT INTO rejected VALUES (?)", (line.decode("utf-8", "replace"),))
            return b""
        host, path, status, size = match.groups()
        db.execute(ADD, (host.decode(), path.decode("utf-8", "replace"), int(status), int(size.replace(b"-", b"0"))))
        return b""

    return parse


if __name__ == "__main__":
    worker = Worker(os.environ.get("GEARMAN_SERVER", "localhost:4730"))
    worker.add_function("logger", logger(open_totals(sys.argv[1] if len(sys.argv) > 1 else "logs.sqlite3")))
    while True:
        worker.work()
