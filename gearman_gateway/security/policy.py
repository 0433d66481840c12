"""The ``security:`` block of the YAML config, checked and turned into plain values (``Policy``).

::

    security:
      anonymous: {submit: ["*"], work: ["*"], admin: [all]}    # the default: everything, as before
      identities:
        billing:
          token: sha256:...             # gearmand --hash-token
          certificates: [billing.example.com]   # a client certificate's subject CN or a DNS SAN
          jids: [billing@example.org]   # XMPP senders (bare JIDs)
          tenant: billing               # its functions live in their own namespace
          submit: ["invoice.*"]         # globs over whole function names
          work: []
          admin: [read]                 # ADMIN_CLASSES, or all
          max_connections: 50           # 0: no cap
      tenants:
        billing: {max_queued_jobs: 10000, max_connections: 200}

Within a block a missing list grants nothing; only a config without ``anonymous`` keeps the old
everything-for-everyone default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gearman_gateway.security.tokens import TokenError, parse_hash

#: Admin command classes (``gearman_gateway.admin.COMMAND_CLASSES`` maps every command to one).
ADMIN_CLASSES = ("read", "cancel", "functions", "maxqueue", "shutdown", "dead_letters")
#: What a tenant or identity may be called: it shows in logs, metrics labels and the scheduler's names.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
ANONYMOUS = "anonymous"
_RULE_KEYS = ("submit", "work", "admin")
_IDENTITY_KEYS = (*_RULE_KEYS, "token", "certificates", "jids", "tenant", "max_connections")
_TENANT_KEYS = ("max_queued_jobs", "max_connections")


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class Rules:
    """What one identity may do: globs for submit and work, admin classes."""

    submit: tuple[str, ...] = ()
    work: tuple[str, ...] = ()
    admin: frozenset[str] = frozenset()


EVERYTHING = Rules(("*",), ("*",), frozenset(ADMIN_CLASSES))


@dataclass(frozen=True)
class IdentitySpec:
    name: str
    rules: Rules
    token: bytes | None = None  # sha256 digest
    certificates: tuple[str, ...] = ()
    jids: tuple[str, ...] = ()
    tenant: str | None = None
    max_connections: int = 0


@dataclass(frozen=True)
class TenantSpec:
    name: str
    max_queued_jobs: int = 0
    max_connections: int = 0


@dataclass(frozen=True)
class Policy:
    anonymous: Rules = EVERYTHING
    identities: tuple[IdentitySpec, ...] = ()
    tenants: dict[str, TenantSpec] = field(default_factory=dict)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PolicyError(f"{where} must be a mapping")
    return value


def _unknown(block: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(block) - set(known))
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")


def _texts(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise PolicyError(f"{where} must be a list of non-empty texts")
    return tuple(value)


def _count(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"{where} must be a whole number >= 0 (0: no limit), not {value!r}")
    return value


def _rules(block: dict[str, Any], where: str) -> Rules:
    admin = _texts(block.get("admin"), f"{where}.admin")
    classes: set[str] = set()
    for name in admin:
        if name == "all":
            classes.update(ADMIN_CLASSES)
        elif name in ADMIN_CLASSES:
            classes.add(name)
        else:
            raise PolicyError(f"{where}.admin: unknown class {name!r} (use all or {', '.join(ADMIN_CLASSES)})")
    return Rules(_texts(block.get("submit"), f"{where}.submit"), _texts(block.get("work"), f"{where}.work"),
                 frozenset(classes))  # fmt: skip


def _name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise PolicyError(f"{where}: {name!r} is not a valid name (letters, digits, _ . @ -; at most 64)")
    return name


def parse_policy(block: dict[str, Any] | None) -> Policy:
    """The ``security:`` block as a Policy; PolicyError names the key that is wrong."""
    block = _mapping(block, "security")
    _unknown(block, ("anonymous", "identities", "tenants"), "security")
    anonymous = EVERYTHING
    if "anonymous" in block:
        given = _mapping(block["anonymous"], "security.anonymous")
        _unknown(given, _RULE_KEYS, "security.anonymous")
        anonymous = _rules(given, "security.anonymous")
    tenants: dict[str, TenantSpec] = {}
    for name, values in _mapping(block.get("tenants"), "security.tenants").items():
        where = f"security.tenants.{_name(name, 'security.tenants')}"
        values = _mapping(values, where)
        _unknown(values, _TENANT_KEYS, where)
        limits = {key: _count(values.get(key), f"{where}.{key}") for key in _TENANT_KEYS}
        tenants[name] = TenantSpec(name, **limits)
    identities = []
    seen_tokens: dict[bytes, str] = {}
    for name, values in _mapping(block.get("identities"), "security.identities").items():
        where = f"security.identities.{_name(name, 'security.identities')}"
        if name == ANONYMOUS:
            raise PolicyError(f"{where}: the anonymous identity is set under security.anonymous")
        values = _mapping(values, where)
        _unknown(values, _IDENTITY_KEYS, where)
        token = None
        if values.get("token") is not None:
            if not isinstance(values["token"], str):
                raise PolicyError(f"{where}.token must be text")
            try:
                token = parse_hash(values["token"])
            except TokenError as error:
                raise PolicyError(f"{where}.token {error}") from None
            if token in seen_tokens:
                raise PolicyError(f"{where}.token is also {seen_tokens[token]}'s: each identity needs its own")
            seen_tokens[token] = name
        tenant = values.get("tenant")
        if tenant is not None:
            _name(tenant, f"{where}.tenant")
            tenants.setdefault(tenant, TenantSpec(tenant))
        identities.append(
            IdentitySpec(
                name,
                _rules(values, where),
                token,
                _texts(values.get("certificates"), f"{where}.certificates"),
                tuple(jid.lower() for jid in _texts(values.get("jids"), f"{where}.jids")),
                tenant,
                _count(values.get("max_connections"), f"{where}.max_connections"),
            )
        )
    return Policy(anonymous, tuple(identities), tenants)
