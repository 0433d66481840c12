"""Our endpoints under the reserved prefix (default ``/_gearman/``): JSON, metrics, the dashboard.

Sans-IO like the rest of the package: ``handle`` turns a request into an ``Answer``. The data comes from
``Admin.snapshot`` (the same numbers as the admin text commands) and from the scheduler's snapshots.

========================  ===================================================================
``GET <prefix>``          the live dashboard (HTML)
``GET <prefix>status``    functions: queued per priority, running, workers, job counters; poison jobs (JSON)
``GET <prefix>workers``   every connection, as admin ``workers`` lists them (JSON)
``GET <prefix>jobs/H``    status of job handle H, percent-encoded if need be (JSON; 404 when unknown)
``GET <prefix>metrics``   Prometheus text format
``GET <prefix>latency``   per function: queue wait and run time p50/p99 over the last minute (JSON)
``GET <prefix>history``   recently finished jobs, newest first; ``?function=&outcome=&since=&limit=`` (JSON)
``GET <prefix>results/F/U``  the kept result of the background job of function F, unique U (result cache)
========================  ===================================================================
"""

from __future__ import annotations

import hmac
import json
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_to_bytes

from gearman_gateway import latency
from gearman_gateway.scheduler import OUTCOMES, PRIORITY_NAMES
from gearman_gateway.security import Denied, Grant
from protocols.http import dashboard, mapping, metrics
from protocols.http.mapping import Answer, ApiRequest, Later

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from protocols import FrontendContext
    from protocols.http.options import HttpOptions

