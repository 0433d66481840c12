"""The xmpp frontend's options (``gearmand -r xmpp``): flags ``--xmpp-*``, the YAML ``xmpp:`` block.

Checked here (``check_options``): the values each option may take, the password file (readable; its trailing
newline is not part of the password) and ``tls: plain`` only towards a loopback host. Whether a JID and a
password are given at all is checked when the bot is built (``chat_settings``, ``password``): the options
of every installed frontend are checked, enabled or not, and an unused bot needs no account.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from protocols.options import OptionError, check, check_port, nonnegative, option, port_number
from protocols.xmpp import jids
from protocols.xmpp.limits import DEFAULT_MAX_REPLY, DEFAULT_RATE_LIMIT, MIN_MAX_REPLY, NO_WORKER_CHOICES

if TYPE_CHECKING:
    from protocols.xmpp.commands import ChatSettings

TLS_CHOICES = ("starttls", "direct", "plain")
#: A foreground job's default wait: a person does not wait longer for an answer in a chat.
DEFAULT_JOB_TIMEOUT = 300.0


@dataclass
class XmppOptions:
    jid: str | None = option(
        None, flags=("--xmpp-jid",), metavar="JID", help="the bot's account, user@domain[/resource] (required)"
    )
    password: str | None = option(None, help="the account's password (YAML only; prefer password_file)")
    password_file: str | None = option(
        None,
        flags=("--xmpp-password-file",),
        metavar="FILE",
        help="file holding the account's password (a trailing newline is not part of it)",
    )
    host: str | None = option(
        None,
        flags=("--xmpp-host",),
        metavar="HOST",
        help="XMPP server to connect to, no DNS SRV lookup (default: the JID's domain, looked up in DNS)",
    )
    port: int = option(5222, flags=("--xmpp-port",), parse=port_number, help="XMPP server port (default 5222)")
    tls: str = option(
        "starttls",
        flags=("--xmpp-tls",),
        metavar="MODE",
        help="starttls (default), direct (TLS from the first byte) or plain (loopback hosts only)",
    )
    ca_file: str | None = option(
        None,
        flags=("--xmpp-ca-file",),
        metavar="FILE",
        help="certificates (PEM) the server's must chain to (default: the system's)",
    )
    allowed: list[str] = option(
        default_factory=list,
        flags=("--xmpp-allow",),
        metavar="JID",
        help="a bare JID, room or domain that may submit jobs; repeatable (default: nobody)",
    )
    rooms: list[dict[str, str]] = option(default_factory=list, help="rooms to join: a list of {room, nick}")
    rate_limit: int = option(
        DEFAULT_RATE_LIMIT,
        flags=("--xmpp-rate-limit",),
        parse=nonnegative,
        metavar="N",
        help=f"messages per minute per sender (default {DEFAULT_RATE_LIMIT}; 0: no limit)",
    )
    max_reply: int = option(DEFAULT_MAX_REPLY, help=f"bytes of one reply (default {DEFAULT_MAX_REPLY})")
    job_timeout: float = option(
        DEFAULT_JOB_TIMEOUT, help="seconds a foreground job may take before the bot stops waiting (0: no limit)"
    )
    no_worker: str = option("reply", help="a job for a function without workers: reply at once, or wait")
    keepalive: float = option(
        30.0, help="seconds between XEP-0199 pings; one unanswered for as long (10 s at most) drops the stream"
    )


def check_options(options: XmppOptions, label: Callable[[str], str]) -> None:
    if options.jid is not None:
        check(bool(jids.parse(options.jid).local), f"{label('jid')} must be user@domain, not {options.jid!r}")
    if options.password_file is not None:
        read_password_file(options.password_file, label("password_file"))
    check_port(options.port, label("port"))
    check(options.tls in TLS_CHOICES, f"{label('tls')} must be one of {', '.join(TLS_CHOICES)}, not {options.tls!r}")
    if options.tls == "plain":
        check(
            options.host is not None and is_loopback(options.host),
            f"{label('tls')}: plain sends the password in the clear: only with a loopback {label('host')}",
        )
    if options.ca_file is not None:
        check(Path(options.ca_file).is_file(), f"{label('ca_file')}: no such file: {options.ca_file}")
    if isinstance(options.allowed, str):
        options.allowed = [options.allowed]
    for entry in options.allowed:
        check(isinstance(entry, str) and bool(jids.parse(entry.lstrip("@")).domain),
              f"{label('allowed')}: {entry!r} is not a JID or domain")  # fmt: skip
    check(isinstance(options.rooms, list), f"{label('rooms')} must be a list of {{room, nick}}")
    for room in options.rooms:
        check(
            isinstance(room, dict) and set(room) <= {"room", "nick"} and isinstance(room.get("room"), str)
            and bool(jids.parse(room["room"]).local) and isinstance(room.get("nick", ""), str),
            f"{label('rooms')}: each must be {{room: name@service, nick: name}}, not {room!r}",
        )  # fmt: skip
    check(options.rate_limit >= 0, f"{label('rate_limit')} must be 0 (no limit) or more")
    check(options.max_reply >= MIN_MAX_REPLY, f"{label('max_reply')} must be at least {MIN_MAX_REPLY}")
    check(options.job_timeout >= 0, f"{label('job_timeout')} must be 0 (no limit) or more")
    check(options.no_worker in NO_WORKER_CHOICES, f"{label('no_worker')} must be reply or wait")
    check(options.keepalive > 0, f"{label('keepalive')} must be more than 0 seconds")


def read_password_file(path: str, label: str = "xmpp.password_file") -> str:
    """The password in ``path``: its first line, without the line break (``echo secret > file`` works)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise OptionError(f"{label}: cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise OptionError(f"{label}: {path} is empty")
    return password


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def password(options: XmppOptions) -> str:
    """The account's password, from ``password_file`` or ``password``; ValueError when neither is set."""
    if options.password_file is not None:
        return read_password_file(options.password_file)
    if options.password:
        return options.password
    raise ValueError("the xmpp frontend needs xmpp.password_file (--xmpp-password-file) or xmpp.password")


def chat_settings(options: XmppOptions) -> ChatSettings:
    """The command layer's settings; ValueError (one line) when the bot cannot run with these options."""
    from protocols.xmpp.commands import ChatSettings  # here: a server without the bot never imports it

    if not options.jid:
        raise ValueError("the xmpp frontend needs its account: xmpp.jid (--xmpp-jid)")
    rooms: dict[str, str] = {}
    for room in options.rooms:
        rooms[room["room"]] = room.get("nick") or jids.parse(options.jid).local
    return ChatSettings(
        jid=options.jid,
        allowed=tuple(options.allowed),
        rooms=rooms,
        rate_limit=options.rate_limit,
        max_reply=options.max_reply,
        job_timeout=options.job_timeout or None,
        no_worker=options.no_worker,
    )
