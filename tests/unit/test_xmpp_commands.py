"""The XMPP frontend's sans-IO command layer: grammar, access rules, rate limit, rooms, reply formatting,
ad-hoc forms. No XMPP server: messages are values, time is a fake clock."""

from __future__ import annotations

import base64
import logging
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gearman_gateway.scheduler import Priority
from protocols.xmpp import adhoc, grammar, replies
from protocols.xmpp.actions import (
    Action,
    ChatMessage,
    FunctionCounts,
    ListFunctions,
    LogEvent,
    QueryStatus,
    Reply,
    ReplyKind,
    Submit,
)
from protocols.xmpp.commands import MIN_MAX_REPLY, ChatCommands, ChatSettings

ALICE = "alice@example.org/phone"
ROOM = "ops@conference.example.org"
ANON_ROOM = "lobby@anon.example.org"
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: FakeClock | None = None, **overrides: object) -> ChatCommands:
    options: dict[str, object] = {
        "jid": "gearbot@example.org",
        "allowed": ["alice@example.org", "friends.example.org", ANON_ROOM],
        "rooms": {ROOM: "gearbot", ANON_ROOM: "gearbot"},
    }
    options.update(overrides)
    return ChatCommands(ChatSettings(**options), clock or FakeClock())  # type: ignore[arg-type]


def msg(body: str, sender: str = ALICE, **kwargs: object) -> ChatMessage:
    return ChatMessage(sender, body, **kwargs)  # type: ignore[arg-type]


def only(actions: list[Action], kind: type) -> list:
    return [action for action in actions if isinstance(action, kind)]


def one_reply(actions: list[Action]) -> Reply:
    found = only(actions, Reply)
    assert len(found) == 1, actions
    return found[0]


def submit_of(actions: list[Action]) -> Submit:
    found = only(actions, Submit)
    assert len(found) == 1 and not only(actions, Reply), actions
    return found[0]


def settle(commands: ChatCommands, actions: list[Action]) -> list[Reply]:
    """Play the adapter: carry out every request at once, successfully; all replies, in order."""
    out: list[Reply] = []
    for action in actions:
        if isinstance(action, Reply):
            out.append(action)
        elif isinstance(action, Submit):
            out += only(commands.job_created(action.request_id, b"H:gw:%d" % action.request_id), Reply)
            out += only(commands.job_complete(action.request_id, action.payload[::-1]), Reply)
        elif isinstance(action, QueryStatus):
            out += only(commands.status_result(action.request_id, False, False, 0, 0), Reply)
        elif isinstance(action, ListFunctions):
            out += only(commands.functions_result(action.request_id, [FunctionCounts(b"reverse", 1, 0, 2)]), Reply)
    return out


# -- grammar


@pytest.mark.parametrize(
    ("text", "function", "payload"),
    [
        ("reverse Hello", b"reverse", b"Hello"),
        ("reverse  two  spaces ", b"reverse", b" two  spaces "),  # one separator; the rest verbatim
        ("reverse", b"reverse", b""),
        ("reverse\n", b"reverse", b""),
        ("reverse hi\n", b"reverse", b"hi"),  # one trailing newline goes (command-line clients add it)
        ("reverse hi\n\n", b"reverse", b"hi\n"),  # only one
        ("reverse\nline 1\nline 2\n", b"reverse", b"line 1\nline 2"),
        ("reverse\tx", b"reverse", b"x"),
        ("  \n Reverse Hi", b"Reverse", b"Hi"),  # function names keep their case
        ("résumé ünïcödé ✓", "résumé".encode(), "ünïcödé ✓".encode()),
        ("run status x", b"status", b"x"),
        ("run help", b"help", b""),
        ("bg run bg y", b"bg", b"y"),
    ],
)
def test_foreground_job_grammar(text: str, function: bytes, payload: bytes) -> None:
    parsed = grammar.parse(text)
    assert isinstance(parsed, grammar.JobCommand), parsed
    assert (parsed.function, parsed.payload) == (function, payload)


