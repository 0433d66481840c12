"""The tutorial examples in examples/ work as written: run as scripts, against a real server.

- reverse: "Hello World!" -> "!dlroW olleH" (the client and worker of every Gearman tutorial), and the
  concurrent task API version of it;
- resize: a Pillow worker fed with `gearman -f resize < large.jpg > thumb.jpg`, by the C tool and ours.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from . import test_client_library as lib
from .conftest import BIN_DIR, RunningServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT = 20.0
C_GEARMAN = "/usr/bin/gearman"


module_servers = lib.module_servers  # our server and gearmand, once for the module
any_server = lib.any_server  # each test that takes it runs on both


def script_env(server: RunningServer) -> dict[str, str]:
    return {**os.environ, "GEARMAN_SERVER": server.address}


@pytest.fixture
def example_worker() -> Iterator[Callable[[str, RunningServer], subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(script: str, server: RunningServer) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, str(EXAMPLES / script)], env=script_env(server))
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
        proc.wait(TIMEOUT)


def run_example(script: str, server: RunningServer) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], env=script_env(server), capture_output=True, timeout=TIMEOUT
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_reverse_hello_world(any_server: RunningServer, example_worker: Callable[..., object]) -> None:
    example_worker("reverse_worker.py", any_server)
    assert run_example("reverse_client.py", any_server) == "!dlroW olleH\n"
    lines = run_example("reverse_tasks.py", any_server).splitlines()
    assert sorted(lines) == sorted(["!dlroW olleH", "!hgiH olleH", "!woL olleH"])  # no order promised


def large_jpeg(path: Path) -> None:
    """A 1600x1200 photo-like JPEG (gradients plus noise, so it does not compress to nothing)."""
    width, height = 1600, 1200
    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 64)
    image = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    image.save(path, format="JPEG", quality=95)


def test_image_thumbnail_worker(
    module_servers: dict[str, RunningServer], example_worker: Callable[..., object], tmp_path: Path
) -> None:
    server = module_servers["ours"]
    example_worker("resize_worker.py", server)
    large = tmp_path / "large.jpg"
    large_jpeg(large)
    env = {k: v for k, v in os.environ.items() if k != "GEARMAN_SERVER"}
    tools = {"c": C_GEARMAN, "ours": str(BIN_DIR / "gearman")}
    for name, tool in tools.items():  # the seed's command line, with the C tool and with ours
        thumb = tmp_path / f"thumb-{name}.jpg"
        command = f"{tool} -h {server.host} -p {server.port} -f resize < {large} > {thumb}"
        result = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, timeout=TIMEOUT)
        assert result.returncode == 0, (tool, result.stderr.decode())

        data = thumb.read_bytes()
        assert data[:3] == b"\xff\xd8\xff", tool  # a JPEG
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(thumb) as image:
            assert image.format == "JPEG" and image.size == (200, 150), tool
        assert len(data) * 10 < large.stat().st_size, (tool, len(data), large.stat().st_size)
