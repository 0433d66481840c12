"""Run a test on both paths of the optional C accelerator (gearman_gateway/_stamps.c): built, and the pure
Python fallback the server uses when it is not. Without the build the C path skips, or fails under CI=true
(scripts/setup builds it: gcc and python3-dev)."""

from __future__ import annotations

import os

import pytest

from gearman_gateway import accel

PATHS = ("c", "python")


def choose(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``accel.stamps`` for this test (read when a scheduler is made, an end counted), and for servers it
    starts as subprocesses (``GEARMAN_GATEWAY_PURE_PYTHON``)."""
    if path == "python":
        monkeypatch.setattr(accel, "stamps", None)
        monkeypatch.setenv("GEARMAN_GATEWAY_PURE_PYTHON", "1")
        return
    if accel.stamps is None:
        message = "gearman_gateway._stamps is not built (pip install -e . with gcc and python3-dev)"
        if os.environ.get("CI") == "true" and not os.environ.get("GEARMAN_GATEWAY_PURE_PYTHON"):
            pytest.fail(message)
        pytest.skip(message)
    monkeypatch.delenv("GEARMAN_GATEWAY_PURE_PYTHON", raising=False)