@pytest.mark.parametrize(
    ("text", "priority", "background"),
    [
        ("bg resize cat.jpg", Priority.NORMAL, True),
        ("high resize cat.jpg", Priority.HIGH, False),
        ("low resize cat.jpg", Priority.LOW, False),
        ("high bg resize cat.jpg", Priority.HIGH, True),
        ("bg high resize cat.jpg", Priority.HIGH, True),
        ("BG  Low\tresize cat.jpg", Priority.LOW, True),
        ("Low bg resize cat.jpg", Priority.LOW, True),
    ],
)
def test_bg_and_priority_prefixes_in_any_order(text: str, priority: Priority, background: bool) -> None:
    parsed = grammar.parse(text)
    assert parsed == grammar.JobCommand(b"resize", b"cat.jpg", priority, background)


@pytest.mark.parametrize("text", ["help", "HELP", "?", "  help me please", "Help"])
def test_help(text: str) -> None:
    assert grammar.parse(text) == grammar.HelpCommand()


def test_functions_and_status() -> None:
    assert grammar.parse("functions") == grammar.ListCommand()
    assert grammar.parse("Functions\n") == grammar.ListCommand()
    assert grammar.parse("status H:gw:12\n") == grammar.StatusCommand(b"H:gw:12")
    assert grammar.parse("STATUS   H:gw:12  ") == grammar.StatusCommand(b"H:gw:12")
    assert grammar.parse("bg status x") == grammar.JobCommand(b"status", b"x", Priority.NORMAL, True)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty message"),
        ("  \n\t", "empty message"),
        ("bg", "needs a function"),
        ("high bg  ", "needs a function"),
        ("run", "run needs a function"),
        ("high low x", "high and low together"),
        ("bg bg x", "bg given twice"),
        ("status", "status needs a job handle"),
        ("status a b", "one job handle"),
        ("status " + "H" * 64, "not a job handle"),
        ("f" * 513 + " x", "function name too long"),
        ("re\x00verse x", "control characters"),
        ("reverse \ud800", "payload is not valid text"),
    ],
)
def test_bad_commands_say_why(text: str, reason: str) -> None:
    parsed = grammar.parse(text)
    assert isinstance(parsed, grammar.BadCommand) and reason in parsed.reason, parsed


def test_function_name_of_512_bytes_is_accepted() -> None:
    assert isinstance(grammar.parse("f" * 512), grammar.JobCommand)


# -- direct messages


def test_foreground_job_round_trip_keeps_thread_and_type() -> None:
    commands = make()
    submit = submit_of(commands.handle_message(msg("reverse Hello", thread="t-7", mtype="normal")))
    assert (submit.function, submit.payload, submit.priority, submit.background) == (
        b"reverse", b"Hello", Priority.NORMAL, False,
    )  # fmt: skip
    assert submit.require_worker and submit.timeout is None
    assert commands.job_created(submit.request_id, b"H:gw:1") == []  # foreground: wait for the result
    reply = one_reply(commands.job_complete(submit.request_id, b"olleH"))
    assert reply == Reply(ALICE, "olleH", "normal", "t-7", ReplyKind.RESULT, submit.request_id, True, False)
    assert commands.pending == 0
    assert commands.job_complete(submit.request_id, b"again") == []  # done: later events say nothing


def test_no_worker_and_timeout_settings_reach_the_submit() -> None:
    commands = make(no_worker="wait", job_timeout=30.0)
    fg = submit_of(commands.handle_message(msg("reverse x")))
    assert (fg.require_worker, fg.timeout) == (False, 30.0)
    bg = submit_of(make(job_timeout=30.0).handle_message(msg("bg reverse x")))
    assert (bg.require_worker, bg.timeout) == (False, None)  # a background job is queued for later anyway


def test_background_job_replies_with_its_handle_last() -> None:
    commands = make()
    submit = submit_of(commands.handle_message(msg("high bg resize cat.jpg")))
    assert (submit.priority, submit.background) == (Priority.HIGH, True)
    reply = one_reply(commands.job_created(submit.request_id, b"H:gw:42"))
    assert reply.text == "queued resize (high) as H:gw:42" and reply.text.split()[-1] == "H:gw:42"
    assert reply.kind == ReplyKind.RESULT and reply.final
    assert commands.job_data(submit.request_id, b"x") == [] and commands.pending == 0


