"""Protocol frontends and their one registry (docs/architecture.md, "Frontends").

A frontend is one object: a name, its options (a dataclass declared with ``protocols.options.option``,
which gives it its flags, YAML block and make_settings names), the checks its options need, the reactor
it needs if any, and ``build(context)``, which returns the Twisted services that serve it: listening on
ports or connecting out. Every frontend, built-in or not, comes through the ``gearman_gateway.protocols``
entry-point group (the built-in ones are declared in pyproject.toml); ``gearmand -r NAME`` or the YAML
``frontends:`` list enables one. The scheduler never changes for a new protocol.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from gearman_gateway.security import Access
from protocols.options import NoOptions, declared

if TYPE_CHECKING:
    from twisted.application.service import IService

    from gearman_gateway.admin import Admin
    from gearman_gateway.config import Settings
    from gearman_gateway.connections import ConnectionRegistry
    from gearman_gateway.results import ResultCache
    from gearman_gateway.scheduler import Scheduler
    from protocols.output import WriteBatch

ENTRY_POINT_GROUP = "gearman_gateway.protocols"
#: The distribution whose entry points are the built-in frontends.
OUR_DISTRIBUTION = "gearman-gateway"
#: Entry points whose import installed Twisted's default reactor (gearmand then cannot choose its own).
REACTOR_IMPORTED_BY: list[str] = []


@dataclass
class FrontendContext:
    """Everything a frontend may use: the server-wide settings, its own options, the scheduler seam, admin
    data, the connection registry, the reactor and the security policy's checks."""

    settings: Settings
    scheduler: Scheduler
    admin: Admin
    connections: ConnectionRegistry
    reactor: Any
    options: Any = None  # this frontend's options: an instance of its ``options_type``
    results: ResultCache | None = None  # the result cache (gearman_gateway/results.py), unless turned off
    access: Access = field(default_factory=Access)  # identities and permissions (gearman_gateway/security)

    @functools.cached_property
    def write_batch(self) -> WriteBatch:
        """The reactor's ``WriteBatch`` (``protocols.output.write_batch``), kept here after the first ask:
        every new connection joins it, and an attribute read is cheaper than the per-reactor lookup."""
        from protocols.output import write_batch

        return write_batch(self.reactor)


class Frontend(Protocol):
    """What the registry's entry points name (an instance; ``FrontendBase`` gives the optional parts)."""

    name: str  # as in `-r NAME`, the YAML ``frontends:`` list and its entry point's name
    title: str  # the heading of its options in `gearmand --help`
    options_type: type  # a dataclass of fields made with protocols.options.option()
    reactor: str | None  # the reactor it needs ("asyncio": Twisted's asyncio reactor); None: any

    def validate(self, options: Any, label: Callable[[str], str]) -> None:
        """Raise protocols.options.OptionError for a bad value; ``label(field)`` names it as written."""
        ...

    def build(self, context: FrontendContext) -> list[IService]:
        """The services that serve the frontend; they start and stop with the server. A service that has a
        ``frontend_state()`` method (returning a ServiceState) says what it is doing in `show frontends`."""
        ...


class FrontendBase:
    """Defaults for a frontend's optional parts: no options, any reactor, nothing to check."""

    name = ""
    title = ""
    options_type: type = NoOptions
    reactor: str | None = None

    def validate(self, options: Any, label: Callable[[str], str]) -> None:
        return None


@dataclass(frozen=True)
class ServiceState:
    """What one of a frontend's services is doing: ``listening`` (with its address), ``connected``,
    ``connecting``, ``stopped``...; ``detail`` says more where there is no address (whom it connects to)."""

    state: str
    address: tuple[str, int] | None = None
    detail: str = ""


@runtime_checkable
class ReportsState(Protocol):
    def frontend_state(self) -> ServiceState: ...


