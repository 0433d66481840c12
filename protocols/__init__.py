"""Protocol frontends and their registry (DESIGN.md seam 4).

A frontend is one object with a name, a default port and ``build(context)``, which returns the Twisted
services that listen for it. The built-in ones live in this package; a third-party package adds one
through the ``gearman_gateway.protocols`` entry-point group. Enabling a frontend is `gearmand -r NAME`
or the YAML ``frontends:`` list; the scheduler never changes for a new protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from twisted.application.service import IService

    from gearman_gateway.admin import Admin
    from gearman_gateway.config import Settings
    from gearman_gateway.connections import ConnectionRegistry
    from gearman_gateway.scheduler import Scheduler

ENTRY_POINT_GROUP = "gearman_gateway.protocols"


@dataclass
class FrontendContext:
    """Everything a frontend may use: settings, the scheduler seam, admin data, the reactor."""

    settings: Settings
    scheduler: Scheduler
    admin: Admin
    connections: ConnectionRegistry
    reactor: Any


class Frontend(Protocol):
    name: str
    default_port: int

    def build(self, context: FrontendContext) -> list[IService]: ...


_BUILT_IN = {"binary": "protocols.binary:FRONTEND", "http": "protocols.http:FRONTEND"}


class UnknownFrontend(LookupError):
    pass


def available() -> dict[str, str]:
    """Frontend name -> 'module:attribute', built-ins first, then installed entry points."""
    found = dict(_BUILT_IN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def load(name: str) -> Frontend:
    target = available().get(name.lower())
    if target is None:
        raise UnknownFrontend(f"unknown protocol {name!r} (available: {', '.join(sorted(available()))})")
    module_name, _, attribute = target.partition(":")
    module = __import__(module_name, fromlist=[attribute])
    return getattr(module, attribute)