def test_interim_data_warning_and_progress_at_most_once_a_second() -> None:
    clock = FakeClock()
    commands = make(clock)
    rid = submit_of(commands.handle_message(msg("wc big.txt"))).request_id
    commands.job_created(rid, b"H:gw:1")
    data = one_reply(commands.job_data(rid, b"1000 lines"))
    assert (data.text, data.kind, data.final) == ("[data] 1000 lines", ReplyKind.DATA, False)
    warning = one_reply(commands.job_warning(rid, b"disk almost full"))
    assert (warning.text, warning.kind, warning.final) == ("[warning] disk almost full", ReplyKind.WARNING, False)
    assert one_reply(commands.job_status(rid, 42, 100)).text == "[progress] 42/100"
    clock.now += 0.5
    assert commands.job_status(rid, 43, 100) == []  # within the second: dropped
    clock.now += 0.5
    progress = one_reply(commands.job_status(rid, 44, 100))
    assert (progress.text, progress.kind, progress.final) == ("[progress] 44/100", ReplyKind.PROGRESS, False)
    other = submit_of(commands.handle_message(msg("wc other.txt"))).request_id
    assert one_reply(commands.job_status(other, 1, 2)).text == "[progress] 1/2"  # per job, not per sender
    assert one_reply(commands.job_complete(rid, b"12345")).text == "12345"


def test_failures_are_clear_and_final() -> None:
    commands = make(job_timeout=30.0)

    def rid() -> int:
        return submit_of(commands.handle_message(msg("reverse x"))).request_id

    cases = [
        (lambda r: commands.job_fail(r), "[failed] reverse: the worker reported failure"),
        (lambda r: commands.job_exception(r, b"ValueError: bad"), "[failed] reverse raised an exception: "),
        (lambda r: commands.job_refused(r, "Job queue is full"), "[failed] reverse not queued: Job queue is full"),
        (lambda r: commands.no_worker(r), "[failed] no worker serves reverse now; not run"),
    ]
    for call, start in cases:
        reply = one_reply(call(rid()))
        assert reply.text.startswith(start) and reply.kind == ReplyKind.FAILED and reply.final, reply
    assert "ValueError: bad" in one_reply(commands.job_exception(rid(), b"ValueError: bad")).text
    timed = rid()
    commands.job_created(timed, b"H:gw:77")
    text = one_reply(commands.job_timeout(timed)).text
    assert text.startswith("[failed] reverse still running after 30 s") and "status H:gw:77" in text
    assert commands.job_complete(timed, b"late") == []  # the bot stopped waiting: the late result is dropped
    assert commands.pending == 0


def test_status_answers() -> None:
    commands = make()

    def ask(known: bool, running: bool, num: int, den: int) -> str:
        query = only(commands.handle_message(msg("status H:gw:5")), QueryStatus)[0]
        assert query.handle == b"H:gw:5"
        return one_reply(commands.status_result(query.request_id, known, running, num, den)).text

    assert ask(True, True, 42, 100) == "H:gw:5: running, 42/100"
    assert ask(True, False, 0, 0) == "H:gw:5: queued, 0/0"
    assert ask(False, False, 0, 0).startswith("H:gw:5: unknown")


def test_functions_answer_sorted_and_bounded() -> None:
    commands = make()
    rid = only(commands.handle_message(msg("functions")), ListFunctions)[0].request_id
    rows = [FunctionCounts(b"resize", 0, 0, 1), FunctionCounts(b"reverse", 3, 1, 2)]
    assert one_reply(commands.functions_result(rid, rows)).text == (
        "resize: 0 queued, 0 running, 1 workers\nreverse: 3 queued, 1 running, 2 workers"
    )
    rid = only(commands.handle_message(msg("functions")), ListFunctions)[0].request_id
    assert one_reply(commands.functions_result(rid, [])).text == "no functions known"
    rid = only(commands.handle_message(msg("functions")), ListFunctions)[0].request_id
    many = [FunctionCounts(b"f%05d" % i, i, 0, 1) for i in range(5000)]
    text = one_reply(commands.functions_result(rid, many)).text
    assert len(text.encode()) <= commands.settings.max_reply
    shown = text.count(" queued, ")
    assert 100 < shown < 5000 and text.endswith(f"... and {5000 - shown} more")


