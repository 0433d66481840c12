"""Hypothesis fuzzing of every codec and session through the targets bench/fuzz.py also runs
(tests/fuzz_targets.py): any bytes, cut into any reads, and valid inputs with bytes spliced in, never make
one raise. Codecs with their own property tests too: the binary codec (test_codec.py), the fast HTTP parser
against h11 (test_http_plain.py), memcached (test_memcached_codec.py), chat commands (test_xmpp_commands.py);
new here: the binary session, the admin commands and the HTTP session (h11 and the fast path together)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_targets import SEEDS, TARGETS


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
