"""Only the optional C extension (metadata is in pyproject.toml): the job observers' stamps
(gearman_gateway/_stamps.c, docs/monitoring.md "Cost"). ``optional``: without gcc or the Python headers the
build goes on without it and the server falls back to the same code in Python (scheduler/observing.py)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("gearman_gateway._stamps", ["gearman_gateway/_stamps.c"], optional=True)])
