"""Deadlines: many timeouts of one length on one clock call, with a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from protocols.deadlines import Deadlines, deadlines


def test_timeouts_fire_in_order_and_once() -> None:
    clock = Clock()
    timeouts = Deadlines(clock, 10)
    fired: list[str] = []
    timeouts.arm("a", lambda: fired.append("a"))
    clock.advance(4)
    timeouts.arm("b", lambda: fired.append("b"))
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(6)
    assert fired == ["a"]
    clock.advance(4)
    assert fired == ["a", "b"]
    clock.advance(100)
    assert fired == ["a", "b"] and not clock.getDelayedCalls() and len(timeouts) == 0


def test_arming_again_restarts_and_cancel_forgets() -> None:
    clock = Clock()
    timeouts = Deadlines(clock, 10)
    fired: list[str] = []
    timeouts.arm("a", lambda: fired.append("a"))
    timeouts.arm("b", lambda: fired.append("b"))
    clock.advance(9)
    timeouts.arm("a", lambda: fired.append("a"))  # again: ten seconds from now
    timeouts.cancel("b")
    timeouts.cancel("nothing")
    clock.advance(1)
    assert fired == [] and "a" in timeouts and "b" not in timeouts
    clock.advance(9)
    assert fired == ["a"]


def test_a_failing_callback_does_not_stop_the_others() -> None:
    clock = Clock()
    timeouts = Deadlines(clock, 1)
    fired: list[str] = []
    timeouts.arm("bad", lambda: 1 / 0)  # type: ignore[func-returns-value]
    timeouts.arm("good", lambda: fired.append("good"))
    clock.advance(1)
    assert fired == ["good"]


def test_one_per_clock_and_length() -> None:
    clock = Clock()
    assert deadlines(clock, 5) is deadlines(clock, 5)
    assert deadlines(clock, 5) is not deadlines(clock, 6)
    assert deadlines(Clock(), 5) is not deadlines(clock, 5)
