"""Shared mode's options (docs/scale.md): flags, YAML keys, and the refusals."""

from __future__ import annotations

import pytest

from gearman_gateway.config import ConfigError, load_yaml, make_settings, parse_args


def test_flags_set_shared_mode_and_its_timings() -> None:
    settings = parse_args(["-q", "postgres", "--shared", "--shared-lease", "4", "--shared-dead-after", "1.5"])
    assert (settings.shared, settings.shared_lease, settings.shared_dead_after) == (True, 4.0, 1.5)
    default = parse_args(["-q", "postgres"])
    assert (default.shared, default.shared_lease, default.shared_dead_after) == (False, 10.0, 3.0)
    assert default.shared_listen is True
    assert parse_args(["-q", "postgres", "--shared", "--shared-listen", "off"]).shared_listen is False
    assert parse_args(["-q", "postgres", "--shared", "--shared-listen", "on"]).shared_listen is True


def test_yaml_keys(tmp_path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(
        "queue: {type: postgres, shared: true, shared_lease: 2, shared_dead_after: 1, shared_listen: false}\n"
    )
    settings = make_settings(load_yaml(str(path)))
    assert (settings.shared, settings.shared_lease, settings.shared_dead_after) == (True, 2, 1)
    assert settings.shared_listen is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shared"], "--shared needs the postgres queue"),
        (["-q", "redis", "--shared"], "--shared needs the postgres queue"),
        (["-q", "postgres", "--shared", "--shared-lease", "0"], "--shared-lease must be > 0"),
        (["-q", "postgres", "--shared", "--shared-dead-after", "-1"], "--shared-dead-after must be > 0"),
        (["-q", "postgres", "--shared", "--shared-listen", "maybe"], "expected on or off"),
    ],
)
def test_refusals(argv, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_args(argv)