JSON = b"application/json"
_NO_STORE = (b"Cache-Control", b"no-store")


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def bearer_token(headers: Iterable[tuple[bytes, bytes]], query: bytes = b"") -> bytes:
    """The token of an ``Authorization: Bearer`` header, else (for the API only: a job's query is part of
    its function name) of ``?access_token=``; empty when none."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer":
                return credentials.strip()
    if query:
        return (parse_qs(query).get(b"access_token") or [b""])[0]
    return b""


def unauthorized(text: str) -> Answer:
    answer = json_answer({"error": text}, HTTPStatus.UNAUTHORIZED)
    answer.headers.append((b"WWW-Authenticate", b'Bearer realm="gearman"'))
    return answer


def forbidden(text: str) -> Answer:
    return json_answer({"error": text}, HTTPStatus.FORBIDDEN)


def _elsewhere(handle: bytes, known: bool, running: bool) -> Answer:
    if not known:
        return json_answer({"handle": _text(handle), "known": False}, HTTPStatus.NOT_FOUND)
    return json_answer({"handle": _text(handle), "known": True, "running": running, "elsewhere": True})


def json_answer(data: Any, status: int = HTTPStatus.OK) -> Answer:
    body = json.dumps(data, separators=(",", ":")).encode()
    return Answer(status, [(b"Content-Type", JSON), _NO_STORE], body)


class HttpApi:
    def __init__(self, context: FrontendContext, stats: metrics.HttpStats | None = None) -> None:
        options: HttpOptions = context.options
        self.context = context
        self.prefix = options.prefix.encode()
        self.token = options.token.encode() if options.token else None
        self.stats = stats if stats is not None else metrics.HttpStats()
        self._routes: dict[bytes, Callable[[], Answer]] = {
            b"": self._dashboard,
            b"status": self._status,
            b"workers": self._workers,
            b"metrics": self._metrics,
            b"latency": self._latency,
        }

    def handle(
        self,
        method: bytes,
        request: ApiRequest,
        headers: Iterable[tuple[bytes, bytes]],
        peer: str = "?",
        identity: Grant | None = None,
    ) -> Answer | Later:
        """``identity``: the connection's (a TLS client certificate's), unless the request has a token."""
        if method not in mapping.API_METHODS:
            return mapping.error(HTTPStatus.METHOD_NOT_ALLOWED, "", [(b"Allow", mapping.ALLOW_API)])
        refusal = self._refusal(bearer_token(headers, request.query), request.path, peer, identity)
        if refusal is not None:
            return refusal
        path = request.path
        if path.startswith(b"jobs/"):
            return self._job(unquote_to_bytes(path[5:]))
        if path == b"history":
            return self._history(request.query)
        if path.startswith(b"results/"):
            function, _, unique = path[8:].partition(b"/")
            return self._result(unquote_to_bytes(function), unquote_to_bytes(unique))
        handler = self._routes.get(path)
        if handler is None:
            return json_answer({"error": "not found"}, HTTPStatus.NOT_FOUND)
        return handler()

    def _refusal(self, offered: bytes, path: bytes, peer: str, identity: Grant | None) -> Answer | None:
        """Why the API is not for this caller, or None. ``--http-token`` (the API's own token) opens it
        whole, as before identities; otherwise the caller's identity (its token, or anonymous) needs the
        admin class ``read``, and no tenant: the API shows every tenant's functions."""
        if self.token is not None and offered and hmac.compare_digest(offered, self.token):
            return None
        access = self.context.access
        if offered:
            grant = access.identity_for_token(offered)
            if grant is None:
                access.auth_failed("http", peer)
                return unauthorized("unknown token")
        elif identity is not None:
            grant = identity
        elif self.token is not None:
            return unauthorized("a bearer token is required")
        else:
            grant = access.anonymous
        if grant.unrestricted:
            return None
        try:
            access.admin(grant, "read", b"GET " + self.prefix + path, "http", peer)
        except Denied as refusal:
            return forbidden(refusal.text)
        if grant.tenant is not None:
            return forbidden(f"identity {grant.name} is tenant {grant.tenant.name}'s: the API shows every tenant")
        return None

    # -- endpoints

    def _dashboard(self) -> Answer:
        headers = [
            (b"Content-Type", b"text/html; charset=utf-8"),
            _NO_STORE,
            (b"Content-Security-Policy", b"default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"),
        ]
        return Answer(HTTPStatus.OK, headers, dashboard.PAGE)

    def _status(self) -> Answer:
        snapshot = self.context.admin.snapshot()
        return json_answer(
            {
                "version": snapshot["version"],
                "functions": snapshot["functions"],
                "poison_jobs": snapshot["poison_jobs"],
                "frontends": self.context.admin.frontend_states(),
                **({"cluster": snapshot["cluster"]} if "cluster" in snapshot else {}),  # shared mode
            }
        )

    def _workers(self) -> Answer:
        return json_answer({"workers": self.context.admin.snapshot()["connections"]})

    def _metrics(self) -> Answer:
        context = self.context
        admin = context.admin
        body = metrics.render(
            context.scheduler,
            context.connections,
            self.stats,
            admin.store_status(),
            admin.frontend_metrics(),
            admin.latency(),
            admin.hook_stats(),
        )
        return Answer(HTTPStatus.OK, [(b"Content-Type", metrics.CONTENT_TYPE), _NO_STORE], body)

    def _latency(self) -> Answer:
        return json_answer(
            {
                "window_seconds": latency.WINDOW,
                "functions": [
                    {
                        "name": _text(f.name),
                        "jobs": f.recent,
                        "wait_p50": f.wait_p50,
                        "wait_p99": f.wait_p99,
                        "run_p50": f.run_p50,
                        "run_p99": f.run_p99,
                    }
                    for f in self.context.admin.latency()
                ],
            }
        )

    def _history(self, query: bytes) -> Answer:
        """Filters: ``function`` (exact name), ``outcome``, ``since`` (epoch seconds), ``limit`` (default 100)."""
        args = {key.decode("utf-8", "replace"): values[0] for key, values in parse_qs(query).items()}
        try:
            since = float(args["since"]) if "since" in args else None
            limit = int(args.get("limit", b"100"))
        except ValueError:
            return json_answer({"error": "since must be a number and limit a whole number"}, HTTPStatus.BAD_REQUEST)
        outcome = _text(args["outcome"]) if "outcome" in args else None
        if outcome is not None and outcome not in OUTCOMES:
            return json_answer({"error": f"outcome must be one of {', '.join(OUTCOMES)}"}, HTTPStatus.BAD_REQUEST)
        entries, source = self.context.admin.history_from(
            function=args.get("function"), outcome=outcome, since=since, limit=limit
        )
        return json_answer(
            {
                "source": source,
                "jobs": [
                    {
                        "handle": _text(e.handle),
                        "function": _text(e.function),
                        "unique": _text(e.unique),
                        "priority": PRIORITY_NAMES[e.priority],
                        "background": e.background,
                        "submitted": e.submitted,
                        "started": e.started or None,
                        "finished": e.finished,
                        "wait": e.wait,
                        "run": e.run,
                        "outcome": e.outcome,
                        "exception": _text(e.exception),
                        "worker": _text(e.worker),
                    }
                    for e in entries
                ],
            }
        )

    def _job(self, handle: bytes) -> Answer | Later:
        """GET_STATUS as JSON. Unknown means finished or never existed, as in the binary protocol. A job this
        gateway handed to the cluster (shared mode) is answered later, from its row: known and running (held
        by a gateway), with no more detail."""
        scheduler = self.context.scheduler
        job = scheduler.job_snapshot(handle)
        if job is None:
            later = Later()
            if scheduler.status_elsewhere(
                handle, lambda known, running: later.resolve(_elsewhere(handle, known, running))
            ):
                return later
            return json_answer({"handle": _text(handle), "known": False}, HTTPStatus.NOT_FOUND)
        return json_answer(
            {
                "handle": _text(job.handle),
                "known": True,
                "running": job.running,
                "numerator": job.numerator,
                "denominator": job.denominator,
                "function": _text(job.function),
                "unique": _text(job.unique),
                "priority": PRIORITY_NAMES[job.priority],
                "background": job.background,
                "waiting_clients": job.waiting_clients,
                "retries": job.retries,
                "worker_deaths": job.worker_deaths,
            }
        )

    def _result(self, function: bytes, unique: bytes) -> Answer:
        """A background job's kept result (gearman_gateway/results.py), answered as a foreground job's
        would be (docs/http.md); 404 with the job's state while it is queued or running, or unknown."""
        results = self.context.results
        result = results.get((function, unique)) if results is not None and unique else None
        if result is None:
            job = self.context.scheduler.job_snapshot_by_unique(unique, function) if unique else None
            state = "unknown" if job is None else "running" if job.running else "queued"
            body = {"function": _text(function), "unique": _text(unique), "known": False, "state": state}
            return json_answer(body, HTTPStatus.NOT_FOUND)
        if not result.failed:
            command, body = b"WORK_COMPLETE", result.data
        elif result.data and self.context.settings.exceptions:
            command, body = b"WORK_EXCEPTION", result.data
        else:
            command, body = b"WORK_FAIL", b""
        headers = [(b"Content-Type", b"application/octet-stream"), _NO_STORE, (b"X-Gearman-Command", command)]
        return Answer(HTTPStatus.OK, headers, body)
