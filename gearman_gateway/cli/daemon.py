"""Detaching into the background without hiding start-up errors from the shell that ran `gearmand -d`.

The parent waits on a pipe until the daemon reports that it listens (exit 0) or why it could not
(the message is printed and the parent exits 1), as a user expects from `gearmand -d && ...`.
"""

from __future__ import annotations

import os
import sys


class Daemon:
    def __init__(self) -> None:
        self._write_fd = -1

    def detach(self) -> None:
        read_fd, write_fd = os.pipe()
        if os.fork() > 0:
            os.close(write_fd)
            message = b""
            while chunk := os.read(read_fd, 4096):
                message += chunk
            if message == b"ok":
                os._exit(0)
            sys.stderr.write((message or b"gearmand: daemon exited during start-up\n").decode(errors="replace"))
            os._exit(1)
        os.close(read_fd)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        # the working directory is kept, as gearmand keeps it: relative paths (--data-dir, -P, -l,
        # --libsqlite3-db) mean what they meant on the command line
        self._write_fd = write_fd
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.close(devnull)

    def report(self, error: str | None) -> None:
        """Tell the waiting parent how start-up went; stderr goes to /dev/null afterwards."""
        if self._write_fd < 0:
            return
        os.write(self._write_fd, b"ok" if error is None else error.encode() + b"\n")
        os.close(self._write_fd)
        self._write_fd = -1
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 2)
        os.close(devnull)
