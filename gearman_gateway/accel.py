"""The optional C accelerator (gearman_gateway/_stamps.c): the job observers' stamps, their ring and the
latency histograms' per-job arithmetic without a Python step per job (docs/monitoring.md, "Cost").

``stamps`` is the built module, or None when it is not built (no gcc or Python headers at install time)
or when ``GEARMAN_GATEWAY_PURE_PYTHON`` is set: then the same work runs in Python (slower, same results).
Callers read ``accel.stamps`` when they choose, not at import, so tests can run both paths."""

from __future__ import annotations

import os
from types import ModuleType

stamps: ModuleType | None
try:
    from gearman_gateway import _stamps as stamps
except ImportError:  # pragma: no cover - depends on the build
    stamps = None
if os.environ.get("GEARMAN_GATEWAY_PURE_PYTHON"):
    stamps = None
