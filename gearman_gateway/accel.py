"""The optional C accelerators: gearman_gateway/_stamps.c, the job observers' stamps, their ring and the
latency histograms' per-job arithmetic without a Python step per job (docs/monitoring.md, "Cost"); and
gearman_gateway/_acceptor.c, a listening socket's accept thread (docs/architecture.md, "Accepting").

``stamps`` and ``acceptor`` are the built modules, or None when they are not built (no gcc or Python headers
at install time) or when ``GEARMAN_GATEWAY_PURE_PYTHON`` is set: then the same work runs in Python (slower,
same results). Callers read ``accel.stamps`` and ``accel.acceptor`` when they choose, not at import, so tests
can run both paths. (The memcached codec's reader of plain lines, protocols/memcached/_scan.c, is loaded the
same way by protocols/memcached/codec.py: ``codec.plain_scan``.)"""

from __future__ import annotations

import os
from types import ModuleType

stamps: ModuleType | None
try:
    from gearman_gateway import _stamps as stamps
except ImportError:  # pragma: no cover - depends on the build
    stamps = None
acceptor: ModuleType | None
try:
    from gearman_gateway import _acceptor as acceptor
except ImportError:  # pragma: no cover - depends on the build
    acceptor = None
if os.environ.get("GEARMAN_GATEWAY_PURE_PYTHON"):
    stamps = acceptor = None
