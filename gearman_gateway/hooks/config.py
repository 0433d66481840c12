"""The ``monitoring.hooks`` list of the YAML configuration, checked and turned into ``Hook`` values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: Events a hook may ask for (``queue_depth_over`` is asked for by its own key, with its threshold).
JOB_EVENTS = ("complete", "fail", "exception", "dead_letter")
QUEUE_DEPTH_OVER = "queue_depth_over"
EVENTS = (*JOB_EVENTS, QUEUE_DEPTH_OVER)

_KEYS = {
    "functions", "events", "queue_depth_over", "url", "secret", "timeout", "retries", "backoff", "max_backoff",
    "job",
}  # fmt: skip


class HookError(ValueError):
    """A hook's configuration is wrong; the message names the key as written in the YAML."""


@dataclass(frozen=True)
class Hook:
    """One configured hook: which functions and events, and where the event goes (``url`` or ``job``)."""

    index: int  # its place in the list, for logs and counters
    functions: tuple[str, ...]  # fnmatch patterns on the function name (case-sensitive)
    events: frozenset[str]
    queue_depth_over: int | None
    url: str | None
    secret: bytes | None
    timeout: float
    retries: int
    backoff: float
    max_backoff: float
    job: bytes | None  # a function: the event is submitted to it as a background job

    @property
    def label(self) -> str:
        return f"hook {self.index} ({self.url or 'job ' + (self.job or b'').decode('utf-8', 'replace')})"


def _number(where: str, value: Any, default: float, whole: bool = False) -> Any:
    if value is None:
        return default
    wrong = isinstance(value, bool) or not isinstance(value, int if whole else int | float)
    if wrong or value < 0:
        raise HookError(f"{where} must be {'a whole number' if whole else 'a number'} >= 0, not {value!r}")
    return value


def parse_hook(index: int, item: Any) -> Hook:
    where = f"monitoring.hooks[{index}]"
    if not isinstance(item, dict):
        raise HookError(f"{where} must be a mapping")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise HookError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    functions = item.get("functions", "*")
    if isinstance(functions, str):
        functions = [functions]
    if not isinstance(functions, list) or not functions or not all(isinstance(f, str) and f for f in functions):
        raise HookError(f"{where}.functions must be a pattern or a list of patterns (fnmatch: resize*, *)")
    events = item.get("events") or []
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, list) or any(e not in JOB_EVENTS for e in events):
        raise HookError(f"{where}.events must list some of {', '.join(JOB_EVENTS)} (queue_depth_over has its own key)")
    depth = item.get(QUEUE_DEPTH_OVER)
    if depth is not None:
        _number(f"{where}.{QUEUE_DEPTH_OVER}", depth, 0, whole=True)
        events = [*events, QUEUE_DEPTH_OVER]
    if not events:
        raise HookError(f"{where} needs events ({', '.join(JOB_EVENTS)}) or queue_depth_over")
    url, job = item.get("url"), item.get("job")
    if (url is None) == (job is None):
        raise HookError(f"{where} needs exactly one of url (an HTTP POST) and job (a function to submit to)")
    if url is not None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise HookError(f"{where}.url must be an http:// or https:// URL, not {url!r}")
    if job is not None and (not isinstance(job, str) or not job):
        raise HookError(f"{where}.job must be a function name")
    secret = item.get("secret")
    if secret is not None and not isinstance(secret, str):
        raise HookError(f"{where}.secret must be text")
    return Hook(
        index=index,
        functions=tuple(functions),
        events=frozenset(events),
        queue_depth_over=depth,
        url=url,
        secret=secret.encode() if secret else None,
        timeout=float(_number(f"{where}.timeout", item.get("timeout"), 5.0)),
        retries=_number(f"{where}.retries", item.get("retries"), 5, whole=True),
        backoff=float(_number(f"{where}.backoff", item.get("backoff"), 1.0)),
        max_backoff=float(_number(f"{where}.max_backoff", item.get("max_backoff"), 60.0)),
        job=job.encode() if job else None,
    )


def parse_hooks(items: Any) -> list[Hook]:
    if not isinstance(items, list):
        raise HookError("monitoring.hooks must be a list of hooks")
    return [parse_hook(index, item) for index, item in enumerate(items)]
