"""gearman-gateway: a Gearman job server on Twisted, a drop-in for gearmand 1.1."""

from gearman_gateway.version import __version__

__all__ = ["__version__"]