def test_help_lists_every_command() -> None:
    text = one_reply(make().handle_message(msg("help"))).text
    for word in ("bg", "high", "low", "status", "functions", "help", "run"):
        assert re.search(rf"\b{word}\b", text), word


def test_bad_command_gets_one_error_reply() -> None:
    actions = make().handle_message(msg("high low x"))
    assert one_reply(actions).text == "[error] high and low together: choose one"
    assert only(actions, LogEvent)[0].event == "bad_command" and not only(actions, Submit)


# -- results that are not plain short text


def result_text(data: bytes, **overrides: object) -> str:
    commands = make(**overrides)
    rid = submit_of(commands.handle_message(msg("f x"))).request_id
    reply = one_reply(commands.job_complete(rid, data))
    assert len(reply.text.encode()) <= commands.settings.max_reply and not NOT_XML.search(reply.text)
    return reply.text


@pytest.mark.parametrize("data", [b"\xff\xfe\x00\x01", b"a\x00b", "x\ufffey".encode(), bytes(range(256))])
def test_binary_or_non_xml_result_comes_as_base64_with_its_size(data: bytes) -> None:
    text = result_text(data)
    head, encoded = text.split("\n", 1)
    assert head == f"[binary] {len(data)} bytes, base64:"
    assert base64.b64decode(encoded) == data


def test_long_text_result_is_cut_with_a_note() -> None:
    data = ("é" * 3000).encode()  # 6000 bytes of two-byte characters
    text = result_text(data, max_reply=MIN_MAX_REPLY)
    shown, note = text.rsplit("\n", 1)
    assert data.startswith(shown.encode()) and len(shown) > 400
    assert note == f"[truncated] 6000 bytes in all, the first {len(shown.encode())} shown"


def test_long_binary_result_says_its_size_only() -> None:
    text = result_text(b"\xff" * 5000, max_reply=MIN_MAX_REPLY)
    assert text.startswith("[binary] 5000 bytes") and "not shown" in text


def test_result_of_exactly_max_reply_bytes_is_whole() -> None:
    assert result_text(b"a" * MIN_MAX_REPLY, max_reply=MIN_MAX_REPLY) == "a" * MIN_MAX_REPLY


def test_empty_result_is_still_a_message() -> None:
    assert result_text(b"") == "(empty result)"


# -- access control


@pytest.mark.parametrize("sender", ["alice@example.org/x", "ALICE@Example.Org/Phone", "bob@friends.example.org/y"])
def test_allowed_senders(sender: str) -> None:
    assert only(make().handle_message(msg("reverse x", sender=sender)), Submit)


@pytest.mark.parametrize("sender", ["eve@example.org/x", "bob@sub.friends.example.org/x", "mallory@evil.org/x"])
def test_stranger_gets_one_refusal_then_silence_and_every_message_is_logged(sender: str) -> None:
    commands = make()
    first = commands.handle_message(msg("reverse x", sender=sender))
    reply = one_reply(first)
    assert reply.kind == ReplyKind.REFUSED and reply.to == sender and reply.text.startswith("[refused]")
    assert [(e.event, e.level) for e in only(first, LogEvent)] == [("refused", logging.WARNING)]
    for body in ("reverse x", "help", "status H:x:1"):
        again = commands.handle_message(msg(body, sender=sender.replace("/x", "/other")))
        assert not only(again, Reply) and not only(again, Submit)
        assert [e.event for e in only(again, LogEvent)] == ["refused"]


def test_empty_allowed_list_allows_nobody() -> None:
    commands = make(allowed=[])
    assert one_reply(commands.handle_message(msg("reverse x"))).kind == ReplyKind.REFUSED


