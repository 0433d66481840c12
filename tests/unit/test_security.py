"""gearman_gateway.security without sockets: tokens, the policy's checks, glob matching, tenants' names,
caps and limits, the admin commands' tenant view, and the guarded binary session (sans-IO)."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gearman_gateway.admin import Admin, AdminControls
from gearman_gateway.connections import ConnectionRegistry
from gearman_gateway.security import (
    ADMIN_CLASSES,
    Access,
    Denied,
    Grant,
    PolicyError,
    TokenError,
    hash_token,
    new_token,
    parse_policy,
)
from gearman_gateway.security.grants import MEMO_SIZE
from gearman_gateway.security.policy import Rules
from gearman_gateway.security.tokens import parse_hash
from protocols import FrontendContext
from protocols.binary.packets import Packet
from protocols.binary.session import GuardedSession, TenantSession
from tests.unit.test_binary_session import Host, Server

TOKEN = "a-token-that-is-long-enough-0123456789"


def policy(**identities: Any) -> dict[str, Any]:
    return {"anonymous": {"submit": ["pub.*"], "admin": ["read"]}, "identities": identities}


# -- tokens


def test_a_new_token_hashes_and_is_found_by_its_hash_only() -> None:
    token = new_token()
    assert len(token) >= 40
    stored = hash_token(token)
    assert stored.startswith("sha256:") and len(stored) == 71
    access = Access({"identities": {"app": {"token": stored}}})
    assert access.identity_for_token(token.encode()).name == "app"  # type: ignore[union-attr]
    assert access.identity_for_token(token.encode() + b"x") is None
    assert access.identity_for_token(b"") is None


@pytest.mark.parametrize("token", ["short", "has a space in it, so no", "tab\there-0123456789abcdef"])
def test_weak_or_unprintable_tokens_are_refused(token: str) -> None:
    with pytest.raises(TokenError):
        hash_token(token)


@pytest.mark.parametrize("stored", ["x", "sha256:abc", "md5:" + "0" * 64, "sha256:" + "g" * 64])
def test_a_bad_stored_hash_is_refused(stored: str) -> None:
    with pytest.raises(TokenError):
        parse_hash(stored)


# -- the policy block


def test_without_a_policy_anonymous_may_do_everything_unchecked() -> None:
    access = Access()
    assert access.anonymous.unrestricted
    assert access.submit(access.anonymous, b"anything", "test", "peer") == b"anything"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"bogus": 1}, "security: unknown key 'bogus'"),
        ({"anonymous": {"submit": "*", "admin": ["root"]}}, "security.anonymous.admin: unknown class 'root'"),
        ({"anonymous": {"work": [1]}}, "security.anonymous.work must be a list of non-empty texts"),
        ({"identities": {"anonymous": {}}}, "set under security.anonymous"),
        ({"identities": {"bad name": {}}}, "is not a valid name"),
        ({"identities": {"a": {"token": "nope"}}}, "security.identities.a.token must be sha256:"),
        ({"identities": {"a": {"tenant": "x/y"}}}, "security.identities.a.tenant: 'x/y' is not a valid name"),
        ({"identities": {"a": {"max_connections": -1}}}, "max_connections must be a whole number >= 0"),
        ({"tenants": {"t": {"max_queued_jobs": "many"}}}, "security.tenants.t.max_queued_jobs must be"),
        ({"identities": {"a": {"token": hash_token(TOKEN)}, "b": {"token": hash_token(TOKEN)}}}, "also a's"),
    ],
)
def test_policy_errors_name_the_key(block: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_policy(block)


def test_config_refuses_a_bad_security_block_in_one_sentence() -> None:
    from gearman_gateway.config import ConfigError, make_settings

    with pytest.raises(ConfigError, match="security.identities.a.admin: unknown class 'everything'"):
        make_settings({"security": {"identities": {"a": {"admin": ["everything"]}}}})


# -- globs: the whole name, case-sensitive


@pytest.mark.parametrize(
    ("glob", "name", "allowed"),
    [
        ("thumb.*", b"thumb.small", True),
        ("thumb.*", b"xthumb.small", False),  # anchored at the start (gear's regexes are not at the end)
        ("resize", b"resize2", False),  # and at the end
        ("resize", b"Resize", False),
        ("img-[0-9]", b"img-7", True),
        ("*", "caf\u00e9".encode(), True),
        ("caf?", "caf\u00e9".encode(), True),  # ? is one character, not one byte
    ],
)
def test_globs_match_whole_names(glob: str, name: bytes, allowed: bool) -> None:
    assert Grant("g", Rules(submit=(glob,))).may_submit(name) is allowed


@given(st.text(alphabet="ab.*?[]!-", max_size=6), st.text(alphabet="ab.-[]", max_size=8))
def test_globs_agree_with_fnmatchcase(glob: str, name: str) -> None:
    assert Grant("g", Rules(work=(glob,))).may_work(name.encode()) == fnmatch.fnmatchcase(name, glob)


def test_the_memo_stays_bounded() -> None:
    grant = Grant("g", Rules(submit=("f*",)))
    for n in range(MEMO_SIZE + 10):
        grant.may_submit(b"f%d" % n)
    assert len(grant._memo[0]) <= MEMO_SIZE


# -- checks, tenants, caps


def test_no_frontend_may_name_a_function_with_the_tenant_separator() -> None:
    access = Access()
    with pytest.raises(Denied):
        access.submit(access.anonymous, b"acme\0resize", "http", "peer")
    with pytest.raises(Denied):
        access.register(access.anonymous, b"acme\0resize", "memcached", "peer")


def test_tenant_names_are_prefixed_in_and_stripped_out() -> None:
    access = Access({"identities": {"a": {"tenant": "acme", "submit": ["*"], "work": ["r*"]}}})
    grant = access.identities["a"]
    assert access.submit(grant, b"resize", "test", "peer") == b"acme\0resize"
    assert access.register(grant, b"resize", "test", "peer") == b"acme\0resize"
    assert grant.outside(b"acme\0resize") == b"resize"
    assert grant.outside(b"resize") is None and grant.outside(b"globex\0resize") is None
    assert access.anonymous.outside(b"acme\0resize") == b"acme/resize"  # shown, qualified, to others
    with pytest.raises(Denied, match="may not work other"):
        access.register(grant, b"other", "test", "peer")
    assert access.denials["a", "test", "work"] == 1


def test_identity_and_tenant_connection_caps() -> None:
    access = Access(
        {
            "identities": {"a": {"tenant": "t", "max_connections": 2}, "b": {"tenant": "t"}},
            "tenants": {"t": {"max_connections": 3}},
        }  # fmt: skip
    )
    a, b = access.identities["a"], access.identities["b"]
    assert access.attach(a, "x", "p") is None and access.attach(a, "x", "p") is None
    assert "identity a has 2 connections open" in access.attach(a, "x", "p").text  # type: ignore[union-attr]
    assert access.attach(b, "x", "p") is None
    assert "tenant t has 3 connections open" in access.attach(b, "x", "p").text  # type: ignore[union-attr]
    access.detach(a)
    assert access.attach(b, "x", "p") is None
    assert access.attach(access.anonymous, "x", "p") is None  # anonymous: the global and per-IP caps' business


def test_certificate_and_jid_identities() -> None:
    access = Access({"identities": {"svc": {"certificates": ["svc.example.com"], "jids": ["Bot@Example.org"]}}})
    assert access.identity_for_certificate(["other", "svc.example.com"]).name == "svc"  # type: ignore[union-attr]
    assert access.identity_for_certificate(["nobody"]) is None
    assert access.identity_for_jid("bot@example.org/phone").name == "svc"
    assert access.identity_for_jid("eve@example.org") is access.anonymous


# -- admin commands: classes and the tenant's view


def test_admin_classes_and_the_tenant_view() -> None:
    server = Server()
    access = Access(
        {
            "anonymous": {"admin": ["read"]},
            "identities": {"acme": {"tenant": "acme", "admin": ["read", "maxqueue"]}, "ops": {"admin": ["all"]}},
        },
        server.scheduler,
    )
    admin = Admin(server.scheduler, ConnectionRegistry(), AdminControls(lambda g: None, str), access)
    server.scheduler.function(b"acme\0resize")
    server.scheduler.function(b"globex\0resize")
    server.scheduler.function(b"plain")
    acme, ops = access.identities["acme"], access.identities["ops"]
    assert admin.execute([b"status"], True, acme) == b"resize\t0\t0\t0\n.\n"
    assert admin.execute([b"status"], True, ops) == b"acme/resize\t0\t0\t0\nglobex/resize\t0\t0\t0\nplain\t0\t0\t0\n.\n"
    assert admin.execute([b"status"], True) == admin.execute([b"status"], True, ops)  # unchecked: the same view
    assert [f["name"] for f in admin.snapshot()["functions"]] == ["acme/resize", "globex/resize", "plain"]
    assert admin.execute([b"maxqueue", b"resize", b"5"], True, acme) == b"OK\r\n"
    assert server.scheduler.function(b"acme\0resize").maxqueue == [5, 5, 5]
    assert admin.execute([b"drop", b"function", b"resize"], True, acme).startswith(b"ERR PERMISSION_DENIED ")
    assert admin.execute([b"shutdown"], True, access.anonymous).startswith(b"ERR PERMISSION_DENIED ")
    assert set(ADMIN_CLASSES) == set(admin_classes())


def admin_classes() -> set[str]:
    from gearman_gateway.admin import COMMAND_CLASSES

    admin = Admin(Server().scheduler, ConnectionRegistry(), AdminControls(lambda g: None, str))
    assert set(admin._commands) == set(COMMAND_CLASSES)  # every command has a class
    return set(COMMAND_CLASSES.values())


# -- the guarded binary session (sans-IO)


class GuardedHost(Host, GuardedSession):  # Host first: its layout (a dict), so that a Host can become one
    pass


class TenantHost(Host, TenantSession):
    pass


for _host in (Host, GuardedHost, TenantHost):
    _host.guarded, _host.tenanted = GuardedHost, TenantHost


def guarded_server() -> tuple[Server, Access]:
    server = Server()
    access = Access(
        {"identities": {"acme": {"token": hash_token(TOKEN), "tenant": "acme", "submit": ["*"], "work": ["*"]}}},
        server.scheduler,
    )
    server.context = FrontendContext(
        server.context.settings, server.scheduler, server.context.admin, server.context.connections,
        server.clock, access=access,
    )  # fmt: skip
    return server, access


def test_a_held_grab_answers_a_tenant_worker_with_its_own_names() -> None:
    server, access = guarded_server()
    worker, client = server.session(), server.session()
    for session in (worker, client):
        session.request(Packet.OPTION_REQ, b"auth=" + TOKEN.encode())
        assert type(session) is TenantHost and session.grant is access.identities["acme"]
    worker.request(Packet.CAN_DO, b"resize")
    worker.request(Packet.GRAB_JOB_UNIQ)  # nothing queued: the grab is held until the end of the turn
    client.request(Packet.SUBMIT_JOB, b"resize", b"u", b"data")
    server.turns.end(3)
    assigned = [reply for reply in worker.replies() if reply[0] == "JOB_ASSIGN_UNIQ"]
    assert assigned == [("JOB_ASSIGN_UNIQ", b"H:t:1", b"resize", b"u", b"data")]
    assert server.scheduler.function_snapshot(b"acme\0resize") is not None


def test_a_token_after_can_do_is_refused() -> None:
    server, _ = guarded_server()
    session = server.session()
    session.request(Packet.CAN_DO, b"f")
    session.request(Packet.OPTION_REQ, b"auth=" + TOKEN.encode())
    server.turns.end(2)
    assert session.replies() == [("ERROR", b"INVALID_COMMAND", b"a token must come before the connection registers "
                                  b"functions (CAN_DO)")]  # fmt: skip
    assert type(session) is Host


def test_the_shipped_configs_load() -> None:
    from pathlib import Path

    from gearman_gateway.config import parse_args

    repo = Path(__file__).resolve().parents[2]
    hardened = parse_args(["--config", str(repo / "config" / "hardened.yaml"), "--config-file", ""])
    access = Access(hardened.security)
    assert not access.anonymous.may_submit(b"x") and not access.anonymous.may_admin("read")
    assert access.tenants["customer-a"].max_queued_jobs == 100000
    default = parse_args(["--config", str(repo / "config" / "gearmand.yaml"), "--config-file", ""])
    assert Access(default.security).anonymous.unrestricted
