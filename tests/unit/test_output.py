"""The per-turn write batch every frontend's connections share (protocols/output.py), on fake turns."""

from __future__ import annotations

import logging

import pytest

from protocols.output import ACK_WAIT_TURNS, BatchedOutput, WriteBatch
from tests.unit.test_binary_session import Turns


class Connection(BatchedOutput):
    def __init__(self, batch: WriteBatch, broken: bool = False) -> None:
        super().__init__(batch)
        self.writes: list[list[bytes]] = []
        self.broken = broken

    def write_pieces(self, pieces: list[bytes]) -> None:
        if self.broken:
            raise OSError("broken")
        self.writes.append(pieces)


@pytest.fixture
def turns() -> Turns:
    return Turns()


@pytest.fixture
def batch(turns: Turns) -> WriteBatch:
    return WriteBatch(turns, turns.next)


def test_a_turns_output_leaves_in_one_write_per_connection(turns: Turns, batch: WriteBatch) -> None:
    one, two = Connection(batch), Connection(batch)
    one.queue(b"a")
    two.queue(b"x")
    one.queue(b"b")
    assert len(turns.now) == 1  # one end-of-turn callback for every connection
    turns.end()
    assert one.writes == [[b"a", b"b"]] and two.writes == [[b"x"]]
    turns.end()
    assert one.writes == [[b"a", b"b"]]  # nothing more


def test_output_that_is_not_urgent_waits_a_few_turns_for_more(turns: Turns, batch: WriteBatch) -> None:
    waiting, lone = Connection(batch), Connection(batch)
    waiting.queue(b"ack", urgent=False)
    lone.queue(b"ack", urgent=False)
    turns.end()
    assert waiting.writes == [] and lone.writes == []
    waiting.queue(b"result")  # urgent: the acknowledgement leaves with it
    turns.end()
    assert waiting.writes == [[b"ack", b"result"]]
    turns.end(ACK_WAIT_TURNS - 1)
    assert lone.writes == [[b"ack"]]  # waited ACK_WAIT_TURNS turns at most


def test_a_broken_connection_does_not_strand_the_others(
    turns: Turns, batch: WriteBatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken, fine = Connection(batch, broken=True), Connection(batch)
    broken.queue(b"x")
    fine.queue(b"y")
    with caplog.at_level(logging.ERROR, logger="gearman_gateway.output"):
        turns.end()
    assert fine.writes == [[b"y"]]
    assert "writing to" in caplog.text
    assert not broken.output_queued


def test_nothing_is_written_once_the_output_is_closed(turns: Turns, batch: WriteBatch) -> None:
    connection = Connection(batch)
    connection.queue(b"lost")
    connection.close_output()
    connection.queue(b"later")
    turns.end(ACK_WAIT_TURNS + 1)
    assert connection.writes == []
