"""Identities, permissions and tenants (docs/security.md): the check every frontend consults.

``policy`` reads the YAML ``security:`` block, ``tokens`` hashes and checks secrets, ``grants`` compiles one
identity's permissions and tenant, ``access`` is the server's one object the frontends call.
"""

from gearman_gateway.security.access import PERMISSION_DENIED, QUEUE_FULL, Access, Denied
from gearman_gateway.security.grants import SEPARATOR, Grant, Tenant
from gearman_gateway.security.policy import ADMIN_CLASSES, ANONYMOUS, Policy, PolicyError, parse_policy
from gearman_gateway.security.tokens import TokenError, hash_token, new_token

__all__ = [
    "ADMIN_CLASSES",
    "ANONYMOUS",
    "PERMISSION_DENIED",
    "QUEUE_FULL",
    "SEPARATOR",
    "Access",
    "Denied",
    "Grant",
    "Policy",
    "PolicyError",
    "Tenant",
    "TokenError",
    "hash_token",
    "new_token",
    "parse_policy",
]
