"""The texts the bot sends. Every function returns valid XML character data within a byte budget.

A job's output is bytes, and a chat message is XML text: output that is not UTF-8, or holds characters XML
forbids (most C0 controls, U+FFFE/U+FFFF), would make a broken stanza and cost the bot its stream. Such
output is sent as base64 with its size; output longer than the reply limit is cut with a note saying how
much there was. Interim and failure messages start with a bracketed tag (``[progress] 42/100``) so that a
script can tell them from a result, which is sent as it is.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

from gearman_gateway.scheduler import Priority
from protocols.xmpp.actions import FunctionCounts

#: Characters XML 1.0 does not allow in character data (its ``Char`` production, complemented).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
REPLACEMENT = "\ufffd"
ELLIPSIS = "…"
EMPTY_RESULT = "(empty result)"
PRIORITY_NAMES = {Priority.HIGH: "high", Priority.NORMAL: "normal", Priority.LOW: "low"}

HELP = """\
Commands (words in capitals are yours):
FUNCTION PAYLOAD: run a job and wait for its result (the payload is the rest of the message)
bg FUNCTION PAYLOAD: queue a background job; the reply is its handle
high / low before either: its priority (high bg FUNCTION PAYLOAD, bg low FUNCTION PAYLOAD)
run FUNCTION PAYLOAD: for a function named like a command (run help x)
status HANDLE: known, running, numerator/denominator of a job
functions: every function with its queued, running and worker counts
help: this text
While a job runs: [data], [progress] and [warning] messages; its result comes last."""


def is_xml_text(text: str) -> bool:
    return _NOT_XML.search(text) is None


def xml_safe(text: str) -> str:
    """``text`` with every character XML forbids replaced by U+FFFD."""
    return _NOT_XML.sub(REPLACEMENT, text)


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes at a character boundary, ending in an ellipsis if cut."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text
    room = max(0, limit - len(ELLIPSIS.encode()))
    return encoded[:room].decode("utf-8", "ignore") + ELLIPSIS


def name(value: bytes, limit: int = 200) -> str:
    """A function name or job handle for a sentence: decoded leniently, safe, short."""
    return clip(xml_safe(value.decode("utf-8", "replace")), limit)


def output(data: bytes, limit: int) -> str:
    """A job's output (result, WORK_DATA, warning or exception text) as a message body of at most
    ``limit`` UTF-8 bytes: the text itself; ``(empty result)``; the text cut, with a note; or, for bytes that
    are not XML-safe UTF-8, ``[binary] N bytes, base64:`` and the base64, or a note when that is too long."""
    if not data:
        return EMPTY_RESULT
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and is_xml_text(text):
        if len(data) <= limit:
            return text
        reserved = _truncation_note(len(data), limit)
        shown = data[: max(0, limit - len(reserved.encode()))].decode("utf-8", "ignore")
        return shown + _truncation_note(len(data), len(shown.encode()))
    encoded = base64.b64encode(data).decode("ascii")
    header = f"[binary] {len(data)} bytes, base64:\n"
    if len(header) + len(encoded) <= limit:
        return header + encoded
    return f"[binary] {len(data)} bytes, not UTF-8 text, too long for a chat reply ({limit} bytes at most); not shown"


def _truncation_note(size: int, shown: int) -> str:
    return f"\n[truncated] {size} bytes in all, the first {shown} shown"


def queued(function: bytes, handle: bytes, priority: Priority) -> str:
    """A background job's reply: its handle is the last word, for scripts."""
    tag = "" if priority == Priority.NORMAL else f" ({PRIORITY_NAMES.get(priority, 'normal')})"
    return f"queued {name(function)}{tag} as {name(handle, 100)}"


def progress(numerator: int, denominator: int) -> str:
    return f"[progress] {numerator}/{denominator}"


def warning(text: str) -> str:
    return f"[warning] {text}"


def data(text: str) -> str:
    return f"[data] {text}"


def failed(function: bytes) -> str:
    return f"[failed] {name(function)}: the worker reported failure"


def exception(function: bytes, text: str) -> str:
    return f"[failed] {name(function)} raised an exception: {text}"


def not_queued(function: bytes, reason: str) -> str:
    return f"[failed] {name(function)} not queued: {xml_safe(reason)}"


def no_worker(function: bytes) -> str:
    return (
        f"[failed] no worker serves {name(function)} now; not run (send it again when one is up, or queue it with bg)"
    )


def timed_out(function: bytes, seconds: float, handle: bytes | None) -> str:
    where = f"; it goes on as {name(handle, 100)} (status {name(handle, 100)})" if handle else ""
    return f"[failed] {name(function)} still running after {seconds:g} s, stopped waiting{where}"


def status(handle: bytes, known: bool, running: bool, numerator: int, denominator: int) -> str:
    """The four fields of STATUS_RES in words: ``H:x:1: running, 42/100``, ``H:x:1: queued, 0/0``, or
    ``H:x:1: unknown``."""
    if not known:
        return f"{name(handle, 100)}: unknown (finished, failed, or never queued)"
    return f"{name(handle, 100)}: {'running' if running else 'queued'}, {numerator}/{denominator}"


def functions(rows: Iterable[FunctionCounts], limit: int) -> str:
    """One line per function, sorted by name, within ``limit`` bytes (then ``... and N more``)."""
    ordered = sorted(rows, key=lambda row: row.name)
    if not ordered:
        return "no functions known"
    lines: list[str] = []
    size = 0
    for index, row in enumerate(ordered):
        line = f"{name(row.name)}: {row.queued} queued, {row.running} running, {row.workers} workers"
        left_after = len(ordered) - index - 1
        reserve = len(f"\n... and {left_after} more") if left_after else 0  # what a later cut must still fit
        if size + len(line.encode()) + 1 + reserve > limit:
            lines.append(f"... and {len(ordered) - index} more")
            break
        lines.append(line)
        size += len(line.encode()) + 1
    return "\n".join(lines)


def error(reason: str) -> str:
    return f"[error] {xml_safe(reason)}"


def slow_down(per_minute: int) -> str:
    return f"[slow down] more than {per_minute} messages a minute; this one was not run. Wait a little."


REFUSED = "[refused] you are not allowed to use this bot; further messages are ignored."