def test_allowed_entries_are_normalised() -> None:
    commands = make(allowed=[" Alice@Example.ORG/laptop ", "@Friends.Example.org", ""])
    assert only(commands.handle_message(msg("reverse x")), Submit)
    assert only(commands.handle_message(msg("reverse x", sender="zed@friends.example.org/z")), Submit)


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (msg("reverse x", mtype="error"), "error stanza"),
        (msg("reverse x", mtype="headline"), "headline"),
        (msg("reverse x", delayed=True), "delayed"),
        (msg("reverse x", sender="gearbot@example.org/other-session"), "own message"),
        (msg("reverse x", sender="example.org"), "server or component"),
        (msg("reverse x", sender=""), "no sender"),
        (msg("gearbot: reverse x", sender="other@conference.example.org/al", mtype="groupchat"), "not in"),
    ],
)
def test_messages_that_are_not_commands_are_ignored(message: ChatMessage, why: str) -> None:
    actions = make().handle_message(message)
    assert [type(a) for a in actions] == [LogEvent] and actions[0].event == "ignored" and why in actions[0].text


def test_message_without_body_is_silently_ignored() -> None:
    assert make().handle_message(msg("")) == []  # chat states, receipts


# -- rate limit


def test_over_the_rate_limit_slow_down_and_no_job_until_tokens_refill() -> None:
    clock = FakeClock()
    commands = make(clock, rate_limit=3)
    for _ in range(3):
        assert only(commands.handle_message(msg("reverse x")), Submit)
    actions = commands.handle_message(msg("reverse x"))
    assert not only(actions, Submit)
    assert one_reply(actions).kind == ReplyKind.SLOW_DOWN and "3 messages a minute" in one_reply(actions).text
    assert only(actions, LogEvent)[0].event == "rate_limited"
    assert only(commands.handle_message(msg("reverse x", sender="bob@friends.example.org/b")), Submit)  # per sender
    clock.now += 19.0  # 3 a minute: one token every 20 s
    assert one_reply(commands.handle_message(msg("help"))).kind == ReplyKind.SLOW_DOWN
    clock.now += 1.0
    assert only(commands.handle_message(msg("reverse x")), Submit)
    assert one_reply(commands.handle_message(msg("reverse x"))).kind == ReplyKind.SLOW_DOWN


def test_rate_limit_zero_means_none() -> None:
    commands = make(rate_limit=0)
    assert all(only(commands.handle_message(msg("reverse x")), Submit) for _ in range(500))


# -- rooms


def room_msg(body: str, nick: str = "alice", room: str = ROOM, real_jid: str | None = None, **kw: object):
    return ChatMessage(f"{room}/{nick}", body, "groupchat", real_jid=real_jid, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body", ["gearbot: reverse hi", "gearbot, reverse hi", "Gearbot:reverse hi", " gearbot:  reverse hi"]
)
def test_room_message_addressed_to_the_bot_runs_and_is_answered_in_the_room(body: str) -> None:
    commands = make()
    actions = commands.handle_message(room_msg(body, real_jid="alice@example.org/phone", thread="th"))
    submit = submit_of(actions)
    assert (submit.function, submit.payload) == (b"reverse", b"hi")
    reply = one_reply(commands.job_complete(submit.request_id, b"ih"))
    assert (reply.to, reply.mtype, reply.text, reply.thread) == (ROOM, "groupchat", "alice: ih", "th")


@pytest.mark.parametrize("body", ["reverse hi", "gearbotx: reverse hi", "hey gearbot: reverse", "gearbot reverse hi"])
def test_room_talk_not_addressed_to_the_bot_is_ignored(body: str) -> None:
    assert make().handle_message(room_msg(body, real_jid="alice@example.org/phone")) == []


def test_room_echo_of_the_bot_and_room_notices_are_ignored() -> None:
    commands = make()
    for message in (room_msg("gearbot: x", nick="gearbot"), ChatMessage(ROOM, "gearbot: x", "groupchat")):
        actions = commands.handle_message(message)
        assert [a.event for a in actions if isinstance(a, LogEvent)] == ["ignored"] and len(actions) == 1


def test_room_history_is_never_run() -> None:
    actions = make().handle_message(room_msg("gearbot: reverse x", real_jid="alice@example.org/p", delayed=True))
    assert not only(actions, Submit) and not only(actions, Reply)


