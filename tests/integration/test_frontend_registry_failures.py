"""A third-party frontend package that is broken in a way its import does not show must not stop gearmand:
options without defaults, a flag a built-in frontend owns, Twisted's reactor imported at import time. Each
package here is a real distribution (a ``.dist-info`` with its entry point) on PYTHONPATH, found by
importlib.metadata as pip-installed ones are."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.integration.conftest import OUR_GEARMAND, admin_command, free_port, wait_serving

pytestmark = pytest.mark.skipif("GG_TEST_SERVER" in os.environ, reason="our server's frontend registry")

PACKAGES = {
    "needsvalue": """
        from dataclasses import dataclass
        from protocols import FrontendBase

        @dataclass
        class Options:
            where: str  # no default: the server cannot make its defaults

        class Frontend(FrontendBase):
            name = "needsvalue"
            options_type = Options
            def build(self, context):
                return []

        FRONTEND = Frontend()
    """,
    "takesflag": """
        from dataclasses import dataclass
        from protocols import FrontendBase
        from protocols.options import option

        @dataclass
        class Options:
            port: int = option(9999, flags=("--http-port",), help="the http frontend's own flag")

        class Frontend(FrontendBase):
            name = "takesflag"
            options_type = Options
            def build(self, context):
                return []

        FRONTEND = Frontend()
    """,
}
REACTOR_PACKAGE = """
    from twisted.internet import reactor  # installs Twisted's default reactor at import: not allowed
    from protocols import FrontendBase

    class Frontend(FrontendBase):
        name = "grabsreactor"
        def build(self, context):
            return []

    FRONTEND = Frontend()
"""


def _distribution(site: Path, name: str, code: str) -> None:
    (site / f"{name}.py").write_text(textwrap.dedent(code))
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[gearman_gateway.protocols]\n{name} = {name}:FRONTEND\n")


def _run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([OUR_GEARMAND, *args], env=env, capture_output=True, text=True, timeout=30)


@pytest.fixture
def broken_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    for name, code in PACKAGES.items():
        _distribution(site, name, code)
    return site


def test_broken_frontends_are_named_and_the_server_still_runs(broken_site: Path, tmp_path: Path) -> None:
    help_text = _run(broken_site, "--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "--http-port" in help_text.stdout and "Traceback" not in help_text.stderr

    needs = _run(broken_site, "-r", "needsvalue", "--check-args")
    assert needs.returncode == 2
    assert needs.stderr.count("\n") == 1 and "protocol 'needsvalue' cannot be loaded" in needs.stderr
    assert "no default" in needs.stderr or "missing" in needs.stderr

    takes = _run(broken_site, "-r", "takesflag", "--check-args")
    assert takes.returncode == 2
    assert takes.stderr.count("\n") == 1
    assert "its flag --http-port is taken by the http frontend" in takes.stderr

    # the built-in keeps its flag, and a server without the broken ones starts and serves
    port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [OUR_GEARMAND, "-L", "127.0.0.1", "-p", str(port), "-q", "builtin"]
        + ["-r", "http", "--http-port", str(http_port)],
        env={**os.environ, "PYTHONPATH": str(broken_site)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_serving(port, proc)
        assert admin_command(port, "show frontends").splitlines()[:2] == [
            f"binary\tlistening\t127.0.0.1:{port}",
            f"http\tlistening\t127.0.0.1:{http_port}",
        ]
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_frontend_that_imports_the_reactor_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _distribution(site, "grabsreactor", REACTOR_PACKAGE)
    result = _run(site, "-L", "127.0.0.1", "-p", str(free_port()), "-q", "builtin", "-l", "none")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "gearmand: cannot start: the frontend package grabsreactor:FRONTEND imports twisted.internet.reactor when "
        "loaded, which installs Twisted's default reactor before gearmand can choose one: uninstall it or have it "
        "import the reactor only in build()"
    ]
