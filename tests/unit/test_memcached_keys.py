"""What a memcached key names: ``<function>[/<unique>][/<option>]*``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocols.memcached.keys import Key, parse


def test_a_function_alone() -> None:
    assert parse(b"reverse") == Key(b"reverse")
    assert not parse(b"reverse").has_options


def test_a_function_and_a_unique() -> None:
    assert parse(b"reverse/u1") == Key(b"reverse", b"u1")
    assert parse(b"reverse/u1").result_key == (b"reverse", b"u1")


def test_uniques_keep_their_slashes() -> None:
    assert parse(b"fn/a/b/c") == Key(b"fn", b"a/b/c")
    assert parse(b"fn/a//b/") == Key(b"fn", b"a//b/")


def test_options_trail_in_any_order() -> None:
    assert parse(b"q/t=500/open") == Key(b"q", wait_ms=500, open=True)
    assert parse(b"q/open/t=500") == Key(b"q", wait_ms=500, open=True)
    assert parse(b"q/close/open") == Key(b"q", open=True, close=True)
    assert parse(b"q/abort") == Key(b"q", abort=True)
    assert parse(b"q/peek") == Key(b"q", peek=True)
    assert parse(b"q/close") == Key(b"q", close=True)
    assert parse(b"q/fail") == Key(b"q", fail=True)
    assert parse(b"fn/u/error") == Key(b"fn", b"u", error=True)
    assert parse(b"fn/u/t=0") == Key(b"fn", b"u", wait_ms=0)


def test_a_result_wait_and_its_look_alikes() -> None:
    """``<function>/<unique>/t=<ms>`` (parsed without the option loop) against the keys that only look so."""
    assert parse(b"fn/u/t=400") == Key(b"fn", b"u", wait_ms=400)
    assert parse(b"fn//t=400") == Key(b"fn", b"", wait_ms=400)
    assert parse(b"fn/t=x/t=4") == Key(b"fn", b"t=x", wait_ms=4)
    assert parse(b"fn/open/t=4") == Key(b"fn", wait_ms=4, open=True)
    assert parse(b"fn/t=3/t=4") is None
    assert parse(b"fn/u/t=4x") == Key(b"fn", b"u/t=4x")


def test_an_option_word_inside_the_unique_is_part_of_it() -> None:
    assert parse(b"fn/open/u") == Key(b"fn", b"open/u")
    assert parse(b"fn/t=5/u/t=7") == Key(b"fn", b"t=5/u", wait_ms=7)


def test_not_quite_options_are_uniques() -> None:
    assert parse(b"fn/t=") == Key(b"fn", b"t=")
    assert parse(b"fn/t=5s") == Key(b"fn", b"t=5s")
    assert parse(b"fn/t=-1") == Key(b"fn", b"t=-1")
    assert parse(b"fn/OPEN") == Key(b"fn", b"OPEN")
    assert parse(b"fn/t=" + b"9" * 10) == Key(b"fn", b"t=" + b"9" * 10)


def test_no_function_or_a_repeated_option_is_no_key() -> None:
    assert parse(b"") is None
    assert parse(b"/u") is None
    assert parse(b"q/open/open") is None
    assert parse(b"q/t=1/t=2") is None


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused(raw: bytes) -> None:
    key = parse(raw)
    if key is not None:
        assert key.function and b"/" not in key.function
        assert raw.startswith(key.function)
        if key.unique:
            assert key.unique in raw


@given(
    st.binary(min_size=1, max_size=20).filter(lambda b: b"/" not in b),
    st.binary(max_size=40).filter(lambda b: not b.startswith(b"/")),
)
def test_function_and_unique_round_trip(function: bytes, unique: bytes) -> None:
    key = parse(function + b"/" + unique + b"/t=5/open")
    last = unique.rsplit(b"/", 1)[-1]
    if parse(b"f/" + last) != Key(b"f", last):  # its last segment is an option word: one of the options
        return  # (``open`` or a ``t=`` again: a repeated option, no key)
    assert key is not None and key.function == function and key.wait_ms == 5 and key.open
    assert key.unique == unique
