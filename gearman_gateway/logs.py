"""Log set-up for the server process: gearmand's level names, a file/stderr/none target, SIGHUP reopen."""

from __future__ import annotations

import logging
import logging.handlers
import sys

from gearman_gateway.config import LEVELS

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(log_file: str, level_name: str) -> logging.Handler | None:
    """Route the ``gearman_gateway`` logger (and Twisted's, through the standard library) to one target."""
    logging.addLevelName(LEVELS["NOTICE"], "NOTICE")
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler: logging.Handler | None
    if log_file == "none":
        handler = logging.NullHandler()
    elif log_file == "stderr":
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.handlers.WatchedFileHandler(log_file)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(LEVELS[level_name])
    return handler


def reopen(handler: logging.Handler | None) -> None:
    """SIGHUP: reopen the log file after rotation."""
    if isinstance(handler, logging.FileHandler):
        handler.acquire()
        try:
            handler.close()
            handler.stream = handler._open()
        finally:
            handler.release()