def test_room_real_jid_is_what_is_checked() -> None:
    commands = make()  # ROOM itself is not allowed, its service not either
    ok = commands.handle_message(room_msg("gearbot: reverse x", real_jid="alice@example.org/phone"))
    assert only(ok, Submit)
    refused = commands.handle_message(room_msg("gearbot: reverse x", nick="eve", real_jid="eve@example.org/e"))
    reply = one_reply(refused)
    assert (reply.kind, reply.to, reply.text.startswith("eve: [refused]")) == (ReplyKind.REFUSED, ROOM, True)
    hidden = commands.handle_message(room_msg("gearbot: reverse x", nick="carol"))  # real JID not shown
    assert one_reply(hidden).kind == ReplyKind.REFUSED


def test_room_hiding_real_jids_must_itself_be_allowed() -> None:
    commands = make()  # ANON_ROOM is in allowed
    assert only(commands.handle_message(room_msg("gearbot: reverse x", nick="anyone", room=ANON_ROOM)), Submit)
    # where the room shows a real JID, that JID is checked, even in an allowed room
    shown = commands.handle_message(room_msg("gearbot: reverse x", nick="eve", room=ANON_ROOM, real_jid="eve@e.org"))
    assert one_reply(shown).kind == ReplyKind.REFUSED


def test_private_message_through_a_room_is_answered_privately() -> None:
    commands = make()
    sender = f"{ANON_ROOM}/anyone"
    submit = submit_of(commands.handle_message(ChatMessage(sender, "reverse hi", "chat")))
    reply = one_reply(commands.job_complete(submit.request_id, b"ih"))
    assert (reply.to, reply.mtype, reply.text) == (sender, "chat", "ih")


def test_set_nick_changes_what_addresses_the_bot() -> None:
    commands = make()
    commands.set_nick(ROOM, "gearbot2")
    assert commands.handle_message(room_msg("gearbot: reverse x", real_jid="alice@example.org/p")) == []
    assert only(commands.handle_message(room_msg("gearbot2: reverse x", real_jid="alice@example.org/p")), Submit)
    commands.leave(ROOM)
    assert only(commands.handle_message(room_msg("gearbot2: x")), LogEvent)[0].event == "ignored"


# -- ad-hoc commands


def test_adhoc_forms_are_complete() -> None:
    assert [form.node for form in adhoc.COMMANDS] == ["functions", "submit", "status"]
    assert [f.var for f in adhoc.SUBMIT_JOB.fields] == ["function", "payload", "priority", "background"]
    assert [f.var for f in adhoc.JOB_STATUS.fields] == ["handle"]
    assert adhoc.LIST_FUNCTIONS.fields == ()
    priority = adhoc.SUBMIT_JOB.fields[2]
    assert priority.ftype == "list-single" and [o.value for o in priority.options] == ["high", "normal", "low"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"function": "reverse", "payload": ["line 1", "line 2"]}, (b"reverse", b"line 1\nline 2", 1, False)),
        (
            {"function": " reverse ", "payload": "x", "priority": "high", "background": True},
            (b"reverse", b"x", 0, True),
        ),
        ({"function": "my func", "priority": "LOW", "background": "1"}, (b"my func", b"", 2, True)),
        ({"function": "f", "payload": None, "priority": None, "background": "false"}, (b"f", b"", 1, False)),
    ],
)
def test_adhoc_submit_values(values: dict, expected: tuple) -> None:
    parsed = adhoc.parse_values(adhoc.NODE_SUBMIT, values)
    assert isinstance(parsed, grammar.JobCommand), parsed
    assert (parsed.function, parsed.payload, parsed.priority, parsed.background) == expected


@pytest.mark.parametrize(
    ("node", "values", "reason"),
    [
        ("submit", {}, "function name is required"),
        ("submit", {"function": "f", "priority": "urgent"}, "priority must be"),
        ("submit", {"function": "f", "background": "maybe"}, "background must be"),
        ("submit", {"function": "a\tb"}, "control characters"),
        ("status", {"handle": ""}, "needs a job handle"),
        ("nope", {}, "unknown command"),
    ],
)
def test_adhoc_bad_values(node: str, values: dict, reason: str) -> None:
    parsed = adhoc.parse_values(node, values)
    assert isinstance(parsed, grammar.BadCommand) and reason in parsed.reason, parsed


