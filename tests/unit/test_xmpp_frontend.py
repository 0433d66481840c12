"""The xmpp frontend without an XMPP server: its options (flags, YAML block, checks), the service that
carries the command layer's actions out against a real scheduler (the slixmpp side replaced by a recorder),
and its Prometheus families as /_gearman/metrics renders them."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

import protocols
from gearman_gateway.config import ConfigError, make_settings, parse_args
from gearman_gateway.connections import ConnectionRegistry
from gearman_gateway.scheduler import Scheduler
from gearman_gateway.security import Access
from protocols.http import metrics
from protocols.xmpp import options as xmpp_options
from protocols.xmpp.actions import ChatMessage, Reply
from protocols.xmpp.client import ConnectSpec
from protocols.xmpp.frontend import XmppService


def test_the_frontend_is_registered() -> None:
    frontend = protocols.load("xmpp")
    assert frontend.reactor is None  # slixmpp has its own thread and loop: any reactor will do


def test_flags(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    settings = parse_args(
        [
            "-r", "xmpp", "--xmpp-jid", "bot@example.org/gw", "--xmpp-password-file", str(password),
            "--xmpp-host", "127.0.0.1", "--xmpp-port", "5223", "--xmpp-tls", "direct", "--xmpp-ca-file", str(ca),
            "--xmpp-allow", "alice@example.org", "--xmpp-allow", "example.net", "--xmpp-rate-limit", "5",
        ]
    )  # fmt: skip
    assert settings.frontends == ["binary", "xmpp"]
    options = settings.options("xmpp")
    assert (options.jid, options.host, options.port, options.tls, options.ca_file) == (
        "bot@example.org/gw", "127.0.0.1", 5223, "direct", str(ca),
    )  # fmt: skip
    assert options.allowed == ["alice@example.org", "example.net"]
    assert options.rate_limit == 5
    assert xmpp_options.password(options) == "s3cret"  # the file's trailing newline is not part of it


def test_yaml_block_every_key(tmp_path: Path) -> None:
    block = {
        "jid": "bot@example.org",
        "password": "pw",
        "host": "xmpp.example.org",
        "port": 5222,
        "tls": "starttls",
        "allowed": ["alice@example.org", "ops@conference.example.org"],
        "rooms": [{"room": "ops@conference.example.org", "nick": "gearbot"}],
        "rate_limit": 10,
        "max_reply": 2048,
        "job_timeout": 60,
        "no_worker": "wait",
        "keepalive": 15.0,
    }
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"frontends": ["binary", "xmpp"], "xmpp": block}))
    options = parse_args(["--config", str(path)]).options("xmpp")
    for key, value in block.items():
        assert getattr(options, key) == value, key
    chat = xmpp_options.chat_settings(options)
    assert chat.rooms == {"ops@conference.example.org": "gearbot"}
    assert (chat.job_timeout, chat.no_worker, chat.max_reply) == (60, "wait", 2048)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tls": "plain", "host": "xmpp.example.org"}, "loopback"),
        ({"tls": "plain"}, "loopback"),
        ({"tls": "ssl"}, "starttls, direct, plain"),
        ({"jid": "example.org"}, "user@domain"),
        ({"password_file": "/nonexistent/pw"}, "cannot read"),
        ({"ca_file": "/nonexistent/ca"}, "no such file"),
        ({"rooms": [{"room": "ops"}]}, "room"),
        ({"rooms": [{"room": "ops@c.example.org", "nickname": "x"}]}, "room"),
        ({"max_reply": 100}, "at least"),
        ({"no_worker": "queue"}, "reply or wait"),
        ({"rate_limit": -1}, "rate_limit"),
        ({"port": 70000}, "0-65535"),
        ({"allowed": ["@"]}, "not a JID"),
        ({"keepalive": 0}, "keepalive"),
    ],
)
def test_bad_options_are_one_line(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        make_settings({"xmpp": values})
    assert "\n" not in str(caught.value) and "xmpp." in str(caught.value)


def test_plain_is_allowed_towards_loopback() -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        assert make_settings({"xmpp": {"tls": "plain", "host": host}}).options("xmpp").tls == "plain"


def test_password_file_keeps_all_but_one_newline(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("pass word \n")
    assert xmpp_options.read_password_file(str(path)) == "pass word "
    path.write_text("windows\r\n")
    assert xmpp_options.read_password_file(str(path)) == "windows"
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        xmpp_options.read_password_file(str(path))


def test_an_enabled_bot_needs_an_account() -> None:
    options = make_settings({}).options("xmpp")
    with pytest.raises(ValueError, match="xmpp.jid"):
        xmpp_options.chat_settings(options)
    with pytest.raises(ValueError, match="password"):
        xmpp_options.password(options)


# -- the service, with a real scheduler and the slixmpp side recorded


class FakeClient:
    def __init__(self) -> None:
        self.sent: list[Reply] = []
        self.adhoc: list[tuple[int, str]] = []
        self.started = False

    def start(self) -> None:
        self.started = True

    def stop(self, done: Any) -> None:
        done()

    def send(self, reply: Reply) -> None:
        self.sent.append(reply)

    def finish_adhoc(self, token: int, text: str) -> None:
        self.adhoc.append((token, text))


class Waker:
    def wake(self) -> None:
        pass

    def grabbed(self, job: Any) -> None:
        pass


class Reactor(Clock):
    def callFromThread(self, function: Any, *args: Any) -> None:  # noqa: N802
        function(*args)


def service(security: dict[str, Any] | None = None, **chat: Any) -> tuple[XmppService, FakeClient, Scheduler]:
    reactor = Reactor()
    scheduler = Scheduler(reactor, handle_prefix=b"H:t")
    context = SimpleNamespace(scheduler=scheduler, reactor=reactor, access=Access(security, scheduler))
    settings = xmpp_options.chat_settings(make_settings({"xmpp": {"jid": "bot@example.org", **chat}}).options("xmpp"))
    spec = ConnectSpec("bot@example.org", "pw", "127.0.0.1", 5222, "starttls")
    bot = XmppService(context, settings, spec)  # type: ignore[arg-type]
    fake = FakeClient()
    bot.client = fake  # type: ignore[assignment]
    return bot, fake, scheduler


def test_service_runs_a_job_and_replies() -> None:
    bot, client, scheduler = service(allowed=["example.org"])
    bot.on_message(ChatMessage("alice@example.org/phone", "reverse hi", thread="t"))
    assert client.sent[-1].text.startswith("[failed] no worker serves reverse")
    worker = scheduler.add_worker(Waker())
    scheduler.can_do(worker, b"reverse")
    bot.on_message(ChatMessage("alice@example.org/phone", "reverse hi", thread="t"))
    job = scheduler.grab(worker)
    scheduler.work_complete(worker, job.handle, b"ih")
    assert (client.sent[-1].to, client.sent[-1].text, client.sent[-1].thread) == ("alice@example.org/phone", "ih", "t")


def test_service_stops_waiting_after_job_timeout() -> None:
    bot, client, scheduler = service(allowed=["example.org"], job_timeout=5, no_worker="wait")
    bot.on_message(ChatMessage("alice@example.org/phone", "slow x"))
    assert client.sent == []
    bot.reactor.advance(5)
    assert "still running after 5 s" in client.sent[-1].text
    assert scheduler.totals().jobs == 0  # queued and nobody else waited for it: dropped, as for a lost client


def test_service_adhoc_answers_its_session() -> None:
    bot, client, scheduler = service(allowed=["example.org"])
    bot.on_adhoc(7, "functions", "alice@example.org/pc", {})
    assert client.adhoc == [(7, "no functions known")]
    bot.on_adhoc(8, "submit", "alice@example.org/pc", {"function": "f", "payload": "x", "background": True})
    assert client.adhoc[-1][0] == 8 and client.adhoc[-1][1].startswith("queued f as H:t")
    assert client.sent == []


def test_empty_allowed_warns_at_start(caplog: pytest.LogCaptureFixture) -> None:
    bot, client, _ = service()
    with caplog.at_level(logging.WARNING, logger="gearman_gateway.xmpp"):
        bot.startService()
    assert client.started
    assert "allowed is empty" in caplog.text


def test_a_sender_gets_its_jids_identity_permissions_and_tenant() -> None:
    security = {
        "anonymous": {"submit": ["public.*"]},
        "identities": {"alice": {"jids": ["alice@example.org"], "tenant": "acme", "submit": ["*"]}},
    }
    bot, client, scheduler = service(security, allowed=["example.org"], no_worker="wait")
    bot.on_message(ChatMessage("bob@example.org/pc", "private x"))
    assert client.sent[-1].text == "[failed] private not queued: identity anonymous may not submit private"
    bot.on_message(ChatMessage("bob@example.org/pc", "public.echo x"))
    bot.on_message(ChatMessage("alice@example.org/phone", "resize x"))
    assert {f.name for f in scheduler.function_snapshots()} == {b"public.echo", b"acme\0resize"}
    bot.on_message(ChatMessage("alice@example.org/phone", "functions"))
    assert "resize" in client.sent[-1].text and "public.echo" not in client.sent[-1].text
    assert bot.context.access.denials["anonymous", "xmpp", "submit"] == 1


def test_metrics_render_in_prometheus_format() -> None:
    bot, client, scheduler = service(allowed=["alice@example.org"])
    bot.on_state("connected", "bot@example.org via 127.0.0.1:5222 (starttls)")
    bot.on_message(ChatMessage("alice@example.org/phone", "help"))
    bot.on_message(ChatMessage("eve@example.org/phone", "help"))
    text = metrics.render(scheduler, ConnectionRegistry(), metrics.HttpStats(), None, bot.frontend_metrics())
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }
    assert found[("gearman_xmpp_connected", ())] == 1
    assert found[("gearman_xmpp_messages_received_total", ())] == 2
    assert found[("gearman_xmpp_messages_sent_total", (("kind", "answer"),))] == 1
    assert found[("gearman_xmpp_messages_sent_total", (("kind", "refused"),))] == 1
    assert found[("gearman_xmpp_events_total", (("event", "refused"),))] == 1
    assert found[("gearman_xmpp_sessions_total", ())] == 1
    assert bot.frontend_state().state == "connected"
