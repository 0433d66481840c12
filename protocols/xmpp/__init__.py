"""The XMPP frontend (``gearmand -r xmpp``): a chat bot that runs Gearman jobs for people and scripts.

It logs in to an existing XMPP server as the gateway's account and answers ``reverse Hello`` with ``olleH``,
from the same scheduler and queues as every other frontend. See docs/xmpp.md.

Modules, one idea each: ``options`` (its flags and YAML block), ``grammar`` / ``access`` / ``replies`` /
``adhoc`` / ``commands`` (the sans-IO command layer: message in, actions out), ``client`` (slixmpp on a thread
of its own) and ``frontend`` (the service on the reactor thread that carries the actions out).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from protocols import FrontendBase
from protocols.xmpp.options import XmppOptions, check_options

if TYPE_CHECKING:
    from twisted.application.service import IService

    from protocols import FrontendContext


class XmppFrontend(FrontendBase):
    name = "xmpp"
    title = "xmpp frontend (-r xmpp): a chat bot on an XMPP server"
    options_type = XmppOptions
    # no reactor of its own: slixmpp runs on its own thread and loop (protocols/xmpp/client.py says why)

    def validate(self, options: XmppOptions, label: Callable[[str], str]) -> None:
        check_options(options, label)

    def build(self, context: FrontendContext) -> list[IService]:
        from protocols.xmpp.client import ConnectSpec, preload
        from protocols.xmpp.frontend import XmppService
        from protocols.xmpp.options import chat_settings, password

        options: XmppOptions = context.options
        settings = chat_settings(options)
        spec = ConnectSpec(
            jid=options.jid or "",
            password=password(options),
            host=options.host,
            port=options.port,
            tls=options.tls,
            ca_file=options.ca_file,
            rooms=dict(settings.rooms),
            keepalive_interval=options.keepalive,
            keepalive_timeout=min(options.keepalive, 10.0),
        )
        preload()
        return [XmppService(context, settings, spec)]


FRONTEND = XmppFrontend()
