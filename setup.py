"""Only the optional C extensions (metadata is in pyproject.toml): the job observers' stamps
(gearman_gateway/_stamps.c, docs/monitoring.md "Cost"), the listening sockets' accept thread
(gearman_gateway/_acceptor.c, docs/architecture.md), the memcached text protocol's plain get/set lines
(protocols/memcached/_scan.c) and the memcached session's per-read core (protocols/memcached/_core.c).
``optional``: without gcc or the Python headers the build goes on without them and the server falls back to
the same work in Python (scheduler/observing.py, the reactor's own accept loop, the memcached decoder's regex
fast path, protocols/memcached/core.py)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("gearman_gateway._stamps", ["gearman_gateway/_stamps.c"], optional=True),
        Extension("gearman_gateway._acceptor", ["gearman_gateway/_acceptor.c"], optional=True),
        Extension("protocols.memcached._scan", ["protocols/memcached/_scan.c"], optional=True),
        Extension("protocols.memcached._core", ["protocols/memcached/_core.c"], optional=True),
    ]
)
