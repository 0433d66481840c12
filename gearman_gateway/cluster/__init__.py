"""Several gateways as one (issue 21, docs/scale.md): the reactor's side of shared mode."""

from gearman_gateway.cluster.coordinator import SharedQueue

__all__ = ["SharedQueue"]
