"""Every frontend's state, listening or not: admin `show frontends` (name TAB state TAB addresses) and the
"frontends" key of the JSON status, on a running server; a graceful shutdown shows its listeners stopped."""

from __future__ import annotations

import socket
import time

from protocols.binary.packets import Packet
from tests.integration.conftest import ServerFactory, admin_command
from tests.integration.rawclient import Raw, submit, worker
from tests.integration.test_http_frontend import start_http


def test_show_frontends_and_the_json_status_list_every_frontend(gearmand: ServerFactory) -> None:
    web = start_http(gearmand)
    binary, http = f"127.0.0.1:{web.port}", f"127.0.0.1:{web.http_port}"
    assert admin_command(web.port, "show frontends") == f"binary\tlistening\t{binary}\nhttp\tlistening\t{http}\n.\n"
    status, data = web.json("/_gearman/status")
    assert status == 200
    assert data["frontends"] == [
        {"name": "binary", "state": "listening", "addresses": [binary], "detail": ""},
        {"name": "http", "state": "listening", "addresses": [http], "detail": ""},
    ]


def test_a_frontend_on_two_addresses_lists_both(gearmand: ServerFactory) -> None:
    server = gearmand("-L", "::1")  # the fixture's -L 127.0.0.1 too
    assert server.admin("show frontends") == f"binary\tlistening\t127.0.0.1:{server.port} [::1]:{server.port}\n.\n"


def test_a_graceful_shutdown_shows_the_listeners_stopped(gearmand: ServerFactory) -> None:
    server = gearmand()
    with (
        Raw(server.port) as client,
        worker(server.port, b"g") as w,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as admin,
    ):
        handle = submit(client, b"g", b"x")
        w.send(Packet.GRAB_JOB)
        w.expect(Packet.JOB_ASSIGN)  # a running job keeps the server draining
        admin.sendall(b"shutdown graceful\n")
        assert admin.recv(100) == b"OK\r\n"
        deadline = time.monotonic() + 5
        while True:  # the listener closes (no event to wait on from outside but the refusal)
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=0.2).close()
            except OSError:
                break
            assert time.monotonic() < deadline
            time.sleep(0.01)
        admin.sendall(b"show frontends\n")
        reply = b""
        while not reply.endswith(b"\n.\n"):
            reply += admin.recv(1000)
        endpoint = f"tcp:port={server.port}:interface=127.0.0.1:backlog=32"
        assert reply == f"binary\tstopped\t{endpoint}\n.\n".encode()
        w.send(Packet.WORK_COMPLETE, handle, b"done")
        assert client.expect(Packet.WORK_COMPLETE) == [handle, b"done"]
        assert server.proc.wait(10) == 0