@dataclass(frozen=True)
class MetricFamily:
    """One Prometheus family a frontend's service adds to ``/_gearman/metrics`` (the HTTP frontend renders
    it): ``kind`` is ``counter`` or ``gauge``; each sample is (labels, value), labels a name -> text mapping."""

    name: str
    kind: str
    help: str
    samples: tuple[tuple[dict[str, str], float], ...] = ()


@runtime_checkable
class ReportsMetrics(Protocol):
    """A service whose frontend has figures of its own (the XMPP bot's connection, its messages)."""

    def frontend_metrics(self) -> list[MetricFamily]: ...


class UnknownFrontend(LookupError):
    pass


@dataclass(frozen=True)
class Registry:
    """Every installed frontend by name, and the entry points that could not be loaded (with why)."""

    frontends: dict[str, Frontend]
    broken: dict[str, str]

    def disable(self, name: str, why: str) -> None:
        """A frontend found unusable after loading (config.py: its option names clash with one loaded before)."""
        if self.frontends.pop(name, None) is not None:
            self.broken[name] = why


@functools.cache
def registry() -> Registry:
    """Loaded once per process: the entry points of the installed distributions, this project's own first (a
    third-party frontend cannot take a built-in's name or flags), then by name. A third-party package that
    fails to load, or loads Twisted's reactor while being imported (the reactor is chosen afterwards: see
    ``reactor``), is recorded as broken; the others still work."""
    frontends: dict[str, Frontend] = {}
    broken: dict[str, str] = {}

    def order(ep: Any) -> tuple[bool, str]:
        dist = getattr(ep, "dist", None)
        return (getattr(dist, "name", "") != OUR_DISTRIBUTION, ep.name)

    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=order):
        name = ep.name.lower()
        if name in frontends or name in broken:
            continue  # the same name from a second distribution: the first one wins
        reactor_before = "twisted.internet.reactor" in sys.modules
        try:
            frontend = ep.load()
        except Exception as error:  # a broken third-party package must not stop the others
            broken[name] = f"{ep.value}: {type(error).__name__}: {error}"
            continue
        if not reactor_before and "twisted.internet.reactor" in sys.modules:
            broken[name] = f"{ep.value}: importing it imports twisted.internet.reactor, before gearmand chooses one"
            REACTOR_IMPORTED_BY.append(ep.value)
            continue
        problem = _problem(name, frontend)
        if problem:
            broken[name] = f"{ep.value}: {problem}"
        else:
            frontends[name] = frontend
    return Registry(frontends, broken)


_FRONTEND_PARTS = ("name", "title", "options_type", "reactor", "validate", "build")


def _problem(name: str, frontend: Any) -> str:
    """Why an entry point's object is not a Frontend, or ''."""
    missing = [part for part in _FRONTEND_PARTS if not hasattr(frontend, part)]
    if missing:
        return f"it is not a Frontend (no {', '.join(missing)}; subclass protocols.FrontendBase)"
    if frontend.name != name:
        return f"its name is {frontend.name!r}, not {name!r}"
    if not dataclasses.is_dataclass(frontend.options_type):
        return "its options_type is not a dataclass"
    try:
        frontend.options_type()  # every option needs a default
        declared(name, frontend.options_type)  # and a type hint that resolves
    except Exception as error:
        return f"its options_type cannot be used: {type(error).__name__}: {error}"
    return ""


def available() -> dict[str, Frontend]:
    """Every frontend that can be enabled, by name."""
    return registry().frontends


def load(name: str) -> Frontend:
    found = registry()
    frontend = found.frontends.get(name.lower())
    if frontend is None:
        raise UnknownFrontend(unknown_message(name))
    return frontend


def unknown_message(name: str) -> str:
    found = registry()
    if name.lower() in found.broken:
        return f"protocol {name!r} cannot be loaded ({found.broken[name.lower()]})"
    return f"unknown protocol {name!r} (available: {', '.join(sorted(found.frontends))})"