def test_adhoc_runs_through_the_same_rules_and_replies_as_adhoc() -> None:
    commands = make()
    submit = submit_of(commands.adhoc("submit", ALICE, {"function": "reverse", "payload": "hi"}))
    assert (submit.function, submit.payload, submit.background) == (b"reverse", b"hi", False)
    reply = one_reply(commands.job_complete(submit.request_id, b"ih"))
    assert (reply.text, reply.adhoc, reply.final, reply.request_id) == ("ih", True, True, submit.request_id)
    query = only(commands.adhoc("status", ALICE, {"handle": "H:gw:1"}), QueryStatus)[0]
    assert one_reply(commands.status_result(query.request_id, True, False)).adhoc
    listing = only(commands.adhoc("functions", ALICE, {}), ListFunctions)[0]
    assert one_reply(commands.functions_result(listing.request_id, [])).text == "no functions known"
    bad = one_reply(commands.adhoc("submit", ALICE, {}))
    assert bad.adhoc and bad.kind == ReplyKind.ERROR and bad.request_id is None
    for _ in range(2):  # a form must always be answered: refused every time
        refused = one_reply(commands.adhoc("functions", "eve@example.org/e", {}))
        assert refused.adhoc and refused.kind == ReplyKind.REFUSED


# -- settings


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"jid": "example.org"}, "user@domain"),
        ({"max_reply": MIN_MAX_REPLY - 1}, "max_reply"),
        ({"rate_limit": -1}, "rate_limit"),
        ({"job_timeout": 0}, "job_timeout"),
        ({"no_worker": "queue"}, "no_worker"),
    ],
)
def test_settings_are_validated(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(**overrides)


# -- never raises, one reply per message (hypothesis)

SENDERS = st.one_of(
    st.text(max_size=40),
    st.sampled_from([ALICE, "eve@example.org/x", "gearbot@example.org/r", "example.org", f"{ROOM}/al", ROOM]),
    st.builds(lambda n, r: f"{n}@friends.example.org/{r}", st.text(min_size=1, max_size=10), st.text(max_size=10)),
)
TYPES = st.sampled_from(["chat", "normal", "groupchat", "headline", "error", "", "weird"])
BODIES = st.one_of(
    st.text(max_size=300),
    st.builds(
        lambda pre, rest: pre + rest,
        st.sampled_from(["", "gearbot: ", "bg ", "high bg ", "run ", "status ", "low ", "help", "functions"]),
        st.text(max_size=100),
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sender=SENDERS,
    body=BODIES,
    mtype=TYPES,
    thread=st.one_of(st.none(), st.text(max_size=10)),
    delayed=st.booleans(),
    real_jid=st.one_of(st.none(), st.text(max_size=30), st.just("alice@example.org/x")),
)
def test_any_message_never_raises_and_gets_at_most_one_reply(
    sender: str, body: str, mtype: str, thread: str | None, delayed: bool, real_jid: str | None
) -> None:
    commands = make(max_reply=MIN_MAX_REPLY)
    actions = commands.handle_message(ChatMessage(sender, body, mtype, thread, delayed, real_jid))
    assert not any(isinstance(a, LogEvent) and a.event == "internal_error" for a in actions), actions
    out = settle(commands, actions)
    assert len([r for r in out if r.final]) <= 1
    for reply in out:
        assert len(reply.text.encode("utf-8")) <= MIN_MAX_REPLY and not NOT_XML.search(reply.text)


@settings(max_examples=400, deadline=None)
@given(body=BODIES.filter(bool), resource=st.text(max_size=20), thread=st.one_of(st.none(), st.text(max_size=5)))
def test_allowed_direct_message_gets_exactly_one_reply(body: str, resource: str, thread: str | None) -> None:
    commands = make()
    sender = f"alice@example.org/{resource}" if resource else "alice@example.org"
    actions = commands.handle_message(ChatMessage(sender, body, "chat", thread))
    out = settle(commands, actions)
    assert len(out) == 1, (actions, out)
    assert (out[0].to, out[0].thread, out[0].final) == (sender, thread, True)
    assert commands.pending == 0


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), limit=st.integers(MIN_MAX_REPLY, 4000), nick=st.text(max_size=40))
def test_any_job_output_fits_the_reply_limit_as_xml_text(data: bytes, limit: int, nick: str) -> None:
    commands = make(max_reply=limit)
    for event in ("complete", "data", "warning", "exception"):
        actions = commands.handle_message(room_msg("gearbot: f x", nick=nick or "n", real_jid=ALICE))
        submits = only(actions, Submit)
        if not submits:  # a nick that is the bot's own, or empty: ignored, which is also fine
            continue
        rid = submits[0].request_id
        if event == "complete":
            actions = commands.job_complete(rid, data)
        elif event == "data":
            actions = commands.job_data(rid, data)
        elif event == "warning":
            actions = commands.job_warning(rid, data)
        else:
            actions = commands.job_exception(rid, data)
        reply = one_reply(actions)
        assert len(reply.text.encode()) <= limit and not NOT_XML.search(reply.text)
        if event == "complete" and len(data) + len((nick or "n") + ": ") <= limit:
            try:
                text = data.decode()
            except UnicodeDecodeError:
                continue
            if data and not NOT_XML.search(text) and not NOT_XML.search(nick or "n"):
                assert reply.text == f"{nick or 'n'}: {text}"  # short valid text: verbatim


