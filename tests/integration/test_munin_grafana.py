"""contrib/munin/gearman_ driven by Debian's munin-run (config, fetch, autoconf, suggest) against a server
that ran jobs from the C tools; and contrib/grafana's dashboard: every metric it queries exists."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration import test_http_frontend as frontend
from tests.integration.conftest import ServerFactory, free_port
from tests.integration.test_hooks import start_with
from tests.integration.test_http_frontend import needs_c_tools, wait_for
from tests.integration.test_monitoring import MONITORING_ON, c_client, gear_client, latency_lines

pytestmark = pytest.mark.filterwarnings("ignore:notifyAll\\(\\) is deprecated:DeprecationWarning")

c_worker = frontend.c_worker
REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "contrib" / "munin" / "gearman_"
DASHBOARD = REPO / "contrib" / "grafana" / "gearman-gateway.json"
MUNIN_RUN = shutil.which("munin-run") or "/usr/sbin/munin-run"
needs_munin = pytest.mark.skipif(
    not os.access(MUNIN_RUN, os.X_OK) and not os.environ.get("CI"), reason="Debian's munin-node is not installed"
)


def munin(tmp_path: Path, port: int, graph: str, *command: str) -> str:
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    link = plugins / f"gearman_{graph}"
    if not link.exists():
        link.symlink_to(PLUGIN)
    conf = tmp_path / "plugin.conf"
    # as root, munin-run would run the plugin as nobody, who cannot enter pytest's private temporary directory
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"[gearman_*]\n{user}env.host 127.0.0.1\nenv.port {port}\n")
    argv = [MUNIN_RUN, "--servicedir", str(plugins), "--sconffile", str(conf), f"gearman_{graph}", *command]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def parse(output: str) -> dict[str, str]:
    """Munin's `key value` lines."""
    found = {}
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", key), line
        found[key] = value
    return found


@needs_munin
@needs_c_tools
def test_munin_run_config_and_fetch(gearmand: ServerFactory, c_worker, tmp_path: Path) -> None:
    server = start_with(gearmand, tmp_path, MONITORING_ON).server
    c_worker(server, "re.verse", "rev")
    for n in range(3):
        c_client(server, "re.verse", f"job{n}")
    server.admin("create function idle")
    wait_for(lambda: "re.verse" in latency_lines(server), what="latency")
    assert munin(tmp_path, server.port, "queue", "autoconf").strip() == "yes"
    assert munin(tmp_path, free_port(), "queue", "autoconf").startswith("no (")
    assert munin(tmp_path, server.port, "queue", "suggest").split() == [
        "queue",
        "running",
        "workers",
        "jobs",
        "latency",
    ]
    config = parse(munin(tmp_path, server.port, "queue", "config"))
    assert config["graph_title"] == "Gearman jobs waiting" and config["graph_category"] == "gearman"
    assert config["f_re_verse.label"] == "re.verse" and config["f_re_verse.type"] == "GAUGE"
    assert config["f_idle.label"] == "idle"
    assert parse(munin(tmp_path, server.port, "queue")) == {"f_re_verse.value": "0", "f_idle.value": "0"}
    assert parse(munin(tmp_path, server.port, "workers"))["f_re_verse.value"] == "1"
    assert parse(munin(tmp_path, server.port, "running"))["f_re_verse.value"] == "0"
    jobs = parse(munin(tmp_path, server.port, "jobs"))
    assert float(jobs["f_re_verse.value"]) == pytest.approx(3 / 60, abs=0.001)
    assert set(parse(munin(tmp_path, server.port, "latency", "config"))) >= {
        "f_re_verse_wait.label",
        "f_re_verse_run.label",
        "graph_title",
    }
    values = parse(munin(tmp_path, server.port, "latency"))
    assert float(values["f_re_verse_run.value"]) > 0 and float(values["f_re_verse_wait.value"]) >= 0


def test_every_grafana_query_names_an_existing_metric(gearmand: ServerFactory, tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    dead = f"http://127.0.0.1:{free_port()}/"
    hooks = [{"functions": "g", "events": ["complete"], "url": dead, "retries": 0}]
    web = start_with(gearmand, tmp_path, {"monitoring": {**MONITORING_ON["monitoring"], "hooks": hooks}})
    from tests.integration.test_gear_clients import WorkerThread

    worker = WorkerThread(["g"], lambda job: job.sendWorkComplete(b""), "g")
    worker.start(web.server)
    client = gear_client(web.server)
    try:
        client.wait_done(client.submit("g", b""))
    finally:
        client.shutdown()
        worker.stop()
    body = web.request("GET", "/_gearman/metrics")[2].decode()
    names = set()
    for family in text_string_to_metric_families(body):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries += [v["query"]["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]
    used = {name for query in queries for name in re.findall(r"\bgearman_[a-z_]+", query)}
    assert len(used) >= 15
    assert used <= names, sorted(used - names)
