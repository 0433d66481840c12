"""Server lists, back-off, and the `gearman` tool's argument parsing (no sockets)."""

from __future__ import annotations

import pytest

from gearman_gateway.cli.gearman import UsageError, atoi, parse_args, workloads
from gearman_gateway.clientlib.links import Address, Backoff, parse_server, parse_servers


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", []),
        ("h1", [Address("h1", 4730)]),
        ("h1,h2:4731", [Address("h1", 4730), Address("h2", 4731)]),
        ("10.0.0.1, 10.0.0.2:7003", [Address("10.0.0.1", 4730), Address("10.0.0.2", 7003)]),
        ("[::1]:4740,::1", [Address("::1", 4740), Address("::1", 4730)]),
        (":4999", [Address("localhost", 4999)]),
    ],
)
def test_parse_servers(spec: str, expected: list[Address]) -> None:
    assert parse_servers(spec) == expected


def test_bad_ports_and_address_text() -> None:
    with pytest.raises(ValueError):
        parse_server("h:port")
    with pytest.raises(ValueError):
        parse_server("h:70000")
    assert str(Address("::1", 1)) == "[::1]:1" and str(Address("h", 2)) == "h:2"
    assert parse_servers(["a:1", "b"]) == [Address("a", 1), Address("b", 4730)]


def test_backoff_jitter_stays_within_bounds() -> None:
    backoff = Backoff(initial=1.0, maximum=4.0, jitter=0.1)
    for failures, base in [(1, 1.0), (2, 2.0), (3, 4.0), (9, 4.0)]:
        for _ in range(20):
            assert base * 0.9 <= backoff.delay(failures) <= base * 1.1


def test_gearman_flags_as_the_c_tool_reads_them() -> None:
    args, wants_help = parse_args(["-f", "a", "-f", "b", "-h", "srv", "-p", "4999x", "-t", "250", "-bIPv", "x", "y"])
    assert not wants_help
    assert args.functions == ["a", "b"] and (args.host, args.port, args.timeout_ms) == ("srv", 4999, 250)
    assert args.background and args.priority == "high" and args.prefix and args.verbose
    assert args.arguments == ["x", "y"]
    # GNU getopt permutes: options after data still count; "--" ends them
    args, _ = parse_args(["-w", "-f", "wc", "-c", "3", "--", "wc", "-l"])
    assert args.worker and args.count == 3 and args.arguments == ["wc", "-l"]
    args, _ = parse_args(["-f", "fn", "data", "-L", "-N", "-u", "key"])
    assert args.priority == "low" and args.per_line and args.strip_newline and args.unique == "key"
    assert parse_args(["-H"])[1] is True


@pytest.mark.parametrize("argv", [["-x", "-f", "fn"], ["-f"], ["data"]])
def test_gearman_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(argv)


def test_atoi_and_workload_sources() -> None:
    assert [atoi(t) for t in ("12", " 7ms", "-3", "x", "")] == [12, 7, -3, 0, 0]
    import io

    lines = io.BytesIO(b"one\ntwo\nlast")
    args, _ = parse_args(["-N", "-f", "fn"])
    assert list(workloads(args, lines)) == [b"one", b"two", b"last"]
    args, _ = parse_args(["-n", "-f", "fn"])
    assert list(workloads(args, io.BytesIO(b"a\nb\n"))) == [b"a\n", b"b\n"]
    args, _ = parse_args(["-s", "-f", "fn"])
    assert list(workloads(args, io.BytesIO(b"ignored"))) == [b""]
    args, _ = parse_args(["-f", "fn"])
    assert list(workloads(args, io.BytesIO(b"\x00all\xff"))) == [b"\x00all\xff"]