def test_result_methods_ignore_unknown_requests() -> None:
    commands = make()
    for call in (
        lambda: commands.job_created(99, b"H"),
        lambda: commands.job_data(99, b""),
        lambda: commands.job_warning(99, b""),
        lambda: commands.job_status(99, 1, 2),
        lambda: commands.job_complete(99, b""),
        lambda: commands.job_fail(99),
        lambda: commands.job_exception(99, b""),
        lambda: commands.job_refused(99, "x"),
        lambda: commands.no_worker(99),
        lambda: commands.job_timeout(99),
        lambda: commands.status_result(99, True, True, 1, 2),
        lambda: commands.functions_result(99, []),
    ):
        assert call() == []


def test_a_bug_becomes_a_log_event_not_an_exception() -> None:
    commands = make()
    rid = only(commands.handle_message(msg("functions")), ListFunctions)[0].request_id
    actions = commands.functions_result(rid, [None])  # type: ignore[list-item]  # not a FunctionCounts
    assert [(a.event, a.level) for a in actions if isinstance(a, LogEvent)] == [("internal_error", logging.ERROR)]


def test_replies_module_helpers() -> None:
    assert replies.clip("ééé", 6) == "ééé"
    assert replies.clip("ééé", 5) == "é…"  # the ellipsis takes 3 bytes
    assert replies.clip("ééé", 4) == "…"  # 1 byte left: no whole "é" (never half a character)
    assert replies.xml_safe("a\x00b\ufffe") == "a\ufffdb\ufffd"


FORM_VALUES = st.one_of(st.none(), st.booleans(), st.text(max_size=40), st.lists(st.text(max_size=20), max_size=4))


@settings(max_examples=300, deadline=None)
@given(
    node=st.one_of(st.sampled_from([form.node for form in adhoc.COMMANDS]), st.text(max_size=20)),
    values=st.dictionaries(
        st.one_of(st.sampled_from(["function", "payload", "priority", "background", "handle"]), st.text(max_size=8)),
        FORM_VALUES,
        max_size=6,
    ),
)
def test_any_adhoc_form_from_an_allowed_sender_gets_exactly_one_final_reply(node: str, values: dict) -> None:
    commands = make()
    actions = commands.adhoc(node, ALICE, values)
    assert not any(isinstance(a, LogEvent) and a.event == "internal_error" for a in actions), actions
    out = settle(commands, actions)
    assert len(out) == 1 and out[0].final and out[0].adhoc and out[0].to == ALICE, out
