"""One identity's permissions, compiled for the frontends' checks (``Grant``), and its tenant.

A tenant's functions live in the scheduler under ``<tenant>`` NUL ``<name>``. NUL is the one byte no
function name can hold otherwise: the binary protocol ends arguments with it, and the other frontends refuse
names that contain it (``Access``). So a prefixed name never equals a name anyone else can use, and the
scheduler stays unaware of tenants. A grant's globs match the name as its holder writes it (unprefixed).
"""

from __future__ import annotations

import fnmatch
import re

from gearman_gateway.security.policy import ADMIN_CLASSES, IdentitySpec, Rules, TenantSpec

#: The byte between a tenant and a function name inside the scheduler.
SEPARATOR = b"\0"
#: Names remembered per grant and kind (submit, work): beyond it the memo starts again.
MEMO_SIZE = 4096


def _matcher(globs: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex for all the globs, each matched against the whole name (fnmatch's rules, case-sensitive)."""
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs))


def shown(name: bytes) -> bytes:
    """A scheduler name as an operator (no tenant) reads it: a tenant's as ``tenant/name``."""
    return name.replace(SEPARATOR, b"/") if SEPARATOR in name else name


class Tenant:
    """A namespace: its prefix, limits and live figures."""

    __slots__ = ("name", "prefix", "max_queued_jobs", "max_connections", "connections", "functions")

    def __init__(self, spec: TenantSpec) -> None:
        self.name = spec.name
        self.prefix = spec.name.encode() + SEPARATOR
        self.max_queued_jobs = spec.max_queued_jobs
        self.max_connections = spec.max_connections
        self.connections = 0
        self.functions: set[bytes] = set()  # scheduler names it used (for its queued-jobs count)


class Grant:
    """What connections of one identity may do. Shared by them; the memo makes a repeated check one dict
    lookup."""

    __slots__ = ("name", "rules", "tenant", "prefix", "max_connections", "connections", "unrestricted",
                 "submit_memo", "_submit", "_work", "_memo")  # fmt: skip

    def __init__(self, name: str, rules: Rules, tenant: Tenant | None = None, max_connections: int = 0) -> None:
        self.name = name
        self.rules = rules
        self.tenant = tenant
        self.prefix = tenant.prefix if tenant is not None else b""
        self.max_connections = max_connections
        self.connections = 0
        self._submit = _matcher(rules.submit)
        self._work = _matcher(rules.work)
        self._memo: tuple[dict[bytes, bool], dict[bytes, bool]] = ({}, {})
        self.submit_memo = self._memo[0]  # what may_submit answered, by name (the binary job path looks here first)
        # everything allowed in the one global namespace: a frontend may skip every check
        self.unrestricted = (
            tenant is None and "*" in rules.submit and "*" in rules.work and rules.admin == frozenset(ADMIN_CLASSES)
        )

    @classmethod
    def of(cls, spec: IdentitySpec, tenant: Tenant | None) -> Grant:
        return cls(spec.name, spec.rules, tenant, spec.max_connections)

    def may_submit(self, function: bytes) -> bool:
        return self._allows(0, self._submit, function)

    def may_work(self, function: bytes) -> bool:
        return self._allows(1, self._work, function)

    def may_admin(self, command_class: str) -> bool:
        return command_class in self.rules.admin

    def _allows(self, kind: int, matcher: re.Pattern[str] | None, function: bytes) -> bool:
        memo = self._memo[kind]
        allowed = memo.get(function)
        if allowed is None:
            allowed = matcher is not None and matcher.fullmatch(function.decode("utf-8", "surrogateescape")) is not None
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            memo[function] = allowed
        return allowed

    def inside(self, function: bytes) -> bytes:
        """The scheduler's name for a function this grant names."""
        return self.prefix + function if self.prefix else function

    def outside(self, name: bytes) -> bytes | None:
        """A scheduler name as this grant sees it: unprefixed, or None when it is not its tenant's. Without a
        tenant every name is seen; a tenant's shows as ``tenant/name`` (for reading only)."""
        prefix = self.prefix
        if prefix:
            return name[len(prefix) :] if name.startswith(prefix) else None
        return shown(name)
