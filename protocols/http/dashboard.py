"""The live dashboard: one static page that refreshes itself from ``status``, ``workers``, ``latency`` and
``history`` (JSON): throughput, functions, a latency chart per function (p50/p99 of the queue wait and the
run time, the last minute's, sampled each second), the recently finished jobs, connections.

Kept as a Python string so it ships inside the package with no data-file configuration. The page finds
the API next to itself (it is served at the prefix root) and passes ``?access_token=`` on as a bearer
token when the server has one; its own requests carry no ``Referer``, so that URL goes nowhere else.
Function names are inserted with ``textContent``, never as HTML.
"""

PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">  <!-- the page's URL may hold ?access_token= -->
<title>gearman-gateway</title>
<link rel="icon" href="data:,">  <!-- no /favicon.ico request: that path is a function name -->
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2327; background: #f6f7f7; }
  h1 { font-size: 1.3em; margin: 0 0 .2em; }
  h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
  #state { color: #646970; font-size: .9em; }
  #state.error { color: #b32d2e; }
  table { border-collapse: collapse; background: #fff; min-width: 40em; }
  th, td { padding: .3em .8em; border-bottom: 1px solid #dcdcde; text-align: right; }
  th { background: #f0f0f1; font-weight: 600; }
  th:first-child, td:first-child, th.text, td.text { text-align: left; }
  #version { color: #646970; font-size: .7em; font-weight: normal; }
  td.empty { color: #646970; text-align: left; font-style: italic; }
  .rate { display: flex; align-items: center; gap: 1em; }
  #rate { font-size: 1.6em; font-weight: 600; min-width: 5em; }
  svg { background: #fff; border: 1px solid #dcdcde; }
  polyline { fill: none; stroke: #2271b1; stroke-width: 1.5; }
  polyline.wait { stroke: #dba617; }
  td.chart { padding: .1em .8em; }
  .legend { color: #646970; font-size: .85em; }
  .legend b.wait { color: #dba617; } .legend b.run { color: #2271b1; }
  tr.fail td, tr.exception td, tr.dead_letter td { color: #b32d2e; }
</style>
</head>
<body>
<h1>gearman-gateway <span id="version"></span></h1>
<div id="state">loading\xe2\x80\xa6</div>
<h2>Throughput (jobs completed per second, last 2 minutes)</h2>
<div class="rate"><div id="rate">\xe2\x80\x93</div>
<svg id="spark" width="360" height="48" viewBox="0 0 360 48" role="img" aria-label="throughput">
<polyline id="line" points=""></polyline></svg></div>
<h2>Functions</h2>
<table id="functions">
<thead><tr><th>function</th><th>queued high</th><th>queued normal</th><th>queued low</th><th>running</th>
<th>workers</th><th>submitted</th><th>completed</th><th>failed</th></tr></thead>
<tbody></tbody>
</table>
<h2>Latency (last minute, seconds)</h2>
<div class="legend">chart: p99 of the <b class="wait">queue wait</b> and of the <b class="run">run time</b>,
last 2 minutes</div>
<table id="latency">
<thead><tr><th>function</th><th>jobs</th><th>wait p50</th><th>wait p99</th><th>run p50</th><th>run p99</th>
<th class="text">p99 chart</th></tr></thead>
<tbody></tbody>
</table>
<h2>Recently finished jobs</h2>
<table id="history">
<thead><tr><th class="text">finished</th><th class="text">handle</th><th class="text">function</th>
<th class="text">outcome</th><th>wait</th><th>run</th><th class="text">worker</th><th class="text">exception</th></tr>
</thead>
<tbody></tbody>
</table>
<h2>Connections</h2>
<table id="workers">
<thead><tr><th>fd</th><th class="text">address</th><th class="text">client id</th>
<th class="text">functions</th></tr></thead>
<tbody></tbody>
</table>
<script>
"use strict";
const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
const token = new URLSearchParams(location.search).get("access_token");
const headers = token ? { Authorization: "Bearer " + token } : {};
const SAMPLES = 120;
const rates = [];
let previous = null;

async function getJSON(name) {
  const response = await fetch(base + name, { headers, cache: "no-store" });
  if (!response.ok) throw new Error(name + ": HTTP " + response.status);
  return response.json();
}

function row(tbody, cells, key) {
  const tr = document.createElement("tr");
  if (key !== undefined) tr.dataset.key = key;
  for (const [text, cls] of cells) {
    const td = document.createElement("td");
    td.textContent = String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  tbody.appendChild(tr);
}

const latencies = new Map();  // function -> [{wait, run}] per second, the last SAMPLES

function chart(name) {
  const points = latencies.get(name) || [];
  const max = Math.max(1e-6, ...points.map(p => Math.max(p.wait, p.run)));
  const step = 160 / (SAMPLES - 1);
  const offset = (SAMPLES - points.length) * step;
  const line = key => points.map((p, i) => (offset + i * step).toFixed(1) + "," + (22 - (p[key] / max) * 20).toFixed(1))
    .join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", "160"); svg.setAttribute("height", "24"); svg.setAttribute("viewBox", "0 0 160 24");
  svg.setAttribute("role", "img"); svg.setAttribute("aria-label", "p99 of " + name);
  for (const key of ["wait", "run"]) {
    const polyline = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    polyline.setAttribute("class", key);
    polyline.setAttribute("points", line(key));
    svg.appendChild(polyline);
  }
  return svg;
}

function seconds(value) {
  return value < 0.001 ? (value * 1e6).toFixed(0) + "\\u00b5s" : value < 1 ? (value * 1000).toFixed(1) + "ms"
    : value.toFixed(2) + "s";
}

function fill(id, items, cellsOf, keyOf, emptyText) {
  const tbody = document.querySelector("#" + id + " tbody");
  tbody.replaceChildren();
  if (!items.length) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = document.querySelectorAll("#" + id + " th").length;
    td.className = "empty";
    td.textContent = emptyText;
    tr.appendChild(td);
    tbody.appendChild(tr);
  }
  for (const item of items) row(tbody, cellsOf(item), keyOf(item));
}

function sparkline() {
  const max = Math.max(1, ...rates);
  const step = 360 / (SAMPLES - 1);
  const offset = (SAMPLES - rates.length) * step;
  document.getElementById("line").setAttribute("points",
    rates.map((r, i) => (offset + i * step).toFixed(1) + "," + (46 - (r / max) * 44).toFixed(1)).join(" "));
}

async function refresh() {
  const state = document.getElementById("state");
  try {
    const [status, workers, latency, history] = await Promise.all(
      [getJSON("status"), getJSON("workers"), getJSON("latency"), getJSON("history?limit=20")]);
    for (const f of latency.functions) {
      const points = latencies.get(f.name) || [];
      points.push({ wait: f.wait_p99, run: f.run_p99 });
      if (points.length > SAMPLES) points.shift();
      latencies.set(f.name, points);
    }
    fill("latency", latency.functions, f => [[f.name, "text"], [f.jobs], [seconds(f.wait_p50)], [seconds(f.wait_p99)],
      [seconds(f.run_p50)], [seconds(f.run_p99)], ["", "chart"]], f => "latency:" + f.name, "no finished jobs yet");
    for (const tr of document.querySelectorAll("#latency tbody tr[data-key]")) {
      tr.lastChild.appendChild(chart(tr.dataset.key.slice(8)));
    }
    fill("history", history.jobs, j => [[new Date(j.finished * 1000).toLocaleTimeString(), "text"],
      [j.handle, "text"], [j.function, "text"], [j.outcome, "text"], [seconds(j.wait)], [seconds(j.run)],
      [j.worker || "-", "text"], [j.exception, "text"]], j => "job:" + j.handle, "no finished jobs yet");
    for (const tr of document.querySelectorAll("#history tbody tr[data-key]")) {
      tr.className = tr.children[3].textContent;
    }
    document.getElementById("version").textContent = "version " + status.version;
    const functions = status.functions.slice().sort((a, b) => a.name.localeCompare(b.name));
    fill("functions", functions, f => [
      [f.name, "text"], [f.queued.high], [f.queued.normal], [f.queued.low], [f.running], [f.workers],
      [f.submitted], [f.completed], [f.failed]], f => f.name, "no functions yet");
    fill("workers", workers.workers, w => [[w.fd], [w.ip, "text"], [w.id, "text"],
      [w.functions.join(" "), "text"]], w => String(w.fd), "no connections");
    const now = performance.now();
    const done = functions.reduce((sum, f) => sum + f.completed + f.failed, 0);
    if (previous !== null && now > previous.at) {
      rates.push(Math.max(0, (done - previous.done) * 1000 / (now - previous.at)));
      if (rates.length > SAMPLES) rates.shift();
      document.getElementById("rate").textContent = rates[rates.length - 1].toFixed(1) + "/s";
      sparkline();
    }
    previous = { at: now, done };
    state.className = "";
    state.textContent = functions.length + " functions, " + workers.workers.length + " connections; updated "
      + new Date().toLocaleTimeString();
  } catch (problem) {
    state.className = "error";
    state.textContent = String(problem.message || problem);
  }
}

refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"""
