"""gearman-gateway: a Gearman job server on Twisted, a drop-in for gearmand 1.1, and a Python client and
worker library with the classic Gearman API (``Client``, ``Worker``, ``AsyncClient``, ``AsyncWorker``)."""

from gearman_gateway.version import __version__

__all__ = ["AsyncClient", "AsyncWorker", "Client", "Worker", "__version__"]


def __getattr__(name: str) -> object:
    """Import the client library only when asked for: the server itself never needs it."""
    if name in ("Client", "AsyncClient"):
        from gearman_gateway import client

        return getattr(client, name)
    if name in ("Worker", "AsyncWorker"):
        from gearman_gateway import worker

        return getattr(worker, name)
    raise AttributeError(f"module 'gearman_gateway' has no attribute {name!r}")
