"""The chat command grammar: one message's text -> one command. Pure functions, no state, no exceptions.

::

    message  = *ws command
    command  = "help" [ws *any]  |  "?"                  -> Help
             | "functions" [ws *any]                     -> ListCommand
             | "status" 1*ws handle *ws                  -> StatusCommand
             | *(option 1*ws) ["run" 1*ws] function [sep payload]   -> JobCommand
    option   = "bg" | "high" | "low"        ; any order, each at most once, not both high and low
    function = 1*(any but ws)
    sep      = one whitespace character (space, tab or newline)
    payload  = the rest of the message verbatim, less one trailing "\\n"

Keywords (``help``, ``functions``, ``status``, ``bg``, ``high``, ``low``, ``run``) are matched without regard
to case (phones capitalise the first word); function names and payloads are taken as written. Keywords count
only before the function name: ``bg high resize x`` and ``high bg resize x`` are the same job, ``bg status x``
runs the function ``status`` in the background, and ``run help me`` runs the function ``help`` with payload
``me`` (``run`` ends the options, so it also reaches functions named ``bg``, ``high``, ``low`` or ``run``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gearman_gateway.scheduler import MAX_HANDLE_SIZE, Priority

#: Longest function name accepted: the reference C client library's ``GEARMAN_FUNCTION_MAX_SIZE``.
MAX_FUNCTION_SIZE = 512

_WORD = re.compile(r"(\S+)(\s?)")  # a word and the single whitespace character after it (the separator)
_LEADING_WS = re.compile(r"\s*")
#: Characters no function name may hold: NUL separates the binary protocol's arguments, and the rest of C0/C1
#: would show up garbled in every listing.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PRIORITY_WORDS = {"high": Priority.HIGH, "low": Priority.LOW}


@dataclass(frozen=True, slots=True)
class HelpCommand:
    pass


@dataclass(frozen=True, slots=True)
class ListCommand:
    pass


@dataclass(frozen=True, slots=True)
class StatusCommand:
    handle: bytes


@dataclass(frozen=True, slots=True)
class JobCommand:
    function: bytes
    payload: bytes
    priority: Priority
    background: bool


@dataclass(frozen=True, slots=True)
class BadCommand:
    """Not a command we can run; ``reason`` says why in one line, for the reply."""

    reason: str


Command = HelpCommand | ListCommand | StatusCommand | JobCommand | BadCommand


def parse(text: str) -> Command:
    """The command in ``text`` (the whole message, or what follows the bot's nick in a room)."""
    pos = _LEADING_WS.match(text).end()  # type: ignore[union-attr]  # \s* always matches
    if pos == len(text):
        return BadCommand("empty message; send help for the commands")
    first = _WORD.match(text, pos)
    assert first is not None  # text[pos] is not whitespace
    keyword = first.group(1).lower()
    if keyword in ("help", "?"):
        return HelpCommand()
    if keyword == "functions":
        return ListCommand()
    if keyword == "status":
        return _status(text[first.end() :])
    return _job(text, pos)


def _status(rest: str) -> Command:
    handle = rest.strip()
    if any(ch.isspace() for ch in handle):
        return BadCommand("status takes one job handle: status H:host:123")
    checked = check_handle(handle)
    return checked if isinstance(checked, BadCommand) else StatusCommand(checked)


def check_handle(handle: str) -> bytes | BadCommand:
    """A job handle as the scheduler knows them, or why it cannot be one."""
    if not handle:
        return BadCommand("status needs a job handle: status H:host:123")
    encoded = _encode(handle)
    if encoded is None or len(encoded) > MAX_HANDLE_SIZE or _CONTROL.search(handle):
        return BadCommand(f"not a job handle (at most {MAX_HANDLE_SIZE} bytes): {_clip(handle)}")
    return encoded


def check_function(function: str) -> bytes | BadCommand:
    """A function name as workers register them, or why it cannot be one."""
    if not function:
        return BadCommand("a function name is required")
    encoded = _encode(function)
    if encoded is None:
        return BadCommand("the function name is not valid text")
    if _CONTROL.search(function):
        return BadCommand("the function name holds control characters")
    if len(encoded) > MAX_FUNCTION_SIZE:
        return BadCommand(f"function name too long ({len(encoded)} bytes, at most {MAX_FUNCTION_SIZE})")
    return encoded


def _job(text: str, pos: int) -> Command:
    seen: set[str] = set()
    priority = Priority.NORMAL
    background = False
    while True:
        word = _WORD.match(text, pos)
        if word is None:  # options and then nothing: "bg", "high bg   "
            return BadCommand(f"{' '.join(sorted(seen))} needs a function: bg <function> <payload>")
        name = word.group(1)
        keyword = name.lower()
        if keyword == "run":
            pos = _LEADING_WS.match(text, word.end()).end()  # type: ignore[union-attr]
            word = _WORD.match(text, pos)
            if word is None:
                return BadCommand("run needs a function: run <function> <payload>")
            break
        if keyword != "bg" and keyword not in _PRIORITY_WORDS:
            break
        if keyword in seen:
            return BadCommand(f"{keyword} given twice")
        seen.add(keyword)
        if keyword == "bg":
            background = True
        else:
            if priority != Priority.NORMAL:
                return BadCommand("high and low together: choose one")
            priority = _PRIORITY_WORDS[keyword]
        pos = _LEADING_WS.match(text, word.end()).end()  # type: ignore[union-attr]
    function = check_function(word.group(1))
    if isinstance(function, BadCommand):
        return function
    payload_text = text[word.end() :]
    if payload_text.endswith("\n"):
        payload_text = payload_text[:-1]
    payload = _encode(payload_text)
    if payload is None:
        return BadCommand("the payload is not valid text")
    return JobCommand(function, payload, priority, background)


def _encode(text: str) -> bytes | None:
    """UTF-8, or None for text that has none (lone surrogates: never from XML, possible from a test)."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return None


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
