"""The HTTP frontend (``gearmand -r http``, port 8080): gearmand's HTTP job submission on h11, plus a
JSON API, Prometheus metrics and a live dashboard under a reserved prefix. See docs/http.md.

Modules, one idea each: ``options`` (its flags and YAML block), ``mapping`` (HTTP request <-> job rules),
``session`` (one h11 connection and the job its request waits for, sans-IO), ``api`` / ``metrics`` /
``dashboard`` (the prefix endpoints), and ``frontend`` (the thin Twisted adapter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from protocols import FrontendBase
from protocols.http.options import HttpOptions, check_options

if TYPE_CHECKING:
    from twisted.application.service import IService

    from protocols import FrontendContext


class HttpFrontend(FrontendBase):
    name = "http"
    title = "http frontend (-r http)"
    options_type = HttpOptions

    def validate(self, options: HttpOptions, label: Callable[[str], str]) -> None:
        check_options(options, label)

    def build(self, context: FrontendContext) -> list[IService]:
        from protocols.http.frontend import HttpFactory
        from protocols.listening import listening_services

        return listening_services(context, self.name, context.options.port, HttpFactory(context), "http")


FRONTEND = HttpFrontend()
