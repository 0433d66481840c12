"""The http frontend's settings: command line, YAML `http:` keys, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from gearman_gateway.config import ConfigError, Settings, parse_args
from protocols.http.options import HttpOptions

REPO = Path(__file__).resolve().parents[2]


def http(settings: Settings) -> HttpOptions:
    return settings.options("http")


def test_defaults() -> None:
    s = Settings()
    assert (http(s).port, http(s).request_timeout, http(s).prefix, http(s).token) == (8080, 30.0, "/_gearman/", None)
    assert http(s).max_body_size == 64 * 1024 * 1024
    assert http(s).keepalive_timeout == 60.0


def test_command_line() -> None:
    s = parse_args(
        [
            "-r",
            "http",
            "--http-port",
            "8081",
            "--http-request-timeout",
            "2.5",
            "--http-max-body-size",
            "1000",
            "--http-prefix",
            "/admin/",
            "--http-token",
            "t0k",
            "--http-keepalive-timeout",
            "0",
        ]
    )
    assert s.frontends == ["binary", "http"]
    assert (http(s).port, http(s).request_timeout, http(s).max_body_size) == (8081, 2.5, 1000)
    assert (http(s).prefix, http(s).token, http(s).keepalive_timeout) == ("/admin/", "t0k", 0)


def test_yaml_http_section(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "frontends: [binary, http]\nhttp:\n  port: 9000\n  request_timeout: 1\n  max_body_size: 10\n"
        "  prefix: /x/\n  token: abc\n  keepalive_timeout: 5\n"
    )
    s = parse_args(["--config", str(path)])
    assert s.frontends == ["binary", "http"]
    assert (http(s).port, http(s).request_timeout, http(s).max_body_size) == (9000, 1, 10)
    assert (http(s).prefix, http(s).token, http(s).keepalive_timeout) == ("/x/", "abc", 5)


def test_shipped_yaml_has_the_defaults() -> None:
    assert http(parse_args(["--config", str(REPO / "config" / "gearmand.yaml")])).prefix == http(Settings()).prefix
    text = (REPO / "config" / "gearmand.yaml").read_text()
    for key in ("request_timeout", "max_body_size", "prefix", "token", "keepalive_timeout"):
        assert f"\n  {key}:" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--http-prefix", "nope"], "http-prefix must start and end with '/'"),
        (["--http-prefix", "/"], "http-prefix must start and end with '/'"),
        (["--http-prefix", "/a b/"], "printable ASCII"),
        (["--http-request-timeout", "-1"], "http-request-timeout must be >= 0"),
        (["--http-keepalive-timeout", "-1"], "http-keepalive-timeout must be >= 0"),
        (["--http-max-body-size", "-1"], "invalid non-negative integer"),
        (["--http-token", ""], "http-token must be printable ASCII"),
    ],
)
def test_bad_values(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_args(argv)
