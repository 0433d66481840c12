"""The applications in examples/ run end to end as their READMEs say, against our gearmand on a free port:
log collection, map/reduce word count, the newsletter pipeline, PHP and Perl workers and clients mixed with
Python ones, and the HTTP frontend from curl and from a browser page. (Hello world and the thumbnail worker:
test_seed_examples.py.) Each program is run as a user runs it: its own process, the server in GEARMAN_SERVER.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.integration import test_http_dashboard as dashboard
from tests.integration import test_http_frontend as frontend

from .conftest import BIN_DIR, RunningServer, ServerFactory, free_port, wait_listening
from .test_http_frontend import CURL, GEARMAN, function_status, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT = 60.0
PYTHON = sys.executable

c_worker = frontend.c_worker  # Debian's C `gearman -w`, started once registered
chromium = dashboard.chromium


def needs(*tools: str) -> None:
    """Skip without these programs, except under CI=true, where scripts/setup --test installs them."""
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {missing} not installed (scripts/setup --test)")
        pytest.skip(f"{missing} not installed")


@pytest.fixture
def run_env(server: RunningServer) -> dict[str, str]:
    """The environment of the examples' programs: the test's server, the venv's tools first on PATH."""
    return {**os.environ, "GEARMAN_SERVER": server.address, "PATH": f"{BIN_DIR}:{os.environ['PATH']}"}


@pytest.fixture
def spawn(run_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a long-running program of an example (a worker, a pipe); killed with its children at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*argv: str, shell: bool = False) -> subprocess.Popen[bytes]:
        command: str | list[str] = argv[0] if shell else list(argv)
        log = open(tmp_path / f"proc-{len(procs)}.log", "wb")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            command, shell=shell, env=run_env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(TIMEOUT)


