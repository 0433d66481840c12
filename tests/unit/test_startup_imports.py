"""A plain `gearmand` imports only what it runs: the tests start it hundreds of times (and users restart it), so
the YAML parser waits for a config file and the chat bot for ``-r xmpp``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
from pathlib import Path
from gearman_gateway.cli.gearmand import main
assert main({args!r}) == 0
print(sorted(name for name in {names!r} if name in sys.modules))
"""
LAZY = ("yaml", "protocols.xmpp.commands", "slixmpp")


def imported_after(*args: str) -> str:
    probe = PROBE.format(args=["--check-args", *args], names=LAZY)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_plain_start_leaves_yaml_and_the_chat_bot_unimported() -> None:
    assert imported_after("-p", "4730") == "[]"


def test_a_config_file_brings_yaml(tmp_path: Path) -> None:
    config = tmp_path / "gearmand.yaml"
    config.write_text("port: 4730\n")
    assert imported_after("--config", str(config)) == "['yaml']"
