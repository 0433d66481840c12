"""The one check every frontend consults: who a peer is, and whether it may submit to a function, register
for one, or run an admin command. Every refusal is logged with the identity and counted (Prometheus
``gearman_access_denied_total``).

Frontends hold a ``Grant`` per connection (``anonymous`` until the peer shows a token, a certificate or a
JID) and call ``submit``/``register``/``admin``, which return the scheduler's function name or raise
``Denied`` with a gearmand-style code and text; each frontend words the refusal in its own protocol.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from gearman_gateway.security.grants import SEPARATOR, Grant, Tenant
from gearman_gateway.security.policy import ANONYMOUS, Policy, parse_policy
from gearman_gateway.security.tokens import digest, matches

if TYPE_CHECKING:
    from gearman_gateway.scheduler import Scheduler
    from protocols import MetricFamily

log = logging.getLogger("gearman_gateway.security")

PERMISSION_DENIED = b"PERMISSION_DENIED"
#: A tenant's queue is full: the code gearmand gives a full function queue, so clients retry alike.
QUEUE_FULL = b"QUEUE_ERROR"


class Denied(Exception):
    """A refused request: ``code`` and ``text`` as gearmand's ERROR packet carries them."""

    def __init__(self, code: bytes, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class Access:
    """The identities and tenants of one server (from ``settings.security``), and its refusal counts."""

    def __init__(self, policy: Policy | dict[str, Any] | None = None, scheduler: Scheduler | None = None) -> None:
        if not isinstance(policy, Policy):
            policy = parse_policy(policy)
        self.scheduler = scheduler
        self.tenants = {name: Tenant(spec) for name, spec in policy.tenants.items()}
        self.anonymous = Grant(ANONYMOUS, policy.anonymous)
        self.identities = {spec.name: Grant.of(spec, self.tenants.get(spec.tenant or "")) for spec in policy.identities}
        self._tokens = [(spec.token, self.identities[spec.name]) for spec in policy.identities if spec.token]
        self._certificates = {name: self.identities[s.name] for s in policy.identities for name in s.certificates}
        self._jids = {jid: self.identities[s.name] for s in policy.identities for jid in s.jids}
        self.denials: Counter[tuple[str, str, str]] = Counter()  # (identity, frontend, action) -> refusals

    # -- who

    def identity_for_token(self, token: bytes) -> Grant | None:
        """The identity whose token this is, or None. Every stored digest is compared (constant time in
        the secret; the list is as long as the config's)."""
        offered = digest(token)
        found = None
        for stored, grant in self._tokens:
            if matches(offered, stored):
                found = grant
        return found

    def identity_for_certificate(self, names: list[str]) -> Grant | None:
        """The identity a verified client certificate names (its subject CN and DNS SANs, in any order):
        the first of ``names`` that a ``certificates:`` list holds. The TLS listeners call this."""
        for name in names:
            grant = self._certificates.get(name)
            if grant is not None:
                return grant
        return None

    def identity_for_jid(self, jid: str) -> Grant:
        """An XMPP sender's identity by its bare JID (case-insensitive), else anonymous."""
        return self._jids.get(jid.split("/", 1)[0].lower(), self.anonymous)

    # -- what

    def submit(self, grant: Grant, function: bytes, frontend: str, peer: str) -> bytes:
        """The scheduler's name for a job submitted to ``function``; Denied when the grant does not allow it,
        or its tenant has as many jobs queued as it may."""
        allowed = grant.unrestricted or grant.submit_memo.get(function) or grant.may_submit(function)
        if not allowed or SEPARATOR in function:  # NUL: only the scheduler's own names for tenants hold one
            self._refuse(grant, frontend, "submit", f"submit {_shown(function)}", peer)
        tenant = grant.tenant
        if tenant is None:
            return function
        name = tenant.prefix + function
        tenant.functions.add(name)
        if tenant.max_queued_jobs and self.queued(tenant) >= tenant.max_queued_jobs:
            self.denials[grant.name, frontend, "tenant_queue"] += 1
            log.warning("tenant %s has %d jobs queued (its limit): refused a job for %s from %s (identity %s)",
                        tenant.name, tenant.max_queued_jobs, _shown(function), peer, grant.name)  # fmt: skip
            raise Denied(QUEUE_FULL, f"tenant {tenant.name} has {tenant.max_queued_jobs} jobs queued (its limit)")
        return name

    def register(self, grant: Grant, function: bytes, frontend: str, peer: str) -> bytes:
        """The scheduler's name for a worker's CAN_DO ``function``; Denied when not allowed."""
        if SEPARATOR in function or not (grant.unrestricted or grant.may_work(function)):
            self._refuse(grant, frontend, "work", f"work {_shown(function)}", peer)
        if grant.tenant is None:
            return function
        name = grant.tenant.prefix + function
        grant.tenant.functions.add(name)
        return name

    def admin(self, grant: Grant, command_class: str, command: bytes, frontend: str, peer: str) -> None:
        if not grant.may_admin(command_class):
            self._refuse(grant, frontend, "admin", f"run {_shown(command)} (admin class {command_class})", peer)

    def queued(self, tenant: Tenant) -> int:
        """Jobs in memory (queued and running) in a tenant's functions."""
        scheduler = self.scheduler
        if scheduler is None:
            return 0
        total = 0
        for name in list(tenant.functions):
            snapshot = scheduler.function_snapshot(name)
            if snapshot is None:
                tenant.functions.discard(name)
            else:
                total += snapshot.total
        return total

    def _refuse(self, grant: Grant, frontend: str, action: str, what: str, peer: str) -> None:
        """Count, log and raise a refusal: ``what`` the identity may not do (``submit resize``)."""
        self.denials[grant.name, frontend, action] += 1
        log.warning("permission denied: identity %s from %s (%s) may not %s", grant.name, peer, frontend, what)
        raise Denied(PERMISSION_DENIED, f"identity {grant.name} may not {what}")

    def auth_failed(self, frontend: str, peer: str) -> None:
        self.denials[ANONYMOUS, frontend, "auth"] += 1
        log.warning("authentication failed: an unknown token from %s (%s)", peer, frontend)

    def authenticate(self, current: Grant | None, token: bytes, frontend: str, peer: str) -> Grant:
        """The identity of ``token`` for a connection that was ``current``: counted against its caps (and
        ``current`` no longer); Denied for an unknown token or a cap reached."""
        grant = self.identity_for_token(token)
        if grant is None:
            self.auth_failed(frontend, peer)
            raise Denied(PERMISSION_DENIED, "unknown token")
        return self.switch(current, grant, frontend, peer)

    def switch(self, current: Grant | None, grant: Grant, frontend: str, peer: str) -> Grant:
        """A connection that was ``current`` (None: unchecked anonymous) becomes ``grant`` (found by a token,
        a certificate, a JID): counted against its caps, ``current`` no longer; Denied at a cap."""
        refusal = self.attach(grant, frontend, peer)
        if refusal is not None:
            raise refusal
        if current is not None:
            self.detach(current)
        log.info("%s (%s) is identity %s", peer, frontend, grant.name)
        return grant

    # -- connections per identity and tenant

    def attach(self, grant: Grant, frontend: str, peer: str) -> Denied | None:
        """Count a connection of ``grant``; a Denied (not raised) when its identity or tenant is at its cap.
        Anonymous connections are not counted here (the per-IP and global caps are theirs)."""
        if grant is self.anonymous:
            return None
        tenant = grant.tenant
        if grant.max_connections and grant.connections >= grant.max_connections:
            why = f"identity {grant.name} has {grant.max_connections} connections open (its limit)"
        elif tenant is not None and tenant.max_connections and tenant.connections >= tenant.max_connections:
            why = f"tenant {tenant.name} has {tenant.max_connections} connections open (its limit)"
        else:
            grant.connections += 1
            if tenant is not None:
                tenant.connections += 1
            return None
        self.denials[grant.name, frontend, "connection"] += 1
        log.warning("refusing a connection from %s (%s): %s", peer, frontend, why)
        return Denied(PERMISSION_DENIED, why)

    def detach(self, grant: Grant) -> None:
        if grant is self.anonymous:
            return
        grant.connections -= 1
        if grant.tenant is not None:
            grant.tenant.connections -= 1

    # -- metrics

    def metric_families(self) -> list[MetricFamily]:
        from protocols import MetricFamily

        denied = tuple(
            ({"identity": identity, "frontend": frontend, "action": action}, float(count))
            for (identity, frontend, action), count in sorted(self.denials.items())
        )
        connections = tuple(({"identity": g.name}, float(g.connections)) for g in self.identities.values())
        return [
            MetricFamily("gearman_access_denied_total", "counter",
                         "Requests refused by the security policy, by identity, frontend and action.", denied),
            MetricFamily("gearman_identity_connections", "gauge", "Open connections per named identity.",
                         connections),
        ]  # fmt: skip


def _shown(name: bytes) -> str:
    """A function name or command for a log line or an error text (never more than a line's worth)."""
    text = name[:200].decode("utf-8", "backslashreplace")
    return repr(text) if not text.isprintable() or not text else text
