"""Names and handles (bytes from the wire) as text for log lines and admin replies."""

from __future__ import annotations


def printable(value: bytes | bytearray | memoryview) -> str:
    """UTF-8 text, undecodable bytes as ``\\xNN``: never a Python repr (``b'H:vm:1'``) in what people read,
    and two different names never look the same."""
    return bytes(value).decode("utf-8", "backslashreplace")
