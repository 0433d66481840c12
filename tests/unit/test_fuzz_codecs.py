"""Hypothesis fuzzing of every codec and session through the targets bench/fuzz.py also runs
(tests/fuzz_targets.py): any bytes, cut into any reads, and valid inputs with bytes spliced in, never make
one raise. Codecs with their own property tests too: the binary codec (test_codec.py), the fast HTTP parser
against h11 (test_http_plain.py), memcached (test_memcached_codec.py), chat commands (test_xmpp_commands.py);
new here: the binary session, the admin commands and the HTTP session (h11 and the fast path together)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_targets import SEEDS, TARGETS
from tests.unit.test_http_session import Harness

REPO = Path(__file__).resolve().parents[2]


def spliced(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """A seed with some bytes replaced, inserted or cut off: near-valid input, where parsers go wrong."""

    def splice(seed: bytes, at: int, cut: int, noise: bytes) -> bytes:
        at %= len(seed) + 1
        return seed[:at] + noise + seed[at + cut :]

    return st.builds(splice, st.sampled_from(seeds), st.integers(0, 10_000), st.integers(0, 8), st.binary(max_size=24))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_no_input_makes_a_codec_raise(name: str) -> None:
    target = TARGETS[name]

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.binary(max_size=400) | spliced(SEEDS[name]))
    def fuzz(data: bytes) -> None:
        target(data)

    fuzz()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_is_served(name: str) -> None:
    for seed in SEEDS[name]:
        TARGETS[name](seed)


@pytest.mark.parametrize(("engine", "inputs"), [("auto", 200), ("mutation", 2000)])
def test_the_fuzz_command_reports_inputs_and_crashes_per_codec(engine: str, inputs: int, tmp_path: Path) -> None:
    """bench/fuzz.py with a tiny budget: one table row, inputs counted, no crash (exit status 0). "auto" is
    atheris where it is installed (its child process instruments the code first: a few seconds)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fuzz.py"), "--codec", "http-plain", "--inputs", str(inputs),
         "--seconds", "20", "--engine", engine, "--corpus", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("| http-plain |"))
    tried = int(row.split("|")[2].strip().replace(",", ""))
    assert 0 < tried <= inputs and row.split("|")[-2].strip() == "0", row


def test_found_by_the_fuzzer_a_bad_request_after_a_head_gets_its_400_with_a_body() -> None:
    """bench/fuzz.py's first find (http target): after a HEAD, a request h11 cannot parse was answered as
    if it too were a HEAD (no body) while h11 expected the body its Content-Length declares: the session
    raised in its timer instead of answering 400 and closing."""
    harness = Harness()
    harness.worker(b"f")
    session, transport, _ = harness.session()
    session.receive_data(b"HEAD /f HTTP/1.1\r\nHost: h\r\n\r\nGET3\r\n\r\n")
    harness.clock.advance(60)  # the HEAD's job times out (504, no body); then the bad request is read
    out = transport.take()
    assert out.startswith(b"HTTP/1.1 504 ") and b"HTTP/1.1 400 " in out
    assert out.endswith(b"\r\n\r\nillegal request line\n") and transport.closed


def test_found_by_the_fuzzer_a_head_whose_body_is_bad_gets_a_bodiless_400() -> None:
    """The second find (http target), the first one's mirror: when the bad part is the HEAD request's own
    (chunked) body, the 400 answers that HEAD and must have no body."""
    harness = Harness()
    harness.worker(b"f")
    session, transport, _ = harness.session()
    session.receive_data(b"HEAD /f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n\r\n")
    out = transport.take()
    assert out.startswith(b"HTTP/1.1 400 ") and out.endswith(b"\r\n\r\n") and transport.closed
