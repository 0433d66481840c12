"""A tiny blocking raw-protocol peer for tests: our codec's encoder and decoder over a real socket."""

from __future__ import annotations

import socket

from protocols.binary.codec import Decoder, encode_request
from protocols.binary.packets import RES, Packet


class Raw:
    def __init__(self, port: int, timeout: float = 10.0) -> None:
        try:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except ConnectionResetError as error:  # accepted and dropped (a refusal) before connect() returned
            raise EOFError(str(error)) from None
        self.decoder = Decoder(expect=RES, max_packet_size=1 << 30)
        self.pending: list[tuple[int, list[bytes]]] = []

    def send(self, ptype: int, *args: bytes) -> None:
        try:
            self.sock.sendall(encode_request(ptype, *args))
        except (BrokenPipeError, ConnectionResetError) as error:  # closed by the server, as recv reports it
            raise EOFError(str(error)) from None

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, timeout: float | None = None) -> tuple[int, list[bytes]]:
        """The next packet; raises TimeoutError when none comes in time, EOFError on close."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            while not self.pending:
                try:
                    data = self.sock.recv(1 << 20)
                except TimeoutError:
                    raise
                except OSError as error:
                    raise EOFError(str(error)) from None
                if not data:
                    raise EOFError("connection closed")
                self.pending.extend(self.decoder.receive_data(data))
            return self.pending.pop(0)
        finally:
            if timeout is not None:
                self.sock.settimeout(10.0)

    def expect(self, ptype: int, timeout: float | None = None) -> list[bytes]:
        got, args = self.recv(timeout)
        assert got == ptype, (Packet(got).name if got > 0 else got, args)
        return args

    def nothing_within(self, seconds: float) -> bool:
        try:
            self.recv(seconds)
        except TimeoutError:
            return True
        return False

    def call(self, ptype: int, *args: bytes) -> tuple[int, list[bytes]]:
        self.send(ptype, *args)
        return self.recv()

    def admin(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")  # as gearadmin sends it (gearmand cuts LF-only names)
        buf = b""
        while not (buf.startswith((b"OK", b"ERR")) and buf.endswith(b"\n")) and not (
            buf == b".\n" or buf.endswith(b"\n.\n")
        ):
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def submit(client: Raw, function: bytes, data: bytes, unique: bytes = b"", ptype: int = Packet.SUBMIT_JOB) -> bytes:
    """Submit and return the handle from JOB_CREATED."""
    client.send(ptype, function, unique, data)
    return client.expect(Packet.JOB_CREATED)[0]


def worker(port: int, *functions: bytes) -> Raw:
    w = Raw(port)
    for name in functions:
        w.send(Packet.CAN_DO, name)
    return w
