"""The memcached frontend (``gearmand -r memcached``, port 11211): any memcached client submits jobs with
``set``, reads their results with ``get``, and can take work as a worker. See docs/memcached.md.

Modules, one idea each: the sans-IO codec (``codec`` with ``text``, ``meta``, ``binary``, ``events``,
``replies``), ``keys`` (what a key names), ``session`` (one connection's meaning, sans-IO), ``stats``,
``options`` and ``frontend`` (the thin Twisted adapter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from protocols import FrontendBase
from protocols.memcached.options import MemcachedOptions, check_options

if TYPE_CHECKING:
    from twisted.application.service import IService

    from protocols import FrontendContext


class MemcachedFrontend(FrontendBase):
    name = "memcached"
    title = "memcached frontend (-r memcached)"
    options_type = MemcachedOptions

    def validate(self, options: MemcachedOptions, label: Callable[[str], str]) -> None:
        check_options(options, label)

    def build(self, context: FrontendContext) -> list[IService]:
        from protocols.listening import listening_services
        from protocols.memcached.frontend import MemcachedFactory

        return listening_services(context, self.name, context.options.port, MemcachedFactory(context), "memcached")


FRONTEND = MemcachedFrontend()
