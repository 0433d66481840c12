"""Latency histograms and the job history, filled by real jobs from Debian's C tools and PyPI `gear`, read
through admin `latency` / `show history`, the JSON API and the Prometheus metrics (docs/monitoring.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests import accel_paths
from tests.integration import test_http_frontend as frontend
from tests.integration.conftest import OUR_GEARMAND, ServerFactory
from tests.integration.test_gear_clients import RecordingClient, WorkerThread
from tests.integration.test_http_frontend import GEARMAN, HttpServer, needs_c_tools, start_http, wait_for

c_worker = frontend.c_worker
#: latency and history are opt-in (docs/monitoring.md)
MONITORING_ON = {"monitoring": {"latency": {"enabled": True}, "history": {"enabled": True}}}


@pytest.fixture(params=accel_paths.PATHS)
def web(gearmand: ServerFactory, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch) -> HttpServer:
    """Our server with the http frontend, latency histograms and job history on; with the C accelerator
    and with its Python fallback."""
    accel_paths.choose(request.param, monkeypatch)
    config = tmp_path / "monitoring-on.yaml"
    config.write_text(yaml.safe_dump(MONITORING_ON))
    return start_http(gearmand, "--config", str(config))


TIMEOUT = 10.0
# gear 0.16 calls Condition.notifyAll() from its threads; that noise is not about the server.
pytestmark = pytest.mark.filterwarnings("ignore:notifyAll\\(\\) is deprecated:DeprecationWarning")


def c_client(server, function: str, data: str) -> str:
    argv = [GEARMAN, "-h", "127.0.0.1", "-p", str(server.port), "-f", function, data]
    return subprocess.run(argv, capture_output=True, timeout=TIMEOUT, check=True, text=True).stdout


def gear_client(server) -> RecordingClient:
    client = RecordingClient("monitoring-test")
    client.addServer(server.host, server.port)
    client.waitForServer(TIMEOUT)
    return client


def samples(web: HttpServer) -> dict[tuple[str, tuple], float]:
    body = web.request("GET", "/_gearman/metrics")[2].decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body)
        for s in f.samples
    }


def latency_lines(server) -> dict[str, list[str]]:
    text = server.admin("latency")
    lines = text.splitlines()
    assert lines[-1] == "."
    rows = {}
    for line in lines[:-1]:
        fields = line.split("\t")
        assert len(fields) == 6, line  # function, wait p50, wait p99, run p50, run p99, jobs
        for number in fields[1:5]:
            assert len(number.split(".")[1]) == 6, line  # seconds, six decimals
        assert fields[5].isdigit()
        rows[fields[0]] = fields
    return rows


@needs_c_tools
def test_c_tools_fill_the_latency_histograms(web: HttpServer, c_worker) -> None:
    c_worker(web.server, "slowcat", "sh", "-c", "sleep 0.05; cat")
    for n in range(5):
        assert c_client(web.server, "slowcat", f"job{n}") == f"job{n}"
    wait_for(lambda: "slowcat" in latency_lines(web.server), what="latency of slowcat")
    row = latency_lines(web.server)["slowcat"]
    wait_p50, wait_p99, run_p50, run_p99, jobs = float(row[1]), float(row[2]), float(row[3]), float(row[4]), row[5]
    assert jobs == "5"
    assert 0.05 <= run_p50 <= run_p99 < 5.0  # the worker slept 50 ms per job
    assert 0.0 <= wait_p50 <= wait_p99 < run_p50  # an idle worker was waiting for each
    status, data = web.json("/_gearman/latency")
    assert status == 200 and data["window_seconds"] == 60
    (entry,) = [f for f in data["functions"] if f["name"] == "slowcat"]
    assert entry["jobs"] == 5 and entry["run_p50"] >= 0.05
    values = samples(web)
    assert values[("gearman_job_run_seconds_count", (("function", "slowcat"),))] == 5
    assert values[("gearman_job_queue_wait_seconds_count", (("function", "slowcat"),))] == 5
    assert values[("gearman_job_run_seconds_bucket", (("function", "slowcat"), ("le", "0.025")))] == 0
    assert values[("gearman_job_run_seconds_bucket", (("function", "slowcat"), ("le", "+Inf")))] == 5
    assert values[("gearman_job_run_seconds_sum", (("function", "slowcat"),))] >= 0.25


@needs_c_tools
def test_latency_and_history_are_off_by_default(gearmand: ServerFactory, c_worker) -> None:
    plain = start_http(gearmand)
    c_worker(plain.server, "rev", "rev")
    assert c_client(plain.server, "rev", "abc") == "cba"
    assert plain.server.admin("latency") == ".\n" and plain.server.admin("show history") == ".\n"
    assert plain.json("/_gearman/history")[1]["jobs"] == [] and plain.json("/_gearman/latency")[1]["functions"] == []


def test_gear_jobs_fill_the_history(web: HttpServer) -> None:
    def handler(job) -> None:
        if job.arguments == b"fail":
            job.sendWorkFail()
        elif job.arguments == b"raise":
            job.sendWorkException(b"ValueError: bad\tinput\nline 2")
        else:
            job.sendWorkComplete(job.arguments.upper())

    worker = WorkerThread(["shout"], handler, "shouter")
    worker.start(web.server)
    client = gear_client(web.server)
    try:
        handles = {}
        for data in (b"one", b"fail", b"raise", b"two"):
            job = client.submit("shout", data)
            client.wait_done(job)
            handles[data] = job.handle.decode()
        background = client.submit("shout", b"three", background=True)
        wait_for(lambda: len(web.json("/_gearman/history?function=shout")[1]["jobs"]) == 5, what="five jobs")
    finally:
        client.shutdown()
        worker.stop()
    lines = web.server.admin("show history").splitlines()
    assert lines[-1] == "."
    rows = [line.split("\t") for line in lines[:-1]]
    assert all(len(row) == 10 for row in rows)
    # newest first: handle, function, outcome, priority, background, submitted, wait, run, worker, exception
    assert [row[0] for row in rows] == [background.handle.decode(), *reversed(handles.values())]
    assert [row[2] for row in rows] == ["complete", "complete", "exception", "fail", "complete"]
    assert {row[1] for row in rows} == {"shout"} and {row[3] for row in rows} == {"normal"}
    assert [row[4] for row in rows] == ["1", "0", "0", "0", "0"]
    assert rows[2][9] == "ValueError: bad\\tinput\\nline 2"  # one line, its tabs and line ends escaped
    assert rows[0][9] == "-" and {row[8] for row in rows} == {"shouter"}  # the worker's client id
    assert all(float(row[6]) >= 0 and float(row[7]) >= 0 and float(row[5]) > 1e9 for row in rows)
    assert len(web.server.admin("show history shout 2").splitlines()) == 3
    assert len(web.server.admin("show history 3").splitlines()) == 4
    assert web.server.admin("show history nothing") == ".\n"
    status, data = web.json("/_gearman/history?outcome=exception")
    assert status == 200
    (raised,) = data["jobs"]
    assert raised["handle"] == handles[b"raise"] and raised["exception"] == "ValueError: bad\tinput\nline 2"
    assert raised["worker"] == "shouter" and raised["background"] is False and raised["priority"] == "normal"
    assert raised["submitted"] <= raised["started"] <= raised["finished"]
    assert [j["handle"] for j in web.json("/_gearman/history?limit=2")[1]["jobs"]] == [
        background.handle.decode(),
        handles[b"two"],
    ]
    since = web.json("/_gearman/history")[1]["jobs"][1]["finished"]
    assert len(web.json(f"/_gearman/history?since={since}")[1]["jobs"]) == 2
    assert web.json("/_gearman/history?outcome=bogus")[0] == 400


def test_latency_labels_are_bounded(gearmand: ServerFactory, tmp_path: Path) -> None:
    config = tmp_path / "gearmand.yaml"
    config.write_text(
        "monitoring:\n  latency:\n    enabled: true\n    max_functions: 2\n  history:\n    enabled: true\n    size: 3\n"
    )
    web = start_http(gearmand, "--config", str(config))
    functions = ["f1", "f2", "f3", "f4"]
    worker = WorkerThread(functions, lambda job: job.sendWorkComplete(b"ok"), "many")
    worker.start(web.server)
    client = gear_client(web.server)
    try:
        for name in functions:
            client.wait_done(client.submit(name, b"x"))
    finally:
        client.shutdown()
        worker.stop()
    wait_for(lambda: "other" in latency_lines(web.server), what="the other row")
    assert sorted(latency_lines(web.server)) == ["f1", "f2", "other"]
    assert latency_lines(web.server)["other"][5] == "2"
    values = samples(web)
    labelled = {labels for (name, labels) in values if name == "gearman_job_run_seconds_count"}
    assert labelled == {(("function", "f1"),), (("function", "f2"),), (("function", "other"),)}
    assert len(web.server.admin("show history").splitlines()) == 4  # the ring keeps 3


def test_monitoring_config_errors_name_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("monitoring:\n  history:\n    size: -1\n")
    result = subprocess.run([OUR_GEARMAND, "--config", str(config)], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode != 0 and "monitoring.history.size" in result.stderr
