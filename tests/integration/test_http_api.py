"""Our endpoints under /_gearman/ on a running server: JSON admin data, job status, Prometheus metrics,
the bearer token, and `GET /` leading to the dashboard. Clients: curl and Python's http.client."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from protocols.binary.packets import Packet
from tests.integration import test_http_frontend as frontend
from tests.integration.conftest import ServerFactory
from tests.integration.test_http_frontend import HttpServer, RawWorker, curl, needs_c_tools, start_http

web = frontend.web  # fixtures shared with test_http_frontend
c_worker = frontend.c_worker


@needs_c_tools
def test_status_and_workers_json(web: HttpServer, c_worker) -> None:
    c_worker(web.server, "reverse", "rev")
    status, data = web.json("/_gearman/status")
    assert status == 200 and data["version"].startswith("1.1.20")
    (reverse,) = [f for f in data["functions"] if f["name"] == "reverse"]
    assert reverse["workers"] == 1 and reverse["queued"] == {"high": 0, "normal": 0, "low": 0}
    status, data = web.json("/_gearman/workers")
    assert ["reverse"] in [w["functions"] for w in data["workers"]]
    code, headers, body = curl(web.url("/_gearman/status"))
    assert code == 200 and headers["content-type"] == "application/json" and b'"reverse"' in body


def test_job_status_for_a_background_job(web: HttpServer) -> None:
    _, headers, _ = web.request("POST", "/later", b"x", {"X-Gearman-Background": "true", "X-Gearman-Unique": "u1"})
    handle = headers["X-Gearman-Job-Handle"]
    status, job = web.json("/_gearman/jobs/" + handle.replace(":", "%3A"))
    assert status == 200
    assert job == {
        "handle": handle,
        "known": True,
        "running": False,
        "numerator": 0,
        "denominator": 0,
        "function": "later",
        "unique": "u1",
        "priority": "normal",
        "background": True,
        "waiting_clients": 0,
        "retries": 0,
        "worker_deaths": 0,
    }
    with RawWorker(web.port, b"later") as worker:
        got, _ = worker.take()
        worker.send(Packet.WORK_STATUS, got, b"3", b"4")
        for _ in range(100):
            job = web.json(f"/_gearman/jobs/{handle}")[1]
            if job["numerator"] == 3:
                break
        assert (job["running"], job["numerator"], job["denominator"]) == (True, 3, 4)
    assert web.json("/_gearman/jobs/H:nowhere:1") == (404, {"handle": "H:nowhere:1", "known": False})


def test_metrics_parse_with_prometheus_client(web: HttpServer) -> None:
    web.request("POST", "/m1", b"a", {"X-Gearman-Background": "true", "X-Gearman-Priority": "low"})
    web.request("POST", "/m1", b"b", {"X-Gearman-Background": "true", "X-Gearman-Priority": "high"})
    status, headers, body = web.request("GET", "/_gearman/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert values[("gearman_jobs_submitted_total", (("function", "m1"),))] == 2
    assert values[("gearman_jobs_queued", (("function", "m1"), ("priority", "low")))] == 1
    assert values[("gearman_jobs_queued", (("function", "m1"), ("priority", "high")))] == 1
    assert values[("gearman_connections", ())] >= 1
    assert values[("gearman_http_responses_total", (("code", "200"),))] >= 2
    assert families["gearman_jobs_completed"].type == "counter"
    assert families["gearman_jobs_queued"].type == "gauge"


def test_bearer_token_protects_the_prefix_only(gearmand: ServerFactory) -> None:
    server = start_http(gearmand, "--http-token", "letmein", "--http-request-timeout", "0.2")
    assert curl(server.url("/_gearman/status"))[0] == 401
    assert curl("-H", "Authorization: Bearer wrong", server.url("/_gearman/metrics"))[0] == 401
    assert curl("-H", "Authorization: Bearer letmein", server.url("/_gearman/metrics"))[0] == 200
    assert curl(server.url("/_gearman/status?access_token=letmein"))[0] == 200
    assert curl(server.url("/_gearman/?access_token=letmein"))[0] == 200  # the dashboard
    status, headers, _ = curl(server.url("/_gearman/"))
    assert status == 401 and headers["www-authenticate"] == 'Bearer realm="gearman"'
    assert curl("--data-binary", "x", server.url("/anything"))[0] == 504  # job paths need no token


def test_root_leads_to_the_dashboard(web: HttpServer) -> None:
    status, headers, _ = curl(web.url("/"))
    assert (status, headers["location"]) == (302, "/_gearman/")
    status, headers, body = web.request("GET", headers["location"])
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"gearman-gateway" in body


def test_custom_prefix(gearmand: ServerFactory) -> None:
    server = start_http(gearmand, "--http-prefix", "/ops/")
    assert server.json("/ops/status")[0] == 200
    assert curl(server.url("/"))[1]["location"] == "/ops/"
    _, headers, _ = server.request("POST", "/_gearman/status", b"x", {"X-Gearman-Background": "true"})
    assert headers["X-Gearman-Command"] == "JOB_CREATED"  # no longer reserved: a function, as in gearmand