def run(argv: list[str], env: dict[str, str], cwd: Path, stdin: bytes | None = None) -> str:
    result = subprocess.run(argv, input=stdin, env=env, cwd=cwd, capture_output=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, (argv, result.stderr.decode(errors="replace"))
    return result.stdout.decode()


def workers_of(server: RunningServer, function: str, count: int, logs: Path) -> None:
    """Wait until `count` workers of `function` have registered; if they never do, say what the spawned
    programs printed (their logs, proc-N.log in `logs`) and what the server lists."""
    try:
        wait_for(lambda: (function_status(server, function) or (0, 0, 0))[2] >= count, TIMEOUT, f"{function} workers")
    except TimeoutError as timeout:
        printed = "\n".join(
            f"--- {log.name}:\n{log.read_text(errors='replace')[-2000:]}" for log in sorted(logs.glob("proc-*.log"))
        )
        listed = f"status:\n{server.admin('status')}workers:\n{server.admin('workers')}"
        raise TimeoutError(f"{timeout}\n{listed}{printed}") from None


def example_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_has_a_readme_naming_existing_files() -> None:
    for directory in sorted(p for p in EXAMPLES.iterdir() if p.is_dir()):
        readme = (directory / "README.md").read_text()
        for path in re.findall(r"examples/[\w/.-]+\.\w+", readme):
            assert (EXAMPLES.parent / path).exists(), (directory.name, path)
        assert "Tested by" in readme, directory.name


# -- log collection


def common_log(lines: int) -> list[str]:
    return list(example_module(EXAMPLES / "logs" / "fake_traffic.py").lines(lines))


def expected_summary(lines: list[str]) -> str:
    size = sum(int(line.split()[-1]) for line in lines)
    return f"{len(lines)} requests, {size} bytes, 0 lines rejected"


@pytest.fixture
def debian_tools() -> None:
    """Debian's C `gearman` and curl: skipped without them, failed under CI=true (scripts/setup --test installs
    them). Listed before the fixtures that start them."""
    needs(GEARMAN, CURL)


def test_logs_piped_into_gearman_n(
    debian_tools: None, server: RunningServer, spawn: Callable[..., object], run_env: dict[str, str], tmp_path: Path
) -> None:
    """`gearman -n -f logger < access.log` (Debian's C tool, as Apache's CustomLog pipe runs it), two workers."""
    for _ in range(2):
        spawn(PYTHON, str(EXAMPLES / "logs" / "log_worker.py"), "logs.sqlite3")
    workers_of(server, "logger", 2, tmp_path)
    log = run([PYTHON, str(EXAMPLES / "logs" / "fake_traffic.py"), "300"], run_env, tmp_path)
    (tmp_path / "access.log").write_text(log + "not a log line\n")
    command = f"{GEARMAN} -h {server.host} -p {server.port} -n -f logger < access.log"
    subprocess.run(command, shell=True, cwd=tmp_path, env=run_env, timeout=TIMEOUT, check=True)

    summary = run([PYTHON, str(EXAMPLES / "logs" / "summary.py"), "logs.sqlite3"], run_env, tmp_path)
    lines = log.splitlines()
    assert summary.splitlines()[0] == expected_summary(lines).replace("0 lines rejected", "1 lines rejected")
    statuses = Counter(line.split()[-2] for line in lines)
    for status, count in statuses.items():
        assert re.search(rf"^  {status}\s+{count} requests", summary, re.M), (status, summary)
    top_path, top_count = Counter(line.split()[6] for line in lines).most_common(1)[0]
    assert re.search(rf"top paths:\n  {re.escape(top_path)}\s+{top_count} requests", summary), summary


def test_logs_followed_with_tail_f(
    server: RunningServer, spawn: Callable[..., object], run_env: dict[str, str], tmp_path: Path
) -> None:
    """`tail -f access.log | gearman -n -f logger` (our tool) keeps sending the lines appended to the log."""
    spawn(PYTHON, str(EXAMPLES / "logs" / "log_worker.py"), "logs.sqlite3")
    workers_of(server, "logger", 1, tmp_path)
    access = tmp_path / "access.log"
    access.write_text("")
    # -n +1: from the file's start, so lines appended before tail opened the file are sent too
    spawn("tail -n +1 -f access.log | gearman -n -f logger", shell=True)
    lines = common_log(80)

    def summary_line() -> str:
        if not (tmp_path / "logs.sqlite3").exists():
            return ""
        return run([PYTHON, str(EXAMPLES / "logs" / "summary.py"), "logs.sqlite3"], run_env, tmp_path).split("\n")[0]

    for start, end in ((0, 50), (50, 80)):  # appended in two goes, as a web server writes its log
        with access.open("a") as f:
            f.writelines(lines[start:end])
        wait_for(lambda end=end: summary_line() == expected_summary(lines[:end]), TIMEOUT, f"{end} lines")


# -- map/reduce word count


def test_wordcount_map_reduce(
    server: RunningServer, gearmand: ServerFactory, spawn: Callable[..., object], run_env: dict[str, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(run([PYTHON, str(EXAMPLES / "wordcount" / "make_corpus.py"), "0.3"], run_env, tmp_path))
    for _ in range(2):
        spawn(PYTHON, str(EXAMPLES / "wordcount" / "map_worker.py"))
    workers_of(server, "wordcount_map", 2, tmp_path)
    result = subprocess.run(
        [PYTHON, str(EXAMPLES / "wordcount" / "wordcount.py"), str(corpus), "--chunks", "12", "--top", "5"],
        env=run_env, capture_output=True, text=True, timeout=TIMEOUT, check=True,
    )  # fmt: skip
    expected = example_module(EXAMPLES / "wordcount" / "map_worker.py").count_words(corpus.read_text())
    assert result.stdout.splitlines() == [f"{count:>10} {word}" for word, count in expected.most_common(5)]
    assert f"{sum(expected.values())} words, {len(expected)} different" in result.stderr

    # speedup.py starts its own workers: on a server of its own
    fresh = gearmand()
    out = run(
        [PYTHON, str(EXAMPLES / "wordcount" / "speedup.py"), str(corpus), "1", "2"],
        {**run_env, "GEARMAN_SERVER": fresh.address}, tmp_path,
    )  # fmt: skip
    assert re.fullmatch(r"1 worker :\s+[\d.]+ s\s+speed-up 1.00x\n2 workers:\s+[\d.]+ s\s+speed-up [\d.]+x\n", out), out


# -- the newsletter pipeline


def test_newsletter_pipeline(
    server: RunningServer, spawn: Callable[..., object], run_env: dict[str, str], tmp_path: Path
) -> None:
    workers = str(EXAMPLES / "newsletter" / "workers.py")
    for role in ("newsletter", "boxes", "boxes"):
        spawn(PYTHON, workers, role)
    spawn(PYTHON, workers, "send", "outbox")
    for function, count in (("newsletter", 1), ("render_box", 2), ("send_nl", 1)):
        workers_of(server, function, count, tmp_path)
    out = run([PYTHON, str(EXAMPLES / "newsletter" / "cron.py"), "60", "--batch", "25"], run_env, tmp_path)
    assert out.startswith("60 newsletter jobs queued in ")
    outbox = tmp_path / "outbox"
    wait_for(lambda: len(list(outbox.glob("*.html"))) == 60, TIMEOUT, "60 newsletters in the outbox")
    for user in (1, 25, 26, 60):
        page = (outbox / f"user-{user}.html").read_text()
        assert f"Weekly statistics for user {user}</h1>" in page
        assert [h2 for h2 in re.findall(r"<h2>(.*?)</h2>", page)] == ["Your week", "Birthdays", "Jobs"]
    wait_for(lambda: all((function_status(server, f) or (0,))[0] == 0 for f in ("newsletter", "send_nl")), TIMEOUT)


# -- workers and clients in other languages


def test_mixed_languages_php_and_perl_workers_python_client(
    server: RunningServer, spawn: Callable[..., object], run_env: dict[str, str], tmp_path: Path
) -> None:
    needs("php", "perl")
    spawn("php", str(EXAMPLES / "mixed_languages" / "worker.php"))
    spawn("perl", str(EXAMPLES / "mixed_languages" / "worker.pl"))
    workers_of(server, "php_reverse", 1, tmp_path)
    workers_of(server, "perl_upper", 1, tmp_path)
    client = [PYTHON, str(EXAMPLES / "mixed_languages" / "client.py")]
    assert run([*client, "Hello World!"], run_env, tmp_path) == "!DLROW OLLEH\n"
    assert run(client, run_env, tmp_path) == "!DLROW OLLEH\n"


def test_mixed_languages_python_worker_php_and_perl_clients(
    server: RunningServer, spawn: Callable[..., object], run_env: dict[str, str], tmp_path: Path
) -> None:
    needs("php", "perl")
    spawn(PYTHON, str(EXAMPLES / "mixed_languages" / "worker.py"))
    workers_of(server, "py_title", 1, tmp_path)
    for client in (["php", "client.php"], ["perl", "client.pl"]):
        argv = [client[0], str(EXAMPLES / "mixed_languages" / client[1])]
        assert run([*argv, "hello gearman"], run_env, tmp_path) == "Hello Gearman\n"
        assert run([*argv, "ünïcode wörds"], run_env, tmp_path) == "Ünïcode Wörds\n"


# -- the HTTP frontend from curl and from a browser page


@pytest.fixture
def http_example(
    debian_tools: None,
    gearmand: ServerFactory,
    c_worker: Callable[..., object],
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> Iterator[tuple[frontend.HttpServer, str]]:
    """Our server with HTTP on a free port, the shell worker `gearman -w -f reverse -- rev`, and serve.py."""
    web = frontend.start_http(gearmand)
    c_worker(web.server, "reverse", "rev")
    page_port = free_port()
    proxy = spawn(PYTHON, str(EXAMPLES / "http" / "serve.py"), "--port", str(page_port), "--gearman", web.url(""))
    wait_listening(page_port, proxy)
    yield web, f"http://127.0.0.1:{page_port}"


def curl(*args: str) -> str:
    result = subprocess.run([CURL, "-sS", *args], capture_output=True, text=True, timeout=TIMEOUT, check=True)
    return result.stdout


def test_http_curl_and_the_page_through_its_proxy(http_example: tuple[frontend.HttpServer, str]) -> None:
    web, page = http_example
    assert curl("--data-binary", "Hello World!", web.url("/reverse")) == "!dlroW olleH"
    headers = curl("-i", "-H", "X-Gearman-Background: true", "--data-binary", "later", web.url("/reverse"))
    assert re.search(r"(?im)^X-Gearman-Job-Handle: H:\S+", headers)
    assert re.search(r"(?im)^X-Gearman-Command: JOB_CREATED", headers)

    html = curl(page + "/")
    assert "<title>Gearman from the browser</title>" in html and 'fetch("jobs/"' in html
    answer = curl("-i", "--data-binary", "Hello proxy", page + "/jobs/reverse")
    assert answer.endswith("\n\nyxorp olleH")  # text mode: CRLF read as LF
    assert re.search(r"(?im)^X-Gearman-Command: WORK_COMPLETE", answer)


def test_http_browser_page_runs_a_job_with_fetch(
    http_example: tuple[frontend.HttpServer, str], chromium: Callable[..., subprocess.CompletedProcess[bytes]]
) -> None:
    _, page = http_example
    result = chromium(f"{page}/?function=reverse&workload=Hello%20browser", "--dump-dom")
    dom = result.stdout.decode()
    assert 'data-done="yes"' in dom, result.stderr.decode()[-2000:]
    assert '<output id="result">resworb olleH</output>' in dom
    assert re.search(r'<span id="handle">H:[^<]+</span>, <span id="command">WORK_COMPLETE</span>', dom)
