"""Memory-management settings applied at gearmand start (gearman_gateway/allocator.py)."""

from __future__ import annotations

import gc

from gearman_gateway.allocator import GC_THRESHOLDS, settle_collector


def test_settle_collector_freezes_start_up_objects_and_raises_thresholds() -> None:
    before = gc.get_threshold()
    try:
        settle_collector()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 1000  # what start-up (here: pytest and the imports) made

        # cycles made afterwards are still collected
        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        del a, b
        assert gc.collect() >= 2
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
